"""The run's files: the seed's statistics and metrics tables, written at the end.

Not a sink: the end of a run (and ``export_all()``, and the periodic record
of a long run) calls :func:`write_run_files` once the worker has drained::

    outputs/
      monitoring_summary.json
      training_metrics.csv, training_metrics.json
      stats/stats_export_*.json, stats/metrics_history.csv

Every file is written atomically; with ``on_error`` one that cannot be
written (a full disk) is reported and the others are still written, the
small summary first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlx_otel.fileio import atomic_path, atomic_write_text
from mlx_otel.numbers.stats import ComprehensiveStatsCollector

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
    frame_cache: list[Any] = []
    run = {"run_id": run_id} if rank is None else {"run_id": run_id, "rank": rank}

    def frame() -> Any:
        if not frame_cache:
            data = stats.to_dataframe().copy()  # one block: insert() on many columns warns
            data.insert(1, "run_id", run_id)
            frame_cache.append(data[[c for c in csv_columns(list(data.columns)) if c in data]])
        return frame_cache[0]

    def metrics_csv() -> Path:
        path = output_dir / "training_metrics.csv"
        with atomic_path(path) as tmp:
            frame().to_csv(tmp, index=False)
        return path

    def metrics_json() -> Path:
        rows = json.loads(frame().to_json(orient="records"))
        text = json.dumps({**run, "steps": rows}, indent=2) + "\n"
        return atomic_write_text(output_dir / "training_metrics.json", text)

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
