"""What the background worker does with each batch of records: the sinks.

A sink has two methods, ``handle(batch)`` and ``close()``; the worker hands
every sink the same batches of :class:`~mlx_otel.records.StepRecord` and
:class:`~mlx_otel.records.GradientRecord` and never knows which sinks exist.
Nothing here runs on the training thread.

* :class:`StatisticsSink` keeps the statistics history and feeds the memory
  profiler (leak detection) with the readings taken at each step.
* :class:`WandBSink` forwards the same values to WandB.
* :class:`ChartSink` renders the seed's snapshot charts every
  ``generate_charts_every`` steps, in a child process.
* :func:`export_run_files` writes the seed's output files at the end::

    outputs/
      stats/stats_export_*.json, stats/metrics_history.csv
      charts/*_step_*.png, charts/correlation_matrix.png
      training_metrics.csv, training_metrics.json, monitoring_summary.json
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mlx_otel.catalog import METRICS, Source, by_key, custom_key, wandb_key
from mlx_otel.config.visualization import ChartStyle, VisualizationConfig
from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.fileio import atomic_path, atomic_write_text
from mlx_otel.integrations.chart_process import (
    ChartProcess,
    ChartsCutShort,
    render_checkpoint_charts,
)
from mlx_otel.numbers.stats import ComprehensiveStatsCollector
from mlx_otel.records import GradientRecord, StepRecord, to_numbers

if TYPE_CHECKING:
    from mlx_otel.config import MonitorConfig

__all__ = [
    "ChartSink",
    "Record",
    "Sink",
    "StatisticsSink",
    "WandBSink",
    "csv_columns",
    "export_run_files",
    "step_values",
]

log = logging.getLogger("mlx_otel")

Record = StepRecord | GradientRecord

#: Leading CSV columns, in the seed's order; other metrics follow by name.
_CSV_LEADING = ("step", "run_id", "timestamp", "loss", "reward_mean", "grad_norm", "learning_rate")
#: Keys of the trainer metrics among a step's values (named after the catalogue).
_TRAINER_KEYS = frozenset(m.key for m in METRICS if m.source is Source.TRAINER)
#: The statistics names of the memory reading taken at each step.
_MEMORY_FIELDS = ("mlx_active_mb", "mlx_cache_mb", "mlx_peak_mb")


class Sink(Protocol):
    """Receives every batch the background worker drains."""

    def handle(self, batch: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


def csv_columns(metric_names: Sequence[str]) -> list[str]:
    """Columns of training_metrics.csv: the seed's leading ones, then the rest sorted."""
    rest = sorted(n for n in metric_names if n not in _CSV_LEADING)
    return [*_CSV_LEADING, *rest]


def step_values(record: StepRecord, *, memory: bool) -> dict[str, float]:
    """A step's values under the names statistics and CSV use (the catalogue's columns)."""
    values = dict(record.values)
    for key, series in record.labelled.items():
        metric = by_key(key)
        for label, value in series.items():
            values[metric.column(label)] = value
    for name, value in record.custom.items():
        values[custom_key(name)] = value
    if memory and record.memory is not None:
        for field, reading in zip(_MEMORY_FIELDS, record.memory, strict=True):
            values[field] = reading / 2**20
    return values


class StatisticsSink:
    """The run's statistics history, recent rewards and layer norms."""

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

    def close(self) -> None:
        pass


class WandBSink:
    """Forwards step values, reward distributions, gradients and charts to WandB."""

    def __init__(self, logger: Any, *, log_samples_every: int, log_memory: bool = True) -> None:
        self.logger = logger
        self._every = max(1, log_samples_every)
        self._log_memory = log_memory

    def handle(self, batch: Sequence[Record]) -> None:
        for record in batch:
            if isinstance(record, GradientRecord):
                self.logger.log_gradients(dict(record.per_layer), step=record.step)
                continue
            values = step_values(record, memory=self._log_memory)
            for key, series in record.labelled.items():  # rl/clip_ratio/low
                metric = by_key(key)
                for label in series:
                    values[metric.wandb_name(label)] = values.pop(metric.column(label))
            for key in _TRAINER_KEYS.intersection(values):
                values[wandb_key(key)] = values.pop(key)  # rl/kl, beside the user's custom/kl
            self.logger.log_metrics(values, step=record.step)
            # A histogram costs four times a row of scalars in wandb.log:
            # send the distribution at the sample-table cadence.
            if record.rewards is not None and record.step % self._every == 0:
                rewards = to_numbers(record.rewards)
                rewards = None if rewards is None else rewards[np.isfinite(rewards)]
                if rewards is not None and rewards.size:
                    self.logger.log_distribution("rewards", rewards, step=record.step)

    def log_charts(self, paths: Mapping[str, Path], step: int | None) -> None:
        for kind, path in paths.items():
            self.logger.log_chart(kind, path, step=step)

    def close(self) -> None:
        self.logger.finish()


#: A periodic chart not rendered by then is left to the chart process.
_PERIODIC_CHART_TIMEOUT_S = 120.0


class ChartSink:
    """Renders the snapshot charts every ``every`` steps from the statistics.

    Charts render in a child process (matplotlib and seaborn are never
    imported by the training process) unless ``in_subprocess`` is false.
    """

    def __init__(
        self,
        statistics: StatisticsSink,
        *,
        output_dir: Path,
        every: int,
        threshold_mb: float,
        ledger: ErrorLedger,
        in_subprocess: bool = True,
        on_charts: Callable[[Mapping[str, Path], int | None], None] | None = None,
        style: ChartStyle | None = None,
    ) -> None:
        self._statistics = statistics
        # The monitor's `charts:` style, its folder and its one cadence.
        self.config = VisualizationConfig.from_style(style or ChartStyle(), output_dir / "charts", every)
        self._every = every
        self._threshold_mb = threshold_mb
        self._ledger = ledger
        self._in_subprocess = in_subprocess
        self._on_charts = on_charts
        self._process: ChartProcess | None = None
        self._ending = False
        self._finishing = False
        #: Run while a chart is awaited (see ChartProcess.while_waiting).
        self.while_waiting: Callable[[], None] | None = None
        if every and not charts_available():
            log.warning("mlx_otel: charts need matplotlib and seaborn: pip install 'mlx-otel[charts]'")
            self._every = every = 0
        if every and in_subprocess:
            # Its imports take seconds of CPU: start it now, at low priority.
            self._process = ChartProcess(on_restart=self._chart_process_died)
            self._process.start()

    def handle(self, batch: Sequence[Record]) -> None:
        every = self._every
        if not every or self._finishing:
            return
        chart_step = None
        for record in batch:
            if isinstance(record, StepRecord) and record.step > 0 and record.step % every == 0:
                chart_step = record.step
        if chart_step is not None:
            # A worker that fell behind renders the latest chart step only.
            self.render(chart_step)

    def _chart_process_died(self, code: int) -> None:
        self._ledger.report(
            "worker", "chart process",
            f"the chart process exited with code {code} (killed or crashed); a new one is started",
        )

    def stop_waiting(self) -> None:
        """Leave the periodic chart in flight to the chart process (an export
        must not wait for it)."""
        if self._process is not None:
            self._process.stop_waiting()

    def finishing(self) -> None:
        """The run is ending: no more periodic charts, and the one in flight is
        left to the chart process; the end-of-run charts (:meth:`render` with a
        timeout) still render."""
        self._finishing = True
        if self._process is not None:
            self._process.stop_waiting()

    def cut_short(self) -> None:
        """The run ends: stop waiting for the chart process and start no new chart."""
        self._ending = True
        if self._process is not None:
            self._process.cut_short()

    def render(self, step: int | None = None, *, timeout: float | None = None) -> dict[str, Path]:
        """Render every chart the data allows; returns {chart kind: path}.

        In the chart process, waits at most ``timeout`` seconds; charts not
        done by then are finished by that process and left out of the result.
        """
        if self._ending or not charts_available():
            return {}
        data, arguments = self._statistics.chart_arguments(step, self._threshold_mb)
        if data is None:
            return {}
        if self._in_subprocess:
            if self._process is None:
                self._process = ChartProcess(on_restart=self._chart_process_died)
            self._process.while_waiting = self.while_waiting
            try:
                periodic = timeout is None
                paths, errors = self._process.render(
                    self.config, data, arguments,
                    timeout=_PERIODIC_CHART_TIMEOUT_S if periodic else timeout,
                    interruptible=periodic,
                )  # fmt: skip
            except ChartsCutShort as note:
                log.warning("mlx_otel: %s", note)
                return {}
        else:
            paths, errors = render_checkpoint_charts(self.config, data, arguments)
        for kind, error in errors.items():
            self._ledger.report("worker", f"chart {kind}", f"chart {kind} failed: {error}")
        if self._on_charts is not None:
            self._on_charts(paths, arguments["step"])
        return paths

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None


def charts_available() -> bool:
    """Whether the charts extra (matplotlib, seaborn) is installed, without importing it."""
    return all(importlib.util.find_spec(name) is not None for name in ("matplotlib", "seaborn"))


def export_run_files(
    statistics: StatisticsSink,
    output_dir: Path,
    *,
    run_id: str,
    start_time: float,
    rank: int | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
    only: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the seed's statistics and metrics files; returns {name: path}.

    With a ``rank``, the JSON files say which rank of the run they describe.
    With ``on_error``, a file that cannot be written (full disk, a path that
    is not a folder) is reported there and the others are still written,
    the small summary first; without it the first failure raises. ``only``
    names the files to write (``"monitoring_summary"``, ``"training_metrics_csv"``...).
    """
    stats = statistics.stats
    written: dict[str, Path] = {}
    frame_cache: list[Any] = []
    run = {"run_id": run_id} if rank is None else {"run_id": run_id, "rank": rank}

    def frame() -> Any:
        if not frame_cache:
            data = stats.to_dataframe().copy()  # one block: insert() on many columns warns
            data.insert(1, "run_id", run_id)
            frame_cache.append(data[[c for c in csv_columns(list(data.columns)) if c in data]])
        return frame_cache[0]

    def metrics_csv() -> Path:
        path = output_dir / "training_metrics.csv"
        with atomic_path(path) as tmp:
            frame().to_csv(tmp, index=False)
        return path

    def metrics_json() -> Path:
        rows = json.loads(frame().to_json(orient="records"))
        text = json.dumps({**run, "steps": rows}, indent=2) + "\n"
        return atomic_write_text(output_dir / "training_metrics.json", text)

    writers: list[tuple[str, Callable[[], Path]]] = [
        ("monitoring_summary", lambda: stats.export_summary(
            output_dir / "monitoring_summary.json", run_id=run_id, start_time=start_time,
            rank=rank)),
        ("training_metrics_csv", metrics_csv),
        ("training_metrics_json", metrics_json),
        ("stats_csv", stats.export_to_csv),
        ("stats_json", stats.export_to_json),
    ]  # fmt: skip
    for name, write in writers:
        if only is not None and name not in only:
            continue
        try:
            written[name] = write()
        except Exception as exc:
            if on_error is None:
                raise
            on_error(name, exc)
    return written


def build_sinks(
    config: MonitorConfig,
    *,
    profiler: MemoryProfiler,
    ledger: ErrorLedger,
    wandb_logger: Any = None,
) -> tuple[StatisticsSink, WandBSink | None, ChartSink]:
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
        )
    charts = ChartSink(
        statistics,
        output_dir=output_dir,
        every=monitoring.generate_charts_every,
        threshold_mb=trainer.memory_safety_threshold_mb,
        ledger=ledger,
        in_subprocess=monitoring.charts_in_subprocess,
        on_charts=None if wandb is None else wandb.log_charts,
        style=config.charts,
    )
    return statistics, wandb, charts
