"""Step-indexed spike detection: a robust z-score of each new value against its recent past.

A z-score computed in PromQL uses wall-time windows: a stalled or slowed
run shrinks the window's spread and makes it fire falsely. Here the
reference is the previous ``window`` *steps*, whatever their pace, as
llm-foundry's ``KillLossSpike``, Lightning's ``SpikeDetection`` and OLMo's
spike score judge by step.

The estimator is the median and the median absolute deviation (MAD) of the
previous values, the MAD scaled by 1.4826 so that it estimates the standard
deviation of normal data. Unlike a mean and standard deviation, one spike in
the window moves neither, so a spike cannot hide the next one, and the
scale needs no warm-up beyond a few values. Two floors keep the score finite
where the MAD is 0 (a series that is constant, or constant more than half
of the time):

* when the MAD is 0, the larger of the mean absolute deviation around the
  median times 1.2533 (the fallback of Iglewicz and Hoaglin's modified
  z-score) and a quarter of the window's range: a series that sits at one
  value most of the time and leaves it now and then (a GRPO loss that is
  exactly 0 whenever no group has reward spread) scores at most 4 for a value
  inside the range it has already shown, and a first spike still scores high;
* :data:`RELATIVE_FLOOR` of the median's magnitude (a change of 1% of a
  perfectly steady value scores 1), and :data:`ABSOLUTE_FLOOR` when the
  median is 0 too.

Cost: the median and MAD are recomputed when a quarter of the history is
new (by sorting up to 2,048 values, by NumPy's O(n) selection beyond), so a
step costs O(1) amortised (about a microsecond for a window of 100) and the
window is a bounded deque. Between recomputations the reference is up to a
quarter of a window old: for a series that drifts steadily (a KL growing over
the run) the median then lies up to 0.75 windows back instead of 0.5, and a
steady linear drift scores at most 2 instead of 1.35, far from the threshold. A value that is not finite (a NaN loss) scores ``inf``, counts
as an anomaly and stays out of the reference.

    >>> scores = RobustZScore(window=100)
    >>> [scores.update(1.0 + 0.01 * (i % 3)) for i in range(150)][-1] < 2
    True
    >>> scores.update(100.0) > 1000, scores.update(1.0) < 2
    (True, True)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["ABSOLUTE_FLOOR", "AnomalyDetector", "RELATIVE_FLOOR", "RobustZScore"]

#: The MAD of normal data times this estimates its standard deviation.
MAD_SCALE = 1.4826
#: The mean absolute deviation of normal data times this estimates it too.
MEAN_AD_SCALE = 1.2533
#: Where the MAD is 0, a value this many scales from the median spans the window's range.
RANGE_DIVISOR = 4.0
#: Smallest scale, relative to the median's magnitude.
RELATIVE_FLOOR = 0.01
#: Smallest scale of all (a median of 0 and a MAD of 0).
ABSOLUTE_FLOOR = 1e-12


#: Histories up to this long are sorted in Python, longer ones selected by NumPy.
_SORT_BELOW = 2048


def _middle(ordered: list[float]) -> float:
    """The median of sorted values."""
    n = len(ordered)
    return (ordered[n // 2] + ordered[(n - 1) // 2]) / 2


class RobustZScore:
    """The robust z-score of each new value against the previous ``window`` values.

    :meth:`update` returns ``None`` until ``min_history`` values are known
    (by default the smaller of 20 and ``window``).
    """

    def __init__(self, window: int = 100, *, min_history: int | None = None) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2 steps, got {window}")
        self.window = window
        self.min_history = min(window, 20) if min_history is None else max(2, min_history)
        self._history: deque[float] = deque(maxlen=window)
        self._since = 0  # values added since the reference was computed
        self._median = 0.0
        self._scale = 0.0  # 0 until min_history values are known
        self._due = 1
        #: How many times the reference was recomputed (about once per window/4 values).
        self.recomputed = 0

    def __len__(self) -> int:
        """Values in the history (at most ``window``)."""
        return len(self._history)

    def update(self, value: float) -> float | None:
        """Score ``value`` against the reference, then add it to the history."""
        if not math.isfinite(value):
            return math.inf
        score = None
        if self._scale:
            if self._since >= self._due:
                self._refresh()
            score = (value - self._median) / self._scale
        elif len(self._history) >= self.min_history:
            self._refresh()
            score = (value - self._median) / self._scale
        self._history.append(value)
        self._since += 1
        return score

    def update_many(self, values: Sequence[float]) -> list[float | None]:
        """:meth:`update` of each value in turn (the same scores), cheaper per value.

        Between two recomputations of the reference every value is scored
        against the same median and scale, so a run of finite values is
        scored in one pass.
        """
        scores: list[float | None] = []
        i, count = 0, len(values)
        while i < count:
            if not self._scale:  # still learning the series: one value at a time
                scores.append(self.update(values[i]))
                i += 1
                continue
            if self._since >= self._due:
                self._refresh()
            run = values[i : i + self._due - self._since]
            # A finite sum means finite values (a sum overflowing to inf takes
            # the value-by-value path, which gives the same scores).
            if math.isfinite(sum(run)):
                median, scale = self._median, self._scale
                scores.extend([(value - median) / scale for value in run])
                self._history.extend(run)
                self._since += len(run)
            else:  # a NaN or inf inside: it scores inf and stays out of the reference
                scores.extend([self.update(value) for value in run])
            i += len(run)
        return scores

    def _refresh(self) -> None:
        count = len(self._history)
        if count <= _SORT_BELOW:
            # Sorting a few hundred floats in Python beats NumPy's call overhead.
            ordered = sorted(self._history)
            median = _middle(ordered)
            deviations = sorted([abs(v - median) for v in ordered])
            mad, mean_ad = _middle(deviations), sum(deviations) / count
        else:  # NumPy's selection: O(n)
            values = np.fromiter(self._history, np.float64, count)
            median = float(np.median(values))
            deviation = np.abs(values - median)
            mad, mean_ad = float(np.median(deviation)), float(deviation.mean())
        scale = MAD_SCALE * mad
        if scale == 0.0:
            # Constant more than half of the time (a GRPO loss that is exactly 0
            # whenever no group has reward spread): a value inside the range the
            # series has already shown is no spike.
            spread = ordered[-1] - ordered[0] if count <= _SORT_BELOW else float(np.ptp(values))
            scale = max(MEAN_AD_SCALE * mean_ad, spread / RANGE_DIVISOR)
        self._median = median
        self._scale = max(scale, RELATIVE_FLOOR * abs(median), ABSOLUTE_FLOOR)
        self._since = 0
        self._due = max(1, count // 4)  # the next recomputation, in values
        self.recomputed += 1


class AnomalyDetector:
    """Robust z-scores of several metrics, and their anomalies counted.

    ``observe`` takes one step's values (any mapping; metrics not watched or
    not in it are skipped) and returns the scores it could compute;
    ``counts`` holds, for each metric seen, the steps whose score's
    magnitude exceeded ``threshold``.

        >>> detector = AnomalyDetector(["loss"], window=50, threshold=6.0)
        >>> for step in range(100):
        ...     _ = detector.observe({"loss": 1.0})
        >>> detector.observe({"loss": 100.0})["loss"] > 6, detector.counts
        (True, {'loss': 1})
    """

    def __init__(self, metrics: Iterable[str], *, window: int, threshold: float) -> None:
        self.threshold = threshold
        self._scores = {name: RobustZScore(window) for name in metrics}
        self.counts: dict[str, int] = {}

    def observe_many(
        self, rows: Sequence[Mapping[str, float]]
    ) -> tuple[list[dict[str, float] | None], list[dict[str, int] | None]]:
        """:meth:`observe` of each row in turn: (each row's scores, the counts after it).

        Both are None for a row without scores. A row's counts are a copy of
        :attr:`counts` as it stood after that row; rows between two changes
        share one copy (read them, do not change them).
        """
        count = len(rows)
        scored: list[dict[str, float] | None] = [None] * count
        threshold = self.threshold
        # For each metric: where it is first seen, and the rows where it crosses.
        firsts: list[tuple[int, int, str]] = []
        crossings: dict[int, list[str]] = {}
        for order, (name, detector) in enumerate(self._scores.items()):
            where = [i for i, row in enumerate(rows) if row.get(name) is not None]
            if not where:
                continue
            scores = detector.update_many([rows[i][name] for i in where])
            if name not in self.counts:
                firsts.append((where[0], order, name))
            for i, score in zip(where, scores, strict=True):
                if score is None:
                    continue
                row_scores = scored[i]
                if row_scores is None:
                    row_scores = scored[i] = {}
                row_scores[name] = score
                if abs(score) > threshold:
                    crossings.setdefault(i, []).append(name)
        # The counts after each row: they change where a metric is first seen
        # or crosses the threshold; the rows in between share one copy.
        changes: dict[int, list[tuple[str, int]]] = {}
        for first, _, name in sorted(firsts):
            changes.setdefault(first, []).append((name, 0))
        for i, names in crossings.items():
            changes.setdefault(i, []).extend((name, 1) for name in names)
        counts = self.counts
        snapshot: dict[str, int] | None = None
        after: list[dict[str, int] | None] = [None] * count
        for i in range(count):
            change = changes.get(i)
            if change is not None:
                for name, add in change:
                    counts[name] = counts.get(name, 0) + add
                snapshot = None
            if scored[i] is not None:
                if snapshot is None:
                    snapshot = dict(counts)
                after[i] = snapshot
        return scored, after

    def observe(self, values: Mapping[str, float]) -> dict[str, float]:
        """Score the watched metrics among ``values``; count those beyond the threshold."""
        scores = {}
        counts = self.counts
        for name, detector in self._scores.items():
            value = values.get(name)
            if value is None:
                continue
            score = detector.update(value)
            if score is None:
                counts.setdefault(name, 0)
                continue
            scores[name] = score
            counts[name] = counts.get(name, 0) + (abs(score) > self.threshold)
        return scores
