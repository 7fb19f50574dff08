"""What a sink is: the small interface the background worker and the run's end rely on.

A sink receives every batch of records the worker drains (``handle``) and
ends itself once, by a deadline (``close``). It says what the code around it
needs to know, so that nothing outside it names it:

* ``name``: how errors and logs call it;
* ``error_kind``: the ``kind`` label its failures are counted under in
  ``mlx_otel_errors_total`` (``"wandb"``, ``"worker"``, ``"export"``);
* ``whole_drain``: it wants the whole drain at once rather than bounded
  batches (the chart sink renders once per drain at most).

Deadlines are :func:`time.monotonic` values, one for the whole end of a run;
:func:`seconds_left` turns one into a timeout. :func:`step_values` names a
step's values as statistics, CSV and WandB all see them.

    class PrintingSink:
        name, error_kind, whole_drain = "printing", "worker", False
        def handle(self, batch): print(len(batch), "records")
        def close(self, deadline): pass
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol

from mlx_otel.catalog import by_key, custom_key
from mlx_otel.records import GradientRecord, StepRecord

__all__ = ["MEMORY_COLUMNS", "Record", "RunEnding", "Sink", "seconds_left", "step_values"]

Record = StepRecord | GradientRecord


class Sink(Protocol):
    """Receives every batch the background worker drains; closes itself by a deadline."""

    name: str
    error_kind: str
    whole_drain: bool

    def handle(self, batch: Sequence[Record]) -> None: ...

    def close(self, deadline: float) -> None: ...


class RunEnding:
    """What the end of a run tells the sinks that do work of their own (charts).

    ``begun`` is set when the end starts: periodic work stops and work in
    flight is not awaited. ``leave`` is set when the caller does not wait
    for work that finishes on its own (the end of a trainer, the process
    exiting): a chart process, for one, writes its charts after the
    training process has gone.
    """

    def __init__(self) -> None:
        self.begun = threading.Event()
        self.leave = threading.Event()


def seconds_left(deadline: float, *, floor: float = 0.0) -> float:
    """Seconds until ``deadline`` (a :func:`time.monotonic` value), at least ``floor``."""
    return max(floor, deadline - time.monotonic())


#: The statistics names of the memory reading taken at each step.
MEMORY_COLUMNS = ("mlx_active_mb", "mlx_cache_mb", "mlx_peak_mb")


#: Column names already made, by (catalogue key, label) and by custom name: a
#: step's record is turned into columns on the worker thousands of times a
#: second in a flood, always with the same few names.
_COLUMNS: dict[tuple[str, str], str] = {}
_CUSTOM_COLUMNS: dict[str, str] = {}
_NAMES_KEPT = 4096


def step_values(record: StepRecord, *, memory: bool) -> dict[str, float]:
    """A step's values under the names statistics and CSV use (the catalogue's columns)."""
    values = dict(record.values)
    for key, series in record.labelled.items():
        for label, value in series.items():
            column = _COLUMNS.get((key, label))
            if column is None:
                column = by_key(key).column(label)
                if len(_COLUMNS) < _NAMES_KEPT:
                    _COLUMNS[key, label] = column
            values[column] = value
    for name, value in record.custom.items():
        column = _CUSTOM_COLUMNS.get(name)
        if column is None:
            column = custom_key(name)
            if len(_CUSTOM_COLUMNS) < _NAMES_KEPT:
                _CUSTOM_COLUMNS[name] = column
        values[column] = value
    if memory and record.memory is not None:
        for field, reading in zip(MEMORY_COLUMNS, record.memory, strict=True):
            values[field] = reading / 2**20
    return values
