"""MLX and process memory for the memory gauges, read once per scrape.

A scrape reads a dozen memory gauges; :class:`MemoryReadings` reads MLX,
psutil and the leak detector once for all of them (at most every 0.25 s),
so a scrape costs one reading, not twelve. The values are kept under the
catalogue's ``read_from`` names, where the instruments look them up.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler

__all__ = ["MemoryReadings"]

#: Readings of the whole host, served by one process per host (see ``report_host``).
_HOST_PREFIX = "system_memory"
#: Block statistics by the labelled metric's ``read_from``.
_BLOCK_FIELDS = {"block_delta": "last_delta_bytes", "block_peak": "last_peak_bytes"}


class MemoryReadings:
    """The memory gauges' values, cached for a quarter of a second.

    ``step_peak`` returns the last finished step's peak when the training
    thread measures one (``None`` otherwise: MLX's own peak is read).
    ``report_host=False`` leaves out host-level readings (system memory), so
    that sums over the ranks of one host do not count the host twice.
    """

    def __init__(
        self,
        profiler: MemoryProfiler,
        *,
        threshold_bytes: float,
        step_peak: Callable[[], int | None],
        ledger: ErrorLedger,
        report_host: bool = True,
    ) -> None:
        self._profiler = profiler
        self._threshold_bytes = threshold_bytes
        self._step_peak = step_peak
        self._ledger = ledger
        self._report_host = report_host
        self._values: dict[str, float] = {}
        self._blocks: dict[str, Any] = {}
        self._read_at = -math.inf
        self._lock = threading.Lock()

    def read_all(self) -> dict[str, float]:
        """Every memory value by its catalogue name (read again after 0.25 s)."""
        with self._lock:
            now = time.monotonic()
            if now - self._read_at > 0.25:
                self._values = self._read()
                self._read_at = now
            return self._values

    def value(self, key: str) -> float | None:
        """One memory value by its catalogue ``read_from`` name, or None if unreadable."""
        return self.read_all().get(key)

    def series(self, key: str) -> Mapping[str, float]:
        """Block statistics by block name (``block_delta``, ``block_peak``)."""
        self.read_all()
        field = _BLOCK_FIELDS[key]
        return {name: getattr(block, field) for name, block in self._blocks.items()}

    def _read(self) -> dict[str, float]:
        profiler = self._profiler
        # read_snapshot never raises: what cannot be read is NaN and left out.
        snapshot = profiler.read_snapshot(include_system=True)
        step_peak = self._step_peak()
        # With per-step resets, the last finished step's peak (not the running one's).
        peak = profiler.read_peak_bytes() if step_peak is None else step_peak
        readings = {
            "memory_active": snapshot.mlx_active_bytes,
            "memory_cache": snapshot.mlx_cache_bytes,
            "memory_peak": float(peak),
            "memory_limit": snapshot.mlx_limit_bytes,
            "system_memory_available": snapshot.system_available_bytes,
            "system_memory_total": snapshot.system_total_bytes,
            "process_resident_memory": snapshot.process_rss_bytes,
        }
        if not self._report_host:
            readings = {k: v for k, v in readings.items() if not k.startswith(_HOST_PREFIX)}
        values = {key: value for key, value in readings.items() if math.isfinite(value)}
        if len(values) < len(readings):
            missing = sorted(set(readings) - set(values))
            self._ledger.report("collection", "memory", f"could not read {', '.join(missing)}")
        values["memory_threshold"] = self._threshold_bytes
        try:
            report = profiler.leak_report()
            if math.isfinite(report.slope_mb_per_step):
                values["memory_leak_slope_per_step"] = report.slope_bytes_per_step
                values["memory_leak_slope"] = report.slope_bytes_per_second
            self._blocks = profiler.block_stats()
        except Exception as exc:
            self._ledger.report_exception("collection", "leak detection", exc)
        return values
