"""TrainingMonitor: one cheap call per training step, observable everywhere.

    from mlx_otel import TrainingMonitor
    with TrainingMonitor(run_id="run_001") as monitor:   # serves :9464/metrics
        for step in range(num_steps):
            ...
            monitor.log_training_step(step=step, loss=loss, reward=reward,
                                      rewards=per_sample_rewards)

The monitor wires the parts; each does one thing:

* :class:`~mlx_otel.pipeline.recorder.StepRecorder` is the training thread's
  side: it stores values, buffers samples and queues one record per step;
* :func:`~mlx_otel.exporter.instruments.build_instruments` serves every
  instrument of the catalogue on a :class:`~mlx_otel.exporter.telemetry.Telemetry`,
  read at scrape time from the part each metric names (the recorder,
  :class:`~mlx_otel.exporter.memory_readings.MemoryReadings`, the ledger);
* the :class:`~mlx_otel.pipeline.worker.BackgroundWorker` runs a
  :class:`~mlx_otel.pipeline.dispatch.Dispatcher` that hands batches of
  records to the sinks (statistics, charts, WandB); the run's files are
  written by :class:`~mlx_otel.pipeline.run_export.RunExport`;
* :class:`~mlx_otel.pipeline.run_end.RunEnd` is the one way the run ends
  (``with``, ``cleanup()``, SIGTERM, the exit hook, a trainer's last report);
* one :class:`~mlx_otel.errors.ErrorLedger` counts what every part refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mlx_otel import shutdown
from mlx_otel.catalog import ERROR_KINDS, Source
from mlx_otel.config import MonitorConfig, load_config
from mlx_otel.config.identity import env_rank, local_rank, resolve_run_id
from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.final_push import FinalPush
from mlx_otel.exporter.from_config import telemetry_from_config
from mlx_otel.exporter.instruments import LedgerStore, build_instruments
from mlx_otel.exporter.lifecycle import RunLifecycle
from mlx_otel.exporter.memory_readings import MemoryReadings
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.exporter.tracing import step_tracer
from mlx_otel.integrations.wandb_thread import start_background_wandb
from mlx_otel.numbers.gradients import GradientNorms
from mlx_otel.pipeline.dispatch import Dispatcher
from mlx_otel.pipeline.gradients import GradientLog
from mlx_otel.pipeline.phases import Phase, PhaseTimer
from mlx_otel.pipeline.recorder import StepRecorder
from mlx_otel.pipeline.run_end import Closer, RunEnd
from mlx_otel.pipeline.run_export import RunExport, RunFiles
from mlx_otel.pipeline.sink import RunEnding, Sink
from mlx_otel.pipeline.sinks import build_sinks
from mlx_otel.pipeline.step_arguments import MISSING, documented_doc, documented_signature
from mlx_otel.pipeline.worker import BackgroundWorker
from mlx_otel.records import Completions, GradientRecord, StepRecord, TrainerReport

__all__ = [
    "Completions", "MonitoringManager", "StepRecord", "TrainerReport", "TrainingMonitor",
]

log = logging.getLogger("mlx_otel")


class TrainingMonitor:
    """Serves a training run's metrics and feeds statistics, WandB and charts.

    ``config`` is a :class:`~mlx_otel.config.MonitorConfig`, a path to YAML,
    a mapping, or ``None`` for defaults. ``strict=True`` raises on values that
    cannot be recorded instead of counting them (for tests).
    """

    def __init__(
        self,
        config: MonitorConfig | str | Path | Mapping[str, Any] | Any | None = None,
        run_id: str | None = None,
        *,
        rank: int | None = None,
        strict: bool = False,
        serve: bool | None = None,
    ) -> None:
        self.config = load_config(config)
        self.run_id = resolve_run_id(run_id)  # else $MLX_OTEL_RUN_ID, else a fresh one
        self.rank = env_rank() if rank is None else rank
        self.strict = strict
        self.start_time = time.time()
        exporter, trainer = self.config.exporter, self.config.trainer
        monitoring = self.config.monitoring
        if self.rank is not None:
            # Each rank writes its own files: ranks on one host share ./outputs.
            monitoring.output_dir = Path(monitoring.output_dir) / f"rank_{self.rank}"
        self.output_dir = Path(monitoring.output_dir)
        self._unhealthy = False
        host_rank = local_rank(self.rank)

        self.errors = ErrorLedger(ERROR_KINDS)
        self.memory_profiler = MemoryProfiler(
            alert_threshold_mb=trainer.memory_safety_threshold_mb,
            leak_detection_window=trainer.leak_detection_window,
            reset_peak_each_step=False,  # the recorder resets it on the training thread
            # Off: nothing resets MLX's counter (trainers report it as their peak_memory).
            reset_mlx_peak=trainer.reset_peak_each_step,
            max_blocks=exporter.max_memory_blocks,
        )
        self.recorder = StepRecorder(
            ledger=self.errors,
            profiler=self.memory_profiler,
            max_custom=exporter.max_custom_metrics,
            max_records=monitoring.queue_size * 8,
            reset_peak=trainer.reset_peak_each_step,
            strict=strict,
            started=self.start_time,
            rl=self.config.rl,
        )
        self.phases = PhaseTimer(
            ledger=self.errors, max_phases=exporter.max_custom_metrics,
            max_samples=monitoring.queue_size * 8, strict=strict,
        )  # fmt: skip
        self.memory = MemoryReadings(
            self.memory_profiler,
            threshold_bytes=trainer.memory_safety_threshold_mb * (1 << 20),
            step_peak=lambda: self.recorder.step_peak,
            ledger=self.errors,
            # Host-level series (system memory) come from local rank 0 alone, so
            # sums across the ranks of one host do not count the host twice.
            report_host=not host_rank,
        )
        self.telemetry = telemetry_from_config(
            exporter, run_id=self.run_id, rank=self.rank, local_rank=host_rank,
            on_otlp_failure=lambda m: self.errors.report("otlp", "otlp", m),
        )  # fmt: skip
        self._serve_catalogue()
        # OTEL_TRACES_EXPORTER=otlp: a span per logged step, its phases as children.
        self.tracer = step_tracer(
            self.telemetry.resource, run_id=self.run_id, rank=self.rank,
            on_failure=lambda m: self.errors.report("otlp", "otlp traces", m),
            on_drop=self.errors.drop, max_pending=monitoring.queue_size,
        )  # fmt: skip
        self.phases.on_step = None if self.tracer is None else self.tracer.step_ended
        self.lifecycle = RunLifecycle(
            self.telemetry,
            file_sd_dir=exporter.file_sd_dir,
            grace_seconds=exporter.finish_grace_seconds,
            on_error=lambda what, exc: self.errors.report_exception("export", what, exc),
        )
        self.telemetry.start()
        self.telemetry.before_collect(self._before_collect)

        self.wandb_logger = start_background_wandb(
            self.config, self.run_id, self.output_dir, on_error=self.errors.count
        )
        ending = RunEnding()
        built = build_sinks(
            self.config,
            profiler=self.memory_profiler,
            ledger=self.errors,
            ending=ending,
            wandb_logger=self.wandb_logger,
            # While the worker awaits a chart, it keeps draining and folding.
            while_waiting=self._while_charts_render,
        )
        self.statistics, self.charts = built.statistics, built.charts
        self.sinks: list[Sink] = built.all
        self.worker = BackgroundWorker(
            maxlen=monitoring.queue_size,
            on_drop=self.errors.drop,
            on_error=self._worker_error,
        )
        self.dispatcher = Dispatcher(
            self.recorder, self.sinks, on_error=self.errors.report_exception
        )
        self.files = RunExport(
            worker=self.worker,
            stats=self.statistics.stats,
            charts=self.charts,
            files=RunFiles(self.output_dir, self.run_id, self.start_time, self.rank),
            charts_timeout=monitoring.charts_timeout,
            ledger=self.errors,
            strict=strict,
        )
        self.worker.add_periodic("fold", self.recorder.fold)
        self.worker.add_periodic("phase_fold", self.phases.fold)
        if self.tracer is not None:
            self.worker.add_periodic("traces", self.tracer.export_pending)
        self.worker.add_periodic("records", self.dispatcher.drain)
        closers: list[Closer] = list(self.sinks)
        if self.tracer is not None:
            closers.append(self.tracer)
        if exporter.pushgateway_url:
            closers.append(FinalPush(self.telemetry, exporter.pushgateway_url))
        closers.append(self.lifecycle)  # serving ends last
        self._end = RunEnd(
            worker=self.worker,
            closers=closers,
            export=lambda deadline: self._export(deadline),
            on_error=lambda kind, what, exc: self.errors.report_exception(kind, what, exc),
            begin=self.lifecycle.mark_finished,
            ending=ending,
        )
        forward = self.wandb_logger is not None or monitoring.generate_charts_every
        self.gradients = GradientLog(
            self.recorder, ledger=self.errors, max_series=exporter.max_layer_series,
            forward=self._forward_gradients if forward else None, strict=strict,
        )  # fmt: skip
        if monitoring.export_every_seconds:
            job = self.files.periodic(monitoring.export_every_seconds, due=self._record_due)
            self.worker.add_periodic("periodic_export", job)

        self.endpoint: str | None = None
        if serve if serve is not None else exporter.enabled:
            self.endpoint = self.telemetry.serve()
            log.info("mlx_otel: serving metrics of run %s at %s", self.run_id, self.endpoint)
            self.lifecycle.started()
        # Finished on SIGTERM and at interpreter exit unless cleanup() runs first.
        shutdown.register(self)

    # -- wiring ----------------------------------------------------------------
    def _serve_catalogue(self) -> None:
        """Every instrument of the catalogue, read from the part its entry names."""
        recorder = self.recorder
        # Histograms are folded in bulk (NumPy) and served beside the SDK's
        # instruments: see mlx_otel.exporter.histograms for why.
        self.histograms = build_instruments(
            self.telemetry,
            {
                Source.STEP: recorder,
                Source.TRAINER: recorder,
                Source.GRADIENTS: recorder,
                Source.MEMORY: self.memory,
                Source.EXPORTER: LedgerStore(self.errors),
            },
        )
        recorder.fold_into(
            {h.metric.read_from or "": h.record_many for h in self.histograms.values()}
        )
        self.phases.fold_into(self.histograms["phase_duration"].record_many)

    def _before_collect(self) -> None:
        self.recorder.refresh_view()
        self.recorder.fold()
        self.phases.fold()

    def _record_due(self) -> bool:
        """Whether the periodic record is written: steps logged and the end not begun."""
        return bool(self.recorder.steps) and not self._end.begun

    def _while_charts_render(self) -> None:
        """What the worker does while a chart render is awaited: it keeps up with the
        steps (the chart sink itself is left out), so a render of seconds drops none."""
        if self.worker.on_worker_thread():  # never beside the worker's own drain
            self.dispatcher.drain()
        self.recorder.fold()  # also when no step waited (the drain folds only between batches)

    def _forward_gradients(self, record: GradientRecord) -> None:
        self.worker.submit("gradients", lambda: self.dispatcher.dispatch([record]))

    def _worker_error(self, task: str, exc: BaseException) -> None:
        self.errors.report("worker", task, f"background task {task!r} failed: {exc!r}")

    # -- the hot path ----------------------------------------------------------
    def log_training_step(self, step: Any = MISSING, /, **custom: Any) -> None:
        """Record one training step; costs microseconds and never blocks.

        The keywords are :data:`~mlx_otel.pipeline.step_arguments.STEP_ARGUMENTS`;
        this docstring and the signature are made from them (module end).
        """
        if self.phases.step or self.tracer is not None:
            timings = self.phases.end_step(custom.get("step") if step is MISSING else step)
            self.recorder.record(step, custom, timings)
        else:
            self.recorder.record(step, custom)

    def record_report(self, report: TrainerReport) -> None:
        """Record a trainer integration's report (values by catalogue key) as one step.

        What :mod:`mlx_otel.trainers` calls at each report of mlx-lm or
        mlx-lm-lora; costs microseconds and never raises (unless ``strict``).
        """
        if self.phases.step or self.tracer is not None:
            self.recorder.record_report(report, self.phases.end_step(report.step))
        else:
            self.recorder.record_report(report)

    def phase(self, name: str, *, sync: bool = False, arrays: Any = None) -> Phase:
        """Time a phase of the step: ``with monitor.phase("generate"):``, or a decorator.

        Phases nest, each timing itself: ``mlx_train_phase_duration_seconds{phase}``,
        the step's ``timing/<phase>`` (statistics, CSV/JSON, WandB) and a span of
        its trace. MLX is lazy: ``sync=True`` waits for MLX's stream at the end,
        ``arrays=`` (arrays, a model, an optimizer's state) are evaluated there.
        A bad name is counted and the block runs untimed (``strict`` raises).
        """
        return self.phases.phase(name, sync=sync, arrays=arrays)

    # -- the rest of the public API ----------------------------------------------
    def _step_due(self, step: Any, every: int) -> bool:
        """Whether ``step`` falls on the cadence; a step that is not a number is counted."""
        try:
            return bool(step % every == 0)
        except TypeError:
            if self.strict:
                raise
            self.errors.report("invalid_value", "step", f"step={step!r} is not a number")
            return False

    def log_gradients(self, step: int, grads: Any) -> GradientNorms | None:
        """Export each layer's gradient L2 norm and the global norm.

        Runs every ``monitoring.log_gradients_every`` steps (default 1) and
        returns the norms then, ``None`` on the steps in between.

        ``grads`` is the tree ``mlx.nn.value_and_grad`` returns. All norms
        come from one MLX evaluation; beyond ``exporter.max_layer_series``
        layers are grouped by module prefix so cardinality stays bounded.
        """
        if not self._step_due(step, self.config.monitoring.log_gradients_every):
            return None  # layer norms cost ~3% of a small step; users may thin them out
        return self.gradients.log(step, grads)

    def log_samples(
        self,
        step: int,
        prompts: Sequence[str],
        generations: Sequence[str],
        references: Sequence[str],
        rewards: Sequence[float],
    ) -> None:
        """Log sampled completions (a WandB table every ``log_samples_every`` steps)."""
        if self.wandb_logger is None or not self._step_due(
            step, self.config.monitoring.log_samples_every
        ):
            return
        batch = (list(prompts), list(generations), list(references), list(rewards))
        logger = self.wandb_logger
        self.worker.submit("wandb_samples", lambda: logger.log_sample_table(*batch, step=step))

    def check_memory_health(self) -> tuple[bool, str]:
        """``(healthy, message)`` for MLX memory against the threshold and limit.

        A failing check logs a warning once per episode (not every call) and
        sends a WandB alert when WandB is on.
        """
        healthy, message = self.memory_profiler.check_memory_health()
        if not healthy and not self._unhealthy:
            log.warning("mlx_otel: %s", message)
            logger = self.wandb_logger
            if logger is not None:
                text = f"run {self.run_id}: {message}"
                self.worker.submit(
                    "wandb_alert",
                    lambda: logger.alert(title="MLX memory unhealthy", text=text, level="WARN"),
                )
        self._unhealthy = not healthy
        return healthy, message

    def generate_charts(self, step: int | None = None) -> Future[dict[str, Path]]:
        """Render the seed's charts for ``step`` on the background worker.

        Returns at once; the Future's result maps chart kinds to PNG paths.
        """
        return self.worker.submit("charts", lambda: self.charts.render(step))

    def checkpoint(self, step: int, path: str | Path | None = None) -> Future[Any]:
        """Mark a checkpoint: charts (if ``generate_at_checkpoints``) and a WandB artifact."""

        def work() -> Any:
            result = None
            if self.config.monitoring.generate_at_checkpoints:
                result = self.charts.render(step)
            if path is not None and self.wandb_logger is not None:
                self.wandb_logger.log_checkpoint(path, metadata={"step": step})
            return result

        return self.worker.submit("checkpoint", work)

    def export_all(self) -> dict[str, Path]:
        """Write every output file (statistics, CSV/JSON, summary, charts).

        Waits for the background worker to catch up first (a periodic chart
        still in flight after ``monitoring.charts_timeout`` is left to the
        chart process), then at most as long for the charts; files are
        written atomically. Failures are reported and counted, never raised.
        """
        return self._export(time.monotonic() + self._end_budget())

    def _export(self, deadline: float) -> dict[str, Path]:
        """The run's files by ``deadline`` (what the end of a run writes)."""
        return self.files.export(deadline)

    def _end_budget(self) -> float:
        """Seconds the configuration allows the end of a run (files, charts, WandB, last scrape)."""
        monitoring, exporter = self.config.monitoring, self.config.exporter
        return (2 * monitoring.charts_timeout + monitoring.wandb_finish_timeout
                + exporter.finish_grace_seconds + 10.0)  # fmt: skip

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until the background worker has handled everything logged so far."""
        return self.worker.flush(timeout)

    @property
    def steps_logged(self) -> int:
        """How many ``log_training_step`` calls were recorded."""
        return self.recorder.steps

    @property
    def stats(self) -> Any:
        """The run's :class:`~mlx_otel.ComprehensiveStatsCollector`."""
        return self.statistics.stats

    def error_counts(self) -> dict[str, int]:
        """``mlx_otel_errors_total`` by kind, as served."""
        return {k: v for k, v in self.errors.counts().items() if v}

    def submit(self, name: str, task: Any) -> Future[Any]:
        """Run ``task`` on the background worker; returns a Future."""
        return self.worker.submit(name, task)

    def mark_finished(self) -> None:
        """Say that training is over (``mlx_otel_run_finished 1``); serving goes on.

        ``cleanup()`` does it too; call it earlier when the process keeps
        serving after training, so alerts know the run ended and did not stall.
        """
        self.lifecycle.mark_finished()

    def cleanup(self) -> None:
        """Finish background work, close WandB and stop serving; safe to call twice.

        The endpoint serves ``mlx_otel_run_finished 1`` until Prometheus has
        scraped it once (bounded by ``exporter.finish_grace_seconds``) and the
        file_sd target is removed, so a clean end does not raise MLXExporterDown.
        Writes no files (``finish_run()``, a ``with`` block and ``export_all()`` do).
        """
        self._finish(export=False)

    def finish_run(
        self,
        *,
        wait: bool = True,
        keep_serving: bool = False,
        leave: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Write the output files (if any step was logged), then end as :meth:`cleanup`.

        What the end of a ``with`` block does; also run on SIGTERM and at
        interpreter exit for a monitor that was not cleaned up
        (:mod:`mlx_otel.shutdown`). ``wait=False`` returns at once and ends
        the run on a thread of its own (a trainer's last report); a later call
        waits for it. ``keep_serving`` leaves the endpoint up (a linger);
        ``leave`` does not wait for the end-of-run charts, which the chart
        process writes on its own. Returns whether the end is done.
        """
        return self._finish(export=bool(self.recorder.steps), wait=wait,
                            keep_serving=keep_serving, leave=leave, timeout=timeout)  # fmt: skip

    def _finish(
        self,
        *,
        export: bool,
        wait: bool = True,
        keep_serving: bool = False,
        leave: bool = False,
        timeout: float | None = None,
    ) -> bool:
        done = self._end.finish(
            export=export, wait=wait, keep_serving=keep_serving, leave=leave,
            timeout=self._end_budget() if timeout is None else timeout,
        )  # fmt: skip
        if done and not keep_serving:
            shutdown.unregister(self)  # until then the exit hook waits for the end
        return done

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish_run()


# help() and IDEs that introspect show the real parameters.
TrainingMonitor.log_training_step.__doc__ = documented_doc()
TrainingMonitor.log_training_step.__signature__ = documented_signature()  # type: ignore[attr-defined]

#: The seed's name for the monitor.
MonitoringManager = TrainingMonitor
