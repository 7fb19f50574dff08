"""What the background worker does with each step: statistics, WandB, charts, files.

Nothing here runs on the training thread. :class:`RunOutputs` receives
batches of :class:`~mlx_otel.monitor.StepRecord` from the monitor's worker,
feeds the statistics history and the memory profiler, forwards to WandB and
renders charts, and writes the seed's output files at the end of a run::

    outputs/
      stats/stats_export_*.json, stats/metrics_history.csv
      charts/*_step_*.png, charts/correlation_matrix.png
      training_metrics.csv, training_metrics.json, monitoring_summary.json

Optional parts (charts need matplotlib/seaborn/pandas, WandB needs wandb)
are skipped with one log line naming the extra to install.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlx_otel.catalog import METRICS
from mlx_otel.fileio import atomic_path, atomic_write_text
from mlx_otel.integrations.chart_process import ChartProcess, render_checkpoint_charts
from mlx_otel.numbers.samples import as_samples

if TYPE_CHECKING:
    from mlx_otel.config import MonitorConfig
    from mlx_otel.monitor import StepRecord
    from mlx_otel.numbers.memory import MemoryProfiler

__all__ = ["WANDB_KEY_GROUPS", "RunOutputs", "csv_columns"]

log = logging.getLogger("mlx_otel")

#: WandB group of every key a step record can hold (derived from the catalogue).
WANDB_KEY_GROUPS: dict[str, str] = {
    **{m.key: m.wandb_group for m in METRICS},
    "memory_allocated_mb": "memory",
    "thinking_tokens": "rl",
    "answer_tokens": "rl",
    "step_time": "train",
    "rewards": "rl",  # the per-sample distribution
    "mlx_active_mb": "memory",
    "mlx_cache_mb": "memory",
    "mlx_peak_mb": "memory",
}

#: Leading CSV columns, in the seed's order; other metrics follow by name.
_CSV_LEADING = ("step", "run_id", "timestamp", "loss", "reward_mean", "grad_norm", "learning_rate")


def csv_columns(metric_names: Sequence[str]) -> list[str]:
    """Columns of training_metrics.csv: the seed's leading ones, then the rest sorted."""
    rest = sorted(n for n in metric_names if n not in _CSV_LEADING)
    return [*_CSV_LEADING, *rest]


class RunOutputs:
    """Statistics, WandB forwarding, charts and exports of one run."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        run_id: str,
        start_time: float,
        profiler: MemoryProfiler,
        report_error: Callable[[str, str, str], None],
        wandb_logger: Any = None,
    ) -> None:
        from mlx_otel.numbers.stats import ComprehensiveStatsCollector

        monitoring = config.monitoring
        self.config = config
        self.run_id = run_id
        self.start_time = start_time
        self.output_dir = Path(monitoring.output_dir)
        self.profiler = profiler
        self._report_error = report_error
        self.stats = ComprehensiveStatsCollector(
            output_dir=self.output_dir / "stats", max_history=monitoring.max_history
        )
        self.wandb = wandb_logger
        self._charts: Any = None
        self._charts_unavailable = False
        self._charts_every = monitoring.generate_charts_every
        self._recent_rewards: deque[float] = deque(maxlen=10_000)
        self._layer_norms: dict[str, float] = {}
        self._last_step: int | None = None
        self._chart_process: ChartProcess | None = None
        if self._charts_every and monitoring.charts_in_subprocess and self._chart_generator():
            # Its imports take seconds of CPU: start it now, at low priority.
            self._chart_process = ChartProcess()
            self._chart_process.start()

    # -- per batch of steps (worker thread) ----------------------------------
    def handle(self, batch: Sequence[StepRecord]) -> None:
        """Feed one batch of step records to statistics, the profiler and WandB."""
        chart_step = None
        for record in batch:
            values = dict(record.values)
            if record.memory is not None:
                active, cache, peak = record.memory
                self.profiler.add_reading(
                    step=record.step,
                    timestamp=record.timestamp,
                    active_bytes=active,
                    cache_bytes=cache,
                    peak_bytes=peak,
                )
                if self.config.trainer.log_memory_usage:
                    values["mlx_active_mb"] = active / 2**20
                    values["mlx_cache_mb"] = cache / 2**20
                    values["mlx_peak_mb"] = peak / 2**20
            non_finite = sum(1 for v in values.values() if not math.isfinite(v))
            if non_finite:
                self._report_error(
                    "non_finite", "statistics", "NaN/inf values are left out of statistics"
                )
            rejected = self.stats.record_step(record.step, values, record.timestamp)
            for name in rejected:
                self._report_error("invalid_value", name, f"statistics rejected {name!r}")
            rewards = None
            if record.rewards is not None:
                try:
                    rewards = as_samples(record.rewards)
                except ValueError:
                    rewards = None  # counted when the histogram folds them
                else:
                    rewards = rewards[np.isfinite(rewards)]
                    self._recent_rewards.extend(rewards.tolist())
            self._last_step = record.step
            if self.wandb is not None:
                self.wandb.log_metrics(values, step=record.step)
                # A histogram costs four times a row of scalars in wandb.log:
                # send the distribution at the sample-table cadence.
                every = self.config.monitoring.log_samples_every
                if rewards is not None and rewards.size and record.step % every == 0:
                    self.wandb.log_distribution("rewards", rewards, step=record.step)
            if self._charts_every and record.step > 0 and record.step % self._charts_every == 0:
                chart_step = record.step
        if chart_step is not None:
            # A worker that fell behind renders the latest chart step only.
            self.render_charts(chart_step)

    def handle_gradients(self, step: int, per_layer: dict[str, float]) -> None:
        self._layer_norms = dict(per_layer)
        if self.wandb is not None:
            self.wandb.log_gradients(per_layer, step=step)

    # -- charts ----------------------------------------------------------------
    def _chart_generator(self) -> Any:
        if self._charts is None and not self._charts_unavailable:
            try:
                from mlx_otel.integrations.charts import ChartGenerator
            except ImportError as exc:
                self._charts_unavailable = True
                log.warning(
                    "mlx_otel: charts need %s: pip install 'mlx-otel[charts]'", exc.name
                )
                return None
            self._charts = ChartGenerator(output_dir=self.output_dir / "charts")
        return self._charts

    def render_charts(self, step: int | None = None) -> dict[str, Path]:
        """Render every chart the data allows; returns {chart kind: path}."""
        charts = self._chart_generator()
        if charts is None:
            return {}
        step = self._last_step if step is None else step
        frame = self.stats.to_dataframe()
        if frame.empty:
            return {}
        # Keep "step" so charts plot against real steps, not row numbers.
        data = frame.drop(columns=[c for c in ("timestamp", "run_id") if c in frame])
        memory_columns = [c for c in ("mlx_active_mb", "mlx_cache_mb", "mlx_peak_mb") if c in frame]
        memory = frame[["step", *memory_columns]] if memory_columns else None
        thinking = frame["thinking_tokens"].dropna().tolist() if "thinking_tokens" in frame else None
        answer = frame["answer_tokens"].dropna().tolist() if "answer_tokens" in frame else None
        arguments = dict(
            step=step,
            rewards=list(self._recent_rewards) or None,
            thinking_tokens=thinking,
            answer_tokens=answer,
            layer_norms=self._layer_norms or None,
            memory=memory,
            memory_threshold_mb=self.config.trainer.memory_safety_threshold_mb,
            tokens_per="step",  # log_training_step takes the step's token totals
        )
        if self.config.monitoring.charts_in_subprocess:
            if self._chart_process is None:
                self._chart_process = ChartProcess()
            paths, errors = self._chart_process.render(charts.config, data, arguments)
        else:
            paths, errors = render_checkpoint_charts(charts.config, data, arguments)
        for kind, error in errors.items():
            self._report_error("worker", f"chart {kind}", f"chart {kind} failed: {error}")
        if self.wandb is not None:
            for kind, path in paths.items():
                self.wandb.log_chart(kind, path, step=step)
        return paths

    # -- end of run ------------------------------------------------------------
    def export_all(self) -> dict[str, Path]:
        """Write every output file of the seed's layout; returns {name: path}."""
        written: dict[str, Path] = {}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        written["stats_json"] = self.stats.export_to_json()
        written["stats_csv"] = self.stats.export_to_csv()
        frame = self.stats.to_dataframe()
        frame.insert(1, "run_id", self.run_id)
        columns = [c for c in csv_columns(list(frame.columns)) if c in frame]
        frame = frame[columns]
        csv_path = self.output_dir / "training_metrics.csv"
        with atomic_path(csv_path) as tmp:
            frame.to_csv(tmp, index=False)
        written["training_metrics_csv"] = csv_path
        json_path = self.output_dir / "training_metrics.json"
        rows = json.loads(frame.to_json(orient="records"))
        atomic_write_text(
            json_path, json.dumps({"run_id": self.run_id, "steps": rows}, indent=2) + "\n"
        )
        written["training_metrics_json"] = json_path
        written["monitoring_summary"] = self.stats.export_summary(
            self.output_dir / "monitoring_summary.json",
            run_id=self.run_id,
            start_time=self.start_time,
        )
        for kind, path in self.render_charts().items():
            written[f"chart_{kind}"] = path
        return written

    def close(self) -> None:
        if self._chart_process is not None:
            self._chart_process.close()
            self._chart_process = None
        if self.wandb is not None:
            self.wandb.finish()
