"""Memory figures as plain numbers: snapshots, system memory, blocks, and health.

What :class:`~mlx_otel.exporter.mlx_memory.MemoryProfiler` reads from MLX and
psutil is kept in these frozen records; judging them (:func:`judge_health`)
needs no MLX, so it is tested on figures a reader can check.

Units: "MB" means mebibytes (2**20 bytes), as MLX users usually mean it;
every MB figure also has a ``*_bytes`` accessor for the exporters.

    >>> snapshot = MemorySnapshot(step=1, timestamp=0.0, mlx_allocated_mb=900.0,
    ...                           mlx_cache_mb=200.0, mlx_peak_mb=1000.0, mlx_limit_mb=2000.0)
    >>> judge_health(snapshot, alert_threshold_mb=1000.0, limit_warning_fraction=0.9)[0]
    False
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NAN",
    "BlockStats",
    "MemorySnapshot",
    "SystemMemory",
    "judge_health",
    "to_bytes",
    "to_mb",
]

_MB = float(1 << 20)
NAN = float("nan")


def to_mb(num_bytes: float) -> float:
    """Bytes to MiB."""
    return num_bytes / _MB


def to_bytes(mb: float) -> float:
    """MiB to bytes."""
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
        return to_bytes(self.process_rss_mb)

    @property
    def system_available_bytes(self) -> float:
        return to_bytes(self.system_available_mb)

    @property
    def system_total_bytes(self) -> float:
        return to_bytes(self.system_total_mb)


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
    process_rss_mb: float = NAN
    system_available_mb: float = NAN
    system_total_mb: float = NAN

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
        return to_bytes(self.mlx_allocated_mb)

    @property
    def mlx_cache_bytes(self) -> float:
        return to_bytes(self.mlx_cache_mb)

    @property
    def mlx_peak_bytes(self) -> float:
        return to_bytes(self.mlx_peak_mb)

    @property
    def mlx_limit_bytes(self) -> float:
        return to_bytes(self.mlx_limit_mb)

    @property
    def process_rss_bytes(self) -> float:
        return to_bytes(self.process_rss_mb)

    @property
    def system_available_bytes(self) -> float:
        return to_bytes(self.system_available_mb)

    @property
    def system_total_bytes(self) -> float:
        return to_bytes(self.system_total_mb)


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
        return to_bytes(self.last_delta_mb)

    @property
    def last_peak_bytes(self) -> float:
        return to_bytes(self.last_peak_mb)


def judge_health(
    snap: MemorySnapshot, *, alert_threshold_mb: float, limit_warning_fraction: float
) -> tuple[bool, str]:
    """``(healthy, message)`` of MLX memory (active + cache) against a threshold and the limit.

    The message gives the figures and, when unhealthy, what to do about it.
    """
    used = snap.mlx_total_mb
    limit = snap.mlx_limit_mb
    limit_share = used / limit if limit > 0 else NAN
    figures = (
        f"MLX memory {used:.1f} MB (active {snap.mlx_active_mb:.1f} MB + cache "
        f"{snap.mlx_cache_mb:.1f} MB), peak {snap.mlx_peak_mb:.1f} MB, "
        f"limit {limit:.1f} MB, alert threshold {alert_threshold_mb:.1f} MB, "
        f"process RSS {snap.process_rss_mb:.1f} MB, "
        f"system available {snap.system_available_mb:.1f} MB"
    )
    problems = []
    if used > alert_threshold_mb:
        problems.append(f"above the alert threshold of {alert_threshold_mb:.1f} MB")
    if limit > 0 and used >= limit_warning_fraction * limit:
        problems.append(
            f"at {100 * limit_share:.1f}% of the MLX memory limit "
            f"(warning from {100 * limit_warning_fraction:.0f}%)"
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
