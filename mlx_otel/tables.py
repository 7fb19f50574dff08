"""The run's metric tables as files: one writer per table, no pandas needed.

The metrics table (one row per step, one column per metric) is written as
``training_metrics.csv``, ``training_metrics.json`` and
``stats/metrics_history.csv``; :func:`metrics_table` builds it once from
the statistics histories and the writers here put it on disk, atomically.
Building it needs no DataFrame: the end of a run does not pay pandas'
import while the trainer saves and exits.

Values are written as Python writes floats (full precision: reading back
gives equal values); NaN and missing values are empty in CSV and ``null``
in JSON, inf is ``inf`` in CSV and ``null`` in JSON (JSON has neither).

    columns, rows = metrics_table(collector.histories(), run_id="run_001")
    write_metrics_csv(collector.histories(), Path("training_metrics.csv"))
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from mlx_otel.fileio import atomic_write_text

__all__ = ["metrics_table", "write_json", "write_metrics_csv", "write_metrics_json"]


class _History(Protocol):
    """One metric's retained history (``mlx_otel.numbers.history.MetricHistory``)."""

    @property
    def name(self) -> str: ...
    @property
    def values(self) -> Any: ...
    @property
    def steps(self) -> Any: ...
    @property
    def timestamps(self) -> Any: ...


Order = Callable[[Sequence[str]], Sequence[str]]


def metrics_table(
    histories: Iterable[_History], *, run_id: str | None = None, order: Order | None = None
) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows): one row per step (ascending), one column per metric.

    Columns: ``step``, ``run_id`` (when given), ``timestamp`` (the latest
    record of that step), then the metrics in the histories' order, or as
    ``order`` arranges them. A metric absent at a step is ``None``; a metric
    recorded twice at one step keeps its last value.
    """
    names: list[str] = []
    cells: dict[int, dict[str, float]] = {}
    stamps: dict[int, float] = {}
    for history in histories:
        names.append(history.name)
        for value, step, stamp in zip(
            history.values.tolist(), history.steps.tolist(), history.timestamps.tolist(),
            strict=True,
        ):  # fmt: skip
            cells.setdefault(step, {})[history.name] = value
            if stamp > stamps.get(step, -math.inf):
                stamps[step] = stamp
    head = ["step", "timestamp"] if run_id is None else ["step", "run_id", "timestamp"]
    columns = [*head, *names]
    if order is not None:
        columns = [c for c in order(columns) if c in columns]
    rows = []
    for step in sorted(cells):
        row = {**cells[step], "step": step, "timestamp": stamps[step], "run_id": run_id}
        rows.append([row.get(column) for column in columns])
    return columns, rows


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else value


def write_metrics_csv(
    histories: Iterable[_History],
    path: Path,
    *,
    run_id: str | None = None,
    order: Order | None = None,
) -> Path:
    """Write the metrics table as CSV, atomically; returns ``path``."""
    columns, rows = metrics_table(histories, run_id=run_id, order=order)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_csv_cell(v) for v in row] for row in rows)
    return atomic_write_text(Path(path), buffer.getvalue())


def json_safe(value: Any) -> Any:
    """Replace NaN/inf by None recursively: JSON has no NaN, and a strict
    parser (browsers, jq) rejects the ``NaN`` token Python would write."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, payload: Any, *, newline: bool = False) -> Path:
    """Write ``payload`` as indented strict JSON (NaN/inf as null), atomically.

    Serialised fully before the disk is touched: a serialiser failure leaves
    nothing behind.
    """
    text = json.dumps(json_safe(payload), indent=2, allow_nan=False) + ("\n" if newline else "")
    return atomic_write_text(Path(path), text)


def write_metrics_json(
    histories: Iterable[_History],
    path: Path,
    *,
    run: dict[str, Any],
    order: Order | None = None,
) -> Path:
    """Write the metrics table as ``{**run, "steps": [{column: value}, ...]}``."""
    columns, rows = metrics_table(histories, run_id=run.get("run_id"), order=order)
    steps = [dict(zip(columns, row, strict=True)) for row in rows]
    return write_json(path, {**run, "steps": steps}, newline=True)
