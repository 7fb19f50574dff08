"""Bounded per-metric history: numpy ring buffers of (value, step, timestamp).

Each metric keeps its latest ``capacity`` values, so memory stays bounded
however long the run; buffers start small and double up to the capacity,
so a short run or a rarely logged metric does not pay for it up front.
:class:`MetricHistory` is a copy of one metric's retained history, oldest
first, safe to keep and hand to another thread or process.

    buffer = MetricBuffer(capacity=10_000)
    buffer.append(0.5, step=1, timestamp=time.time())
    buffer.snapshot("loss").values       # array([0.5])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MetricBuffer", "MetricHistory", "histories_frame"]

# Buffers start small and double up to max_history, so a short run or a
# rarely logged metric does not pay for the full capacity up front.
_INITIAL_CAPACITY = 256


@dataclass(frozen=True)
class MetricHistory:
    """The retained history of one metric, oldest first (copies, safe to keep).

    ``values`` may hold NaN/inf as recorded; ``finite_values`` leaves them
    out. ``non_finite`` counts every NaN/inf ever recorded, including those
    that have since left the window.

    Example::

        history = stats.get_history("loss")
        history.values.mean(), history.steps[-1]
    """

    name: str
    values: np.ndarray
    steps: np.ndarray
    timestamps: np.ndarray
    non_finite: int

    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def finite_values(self) -> np.ndarray:
        finite: np.ndarray = self.values[np.isfinite(self.values)]
        return finite


class MetricBuffer:
    """Ring buffer of (value, step, timestamp) with a fixed maximum capacity."""

    __slots__ = (
        "capacity",
        "values",
        "steps",
        "timestamps",
        "start",
        "size",
        "non_finite",
        "last_step",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        initial = min(capacity, _INITIAL_CAPACITY)
        self.values = np.empty(initial, dtype=np.float64)
        self.steps = np.empty(initial, dtype=np.int64)
        self.timestamps = np.empty(initial, dtype=np.float64)
        self.start = 0  # index of the oldest entry once the buffer is full
        self.size = 0
        self.non_finite = 0
        self.last_step: int | None = None

    def append(self, value: float, step: int, timestamp: float) -> None:
        if self.size < self.capacity:
            if self.size == self.values.size:
                self._grow()
            index = self.size
            self.size += 1
        else:
            # Full: overwrite the oldest entry and advance the start.
            index = self.start
            self.start = (self.start + 1) % self.capacity
        self.values[index] = value
        self.steps[index] = step
        self.timestamps[index] = timestamp

    def extend(self, values: np.ndarray, steps: np.ndarray, timestamps: np.ndarray) -> None:
        """:meth:`append` of each entry in turn, a slice at a time."""
        if values.size > self.capacity:  # only the newest capacity entries stay
            keep = slice(values.size - self.capacity, None)
            values, steps, timestamps = values[keep], steps[keep], timestamps[keep]
        while values.size:
            if self.size < self.capacity:
                if self.size == self.values.size:
                    self._grow()
                index, room = self.size, self.values.size - self.size
            else:
                index, room = self.start, self.capacity - self.start
            count = min(room, values.size)
            self.values[index : index + count] = values[:count]
            self.steps[index : index + count] = steps[:count]
            self.timestamps[index : index + count] = timestamps[:count]
            if self.size < self.capacity:
                self.size += count
            else:
                self.start = (self.start + count) % self.capacity
            values, steps, timestamps = values[count:], steps[count:], timestamps[count:]

    def _grow(self) -> None:
        new_size = min(self.capacity, self.values.size * 2)
        for attr in ("values", "steps", "timestamps"):
            old = getattr(self, attr)
            grown = np.empty(new_size, dtype=old.dtype)
            grown[: old.size] = old
            setattr(self, attr, grown)

    def _ordered(self, array: np.ndarray) -> np.ndarray:
        if self.start == 0:
            ordered: np.ndarray = array[: self.size].copy()
        else:
            ordered = np.concatenate((array[self.start : self.size], array[: self.start]))
        return ordered

    def snapshot(self, name: str) -> MetricHistory:
        return MetricHistory(
            name=name,
            values=self._ordered(self.values),
            steps=self._ordered(self.steps),
            timestamps=self._ordered(self.timestamps),
            non_finite=self.non_finite,
        )

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.steps.nbytes + self.timestamps.nbytes


def histories_frame(histories: list[MetricHistory], *, run_id: str | None = None) -> pd.DataFrame:
    """One row per step, one column per history (see ComprehensiveStatsCollector.to_dataframe)."""
    import pandas as pd  # only where a DataFrame is asked for

    values: dict[str, pd.Series] = {}
    stamps: list[pd.Series] = []
    for history in histories:
        index = pd.Index(history.steps, name="step")
        keep = ~index.duplicated(keep="last")
        values[history.name] = pd.Series(history.values[keep], index=index[keep])
        stamps.append(pd.Series(history.timestamps[keep], index=index[keep]))
    if values:
        metrics = pd.concat(values, axis=1).sort_index()
        timestamp = pd.concat(stamps, axis=1).max(axis=1).reindex(metrics.index)
    else:
        metrics = pd.DataFrame(index=pd.Index([], dtype=np.int64, name="step"))
        timestamp = pd.Series([], dtype=np.float64, index=metrics.index)
    # A metric seen only as NaN still gets its (empty) column.
    for history in histories:
        if history.name not in metrics.columns:
            metrics[history.name] = np.nan
    front: dict[str, Any] = {"step": metrics.index.to_numpy(dtype=np.int64)}
    if run_id is not None:
        front["run_id"] = run_id
    front["timestamp"] = timestamp.to_numpy(dtype=np.float64)
    head = pd.DataFrame(front, index=metrics.index)
    ordered = [h.name for h in histories]
    return pd.concat([head, metrics[ordered]], axis=1).reset_index(drop=True)
