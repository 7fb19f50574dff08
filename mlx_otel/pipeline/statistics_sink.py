"""The statistics sink: the run's history, recent rewards and layer norms.

It feeds the in-process :class:`~mlx_otel.ComprehensiveStatsCollector` (the
source of the end-of-run files and of the charts) and the memory profiler's
leak detection with the readings taken at each step. It holds numbers only:
closing it has nothing to wait for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlx_otel.catalog import by_key, custom_key
from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.numbers.columns import Columns
from mlx_otel.numbers.stats import ComprehensiveStatsCollector
from mlx_otel.pipeline.sink import MEMORY_COLUMNS, Record, step_values
from mlx_otel.records import GradientRecord, StepRecord, to_numbers

__all__ = ["StatisticsSink"]


class StatisticsSink:
    """The run's statistics history, recent rewards and layer norms."""

    name = "statistics"
    error_kind = "worker"
    # The history is copied a metric at a time: the bigger the batch, the cheaper.
    whole_drain = True

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
        steps: list[StepRecord] = []
        for record in batch:
            if isinstance(record, GradientRecord):
                self.layer_norms = dict(record.per_layer)
            else:
                steps.append(record)
        if not steps:
            return
        self.last_step = steps[-1].step
        non_finite = self.stats.non_finite_total
        for name in self._record(steps):
            self._ledger.report("invalid_value", name, f"statistics rejected {name!r}")
        if self.stats.non_finite_total > non_finite:
            self._ledger.report(
                "non_finite", "statistics", "NaN/inf values are left out of statistics"
            )
        rewarded = [record.rewards for record in steps if record.rewards is not None]
        self._keep_recent(rewarded)
        # The profiler keeps the newest readings only (add_readings leaves out the rest).
        self.profiler.add_readings(
            [(r.step, r.timestamp, *r.memory) for r in steps if r.memory is not None]
        )

    def _record(self, steps: list[StepRecord]) -> list[str]:
        """The steps' values into the statistics, a metric at a time (the names refused).

        Each part of a record (its values, custom values, each labelled
        metric, the memory reading) is gathered on its own, so that a
        column's name is made once per batch rather than once per value;
        values that are not numbers send the batch value by value.
        """
        columns = Columns([r.step for r in steps], [r.timestamp for r in steps])
        labelled: dict[str, tuple[list[int], list[Mapping[str, float]]]] = {}
        for index, record in enumerate(steps):
            for key, series in record.labelled.items():
                rows, found = labelled.setdefault(key, ([], []))
                rows.append(index)
                found.append(series)
        plain = (  # in the order step_values() merges them
            columns.add([r.values for r in steps])
            and all(columns.add(found, rows, by_key(key).column)
                    for key, (rows, found) in labelled.items())  # fmt: skip
            and columns.add([r.custom for r in steps], rename=custom_key)
        )
        if plain and self.log_memory:
            rows = [index for index, record in enumerate(steps) if record.memory is not None]
            if rows:
                memory = np.array([steps[index].memory for index in rows], dtype=np.float64)
                columns.add_matrix(MEMORY_COLUMNS, np.asarray(rows, np.intp), memory / 2**20)
        if plain:
            return self.stats.record_columns(columns)
        rows_by_step = [(r.step, step_values(r, memory=self.log_memory), r.timestamp) for r in steps]
        return self.stats.record_steps(rows_by_step)

    def _keep_recent(self, rewarded: list[Any]) -> None:
        """The finite rewards of the newest steps, up to what ``recent_rewards`` holds."""
        room = self.recent_rewards.maxlen or 0
        newest: list[np.ndarray] = []
        for rewards in reversed(rewarded):  # older steps would only be pushed out again
            # Rewards that are not numbers are counted when the histogram folds them.
            numbers = to_numbers(rewards)
            if numbers is None:
                continue
            newest.append(numbers[np.isfinite(numbers)])
            room -= newest[-1].size
            if room <= 0:
                break
        for numbers in reversed(newest):
            self.recent_rewards.extend(numbers.tolist())

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
