"""The statistics sink: the run's history, recent rewards and layer norms.

It feeds the in-process :class:`~mlx_otel.ComprehensiveStatsCollector` (the
source of the end-of-run files and of the charts) and the memory profiler's
leak detection with the readings taken at each step. It holds numbers only:
closing it has nothing to wait for.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.numbers.stats import ComprehensiveStatsCollector
from mlx_otel.pipeline.sink import Record, step_values
from mlx_otel.records import GradientRecord, to_numbers

__all__ = ["StatisticsSink"]


class StatisticsSink:
    """The run's statistics history, recent rewards and layer norms."""

    name = "statistics"
    error_kind = "worker"
    whole_drain = False

    def __init__(
        self,
        *,
        output_dir: Path,
        max_history: int,
        profiler: MemoryProfiler,
        ledger: ErrorLedger,
        log_memory: bool = True,
    ) -> None:
        self.stats = ComprehensiveStatsCollector(
            output_dir=output_dir / "stats", max_history=max_history
        )
        self.profiler = profiler
        self.log_memory = log_memory
        self.recent_rewards: deque[float] = deque(maxlen=10_000)
        self.layer_norms: dict[str, float] = {}
        self.last_step: int | None = None
        self._ledger = ledger

    def handle(self, batch: Sequence[Record]) -> None:
        for record in batch:
            if isinstance(record, GradientRecord):
                self.layer_norms = dict(record.per_layer)
                continue
            if record.memory is not None:
                self.profiler.add_reading(
                    step=record.step,
                    timestamp=record.timestamp,
                    active_bytes=record.memory.active_bytes,
                    cache_bytes=record.memory.cache_bytes,
                    peak_bytes=record.memory.peak_bytes,
                )
            values = step_values(record, memory=self.log_memory)
            if any(not math.isfinite(v) for v in values.values()):
                self._ledger.report(
                    "non_finite", "statistics", "NaN/inf values are left out of statistics"
                )
            for name in self.stats.record_step(record.step, values, record.timestamp):
                self._ledger.report("invalid_value", name, f"statistics rejected {name!r}")
            # Rewards that are not numbers are counted when the histogram folds them.
            rewards = None if record.rewards is None else to_numbers(record.rewards)
            if rewards is not None:
                self.recent_rewards.extend(rewards[np.isfinite(rewards)].tolist())
            self.last_step = record.step

    def chart_arguments(
        self, step: int | None, threshold_mb: float
    ) -> tuple[list[Any] | None, dict[str, Any]]:
        """(histories, arguments) for the chart renderer, or (None, {}) with no data."""
        histories = self.stats.histories()
        if not histories:
            return None, {}
        return histories, dict(
            step=self.last_step if step is None else step,
            rewards=list(self.recent_rewards) or None,
            layer_norms=self.layer_norms or None,
            memory_threshold_mb=threshold_mb,
            tokens_per="step",  # log_training_step takes the step's token totals
        )

    def close(self, deadline: float) -> None:
        """Nothing to wait for: the history stays readable for the run's files."""
