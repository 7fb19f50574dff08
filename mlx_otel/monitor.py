"""TrainingMonitor: one cheap call per training step, observable everywhere.

    from mlx_otel import TrainingMonitor
    with TrainingMonitor(run_id="run_001") as monitor:   # serves :9464/metrics
        for step in range(num_steps):
            ...
            monitor.log_training_step(step=step, loss=loss, reward=reward,
                                      rewards=per_sample_rewards)

The training thread only stores values: ``log_training_step`` validates and
keeps the latest numbers, appends per-sample rewards to a buffer and queues
one record for the background worker. Prometheus reads the stored numbers at
scrape time; buffered samples are folded into histograms off the training
thread; statistics, WandB, charts and files are fed by the worker.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from mlx_otel import lifecycle
from mlx_otel.catalog import ERROR_KINDS, by_key
from mlx_otel.config import MonitorConfig, load_config
from mlx_otel.exporter.histograms import BulkHistogram, HistogramCollector
from mlx_otel.exporter.telemetry import Reading, Telemetry
from mlx_otel.numbers.gradients import GradientNorms, layer_grad_norms
from mlx_otel.numbers.memory import MemoryProfiler
from mlx_otel.numbers.samples import as_samples
from mlx_otel.pipeline.outputs import WANDB_KEY_GROUPS, RunOutputs
from mlx_otel.pipeline.worker import BackgroundWorker

__all__ = ["MonitoringManager", "StepRecord", "TrainingMonitor"]

log = logging.getLogger("mlx_otel")


class _Missing:
    """Marks an argument that was not passed (``None`` passed is an invalid value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not given>"


_MISSING: Any = _Missing()

# Custom metric names become label values: keep them tidy and bounded.
_NAME_RE = re.compile(r"[^a-zA-Z0-9_]+")
#: Keyword of log_training_step for a stored key, where the two differ.
_ARGUMENT_NAMES = {"reward_mean": "reward"}
_CUSTOM_PREFIX = "custom/"
#: Custom value types stored without conversion (bool is not one: it is
#: checked; nor int: a huge int would overflow every float reader).
_PLAIN_NUMBERS = frozenset({float})
#: Largest step or token count recorded (floats hold integers exactly up to it).
_MAX_INT = 2**53

#: Samples folded into a histogram in one piece (about a millisecond of NumPy)
#: before the interpreter is yielded to the training thread.
_FOLD_CHUNK = 1 << 16


class StepRecord(NamedTuple):
    """What one ``log_training_step`` call handed to the background worker."""

    step: int
    timestamp: float
    values: dict[str, float]
    custom: dict[str, float]  # keyword -> number, keywords admitted as custom metrics
    rewards: Any  # a copy of the per-sample rewards (list, ndarray) or None
    duration: float | None
    memory: tuple[int, int, int] | None = None  # MLX active, cache, step peak (bytes)


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
        exporter = self.config.exporter
        self.output_dir = Path(self.config.monitoring.output_dir)

        # Hot-path state: plain Python objects the scrape thread only reads.
        self._latest: dict[str, float] = {}
        # keyword -> stored key ("custom/<sanitised>"), or "" once refused
        self._custom_keys: dict[str, str] = {}
        self._admitted_custom: frozenset[str] = frozenset()
        # Latest values: applied by the worker from step records, and a view
        # (those plus steps not yet drained) built at the start of each scrape.
        self._latest_lock = threading.Lock()
        self._view: dict[str, float] = {}
        self._max_custom = exporter.max_custom_metrics
        self._tokens = {"thinking": 0, "answer": 0}
        self._steps = 0
        self._last_call: float | None = None
        self._reward_buffer: deque[Any] = deque()
        self._duration_buffer: deque[float] = deque()
        # Plain tuples in StepRecord's field order: a NamedTuple costs 0.3 µs
        # more to build on the training thread; the worker makes StepRecords.
        self._records: deque[tuple[Any, ...]] = deque()
        self._max_records = self.config.monitoring.queue_size * 8
        # Buffers of samples waiting to be folded (by the worker or a scrape):
        # bounded, what falls out is counted in mlx_otel_worker_dropped_total.
        self._max_durations = self._max_records * 8  # plain floats: 2 MB at the default
        self._layer_norms: dict[str, float] = {}
        self._max_layer_series = exporter.max_layer_series
        self._errors: dict[str, int] = {kind: 0 for kind in ERROR_KINDS}
        self._dropped: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()
        self._error_lock = threading.Lock()
        self._fold_lock = threading.Lock()
        self._closed = False
        trainer = self.config.trainer
        self._read_memory = True
        self._reset_peak = trainer.reset_peak_each_step
        self._step_peak: int | None = None
        self._unhealthy = False
        self.memory_profiler = MemoryProfiler(
            alert_threshold_mb=trainer.memory_safety_threshold_mb,
            leak_detection_window=trainer.leak_detection_window,
            reset_peak_each_step=False,  # the monitor resets it on the training thread
            max_blocks=exporter.max_memory_blocks,
        )

        port = exporter.port
        if port and self.rank is not None:
            local = os.environ.get("MLX_LOCAL_RANK", os.environ.get("LOCAL_RANK"))
            port += int(local) if local and local.isdigit() else self.rank
        layer_cap = exporter.max_layer_series
        self.telemetry = Telemetry(
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
            cardinality_limit=max(layer_cap, self._max_custom, exporter.max_memory_blocks, 64) + 8,
        )
        self._memory = _MemoryReader(self)
        self._register_instruments()
        self.telemetry.start()
        self._reward_histogram = BulkHistogram(by_key("reward"))
        self._duration_histogram = BulkHistogram(by_key("step_duration"))
        labels = {"run_id": self.run_id, **({"rank": str(self.rank)} if self.rank is not None else {})}
        self.telemetry.registry.register(
            HistogramCollector([self._reward_histogram, self._duration_histogram], labels)
        )
        self.telemetry.before_collect(self._before_collect)

        self.wandb_logger = self._start_wandb()
        self.outputs = RunOutputs(
            self.config,
            run_id=self.run_id,
            start_time=self.start_time,
            profiler=self.memory_profiler,
            report_error=self._report_once,
            wandb_logger=self.wandb_logger,
        )
        self.worker = BackgroundWorker(
            maxlen=self.config.monitoring.queue_size,
            on_drop=self._count_drop,
            on_error=self._worker_error,
        )
        self.worker.add_periodic("fold", self._fold_buffers)
        self.worker.add_periodic("records", self._drain_records)

        self.endpoint: str | None = None
        if serve if serve is not None else exporter.enabled:
            self.endpoint = self.telemetry.serve()
            log.info("mlx_otel: serving metrics of run %s at %s", self.run_id, self.endpoint)
        # Finished on SIGTERM and at interpreter exit unless cleanup() runs first.
        lifecycle.register(self)

    # -- instruments -------------------------------------------------------
    def _register_instruments(self) -> None:
        t = self.telemetry

        def scalar(key: str, scale: float = 1.0) -> Any:
            def read() -> Reading:
                value = self._view.get(key)
                return () if value is None else ((value * scale, {}),)

            return read

        for key, source_key, scale in (
            ("step", "step", 1.0),
            ("loss", "loss", 1.0),
            ("reward_mean", "reward_mean", 1.0),
            ("grad_norm", "grad_norm", 1.0),
            ("learning_rate", "learning_rate", 1.0),
            ("memory_allocated", "memory_allocated_mb", float(1 << 20)),
        ):
            t.observe(by_key(key), scalar(source_key, scale))
        t.observe(by_key("steps"), lambda: ((self._steps, {}),))
        t.observe(by_key("tokens"), lambda: [(v, {"kind": k}) for k, v in self._tokens.items()])
        t.observe(by_key("custom"), self._read_custom)
        t.observe(
            by_key("layer_grad_norm"),
            lambda: [(v, {"layer": k}) for k, v in self._layer_norms.items()],
        )
        t.observe(by_key("errors"), lambda: [(v, {"kind": k}) for k, v in self._errors.items()])
        t.observe(
            by_key("dropped_tasks"), lambda: [(v, {"task": k}) for k, v in self._dropped.items()]
        )
        for key in self._memory.KEYS:
            t.observe(by_key(key), self._memory.reader(key))
        t.observe(by_key("memory_block_delta"), lambda: self._memory.read_blocks("last_delta_bytes"))
        t.observe(by_key("memory_block_peak"), lambda: self._memory.read_blocks("last_peak_bytes"))

    def _read_custom(self) -> Reading:
        view = self._view
        return [
            (value, {"name": key[len(_CUSTOM_PREFIX) :]})
            for key, value in view.items()
            if key.startswith(_CUSTOM_PREFIX)
        ]

    # -- the latest values -------------------------------------------------
    def _apply(self, latest: dict[str, float], record: StepRecord) -> None:
        """Fold one step record into a latest-values mapping."""
        latest.update(record.values)
        latest["step"] = record.step
        if record.custom:
            keys = self._custom_keys
            for key, value in record.custom.items():
                latest[keys[key]] = value

    def _refresh_view(self) -> None:
        """Latest values for a scrape: what the worker applied plus pending steps."""
        with self._latest_lock:
            view = dict(self._latest)
            for fields in list(self._records):
                self._apply(view, StepRecord._make(fields))
        self._view = view

    def _before_collect(self) -> None:
        self._refresh_view()
        self._fold_buffers()

    # -- the hot path --------------------------------------------------------
    if TYPE_CHECKING:  # the documented signature, for type checkers and IDEs

        def log_training_step(
            self,
            step: int,
            loss: float = ...,
            reward: float = ...,
            grad_norm: float = ...,
            learning_rate: float = ...,
            thinking_tokens: int = ...,
            answer_tokens: int = ...,
            memory_allocated_mb: float = ...,
            rewards: Sequence[float] = ...,
            step_time: float = ...,
            **custom: float,
        ) -> None: ...

    def log_training_step(self, step: Any = _MISSING, /, **custom: Any) -> None:  # type: ignore[no-redef]
        """Record one training step; costs microseconds and never blocks.

        ``log_training_step(step, loss=, reward=, grad_norm=, learning_rate=,
        thinking_tokens=, answer_tokens=, memory_allocated_mb=, rewards=,
        step_time=, **custom)``. Scalars may be Python, NumPy or MLX numbers
        (0-d arrays too). Values that are not numbers are counted in
        ``mlx_otel_errors_total`` and logged once per key; NaN and inf are
        recorded as they are. Extra keywords become custom metrics
        (``mlx_train_custom{name=...}``).
        """
        # The parameters are taken from **custom on purpose: CPython matches
        # every extra keyword against each named parameter, which cost more
        # (about 1 µs for 13 custom metrics) than popping them here.
        pop = custom.pop
        if step is _MISSING:
            step = pop("step", _MISSING)
            if step is _MISSING:
                raise TypeError("log_training_step() needs the step: log_training_step(step=...)")
        loss = pop("loss", _MISSING)
        reward = pop("reward", _MISSING)
        grad_norm = pop("grad_norm", _MISSING)
        learning_rate = pop("learning_rate", _MISSING)
        thinking_tokens = pop("thinking_tokens", _MISSING)
        answer_tokens = pop("answer_tokens", _MISSING)
        memory_allocated_mb = pop("memory_allocated_mb", _MISSING)
        rewards = pop("rewards", _MISSING)
        step_time = pop("step_time", _MISSING)
        try:
            now = time.perf_counter()
            values: dict[str, float] = {}
            # Unrolled on purpose: this runs every step and a loop over a
            # tuple of pairs costs more than the checks themselves.
            if loss.__class__ is float:
                values["loss"] = loss
            elif loss is not _MISSING:
                self._store_slow(values, "loss", loss)
            if reward.__class__ is float:
                values["reward_mean"] = reward
            elif reward is not _MISSING:
                self._store_slow(values, "reward_mean", reward)
            if grad_norm.__class__ is float:
                values["grad_norm"] = grad_norm
            elif grad_norm is not _MISSING:
                self._store_slow(values, "grad_norm", grad_norm)
            if learning_rate.__class__ is float:
                values["learning_rate"] = learning_rate
            elif learning_rate is not _MISSING:
                self._store_slow(values, "learning_rate", learning_rate)
            if memory_allocated_mb.__class__ is float:
                values["memory_allocated_mb"] = memory_allocated_mb
            elif memory_allocated_mb is not _MISSING:
                self._store_slow(values, "memory_allocated_mb", memory_allocated_mb)
            tokens = self._tokens
            if thinking_tokens.__class__ is int and 0 <= thinking_tokens <= _MAX_INT:
                tokens["thinking"] += thinking_tokens
                values["thinking_tokens"] = thinking_tokens
            elif thinking_tokens is not _MISSING:
                self._count_slow(values, "thinking", thinking_tokens)
            if answer_tokens.__class__ is int and 0 <= answer_tokens <= _MAX_INT:
                tokens["answer"] += answer_tokens
                values["answer_tokens"] = answer_tokens
            elif answer_tokens is not _MISSING:
                self._count_slow(values, "answer", answer_tokens)
            if custom and not (
                custom.keys() <= self._admitted_custom
                and set(map(type, custom.values())) <= _PLAIN_NUMBERS
            ):
                custom = self._custom_slow(custom)
            if step.__class__ is not int or not -_MAX_INT <= step <= _MAX_INT:
                step = self._to_step(step)
            if step_time is not _MISSING:
                duration = self._to_float("step_time", step_time)
            elif self._last_call is not None:
                duration = now - self._last_call
            else:
                duration = None
            self._last_call = now
            if duration is not None:
                values["step_time"] = duration
                durations = self._duration_buffer
                if len(durations) >= self._max_durations:  # bounded: the worker fell behind
                    durations.popleft()
                    self._count_drop("step_duration")
                durations.append(duration)
            chunk = None
            if rewards is not _MISSING:
                # Copy now: the caller may reuse its list or buffer next step.
                chunk = rewards[:] if rewards.__class__ is list else self._copy_samples(rewards)
                if chunk is not None:
                    buffer = self._reward_buffer
                    if len(buffer) >= self._max_records:
                        buffer.popleft()
                        self._count_drop("rewards")
                    buffer.append(chunk)
            memory = None
            if self._read_memory:
                # MLX's counters at the step boundary, for leak detection; the
                # profiler carries the peak across MemoryMonitor blocks.
                memory = self.memory_profiler.end_step(reset_peak=self._reset_peak)
                self._step_peak = memory[2]
            self._steps += 1
            records = self._records
            if len(records) >= self._max_records:
                records.popleft()
                self._count_drop("step_record")
            records.append((step, time.time(), values, custom, chunk, duration, memory))
        except Exception as exc:  # monitoring never kills training
            if self.strict:
                raise
            self._report("log_training_step", exc, "invalid_value")

    # -- validation (off the fast path) -------------------------------------
    def _custom_slow(self, custom: dict[str, Any]) -> dict[str, float]:
        """Admit new custom keywords and convert values that are not plain numbers."""
        checked: dict[str, float] = {}
        keys = self._custom_keys
        for key, value in custom.items():
            stored = keys.get(key)
            if stored is None:
                stored = self._admit_custom(key)
            if not stored:
                continue  # refused (counted when first seen)
            if value.__class__ is not float:
                value = self._to_float(key, value)
                if value is None:
                    continue
            checked[key] = value
        return checked

    def _store_slow(self, values: dict[str, float], key: str, value: Any) -> None:
        number = self._to_float(key, value)
        if number is not None:
            values[key] = number

    def _count_slow(self, values: dict[str, float], kind: str, value: Any) -> None:
        count = self._to_count(kind, value)
        if count is None:
            return
        if count < 0:
            self._reject(f"{kind}_tokens", value, "negative_count")
            return
        self._tokens[kind] += count
        values[f"{kind}_tokens"] = count

    def _to_float(self, key: str, value: Any) -> float | None:
        try:
            if value is None or isinstance(value, (str, bytes)):
                raise TypeError
            if hasattr(value, "item") and getattr(value, "size", 1) == 1:
                value = value.item()  # NumPy / MLX scalars and 0-d arrays
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            self._reject(key, value, "invalid_value")
            return None
        return number

    def _to_count(self, kind: str, value: Any) -> int | None:
        number = self._to_float(f"{kind}_tokens", value)
        if number is None:
            return None
        if not math.isfinite(number) or number != int(number) or number > _MAX_INT:
            self._reject(f"{kind}_tokens", value, "invalid_value")
            return None
        return int(number)

    def _to_step(self, value: Any) -> int:
        number = self._to_float("step", value)
        if number is None:
            return self._steps
        if not math.isfinite(number) or abs(number) > _MAX_INT:
            self._reject("step", value, "invalid_value")
            return self._steps
        return int(number)

    def _copy_samples(self, samples: Any) -> Any:
        if isinstance(samples, np.ndarray) and samples.dtype.kind in "biuf":
            return samples.ravel().copy()
        if isinstance(samples, tuple):
            return list(samples)
        try:
            # MLX arrays: convert on this thread, where the array was made.
            return as_samples(samples)
        except ValueError:
            self._reject("rewards", samples, "invalid_value")
            return None

    def _admit_custom(self, key: str) -> str:
        """The stored key (``custom/<name>``) of a new custom metric, or "" if refused."""
        name = _NAME_RE.sub("_", key).strip("_").lower()[:64]
        admitted = sum(1 for v in self._custom_keys.values() if v)
        stored = ""
        if not name:
            self._reject(key, key, "invalid_value")
        elif admitted >= self._max_custom:
            self._report_once(
                "custom_metric_cap",
                key,
                f"custom metric {key!r} not exported: the cap of {self._max_custom} custom "
                "metrics is reached (raise exporter.max_custom_metrics)",
            )
        else:
            stored = f"{_CUSTOM_PREFIX}{name}"
            self._admitted_custom = self._admitted_custom | {key}
        self._custom_keys[key] = stored
        return stored

    def _reject(self, key: str, value: Any, kind: str) -> None:
        key = _ARGUMENT_NAMES.get(key, key)
        message = f"{key}={value!r} is not recorded: "
        message += (
            "a count cannot be negative"
            if kind == "negative_count"
            else "expected a number (int, float, NumPy or MLX scalar)"
        )
        if self.strict:
            raise ValueError(message)
        self._report_once(kind, key, message)

    def _report_once(self, kind: str, key: str, message: str) -> None:
        self._count_error(kind)
        if (kind, key) not in self._warned:
            self._warned.add((kind, key))
            log.warning("mlx_otel: %s (further occurrences are only counted)", message)

    def _report(self, what: str, exc: BaseException, kind: str) -> None:
        self._report_once(kind, what, f"{what} failed: {exc!r}")

    def _count_error(self, kind: str, amount: int = 1) -> None:
        with self._error_lock:
            self._errors[kind] = self._errors.get(kind, 0) + amount

    def _count_drop(self, task: str) -> None:
        with self._error_lock:
            self._dropped[task] = self._dropped.get(task, 0) + 1

    def _worker_error(self, task: str, exc: BaseException) -> None:
        kind = "wandb" if "wandb" in task else "worker"
        self._report_once(kind, task, f"background task {task!r} failed: {exc!r}")

    def _step_due(self, step: Any, every: int) -> bool:
        """Whether ``step`` falls on the cadence; a step that is not a number is counted."""
        try:
            return step % every == 0  # type: ignore[no-any-return]
        except TypeError:
            self._reject("step", step, "invalid_value")
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
            norms = layer_grad_norms(grads, max_series=self._max_layer_series)
        except Exception as exc:
            self._report("log_gradients", exc, "invalid_value")
            if self.strict:
                raise
            return None
        self._layer_norms = norms.per_layer  # replaced whole: the scrape sees one step
        # The global norm is mlx_train_grad_norm (a grad_norm= logged later wins).
        with self._latest_lock:
            self._latest["grad_norm"] = norms.global_norm
        if self.wandb_logger is not None or self.config.monitoring.generate_charts_every:
            per_layer = norms.per_layer
            self.worker.submit("gradients", lambda: self.outputs.handle_gradients(step, per_layer))
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
            if self.wandb_logger is not None:
                self.worker.submit(
                    "wandb_alert",
                    lambda: self.wandb_logger.alert(
                        title="MLX memory unhealthy", text=f"run {self.run_id}: {message}",
                        level="WARN",
                    ),
                )
        self._unhealthy = not healthy
        return healthy, message

    def generate_charts(self, step: int | None = None) -> Future[dict[str, Path]]:
        """Render the seed's charts for ``step`` on the background worker.

        Returns at once; the Future's result maps chart kinds to PNG paths.
        """
        return self.worker.submit("charts", lambda: self.outputs.render_charts(step))

    def checkpoint(self, step: int, path: str | Path | None = None) -> Future[Any]:
        """Mark a checkpoint: charts (if ``generate_at_checkpoints``) and a WandB artifact."""
        def work() -> Any:
            result = None
            if self.config.monitoring.generate_at_checkpoints:
                result = self.outputs.render_charts(step)
            if path is not None and self.wandb_logger is not None:
                self.wandb_logger.log_checkpoint(path, metadata={"step": step})
            return result

        return self.worker.submit("checkpoint", work)

    def export_all(self) -> dict[str, Path]:
        """Write every output file (statistics, CSV/JSON, summary, charts).

        Waits for the background worker to catch up first; files are written
        atomically. Failures are reported and counted, never raised.
        """
        self.worker.flush()
        try:
            written = self.outputs.export_all()
        except Exception as exc:
            self._report("export_all", exc, "export")
            if self.strict:
                raise
            return {}
        log.info("mlx_otel: wrote %d files under %s", len(written), self.output_dir)
        return written

    def _start_wandb(self) -> Any:
        monitoring = self.config.monitoring
        if not monitoring.use_wandb or monitoring.wandb_mode == "disabled":
            return None
        from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger

        logger = EnhancedWandBLogger.from_config(
            monitoring,
            name=monitoring.wandb_run_name or self.run_id,
            key_groups=WANDB_KEY_GROUPS,
            config={"run_id": self.run_id, **self.config.model_dump(mode="json")},
            dir=str(self.output_dir),
            on_error=lambda kind: self._count_error("wandb"),
        )
        return logger if logger.enabled else None

    # -- off the training thread --------------------------------------------
    def _fold_buffers(self) -> None:
        """Fold buffered samples into the histograms, in bounded NumPy pieces."""
        with self._fold_lock:
            non_finite = invalid = 0
            durations = self._duration_buffer
            if durations:
                count = len(durations)
                values = np.fromiter(
                    (durations.popleft() for _ in range(count)), dtype=np.float64, count=count
                )
                finite = np.isfinite(values)
                non_finite += count - int(np.count_nonzero(finite))
                values = values[finite]
                negative = values < 0  # a step_time= below zero
                invalid += int(np.count_nonzero(negative))
                self._duration_histogram.record_many(values[~negative])
            buffer = self._reward_buffer
            while buffer:
                pieces = []
                size = 0
                while buffer and size < _FOLD_CHUNK:
                    samples = buffer.popleft()
                    try:
                        chunk = as_samples(samples)
                    except ValueError:
                        # A list is copied unchecked on the training thread:
                        # ragged, text or huge-int rewards are found here.
                        invalid += 1
                        continue
                    pieces.append(chunk)
                    size += chunk.size
                if pieces:
                    values = np.concatenate(pieces)
                    finite = np.isfinite(values)
                    non_finite += values.size - int(np.count_nonzero(finite))
                    self._reward_histogram.record_many(values[finite])
                if buffer:
                    time.sleep(0)  # let the training thread run between pieces
            if non_finite:
                self._count_error("non_finite", non_finite)
            if invalid:
                self._report_once(
                    "invalid_value", "rewards", "rewards or step_time that are not numbers "
                    "(ragged, text, negative or huge values) are left out of the histograms",
                )
                if invalid > 1:
                    self._count_error("invalid_value", invalid - 1)

    def _drain_records(self) -> None:
        records = self._records
        batch = []
        keys = self._custom_keys
        with self._latest_lock:
            while records:
                record = StepRecord._make(records.popleft())
                self._apply(self._latest, record)
                if record.custom:
                    # Sinks see custom metrics under their stored names.
                    values = dict(record.values)
                    for key, value in record.custom.items():
                        values[keys[key]] = float(value)
                    record = record._replace(values=values, custom={})
                batch.append(record)
        if not batch:
            return
        self.outputs.handle(batch)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until the background worker has handled everything logged so far."""
        return self.worker.flush(timeout)

    # -- public extras -------------------------------------------------------
    @property
    def steps_logged(self) -> int:
        """How many ``log_training_step`` calls were recorded."""
        return self._steps

    def error_counts(self) -> dict[str, int]:
        """``mlx_otel_errors_total`` by kind, as served."""
        with self._error_lock:
            return {k: v for k, v in self._errors.items() if v}

    def submit(self, name: str, task: Any) -> Future[Any]:
        """Run ``task`` on the background worker; returns a Future."""
        return self.worker.submit(name, task)

    def cleanup(self) -> None:
        """Finish background work, close WandB and stop serving; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        lifecycle.unregister(self)
        self.worker.close()
        try:
            self.outputs.close()
        except Exception as exc:
            self._report("closing WandB", exc, "wandb")
        url = self.config.exporter.pushgateway_url
        if url:
            try:
                self.telemetry.push(url)
                log.info("mlx_otel: pushed the final values of run %s to %s", self.run_id, url)
            except Exception as exc:
                self._report(f"pushing to the Pushgateway at {url}", exc, "export")
        self.telemetry.shutdown()

    def __enter__(self) -> TrainingMonitor:
        return self

    def finish_run(self) -> None:
        """Write the output files (if any step was logged), then :meth:`cleanup`.

        What the end of a ``with`` block does; also run on SIGTERM and at
        interpreter exit for a monitor that was not cleaned up.
        """
        if self._closed:
            return
        if self._steps:
            self.export_all()
        self.cleanup()

    def __exit__(self, *exc: object) -> None:
        self.finish_run()


def _documented_signature() -> inspect.Signature:
    P = inspect.Parameter
    named = ["loss", "reward", "grad_norm", "learning_rate", "thinking_tokens",
             "answer_tokens", "memory_allocated_mb", "rewards", "step_time"]  # fmt: skip
    return inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("step", P.POSITIONAL_OR_KEYWORD)]
        + [P(name, P.KEYWORD_ONLY, default=None) for name in named]
        + [P("custom", P.VAR_KEYWORD)]
    )


# help() and IDEs that introspect show the real parameters.
TrainingMonitor.log_training_step.__signature__ = _documented_signature()  # type: ignore[attr-defined]

#: The seed's name for the monitor.
MonitoringManager = TrainingMonitor


class _MemoryReader:
    """MLX and process memory, read once per scrape for all memory gauges."""

    KEYS = (
        "memory_active",
        "memory_cache",
        "memory_peak",
        "memory_limit",
        "memory_threshold",
        "system_memory_available",
        "system_memory_total",
        "process_resident_memory",
        "memory_leak_slope",
        "memory_leak_slope_per_step",
    )

    def __init__(self, monitor: TrainingMonitor) -> None:
        self._monitor = monitor
        self._values: dict[str, float] = {}
        self._blocks: dict[str, Any] = {}
        self._read_at = 0.0
        self._lock = threading.Lock()

    def read_all(self) -> dict[str, float]:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at > 0.25:
                self._values = self._read()
                self._read_at = now
            return self._values

    def _read(self) -> dict[str, float]:
        monitor = self._monitor
        profiler = monitor.memory_profiler
        # read_snapshot never raises: what cannot be read is NaN and left out.
        snapshot = profiler.read_snapshot()
        step_peak = monitor._step_peak
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
        values = {key: value for key, value in readings.items() if math.isfinite(value)}
        if len(values) < len(readings):
            missing = sorted(set(readings) - set(values))
            monitor._report_once("collection", "memory", f"could not read {', '.join(missing)}")
        values["memory_threshold"] = self._monitor.config.trainer.memory_safety_threshold_mb * (1 << 20)
        try:
            report = self._monitor.memory_profiler.leak_report()
            if math.isfinite(report.slope_mb_per_step):
                values["memory_leak_slope_per_step"] = report.slope_bytes_per_step
                values["memory_leak_slope"] = report.slope_bytes_per_second
            self._blocks = self._monitor.memory_profiler.block_stats()
        except Exception as exc:
            self._monitor._report("leak detection", exc, "collection")
        return values

    def read_blocks(self, attribute: str) -> Reading:
        self.read_all()
        return [(getattr(b, attribute), {"block": name}) for name, b in self._blocks.items()]

    def reader(self, key: str) -> Any:
        def read() -> Iterable[tuple[float, dict[str, str]]]:
            value = self.read_all().get(key)
            return () if value is None else ((value, {}),)

        return read
