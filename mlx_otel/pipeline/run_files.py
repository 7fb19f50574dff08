"""The run's files: the seed's statistics and metrics tables, written at the end.

Not a sink: the end of a run (and ``export_all()``, and the periodic record
of a long run) calls :func:`write_run_files` once the worker has drained::

    outputs/
      monitoring_summary.json
      training_metrics.csv, training_metrics.json
      stats/stats_export_*.json, stats/metrics_history.csv

``training_metrics.csv`` and ``stats/metrics_history.csv`` are the same
table (the seed names both), written by one writer
(:func:`mlx_otel.tables.write_metrics_csv`); only their column order
differs. Every file is written atomically; with ``on_error`` one that cannot be
written (a full disk) is reported and the others are still written, the
small summary first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlx_otel.numbers.stats import ComprehensiveStatsCollector
from mlx_otel.tables import write_metrics_csv, write_metrics_json

__all__ = ["RECORD_FILES", "csv_columns", "write_run_files"]

#: Leading CSV columns, in the seed's order; other metrics follow by name.
_CSV_LEADING = ("step", "run_id", "timestamp", "loss", "reward_mean", "grad_norm", "learning_rate")
#: The files that make the run's record: written first, and alone when time is short.
RECORD_FILES = ("monitoring_summary", "training_metrics_csv")


def csv_columns(metric_names: Sequence[str]) -> list[str]:
    """Columns of training_metrics.csv: the seed's leading ones, then the rest sorted."""
    rest = sorted(n for n in metric_names if n not in _CSV_LEADING)
    return [*_CSV_LEADING, *rest]


def write_run_files(
    stats: ComprehensiveStatsCollector,
    output_dir: Path,
    *,
    run_id: str,
    start_time: float,
    rank: int | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
    only: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the seed's statistics and metrics files; returns {name: path}.

    With a ``rank``, the JSON files say which rank of the run they describe.
    With ``on_error``, a file that cannot be written (full disk, a path that
    is not a folder) is reported there and the others are still written,
    the small summary first; without it the first failure raises. ``only``
    names the files to write (``"monitoring_summary"``, ``"training_metrics_csv"``...).
    """
    written: dict[str, Path] = {}
    run = {"run_id": run_id} if rank is None else {"run_id": run_id, "rank": rank}
    histories: list[Any] = []  # one snapshot for both tables of the metrics

    def snapshot() -> list[Any]:
        if not histories:
            histories.extend(stats.histories())
        return histories

    def metrics_csv() -> Path:
        return write_metrics_csv(snapshot(), output_dir / "training_metrics.csv",
                                 run_id=run_id, order=csv_columns)  # fmt: skip

    def metrics_json() -> Path:
        return write_metrics_json(snapshot(), output_dir / "training_metrics.json",
                                  run=run, order=csv_columns)  # fmt: skip

    writers: list[tuple[str, Callable[[], Path]]] = [
        ("monitoring_summary", lambda: stats.export_summary(
            output_dir / "monitoring_summary.json", run_id=run_id, start_time=start_time,
            rank=rank)),
        ("training_metrics_csv", metrics_csv),
        ("training_metrics_json", metrics_json),
        ("stats_csv", stats.export_to_csv),
        ("stats_json", stats.export_to_json),
    ]  # fmt: skip
    for name, write in writers:
        if only is not None and name not in only:
            continue
        try:
            written[name] = write()
        except Exception as exc:
            if on_error is None:
                raise
            on_error(name, exc)
    return written
