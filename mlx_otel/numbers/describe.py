"""What a metric's history says: summary statistics and moving averages.

Plain functions over numpy arrays and :class:`~mlx_otel.numbers.history.MetricHistory`;
NaN and inf are left out of every statistic (and counted by the caller).

    describe(np.array([0.5, 0.25, np.nan]), non_finite=1)["mean"]   # 0.375
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable

import numpy as np

from mlx_otel.numbers.history import MetricHistory

__all__ = ["PERCENTILES", "describe", "moving_averages", "validate_window"]

#: Percentiles reported by :meth:`ComprehensiveStatsCollector.get_metric_stats`.
PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95, 99)

def moving_averages(histories: Iterable[MetricHistory], window: int) -> dict[str, float]:
    """The mean of the last ``window`` finite values of each history that has any."""
    with np.errstate(over="ignore"):  # a mean past the float maximum is inf
        return {
            h.name: float(finite[-window:].mean())
            for h in histories
            if (finite := h.finite_values).size
        }


def describe(values: np.ndarray, non_finite: int) -> dict[str, float | int]:
    """Summary statistics of the finite ``values`` (NaN when there are none)."""
    values = values[np.isfinite(values)]
    count = int(values.size)
    if count == 0:
        nan = math.nan
        result: dict[str, float | int] = {"mean": nan, "std": nan, "min": nan, "max": nan}
        result.update({f"p{q}": nan for q in PERCENTILES})
        result.update({"count": 0, "last": nan, "final": nan, "non_finite": non_finite})
        return result
    # One call for all percentiles; numpy's default "linear" method is the
    # same as pandas' Series.quantile default.
    quantiles = np.percentile(values, PERCENTILES)
    last = float(values[-1])
    # Finite values near the float maximum overflow when squared: the mean or
    # std is then inf, which is the honest answer, not a warning to print.
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(values.mean()), float(values.std())  # population std (ddof=0)
    result = {"mean": mean, "std": std, "min": float(values.min()), "max": float(values.max())}
    result.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, quantiles, strict=True)})
    result.update({"count": count, "last": last, "final": last, "non_finite": non_finite})
    return result


def validate_window(window: int) -> int:
    try:
        window = operator.index(window)
    except TypeError:
        raise TypeError(f"window must be an integer, got {window!r}") from None
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return window
