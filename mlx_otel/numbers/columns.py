"""A batch of steps turned into one array per metric, in step order.

The statistics history is written a step at a time by the training-time
API, but the monitor's worker hands it thousands of steps at once (every
step logged since its last cycle). Copying those into the ring buffers
value by value costs about half a microsecond per value, on the thread that
shares the interpreter with the training loop; gathered into arrays first,
a step of 30 values costs a couple of microseconds.

Steps with the same metric names (the usual case: one training loop logs
the same keywords every step) become one 2-D array; a metric present in
several such groups gets its pieces put back in step order.

    >>> columns = gather_columns([(1, {"loss": 0.5}, 10.0), (2, {"loss": 0.4, "kl": 0.1}, 11.0)])
    >>> columns["loss"].values.tolist(), columns["kl"].steps.tolist()
    ([0.5, 0.4], [2])
    >>> gather_columns([(1, {"loss": "0.5"}, 10.0)]) is None     # not a plain number
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Column", "gather_columns"]

#: The types taken without a check; anything else goes value by value.
_PLAIN = frozenset((float, int))


class Column(NamedTuple):
    """One metric's values of a batch, with their steps and timestamps, oldest first."""

    values: np.ndarray
    steps: np.ndarray
    timestamps: np.ndarray


def gather_columns(
    rows: Sequence[tuple[int, Mapping[str, Any], float]],
) -> dict[str, Column] | None:
    """``(step, values, timestamp)`` rows as one :class:`Column` per metric name.

    None when a value is not a plain ``float``/``int`` (a string, None, an
    array...): the caller then records the rows one by one, with the checks
    and messages of its own path.
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, (_, step_values, _) in enumerate(rows):
        if not _PLAIN.issuperset(map(type, step_values.values())):
            return None
        groups.setdefault(tuple(step_values), []).append(index)
    steps = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    stamps = np.fromiter((row[2] for row in rows), dtype=np.float64, count=len(rows))
    pieces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for names, indices in groups.items():
        if not names:
            continue
        where = np.asarray(indices, dtype=np.intp)
        matrix = np.array([list(rows[i][1].values()) for i in indices], dtype=np.float64)
        for column, name in enumerate(names):
            pieces.setdefault(name, []).append((where, matrix[:, column]))
    columns = {}
    for name, parts in pieces.items():
        if len(parts) == 1:
            where, values = parts[0]
        else:  # the metric was logged by steps of several shapes: back to step order
            where = np.concatenate([part[0] for part in parts])
            values = np.concatenate([part[1] for part in parts])
            order = np.argsort(where, kind="stable")
            where, values = where[order], values[order]
        columns[name] = Column(values, steps[where], stamps[where])
    return columns
