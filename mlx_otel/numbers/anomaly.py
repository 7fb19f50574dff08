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

* the mean absolute deviation around the median, times 1.2533 (the
  fallback of Iglewicz and Hoaglin's modified z-score), when the MAD is 0;
* :data:`RELATIVE_FLOOR` of the median's magnitude (a change of 1% of a
  perfectly steady value scores 1), and :data:`ABSOLUTE_FLOOR` when the
  median is 0 too.

Cost: the median and MAD are recomputed when a tenth of the history is new
(NumPy's O(n) selection), so a step costs O(1) amortised and the window is
a bounded deque. Between recomputations the reference is up to a tenth of a
window old. A value that is not finite (a NaN loss) scores ``inf``, counts
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
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["ABSOLUTE_FLOOR", "AnomalyDetector", "RELATIVE_FLOOR", "RobustZScore"]

#: The MAD of normal data times this estimates its standard deviation.
MAD_SCALE = 1.4826
#: The mean absolute deviation of normal data times this estimates it too.
MEAN_AD_SCALE = 1.2533
#: Smallest scale, relative to the median's magnitude.
RELATIVE_FLOOR = 0.01
#: Smallest scale of all (a median of 0 and a MAD of 0).
ABSOLUTE_FLOOR = 1e-12


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
        self._scale = 0.0

    def update(self, value: float) -> float | None:
        """Score ``value`` against the reference, then add it to the history."""
        if not math.isfinite(value):
            return math.inf
        history = self._history
        score = None
        if len(history) >= self.min_history:
            if self._since >= max(1, len(history) // 10) or not self._scale:
                self._refresh()
            score = (value - self._median) / self._scale
        history.append(value)
        self._since += 1
        return score

    def _refresh(self) -> None:
        values = np.fromiter(self._history, np.float64, len(self._history))
        median = float(np.median(values))
        deviation = np.abs(values - median)
        scale = MAD_SCALE * float(np.median(deviation))
        if scale == 0.0:
            scale = MEAN_AD_SCALE * float(deviation.mean())
        self._median = median
        self._scale = max(scale, RELATIVE_FLOOR * abs(median), ABSOLUTE_FLOOR)
        self._since = 0


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

    def observe(self, values: Mapping[str, float]) -> dict[str, float]:
        """Score the watched metrics among ``values``; count those beyond the threshold."""
        scores = {}
        counts = self.counts
        for name, detector in self._scores.items():
            value = values.get(name)
            if value is None:
                continue
            score = detector.update(value)
            counts.setdefault(name, 0)
            if score is None:
                continue
            scores[name] = score
            if abs(score) > self.threshold:
                counts[name] += 1
        return scores
