"""A batch of steps turned into one array per metric, in step order.

The statistics history is written a step at a time by the training-time
API, but the monitor's worker hands it thousands of steps at once (every
step logged since its last cycle). Copying those into the ring buffers
value by value costs about half a microsecond per value, on the thread that
shares the interpreter with the training loop; gathered into arrays first,
a step of 30 values costs a couple of microseconds.

Steps with the same metric names (the usual case: one training loop logs
the same keywords every step) become one 2-D array; a metric present in
several such groups gets its pieces put back in step order. A step's values
may come in several parts, each named its own way (:class:`Columns`): the
monitor's step records keep their own values, custom values and labelled
values apart, and each part's names are made once per group of steps, not
once per value.

    >>> columns = gather_columns([(1, {"loss": 0.5}, 10.0), (2, {"loss": 0.4, "kl": 0.1}, 11.0)])
    >>> columns["loss"].values.tolist(), columns["kl"].steps.tolist()
    ([0.5, 0.4], [2])
    >>> gather_columns([(1, {"loss": "0.5"}, 10.0)]) is None     # not a number
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Column", "Columns", "gather_columns"]

#: Array kinds taken as numbers: floats, ints, bools (text, objects, complex are not).
_NUMBER_KINDS = frozenset("fiub")


class Column(NamedTuple):
    """One metric's values of a batch, with their steps and timestamps, oldest first."""

    values: np.ndarray
    steps: np.ndarray
    timestamps: np.ndarray


class Columns:
    """Columns of a batch of steps, gathered from parts of each step's values.

    ``steps`` and ``timestamps`` are the batch's rows. :meth:`add` takes one
    part's mappings; :meth:`add_matrix` rows of fixed names.
    :attr:`plain` turns False when a value is not a number (text, None,
    arrays, ints beyond int64): the caller then records the rows one by one,
    with the checks and messages of its own path.

        >>> columns = Columns([1, 2], [10.0, 11.0])
        >>> columns.add([{"x": 1.0}, {"x": 2.0}], rename=lambda name: f"custom/{name}")
        True
        >>> columns.result()["custom/x"].values.tolist()
        [1.0, 2.0]
    """

    def __init__(self, steps: Sequence[int] | np.ndarray, timestamps: Sequence[float] | np.ndarray):
        self.steps = np.asarray(steps, dtype=np.int64)
        self.timestamps = np.asarray(timestamps, dtype=np.float64)
        self.plain = True
        self._pieces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def add(
        self,
        mappings: Sequence[Mapping[str, Any]],
        rows: Sequence[int] | None = None,
        rename: Callable[[str], str] | None = None,
    ) -> bool:
        """One part's ``{name: value}`` mappings, of ``rows`` (row indices; by default
        the i-th mapping is the i-th row's); ``rename`` makes a name a column's.

        Returns :attr:`plain`.
        """
        shapes = list(map(tuple, mappings))
        groups: dict[tuple[str, ...], Sequence[int]] = {}
        if len(set(shapes)) == 1:  # the usual case: every row has the same names
            if shapes[0]:
                groups[shapes[0]] = range(len(mappings))
        else:
            grouping: dict[tuple[str, ...], list[int]] = {}
            for position, names in enumerate(shapes):
                if names:
                    grouping.setdefault(names, []).append(position)
            groups.update(grouping)
        for names, found in groups.items():
            try:
                matrix = np.array([list(mappings[i].values()) for i in found])
            except (TypeError, ValueError, OverflowError):  # ragged or not numbers
                self.plain = False
                return False
            where = np.asarray(found if rows is None else [rows[i] for i in found], np.intp)
            columns = names if rename is None else [rename(name) for name in names]
            if not self.add_matrix(columns, where, matrix):
                return False
        return self.plain

    def add_matrix(self, names: Sequence[str], rows: np.ndarray, matrix: np.ndarray) -> bool:
        """A 2-D array of ``rows`` (row indices) by ``names``; returns :attr:`plain`."""
        if matrix.ndim != 2 or matrix.dtype.kind not in _NUMBER_KINDS:
            self.plain = False
            return False
        matrix = matrix.astype(np.float64, copy=False)
        for column, name in enumerate(names):
            self._pieces.setdefault(name, []).append((rows, matrix[:, column]))
        return True

    def result(self) -> dict[str, Column]:
        """One :class:`Column` per name, in step order; the names in the order
        their first values come (row by row, then as added), as rows one by one see them."""
        columns = {}
        by_first_row = sorted(
            self._pieces.items(), key=lambda item: min(int(part[0][0]) for part in item[1])
        )  # stable: names first seen in the same row keep the order they were added in
        for name, parts in by_first_row:
            if len(parts) == 1:
                where, values = parts[0]
            else:  # the metric was logged by steps of several shapes: back to step order
                where = np.concatenate([part[0] for part in parts])
                values = np.concatenate([part[1] for part in parts])
                order = np.argsort(where, kind="stable")
                where, values = where[order], values[order]
            columns[name] = Column(values, self.steps[where], self.timestamps[where])
        return columns


def gather_columns(
    rows: Sequence[tuple[int, Mapping[str, Any], float]],
) -> dict[str, Column] | None:
    """``(step, values, timestamp)`` rows as one :class:`Column` per metric name.

    None when a value is not a number (a string, None, an array...): the
    caller then records the rows one by one, with the checks and messages of
    its own path.
    """
    columns = Columns([row[0] for row in rows], [row[2] for row in rows])
    if not columns.add([row[1] for row in rows]):
        return None
    return columns.result()
