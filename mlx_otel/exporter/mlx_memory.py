"""MLX and process memory, read where it lives: the profiler, blocks and cleanup.

:class:`MemoryProfiler` reads MLX's counters (and psutil, at scrape time),
keeps the snapshot history, carries MLX's one process-wide peak counter across
:class:`MemoryMonitor` blocks, and frees memory on request. The judging is
plain numbers (:mod:`mlx_otel.numbers.leak`, :mod:`mlx_otel.numbers.memory_figures`);
the exporter's memory readings turn what is read here into gauges.

Units: "MB" means mebibytes (2**20 bytes), as MLX users usually mean it.

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
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import mlx.core as mx
import psutil

from mlx_otel.numbers.leak import LeakReport, judge_leak
from mlx_otel.numbers.memory_figures import (
    NAN,
    BlockStats,
    MemorySnapshot,
    SystemMemory,
    judge_health,
    to_bytes,
    to_mb,
)

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

#: Block name that collects every name beyond ``MemoryProfiler.max_blocks``.
OTHER_BLOCK = "other"

_UNREADABLE_SYSTEM = SystemMemory(NAN, NAN, NAN)
_process: psutil.Process | None = None


def read_system_memory() -> SystemMemory:
    """Read RSS of this process and available/total system memory.

    Never raises: psutil failures (sandboxed /proc, a process table race)
    give NaN fields, because monitoring must not stop training.

    Example::

        read_system_memory().system_available_mb
    """
    global _process
    rss = available = total = NAN
    try:
        if _process is None:
            # Creating a Process costs more than reading it; keep one.
            _process = psutil.Process()
        rss = to_mb(_process.memory_info().rss)
    except Exception:  # psutil raises many types (AccessDenied, OSError, ...)
        logger.debug("psutil could not read the process RSS", exc_info=True)
    try:
        vm = psutil.virtual_memory()
        available, total = to_mb(vm.available), to_mb(vm.total)
    except Exception:
        logger.debug("psutil could not read system memory", exc_info=True)
    return SystemMemory(rss, available, total)


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
        # Snapshots, or readings added by the worker as (step, timestamp, active,
        # cache, peak bytes, limit MB) tuples: made snapshots when read (a flood
        # adds thousands a second, most of which are never read).
        self._snapshots: deque[MemorySnapshot | tuple[Any, ...]] = deque(
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
            active = to_mb(mx.get_active_memory())
            cache = to_mb(mx.get_cache_memory())
            peak = to_mb(self.read_peak_bytes())
            limit = to_mb(mx.get_memory_limit())
        except Exception:  # a broken MLX build must not stop the training loop
            logger.warning("could not read MLX memory counters", exc_info=True)
            active = cache = peak = limit = NAN
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
        limit = to_mb(mx.get_memory_limit())
        snapshot = _snapshot((step, timestamp, active_bytes, cache_bytes, peak_bytes, limit))
        with self._lock:
            self._snapshots.append(snapshot)
            self._version += 1
        return snapshot

    def add_readings(self, readings: Sequence[tuple[int | None, float, float, float, float]]) -> None:
        """:meth:`add_reading` of many ``(step, timestamp, active, cache, peak bytes)``
        readings at once, oldest first (the worker's batch): one lock, one limit read.

        Example::

            profiler.add_readings([(3, time.time(), 2**20, 0, 2**21)])
        """
        if not readings:
            return
        limit = to_mb(mx.get_memory_limit())
        kept = readings[-self.history_capacity :]
        with self._lock:
            self._snapshots.extend([(*reading, limit) for reading in kept])
            self._version += 1

    @property
    def history_capacity(self) -> int:
        """How many snapshots are kept (the newest): older readings need not be added."""
        return self._snapshots.maxlen or 0

    @property
    def latest(self) -> MemorySnapshot | None:
        """The last stored snapshot, or None before the first one."""
        snapshots = self._snapshots
        return _snapshot(snapshots[-1]) if snapshots else None

    def snapshots(self) -> list[MemorySnapshot]:
        """A copy of the stored history, oldest first."""
        with self._lock:
            stored = list(self._snapshots)
        return [_snapshot(item) for item in stored]

    @property
    def alert_threshold_bytes(self) -> float:
        return to_bytes(self.alert_threshold_mb)

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
        return judge_health(
            snap,
            alert_threshold_mb=self.alert_threshold_mb,
            limit_warning_fraction=self.limit_warning_fraction,
        )

    # -- leaks ----------------------------------------------------------------

    def leak_report(self) -> LeakReport:
        """Decide whether MLX active memory is leaking over the last
        ``leak_detection_window`` snapshots (see :func:`~mlx_otel.numbers.leak.judge_leak`
        for the method and why).

        Example::

            report = profiler.leak_report()
            print(report.slope_mb_per_step, report.r_squared, report.description)
        """
        with self._lock:
            version = self._version
            if self._leak_cache is not None and self._leak_cache[0] == version:
                return self._leak_cache[1]
            window = [_snapshot(item) for item in
                      list(self._snapshots)[-self.leak_detection_window :]]  # fmt: skip
        report = judge_leak(
            window,
            min_snapshots=self.min_leak_snapshots,
            min_slope_mb_per_step=self.min_leak_slope_mb_per_step,
            min_r_squared=self.min_leak_r_squared,
        )
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
        freed = max(0.0, to_mb(before - after))
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
        delta_mb = to_mb(end_active - start_active)
        peak_mb = to_mb(peak)
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
        self.delta_mb = NAN
        self.peak_mb = NAN
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


def _snapshot(item: MemorySnapshot | tuple[Any, ...]) -> MemorySnapshot:
    """A stored snapshot, or the snapshot of a reading stored by :meth:`MemoryProfiler.add_readings`."""
    if isinstance(item, MemorySnapshot):
        return item
    step, stamp, active, cache, peak, limit = item
    return MemorySnapshot(
        step=step, timestamp=stamp, mlx_allocated_mb=to_mb(active), mlx_cache_mb=to_mb(cache),
        mlx_peak_mb=to_mb(peak), mlx_limit_mb=limit, process_rss_mb=NAN,
        system_available_mb=NAN, system_total_mb=NAN,
    )  # fmt: skip
