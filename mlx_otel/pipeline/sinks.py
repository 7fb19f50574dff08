"""The sinks a monitor configuration asks for, in the order the run's end closes them.

A sink (:class:`~mlx_otel.pipeline.sink.Sink`) receives every batch of
records the background worker drains and closes itself by a deadline; it
says what the code around it needs (its name, the error kind it is counted
under, whether it wants the whole drain at once), so the worker and the
monitor hand batches to a list and never know which sinks exist.
Nothing here runs on the training thread.

* :class:`~mlx_otel.pipeline.statistics_sink.StatisticsSink` keeps the
  statistics history and feeds the memory profiler (leak detection);
* :class:`~mlx_otel.pipeline.chart_sink.ChartSink` renders the seed's
  snapshot charts every ``generate_charts_every`` steps, in a child process;
* :class:`~mlx_otel.pipeline.wandb_sink.WandBSink` forwards the same values
  to WandB (closed after the charts, which it forwards too).

The run's files are written from the statistics by
:func:`~mlx_otel.pipeline.run_files.write_run_files`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.pipeline.chart_sink import ChartSink
from mlx_otel.pipeline.sink import RunEnding, Sink
from mlx_otel.pipeline.statistics_sink import StatisticsSink
from mlx_otel.pipeline.wandb_sink import WandBSink

if TYPE_CHECKING:
    from mlx_otel.config import MonitorConfig

__all__ = ["Sinks", "build_sinks"]


class Sinks(NamedTuple):
    """The configured sinks; ``all`` in the order the run's end closes them."""

    statistics: StatisticsSink
    charts: ChartSink
    wandb: WandBSink | None

    @property
    def all(self) -> list[Sink]:
        return [s for s in (self.statistics, self.charts, self.wandb) if s is not None]


def build_sinks(
    config: MonitorConfig,
    *,
    profiler: MemoryProfiler,
    ledger: ErrorLedger,
    ending: RunEnding,
    wandb_logger: Any = None,
    while_waiting: Callable[[], None] | None = None,
) -> Sinks:
    """The sinks a monitor configuration asks for."""
    monitoring, trainer = config.monitoring, config.trainer
    output_dir = Path(monitoring.output_dir)
    statistics = StatisticsSink(
        output_dir=output_dir,
        max_history=monitoring.max_history,
        profiler=profiler,
        ledger=ledger,
        log_memory=trainer.log_memory_usage,
    )
    wandb = None
    if wandb_logger is not None:
        wandb = WandBSink(
            wandb_logger,
            log_samples_every=monitoring.log_samples_every,
            log_memory=trainer.log_memory_usage,
            finish_timeout=monitoring.wandb_finish_timeout,
        )
    charts = ChartSink(
        statistics,
        output_dir=output_dir,
        every=monitoring.generate_charts_every,
        threshold_mb=trainer.memory_safety_threshold_mb,
        ledger=ledger,
        ending=ending,
        in_subprocess=monitoring.charts_in_subprocess,
        on_charts=None if wandb is None else wandb.log_charts,
        while_waiting=while_waiting,
        style=config.charts,
    )
    return Sinks(statistics, charts, wandb)
