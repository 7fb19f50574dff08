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
* the :class:`~mlx_otel.pipeline.worker.BackgroundWorker` drains records and
  hands batches to the sinks (statistics, charts, WandB); the run's files
  are written by :func:`~mlx_otel.pipeline.run_files.write_run_files`;
* :class:`~mlx_otel.pipeline.run_end.RunEnd` is the one way the run ends
  (``with``, ``cleanup()``, SIGTERM, the exit hook, a trainer's last report);
* one :class:`~mlx_otel.errors.ErrorLedger` counts what every part refused.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mlx_otel import shutdown
from mlx_otel.catalog import ERROR_KINDS, Source
from mlx_otel.config import MonitorConfig, load_config
from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.final_push import FinalPush
from mlx_otel.exporter.instruments import LedgerStore, build_instruments
from mlx_otel.exporter.lifecycle import RunLifecycle
from mlx_otel.exporter.memory_readings import MemoryReadings
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.exporter.otlp import otlp_reader
from mlx_otel.exporter.telemetry import Telemetry
from mlx_otel.numbers.gradients import GradientNorms, layer_grad_norms
from mlx_otel.pipeline.recorder import StepRecorder
from mlx_otel.pipeline.run_end import Closer, RunEnd
from mlx_otel.pipeline.run_files import RECORD_FILES, write_run_files
from mlx_otel.pipeline.sink import Record, RunEnding, Sink
from mlx_otel.pipeline.sinks import build_sinks
from mlx_otel.pipeline.step_arguments import MISSING, STEP_ARGUMENTS
from mlx_otel.pipeline.worker import BackgroundWorker
from mlx_otel.records import GradientRecord, StepRecord, TrainerReport

__all__ = ["MonitoringManager", "StepRecord", "TrainerReport", "TrainingMonitor"]

log = logging.getLogger("mlx_otel")

#: Step records handed to the sinks at once; samples are folded between batches.
_DRAIN_BATCH = 128
#: How long export_all waits for the worker before it writes the record so far
#: (then it waits the rest of charts_timeout for the full export).
_RECORD_FIRST_AFTER_S = 2.0


def _fresh_run_id() -> str:
    return time.strftime("run_%Y%m%d_%H%M%S_") + uuid.uuid4().hex[:6]


def _env_rank() -> int | None:
    for name in ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "RANK"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return None


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
        self.run_id = run_id or _fresh_run_id()
        self.rank = _env_rank() if rank is None else rank
        self.strict = strict
        self.start_time = time.time()
        exporter, trainer = self.config.exporter, self.config.trainer
        monitoring = self.config.monitoring
        if self.rank is not None:
            # Each rank writes its own files: ranks on one host share ./outputs.
            monitoring.output_dir = Path(monitoring.output_dir) / f"rank_{self.rank}"
        self.output_dir = Path(monitoring.output_dir)
        self._unhealthy = False
        local_rank = self._local_rank()

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
        )
        self.memory = MemoryReadings(
            self.memory_profiler,
            threshold_bytes=trainer.memory_safety_threshold_mb * (1 << 20),
            step_peak=lambda: self.recorder.step_peak,
            ledger=self.errors,
            # Host-level series (system memory) come from local rank 0 alone, so
            # sums across the ranks of one host do not count the host twice.
            report_host=not local_rank,
        )
        self.telemetry = self._build_telemetry(local_rank)
        self.lifecycle = RunLifecycle(
            self.telemetry,
            file_sd_dir=exporter.file_sd_dir,
            grace_seconds=exporter.finish_grace_seconds,
            on_error=lambda what, exc: self.errors.report_exception("export", what, exc),
        )
        otlp = otlp_reader(
            exporter, self.telemetry, on_failure=lambda m: self.errors.report("otlp", "otlp", m)
        )
        if otlp is not None:
            self.telemetry.add_reader(otlp)
        self.telemetry.start()
        self.telemetry.before_collect(self._before_collect)

        self.wandb_logger = self._start_wandb()
        ending = RunEnding()
        built = build_sinks(
            self.config,
            profiler=self.memory_profiler,
            ledger=self.errors,
            ending=ending,
            wandb_logger=self.wandb_logger,
            # While the worker awaits a chart, it keeps the histograms folded.
            while_waiting=self.recorder.fold,
        )
        self.statistics, self.charts = built.statistics, built.charts
        self.sinks: list[Sink] = built.all
        self.worker = BackgroundWorker(
            maxlen=monitoring.queue_size,
            on_drop=self.errors.drop,
            on_error=self._worker_error,
        )
        self.worker.add_periodic("fold", self.recorder.fold)
        self.worker.add_periodic("records", self._drain_records)
        self._last_export = time.monotonic()
        if monitoring.export_every_seconds:
            self.worker.add_periodic("periodic_export", self._periodic_export)
        closers: list[Closer] = list(self.sinks)
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

        self.endpoint: str | None = None
        if serve if serve is not None else exporter.enabled:
            self.endpoint = self.telemetry.serve()
            log.info("mlx_otel: serving metrics of run %s at %s", self.run_id, self.endpoint)
            self.lifecycle.started()
        # Finished on SIGTERM and at interpreter exit unless cleanup() runs first.
        shutdown.register(self)

    # -- wiring ----------------------------------------------------------------
    def _local_rank(self) -> int | None:
        """This process's rank on its host (the launcher's local rank), else its rank."""
        local = os.environ.get("MLX_LOCAL_RANK", os.environ.get("LOCAL_RANK"))
        if self.rank is not None and local and local.isdigit():
            return int(local)
        return self.rank

    def _build_telemetry(self, local_rank: int | None) -> Telemetry:
        exporter = self.config.exporter
        port = exporter.port
        if port and local_rank is not None:
            port += local_rank
        caps = (exporter.max_layer_series, exporter.max_custom_metrics, exporter.max_memory_blocks)
        telemetry = Telemetry(
            run_id=self.run_id,
            rank=self.rank,
            host=exporter.host,
            port=port,
            certfile=exporter.certfile,
            keyfile=exporter.keyfile,
            basic_auth=(
                (exporter.basic_auth_username, exporter.basic_auth_password.get_secret_value())
                if exporter.basic_auth_username and exporter.basic_auth_password
                else None
            ),
            cardinality_limit=max(*caps, 64) + 8,
        )
        recorder = self.recorder
        # Histograms are folded in bulk (NumPy) and served beside the SDK's
        # instruments: see mlx_otel.exporter.histograms for why.
        self.histograms = build_instruments(
            telemetry,
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
        return telemetry

    def _before_collect(self) -> None:
        self.recorder.refresh_view()
        self.recorder.fold()

    def _start_wandb(self) -> Any:
        monitoring = self.config.monitoring
        if not monitoring.use_wandb or monitoring.wandb_mode == "disabled":
            return None
        from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger
        from mlx_otel.integrations.wandb_thread import BackgroundWandB

        def start() -> EnhancedWandBLogger:
            return EnhancedWandBLogger.from_config(
                monitoring,
                name=monitoring.wandb_run_name or self.run_id,
                config={"run_id": self.run_id, **self.config.model_dump(mode="json")},
                dir=str(self.output_dir),
                on_error=lambda kind: self.errors.count("wandb"),
            )

        # wandb.init waits for the server: it runs on WandB's own thread, and so
        # does every later call, so neither this constructor nor the worker waits.
        return BackgroundWandB(
            start,
            finish_timeout=monitoring.wandb_finish_timeout,
            on_error=lambda kind: self.errors.count("wandb"),
        )

    def _worker_error(self, task: str, exc: BaseException) -> None:
        self.errors.report("worker", task, f"background task {task!r} failed: {exc!r}")

    def _drain_records(self) -> None:
        # In bounded batches, folding samples between them, so a worker that
        # fell behind keeps the histograms current and their buffers from
        # overflowing; a sink that wants the whole drain gets it once.
        pending = self.recorder.pending
        drained: list[Record] = []
        batched = [sink for sink in self.sinks if not sink.whole_drain]
        while pending > 0:
            batch = self.recorder.drain(min(pending, _DRAIN_BATCH))
            if not batch:
                break
            pending -= len(batch)
            self._dispatch(batch, batched)
            self.recorder.fold()
            drained.extend(batch)
        if drained:
            self._dispatch(drained, [sink for sink in self.sinks if sink.whole_drain])

    def _dispatch(self, batch: Sequence[Record], sinks: Sequence[Sink] | None = None) -> None:
        for sink in self.sinks if sinks is None else sinks:
            try:
                sink.handle(batch)
            except Exception as exc:  # one sink failing must not starve the others
                self.errors.report_exception(sink.error_kind, f"the {sink.name} sink", exc)

    # -- the hot path ----------------------------------------------------------
    def log_training_step(self, step: Any = MISSING, /, **custom: Any) -> None:
        """Record one training step; costs microseconds and never blocks.

        The keywords are :data:`~mlx_otel.pipeline.step_arguments.STEP_ARGUMENTS`;
        this docstring and the signature are made from them (module end).
        """
        self.recorder.record(step, custom)

    def record_report(self, report: TrainerReport) -> None:
        """Record a trainer integration's report (values by catalogue key) as one step.

        What :mod:`mlx_otel.trainers` calls at each report of mlx-lm or
        mlx-lm-lora; costs microseconds and never raises (unless ``strict``).
        """
        self.recorder.record_report(report)

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
        try:
            norms = layer_grad_norms(grads, max_series=self.config.exporter.max_layer_series)
        except Exception as exc:
            self.errors.report_exception("invalid_value", "log_gradients", exc)
            if self.strict:
                raise
            return None
        self.recorder.set_series("layer_grad_norm", norms.per_layer)
        # The global norm is mlx_train_grad_norm (a grad_norm= logged later wins).
        self.recorder.set_latest("grad_norm", norms.global_norm)
        if self.wandb_logger is not None or self.config.monitoring.generate_charts_every:
            record = GradientRecord(step, norms.per_layer)
            self.worker.submit("gradients", lambda: self._dispatch([record]))
        return norms

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

    def _end_budget(self) -> float:
        """Seconds the configuration allows the end of a run (files, charts, WandB, last scrape)."""
        monitoring, exporter = self.config.monitoring, self.config.exporter
        return (2 * monitoring.charts_timeout + monitoring.wandb_finish_timeout
                + exporter.finish_grace_seconds + 10.0)  # fmt: skip

    def _export(self, deadline: float) -> dict[str, Path]:
        """The run's files by ``deadline``: worker drained, record first, then charts."""
        timeout = min(self.config.monitoring.charts_timeout, max(0.0, deadline - time.monotonic()))
        first = min(_RECORD_FIRST_AFTER_S, timeout)
        if not self.worker.flush(first):
            # The worker is far behind (a flood, a starved CPU): the record so
            # far goes on disk first, in case the process is ended (the bound
            # of a SIGTERM) before the full export below.
            try:
                self._write_record()
            except Exception as exc:
                self.errors.report_exception("export", "export_all", exc)
            if not self.worker.flush(timeout - first):
                self.charts.stop_waiting()
                self.worker.flush()
        try:
            written = write_run_files(
                self.statistics.stats, self.output_dir, run_id=self.run_id,
                start_time=self.start_time, rank=self.rank, on_error=self._export_failed,
            )  # fmt: skip
        except Exception as exc:
            self.errors.report_exception("export", "export_all", exc)
            if self.strict:
                raise
            return {}
        try:  # charts on their own: a failing renderer must not lose the files above
            timeout = min(self.config.monitoring.charts_timeout, max(0.5, deadline - time.monotonic()))
            for kind, path in self.charts.render(timeout=timeout).items():
                written[f"chart_{kind}"] = path
        except Exception as exc:
            self.errors.report_exception("worker", "end-of-run charts", exc)
            if self.strict:
                raise
        log.info("mlx_otel: wrote %d files under %s", len(written), self.output_dir)
        return written

    def _periodic_export(self) -> None:
        """The history so far on disk, for a run that may be killed without warning."""
        if time.monotonic() - self._last_export < self.config.monitoring.export_every_seconds:
            return
        self._last_export = time.monotonic()
        if self.recorder.steps and not self._end.begun:
            self._write_record()

    def _write_record(self) -> None:
        """The summary and the CSV of the history so far (no waiting for the worker)."""
        write_run_files(
            self.statistics.stats, self.output_dir, run_id=self.run_id,
            start_time=self.start_time, rank=self.rank, on_error=self._export_failed,
            only=RECORD_FILES,
        )  # fmt: skip

    def _export_failed(self, name: str, exc: Exception) -> None:
        if self.strict:
            raise exc
        self.errors.report_exception("export", f"writing {name} under {self.output_dir}", exc)

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


def _documented_signature() -> inspect.Signature:
    """``log_training_step(self, step, *, loss=None, ..., **custom)`` from :data:`STEP_ARGUMENTS`."""
    P = inspect.Parameter
    return inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("step", P.POSITIONAL_OR_KEYWORD)]
        + [
            P(a.name, P.KEYWORD_ONLY, default=None, annotation=a.annotation)
            for a in STEP_ARGUMENTS
        ]
        + [P("custom", P.VAR_KEYWORD, annotation=float)]
    )


def _documented_doc() -> str:
    """The docstring of ``log_training_step``, listing :data:`STEP_ARGUMENTS`."""
    keywords = ", ".join(f"{a.name}=" for a in STEP_ARGUMENTS)
    items = "\n".join(f"        * ``{a.name}``: {a.doc}" for a in STEP_ARGUMENTS)
    return f"""Record one training step; costs microseconds and never blocks.

        ``log_training_step(step, {keywords}, **custom)``. Scalars may be
        Python, NumPy or MLX numbers (0-d arrays too). Values that are not
        numbers are counted in ``mlx_otel_errors_total`` and logged once per
        key; NaN and inf are recorded as they are. Extra keywords become
        custom metrics (``mlx_train_custom{{name=...}}``).

{items}
        """


# help() and IDEs that introspect show the real parameters.
TrainingMonitor.log_training_step.__doc__ = _documented_doc()
TrainingMonitor.log_training_step.__signature__ = _documented_signature()  # type: ignore[attr-defined]

#: The seed's name for the monitor.
MonitoringManager = TrainingMonitor
