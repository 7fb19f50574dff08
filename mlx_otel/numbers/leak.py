"""Memory-leak detection as plain numbers: a line fitted to MLX active memory.

:func:`judge_leak` decides from a window of
:class:`~mlx_otel.numbers.memory_figures.MemorySnapshot` whether active
memory grows steadily; :class:`LeakReport` carries the verdict and the
figures behind it. No MLX here: the profiler reads, this judges.

    >>> from mlx_otel import MemorySnapshot
    >>> window = [MemorySnapshot(step, float(step), 100.0 + 2 * step, 0.0, 0.0, 0.0)
    ...           for step in range(20)]
    >>> judge_leak(window, min_snapshots=10, min_slope_mb_per_step=0.5,
    ...            min_r_squared=0.8).detected
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from mlx_otel.numbers.memory_figures import NAN, MemorySnapshot, to_bytes

__all__ = ["LeakReport", "fit_line", "judge_leak"]


@dataclass(frozen=True)
class LeakReport:
    """Outcome of a leak check over the last snapshots.

    ``slope_mb_per_step`` is the least-squares slope of MLX active memory
    against the step number, ``r_squared`` the fit quality (1 = a straight
    line), ``window_steps`` the number of snapshots judged. NaN slopes mean
    there was nothing to fit yet.

    Example::

        report = profiler.leak_report()
        if report.detected:
            print(report.description)
    """

    detected: bool
    slope_mb_per_step: float
    slope_mb_per_second: float
    r_squared: float
    window_steps: int
    description: str
    growth_mb: float = NAN
    rising_subwindows: int = 0
    subwindows: int = 0

    @property
    def slope_bytes_per_step(self) -> float:
        return to_bytes(self.slope_mb_per_step)

    @property
    def slope_bytes_per_second(self) -> float:
        return to_bytes(self.slope_mb_per_second)


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and r² of y against x (closed form).

    A constant y has no trend to explain: slope 0 and r² 0.
    """
    dx = x - x.mean()
    dy = y - y.mean()
    sxx = float(dx @ dx)
    syy = float(dy @ dy)
    if sxx == 0.0:
        return NAN, 0.0
    sxy = float(dx @ dy)
    slope = sxy / sxx
    if syy == 0.0:
        return slope, 0.0
    return slope, (sxy * sxy) / (sxx * syy)


def judge_leak(
    window: Sequence[MemorySnapshot],
    *,
    min_snapshots: int,
    min_slope_mb_per_step: float,
    min_r_squared: float,
) -> LeakReport:
    """Decide whether MLX active memory is leaking over ``window`` (oldest first).

    The method, and why:

    1. Only *active* memory is fitted. Cache growth is MLX reusing freed
       buffers; it is bounded by ``mx.set_cache_limit`` and returned by
       ``mx.clear_cache()``, so it is not a leak.
    2. Least-squares slope of active MB against the step (snapshot order
       when steps are missing or go backwards) over the window, at least
       ``min_snapshots`` snapshots. A leak needs a slope of at least
       ``min_slope_mb_per_step``; a sawtooth of arrays freed every
       step has no slope.
    3. The line must fit: r² >= ``min_r_squared`` (0.8). A one-time
       step change (a new, larger batch shape that stays allocated) is
       explained by a line to at most r² = 3p(1-p) <= 0.75, p being where
       in the window the jump falls, so it fails this test wherever it is.
    4. The growth must be sustained: the window is cut into four
       consecutive sub-windows and the mean must rise from each one to
       the next by at least half of what the minimum slope implies. A
       single jump raises at most two of the three transitions (the one
       it falls in and, when it lands inside a sub-window, the next),
       so it cannot pass even where noise lifts its r².

    A jump and a slow leak in the same window can hide the leak until
    the jump leaves the window; a handful of large discrete jumps per
    window looks like new shapes, not a leak. Prometheus' own
    ``predict_linear`` alert on the exported slope sees the longer run.
    """
    window = [s for s in window if math.isfinite(s.mlx_allocated_mb)]
    n = len(window)
    if n < min_snapshots:
        return LeakReport(
            detected=False,
            slope_mb_per_step=NAN,
            slope_mb_per_second=NAN,
            r_squared=NAN,
            window_steps=n,
            description=(
                f"Not enough memory snapshots to judge a leak: {n} of "
                f"{min_snapshots} needed."
            ),
        )
    y = np.fromiter((s.mlx_allocated_mb for s in window), dtype=np.float64, count=n)
    steps = [s.step for s in window if s.step is not None]
    if len(steps) == n and all(b >= a for a, b in pairwise(steps)) and steps[-1] != steps[0]:
        x = np.array(steps, dtype=np.float64)
        unit = "step"
    else:
        # Without usable step numbers, snapshot order stands in for time in steps.
        x = np.arange(n, dtype=np.float64)
        unit = "snapshot"
    slope, r2 = fit_line(x, y)
    t = np.fromiter((s.timestamp for s in window), dtype=np.float64, count=n)
    slope_s, _ = fit_line(t - t[0], y)
    growth = slope * (x[-1] - x[0]) if math.isfinite(slope) else NAN

    # Sustained growth: the mean must rise between every pair of consecutive
    # sub-windows. Four of them (three transitions) are needed for the
    # one-jump argument; fewer only when too few snapshots are allowed.
    k = max(2, min(4, n // 2))
    bounds = np.linspace(0, n, k + 1).astype(int)
    means = [(x[a:b].mean(), y[a:b].mean()) for a, b in pairwise(bounds)]
    rising = sum(
        1
        for (x0, y0), (x1, y1) in pairwise(means)
        if y1 - y0 >= 0.5 * min_slope_mb_per_step * (x1 - x0)
    )
    transitions = k - 1

    span = f"over the last {n} snapshots"
    if unit == "step":
        span += f" (steps {int(x[0])}-{int(x[-1])})"
    fit = f"{slope:.2f} MB/{unit} (r²={r2:.2f}, {growth:+.1f} MB)"
    if not (slope >= min_slope_mb_per_step):
        detected = False
        description = (
            f"No memory leak: MLX active memory trend {fit} {span}, below "
            f"{min_slope_mb_per_step:.2f} MB/{unit}."
        )
    elif r2 < min_r_squared:
        detected = False
        description = (
            f"No memory leak: MLX active memory trend {fit} {span}, but a line "
            f"fits poorly (r² below {min_r_squared:.2f}): a one-time "
            f"jump such as a new batch shape, or noise, not steady growth."
        )
    elif rising < transitions:
        detected = False
        description = (
            f"No memory leak: MLX active memory trend {fit} {span}, but it rose "
            f"in only {rising} of {transitions} sub-window transitions: a step "
            f"change, not sustained growth."
        )
    else:
        detected = True
        description = (
            f"Memory leak suspected: MLX active memory grows {fit} {span}, "
            f"rising in every sub-window ({slope_s:.2f} MB/s). Look for arrays "
            f"kept alive across steps: mx.array losses or metrics appended to "
            f"lists (log float(x) or x.item() instead), caches keyed by step, "
            f"references to old gradients or graphs."
        )
    return LeakReport(
        detected=detected,
        slope_mb_per_step=slope,
        slope_mb_per_second=slope_s,
        r_squared=r2,
        window_steps=n,
        description=description,
        growth_mb=growth,
        rising_subwindows=rising,
        subwindows=k,
    )
