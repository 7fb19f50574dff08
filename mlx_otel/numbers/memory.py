"""MLX and process memory: snapshots, health checks, leak detection, block stats.

Plain Python and plain numbers: the telemetry layer reads the objects defined
here (``MemoryProfiler.latest``, ``leak_report()``, ``block_stats()``,
``read_snapshot()``) when Prometheus scrapes, and knows how to turn them into
gauges. Nothing in this module imports OpenTelemetry or Prometheus.

Units: "MB" means mebibytes (2**20 bytes), as MLX users usually mean it;
every MB figure also has a ``*_bytes`` accessor for the exporters.

Example::

    profiler = MemoryProfiler(alert_threshold_mb=8000, leak_detection_window=50)
    for step in range(steps):
        with MemoryMonitor(profiler, "forward_backward"):
            loss, grads = loss_and_grad(model, batch)
        profiler.record_step(step)
    healthy, message = profiler.check_memory_health()
    leaking, description = profiler.detect_memory_leak()
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from types import TracebackType

import mlx.core as mx
import numpy as np
import psutil

__all__ = [
    "OTHER_BLOCK",
    "BlockStats",
    "LeakReport",
    "MemoryMonitor",
    "MemoryProfiler",
    "MemorySnapshot",
    "SystemMemory",
    "read_system_memory",
]

logger = logging.getLogger(__name__)

_MB = float(1 << 20)
_NAN = float("nan")

#: Block name that collects every name beyond ``MemoryProfiler.max_blocks``.
OTHER_BLOCK = "other"


def _to_mb(num_bytes: float) -> float:
    return num_bytes / _MB


def _to_bytes(mb: float) -> float:
    # Division by 2**20 is exact in binary floating point, so this round trip is too.
    return mb * _MB


@dataclass(frozen=True)
class SystemMemory:
    """Process and system memory as psutil sees it, in MB (NaN when unreadable).

    Cheap enough for a Prometheus scrape, too dear for every training step
    (about 35 µs together), which is why it is kept apart from MLX's counters.

    Example::

        system = read_system_memory()
        print(f"RSS {system.process_rss_mb:.0f} MB")
    """

    process_rss_mb: float
    system_available_mb: float
    system_total_mb: float

    @property
    def process_rss_bytes(self) -> float:
        return _to_bytes(self.process_rss_mb)

    @property
    def system_available_bytes(self) -> float:
        return _to_bytes(self.system_available_mb)

    @property
    def system_total_bytes(self) -> float:
        return _to_bytes(self.system_total_mb)


_UNREADABLE_SYSTEM = SystemMemory(_NAN, _NAN, _NAN)
_process: psutil.Process | None = None


def read_system_memory() -> SystemMemory:
    """Read RSS of this process and available/total system memory.

    Never raises: psutil failures (sandboxed /proc, a process table race)
    give NaN fields, because monitoring must not stop training.

    Example::

        read_system_memory().system_available_mb
    """
    global _process
    rss = available = total = _NAN
    try:
        if _process is None:
            # Creating a Process costs more than reading it; keep one.
            _process = psutil.Process()
        rss = _to_mb(_process.memory_info().rss)
    except Exception:  # psutil raises many types (AccessDenied, OSError, ...)
        logger.debug("psutil could not read the process RSS", exc_info=True)
    try:
        vm = psutil.virtual_memory()
        available, total = _to_mb(vm.available), _to_mb(vm.total)
    except Exception:
        logger.debug("psutil could not read system memory", exc_info=True)
    return SystemMemory(rss, available, total)


@dataclass(frozen=True)
class MemorySnapshot:
    """One reading of MLX, process and system memory, in MB.

    ``mlx_allocated_mb`` is MLX *active* memory (bytes held by live arrays);
    the name is kept from the original monitoring spec and ``mlx_active_mb``
    is its clearer alias. Cache is freed memory MLX keeps for reuse; peak is
    the highest active memory since the last reset (MLX does not count the
    cache in its peak). Fields that could not be read are NaN.

    Example::

        snapshot = profiler.take_snapshot(step=10)
        print(f"Allocated: {snapshot.mlx_allocated_mb:.1f}MB")
    """

    step: int | None
    timestamp: float
    mlx_allocated_mb: float
    mlx_cache_mb: float
    mlx_peak_mb: float
    mlx_limit_mb: float
    process_rss_mb: float = _NAN
    system_available_mb: float = _NAN
    system_total_mb: float = _NAN

    @property
    def mlx_active_mb(self) -> float:
        """MLX active memory in MB (same value as ``mlx_allocated_mb``)."""
        return self.mlx_allocated_mb

    @property
    def mlx_total_mb(self) -> float:
        """Active plus cache: what MLX holds from the system."""
        return self.mlx_allocated_mb + self.mlx_cache_mb

    @property
    def mlx_active_bytes(self) -> float:
        return _to_bytes(self.mlx_allocated_mb)

    @property
    def mlx_cache_bytes(self) -> float:
        return _to_bytes(self.mlx_cache_mb)

    @property
    def mlx_peak_bytes(self) -> float:
        return _to_bytes(self.mlx_peak_mb)

    @property
    def mlx_limit_bytes(self) -> float:
        return _to_bytes(self.mlx_limit_mb)

    @property
    def process_rss_bytes(self) -> float:
        return _to_bytes(self.process_rss_mb)

    @property
    def system_available_bytes(self) -> float:
        return _to_bytes(self.system_available_mb)

    @property
    def system_total_bytes(self) -> float:
        return _to_bytes(self.system_total_mb)


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
    growth_mb: float = _NAN
    rising_subwindows: int = 0
    subwindows: int = 0

    @property
    def slope_bytes_per_step(self) -> float:
        return _to_bytes(self.slope_mb_per_step)

    @property
    def slope_bytes_per_second(self) -> float:
        return _to_bytes(self.slope_mb_per_second)


@dataclass(frozen=True)
class BlockStats:
    """Memory use of one named block (see :class:`MemoryMonitor`), in MB.

    ``last_delta_mb`` is the change of active memory across the last run
    (positive: the block left arrays alive), ``last_peak_mb`` the highest
    active memory during it (absolute, so it includes what was held before
    the block), ``calls`` how many runs were recorded.

    Example::

        stats = profiler.block_stats()["forward_backward"]
        print(stats.last_delta_mb, stats.last_peak_mb, stats.calls)
    """

    last_delta_mb: float
    last_peak_mb: float
    calls: int
    max_peak_mb: float
    total_delta_mb: float

    @property
    def last_delta_bytes(self) -> float:
        return _to_bytes(self.last_delta_mb)

    @property
    def last_peak_bytes(self) -> float:
        return _to_bytes(self.last_peak_mb)


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and r² of y against x (closed form).

    A constant y has no trend to explain: slope 0 and r² 0.
    """
    dx = x - x.mean()
    dy = y - y.mean()
    sxx = float(dx @ dx)
    syy = float(dy @ dy)
    if sxx == 0.0:
        return _NAN, 0.0
    sxy = float(dx @ dy)
    slope = sxy / sxx
    if syy == 0.0:
        return slope, 0.0
    return slope, (sxy * sxy) / (sxx * syy)


class MemoryProfiler:
    """Watch MLX memory over training: health, leaks, per-block use.

    Call :meth:`record_step` once per training step (about 2 µs: MLX's
    counters only) and let the exporter read :attr:`latest`,
    :meth:`leak_report` and :meth:`block_stats` at scrape time.

    Health is judged on active + cache, since both are memory MLX has taken
    from the system: unhealthy above ``alert_threshold_mb`` or within
    ``limit_warning_fraction`` of MLX's memory limit.

    Leak detection looks at MLX *active* memory only (the cache is reusable
    and MLX gives it back on ``mx.clear_cache()``); see :meth:`leak_report`
    for how it tells a leak from a one-time jump.

    Example::

        profiler = MemoryProfiler(alert_threshold_mb=8000, leak_detection_window=50)
        profiler.record_step(step)
        leaking, description = profiler.detect_memory_leak()
    """

    def __init__(
        self,
        alert_threshold_mb: float = 8000,
        leak_detection_window: int = 50,
        *,
        limit_warning_fraction: float = 0.9,
        reset_peak_each_step: bool = True,
        reset_mlx_peak: bool = True,
        max_blocks: int = 32,
        history_size: int = 1000,
        min_leak_snapshots: int = 10,
        min_leak_slope_mb_per_step: float = 0.5,
        min_leak_r_squared: float = 0.8,
    ) -> None:
        if not alert_threshold_mb > 0:
            raise ValueError(f"alert_threshold_mb must be > 0, got {alert_threshold_mb!r}")
        if leak_detection_window < 3:
            raise ValueError(f"leak_detection_window must be >= 3, got {leak_detection_window!r}")
        if not 0 < limit_warning_fraction <= 1:
            raise ValueError(
                f"limit_warning_fraction must be in (0, 1], got {limit_warning_fraction!r}"
            )
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be >= 1, got {max_blocks!r}")
        if min_leak_snapshots < 3:
            raise ValueError(f"min_leak_snapshots must be >= 3, got {min_leak_snapshots!r}")
        if not 0 <= min_leak_r_squared <= 1:
            raise ValueError(f"min_leak_r_squared must be in [0, 1], got {min_leak_r_squared!r}")
        if not min_leak_slope_mb_per_step > 0:
            raise ValueError(
                f"min_leak_slope_mb_per_step must be > 0, got {min_leak_slope_mb_per_step!r}"
            )
        self.alert_threshold_mb = float(alert_threshold_mb)
        self.leak_detection_window = int(leak_detection_window)
        self.limit_warning_fraction = float(limit_warning_fraction)
        self.reset_peak_each_step = reset_peak_each_step
        # False: never call mx.reset_peak_memory() (trainers such as mlx-lm read
        # MLX's process-wide peak themselves); block peaks are then run peaks.
        self.reset_mlx_peak = reset_mlx_peak
        self.max_blocks = int(max_blocks)
        self.min_leak_snapshots = int(min_leak_snapshots)
        self.min_leak_slope_mb_per_step = float(min_leak_slope_mb_per_step)
        self.min_leak_r_squared = float(min_leak_r_squared)
        # The history outlives the leak window so charts can show a longer curve.
        self._snapshots: deque[MemorySnapshot] = deque(
            maxlen=max(int(history_size), self.leak_detection_window)
        )
        self._lock = threading.Lock()
        self._blocks: dict[str, BlockStats] = {}
        self._version = 0
        self._leak_cache: tuple[int, LeakReport] | None = None
        # Peak bookkeeping: MLX has one global peak counter, which MemoryMonitor
        # resets. Whatever peak was reached before a reset is carried here so the
        # step's peak and enclosing blocks' peaks are not lost.
        self._step_peak_carry = 0
        self._open_block_peaks: list[list[int]] = []
        self.cleanups = 0
        self.last_cleanup_freed_mb = 0.0
        self.folded_block_calls = 0

    # -- reading ------------------------------------------------------------

    def read_peak_bytes(self) -> int:
        """Peak MLX active memory since the last :meth:`reset_peak`, in bytes.

        Use this instead of ``mx.get_peak_memory()`` when blocks are
        monitored: a :class:`MemoryMonitor` resets MLX's counter on entry, and
        the peak reached before that is carried here.

        Example::

            step_peak = profiler.read_peak_bytes()
            profiler.reset_peak()
        """
        return max(self._step_peak_carry, mx.get_peak_memory())

    def end_step(self, *, reset_peak: bool = True) -> tuple[int, int, int]:
        """MLX (active, cache, peak) bytes at a step boundary; then a new peak.

        The cheapest full reading (a few hundred nanoseconds), meant for the
        training thread at the end of every step; the peak is the step's,
        including what :class:`MemoryMonitor` blocks carried.

        Example::

            active, cache, peak = profiler.end_step()
        """
        carry = self._step_peak_carry
        peak = mx.get_peak_memory()
        if carry > peak:
            peak = carry
        reading = (mx.get_active_memory(), mx.get_cache_memory(), peak)
        if reset_peak and self.reset_mlx_peak:
            if self._open_block_peaks:
                self._reset_peak()
            else:
                mx.reset_peak_memory()
            self._step_peak_carry = 0
        return reading

    def reset_peak(self) -> None:
        """Start a new peak (for a new step); open blocks keep their own.

        Example::

            profiler.reset_peak()
        """
        self._reset_peak()
        self._step_peak_carry = 0

    def _reset_peak(self) -> None:
        peak = mx.get_peak_memory()
        if peak > self._step_peak_carry:
            self._step_peak_carry = peak
        for watermark in self._open_block_peaks:
            if peak > watermark[0]:
                watermark[0] = peak
        if self.reset_mlx_peak:
            mx.reset_peak_memory()

    def read_snapshot(
        self, step: int | None = None, *, include_system: bool = True
    ) -> MemorySnapshot:
        """Read memory now without storing it (for scrapes and health checks).

        Example::

            profiler.read_snapshot().mlx_cache_mb
        """
        try:
            active = _to_mb(mx.get_active_memory())
            cache = _to_mb(mx.get_cache_memory())
            peak = _to_mb(self.read_peak_bytes())
            limit = _to_mb(mx.get_memory_limit())
        except Exception:  # a broken MLX build must not stop the training loop
            logger.warning("could not read MLX memory counters", exc_info=True)
            active = cache = peak = limit = _NAN
        system = read_system_memory() if include_system else _UNREADABLE_SYSTEM
        return MemorySnapshot(
            step=step,
            timestamp=time.time(),
            mlx_allocated_mb=active,
            mlx_cache_mb=cache,
            mlx_peak_mb=peak,
            mlx_limit_mb=limit,
            process_rss_mb=system.process_rss_mb,
            system_available_mb=system.system_available_mb,
            system_total_mb=system.system_total_mb,
        )

    def take_snapshot(
        self, step: int | None = None, *, include_system: bool = True
    ) -> MemorySnapshot:
        """Read memory and keep the snapshot in the bounded history.

        ``include_system=False`` skips psutil (RSS, available memory), which
        costs ~35 µs; those fields are then NaN.

        Example::

            snapshot = profiler.take_snapshot(step=3)
        """
        snapshot = self.read_snapshot(step, include_system=include_system)
        with self._lock:
            self._snapshots.append(snapshot)
            self._version += 1
        return snapshot

    def record_step(self, step: int, *, include_system: bool = False) -> MemorySnapshot:
        """Snapshot the end of a training step; then start a new peak.

        With ``reset_peak_each_step`` (the default) MLX's peak counter is
        reset after it is read, so each snapshot's ``mlx_peak_mb`` is the
        peak *of that step* rather than of the whole run. psutil is skipped
        by default to keep this call in the microseconds; read system memory
        at scrape time with :func:`read_system_memory`.

        Example::

            for step in range(steps):
                train_step()
                profiler.record_step(step)
        """
        snapshot = self.take_snapshot(step, include_system=include_system)
        if self.reset_peak_each_step:
            self.reset_peak()
        return snapshot

    def add_reading(
        self,
        *,
        step: int | None,
        timestamp: float,
        active_bytes: float,
        cache_bytes: float,
        peak_bytes: float,
    ) -> MemorySnapshot:
        """Store counters read elsewhere (e.g. on the training thread) as a snapshot.

        The monitor reads MLX's counters at the end of each step, where they
        mean something, and hands them over here from its worker thread.

        Example::

            profiler.add_reading(step=3, timestamp=time.time(), active_bytes=2**20,
                                 cache_bytes=0, peak_bytes=2**21)
        """
        snapshot = MemorySnapshot(
            step=step,
            timestamp=timestamp,
            mlx_allocated_mb=_to_mb(active_bytes),
            mlx_cache_mb=_to_mb(cache_bytes),
            mlx_peak_mb=_to_mb(peak_bytes),
            mlx_limit_mb=_to_mb(mx.get_memory_limit()),
            process_rss_mb=_NAN,
            system_available_mb=_NAN,
            system_total_mb=_NAN,
        )
        with self._lock:
            self._snapshots.append(snapshot)
            self._version += 1
        return snapshot

    @property
    def latest(self) -> MemorySnapshot | None:
        """The last stored snapshot, or None before the first one."""
        snapshots = self._snapshots
        return snapshots[-1] if snapshots else None

    def snapshots(self) -> list[MemorySnapshot]:
        """A copy of the stored history, oldest first."""
        with self._lock:
            return list(self._snapshots)

    @property
    def alert_threshold_bytes(self) -> float:
        return _to_bytes(self.alert_threshold_mb)

    # -- health ---------------------------------------------------------------

    def check_memory_health(self) -> tuple[bool, str]:
        """Judge current memory against the threshold and MLX's limit.

        Returns ``(healthy, message)``; the message gives the figures and,
        when unhealthy, what to do about it.

        Example::

            healthy, message = profiler.check_memory_health()
            if not healthy:
                logger.warning(message)
        """
        snap = self.read_snapshot(self.latest.step if self.latest else None)
        used = snap.mlx_total_mb
        limit = snap.mlx_limit_mb
        limit_share = used / limit if limit > 0 else _NAN
        figures = (
            f"MLX memory {used:.1f} MB (active {snap.mlx_active_mb:.1f} MB + cache "
            f"{snap.mlx_cache_mb:.1f} MB), peak {snap.mlx_peak_mb:.1f} MB, "
            f"limit {limit:.1f} MB, alert threshold {self.alert_threshold_mb:.1f} MB, "
            f"process RSS {snap.process_rss_mb:.1f} MB, "
            f"system available {snap.system_available_mb:.1f} MB"
        )
        problems = []
        if used > self.alert_threshold_mb:
            problems.append(f"above the alert threshold of {self.alert_threshold_mb:.1f} MB")
        if limit > 0 and used >= self.limit_warning_fraction * limit:
            problems.append(
                f"at {100 * limit_share:.1f}% of the MLX memory limit "
                f"(warning from {100 * self.limit_warning_fraction:.0f}%)"
            )
        if not problems:
            return True, f"Memory healthy: {figures}."
        advice = (
            "Free the cache with aggressive_cleanup() (gc.collect + mx.clear_cache) "
            "or cap it with mx.set_cache_limit, lower the batch size or sequence "
            "length, or set a ceiling with mx.set_memory_limit."
        )
        if snap.mlx_cache_mb > snap.mlx_active_mb:
            advice = "Most of it is cache. " + advice
        return False, f"Memory unhealthy, {' and '.join(problems)}: {figures}. {advice}"

    # -- leaks ----------------------------------------------------------------

    def leak_report(self) -> LeakReport:
        """Decide whether MLX active memory is leaking over the last window.

        The method, and why:

        1. Only *active* memory is fitted. Cache growth is MLX reusing freed
           buffers; it is bounded by ``mx.set_cache_limit`` and returned by
           ``mx.clear_cache()``, so it is not a leak.
        2. Least-squares slope of active MB against the step (snapshot order
           when steps are missing or go backwards) over the last
           ``leak_detection_window`` snapshots, at least
           ``min_leak_snapshots`` of them. A leak needs a slope of at least
           ``min_leak_slope_mb_per_step``; a sawtooth of arrays freed every
           step has no slope.
        3. The line must fit: r² >= ``min_leak_r_squared`` (0.8). A one-time
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

        Example::

            report = profiler.leak_report()
            print(report.slope_mb_per_step, report.r_squared, report.description)
        """
        with self._lock:
            version = self._version
            if self._leak_cache is not None and self._leak_cache[0] == version:
                return self._leak_cache[1]
            window = list(self._snapshots)[-self.leak_detection_window :]
        report = self._judge_leak(window)
        with self._lock:
            self._leak_cache = (version, report)
        return report

    def detect_memory_leak(self) -> tuple[bool, str]:
        """Seed API: ``(detected, description)`` of :meth:`leak_report`.

        Example::

            leak_detected, description = profiler.detect_memory_leak()
        """
        report = self.leak_report()
        return report.detected, report.description

    def _judge_leak(self, window: list[MemorySnapshot]) -> LeakReport:
        window = [s for s in window if math.isfinite(s.mlx_allocated_mb)]
        n = len(window)
        if n < self.min_leak_snapshots:
            return LeakReport(
                detected=False,
                slope_mb_per_step=_NAN,
                slope_mb_per_second=_NAN,
                r_squared=_NAN,
                window_steps=n,
                description=(
                    f"Not enough memory snapshots to judge a leak: {n} of "
                    f"{self.min_leak_snapshots} needed."
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
        slope, r2 = _fit_line(x, y)
        t = np.fromiter((s.timestamp for s in window), dtype=np.float64, count=n)
        slope_s, _ = _fit_line(t - t[0], y)
        growth = slope * (x[-1] - x[0]) if math.isfinite(slope) else _NAN

        # Sustained growth: the mean must rise between every pair of consecutive
        # sub-windows. Four of them (three transitions) are needed for the
        # one-jump argument; fewer only when too few snapshots are allowed.
        k = max(2, min(4, n // 2))
        bounds = np.linspace(0, n, k + 1).astype(int)
        means = [(x[a:b].mean(), y[a:b].mean()) for a, b in pairwise(bounds)]
        rising = sum(
            1
            for (x0, y0), (x1, y1) in pairwise(means)
            if y1 - y0 >= 0.5 * self.min_leak_slope_mb_per_step * (x1 - x0)
        )
        transitions = k - 1

        span = f"over the last {n} snapshots"
        if unit == "step":
            span += f" (steps {int(x[0])}-{int(x[-1])})"
        fit = f"{slope:.2f} MB/{unit} (r²={r2:.2f}, {growth:+.1f} MB)"
        if not (slope >= self.min_leak_slope_mb_per_step):
            detected = False
            description = (
                f"No memory leak: MLX active memory trend {fit} {span}, below "
                f"{self.min_leak_slope_mb_per_step:.2f} MB/{unit}."
            )
        elif r2 < self.min_leak_r_squared:
            detected = False
            description = (
                f"No memory leak: MLX active memory trend {fit} {span}, but a line "
                f"fits poorly (r² below {self.min_leak_r_squared:.2f}): a one-time "
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

    # -- cleanup --------------------------------------------------------------

    def aggressive_cleanup(self) -> float:
        """Collect Python garbage and empty MLX's cache; return MB freed.

        Freed is (active + cache) before minus after, never below 0. Costs a
        full ``gc.collect()``, so call it on alerts or every few hundred
        steps, not every step.

        Example::

            freed_mb = profiler.aggressive_cleanup()
        """
        before = mx.get_active_memory() + mx.get_cache_memory()
        gc.collect()
        mx.clear_cache()
        after = mx.get_active_memory() + mx.get_cache_memory()
        freed = max(0.0, _to_mb(before - after))
        self.cleanups += 1
        self.last_cleanup_freed_mb = freed
        return freed

    # -- blocks ---------------------------------------------------------------

    def block_stats(self) -> dict[str, BlockStats]:
        """A copy of the per-block statistics (at most ``max_blocks`` names).

        Example::

            for name, stats in profiler.block_stats().items():
                print(name, stats.last_delta_mb)
        """
        with self._lock:
            return dict(self._blocks)

    def _block_key(self, name: str) -> str:
        if name in self._blocks:
            return name
        # One slot is kept for "other", so the mapping never exceeds max_blocks.
        named = len(self._blocks) - (OTHER_BLOCK in self._blocks)
        if name != OTHER_BLOCK and named < self.max_blocks - 1:
            return name
        return OTHER_BLOCK

    def begin_block(self) -> list[int]:
        """Start measuring a block (for :class:`MemoryMonitor`); returns its watermark."""
        self._reset_peak()
        watermark = [0]
        self._open_block_peaks.append(watermark)
        return watermark

    def end_block(self, name: str, watermark: list[int], start_active: int) -> tuple[float, float]:
        """Record a block begun with :meth:`begin_block`; returns (delta, peak) in MB."""
        end_active = mx.get_active_memory()
        peak = max(watermark[0], mx.get_peak_memory())
        with contextlib.suppress(ValueError):  # exited twice: already unregistered
            self._open_block_peaks.remove(watermark)
        delta_mb = _to_mb(end_active - start_active)
        peak_mb = _to_mb(peak)
        with self._lock:
            key = self._block_key(name)
            if key != name:
                self.folded_block_calls += 1
            old = self._blocks.get(key)
            self._blocks[key] = BlockStats(
                last_delta_mb=delta_mb,
                last_peak_mb=peak_mb,
                calls=1 if old is None else old.calls + 1,
                max_peak_mb=peak_mb if old is None else max(old.max_peak_mb, peak_mb),
                total_delta_mb=delta_mb if old is None else old.total_delta_mb + delta_mb,
            )
        return delta_mb, peak_mb


class MemoryMonitor:
    """Context manager measuring MLX memory across a block of code.

    On entry it reads active memory and resets MLX's peak counter (the peak
    reached so far is carried by the profiler, so step and enclosing block
    peaks stay right); on exit it records the change of active memory and
    the peak during the block under ``name`` in the profiler's block stats.
    Exceptions raised inside the block propagate unchanged (the memory is
    still recorded). Meant for the training thread: MLX's peak counter is
    process-wide.

    Example::

        with MemoryMonitor(profiler, "generation") as monitor:
            completions = generate(model, prompts)
        print(monitor.delta_mb, monitor.peak_mb)
    """

    def __init__(self, profiler: MemoryProfiler, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"block name must be a non-empty string, got {name!r}")
        self.profiler = profiler
        self.name = name
        self.delta_mb = _NAN
        self.peak_mb = _NAN
        self._start_active = 0
        self._watermark: list[int] | None = None

    def __enter__(self) -> MemoryMonitor:
        self._start_active = mx.get_active_memory()
        self._watermark = self.profiler.begin_block()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._watermark is None:
            return
        try:
            self.delta_mb, self.peak_mb = self.profiler.end_block(
                self.name, self._watermark, self._start_active
            )
        except Exception:
            # Measuring must never replace the block's own exception or stop training.
            logger.warning("could not record memory of block %r", self.name, exc_info=True)
        self._watermark = None
