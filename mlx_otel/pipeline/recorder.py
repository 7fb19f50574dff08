"""The training thread's side of the monitor: store values, buffer samples, queue records.

:meth:`StepRecorder.record` is the body of ``log_training_step``. It costs
microseconds: it keeps the step's values, appends the per-sample rewards and
the step duration to bounded buffers and queues one plain tuple for the
background worker. :meth:`StepRecorder.record_report` takes a trainer
integration's :class:`~mlx_otel.records.TrainerReport` the same way.
Everything slow happens elsewhere: :meth:`fold` records buffered samples into
histograms (before each scrape and on the worker), and the
:class:`~mlx_otel.pipeline.step_queue.StepQueue` (:meth:`drain`) turns queued
tuples into :class:`~mlx_otel.records.StepRecord` batches for the sinks.
A GRPO step's per-completion lists are only copied here; the
:class:`~mlx_otel.pipeline.completions.CompletionLog` judges them once, when
the step is first served or drained, and scores spikes as the worker drains.

The recorder is also where the instruments read the values it holds
(:meth:`StepRecorder.value`, :meth:`StepRecorder.series`), by the names the
catalogue's ``read_from`` gives. The keywords of ``log_training_step`` are
declared once, in :data:`~mlx_otel.pipeline.step_arguments.STEP_ARGUMENTS`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlx_otel.catalog import METRICS, Source
from mlx_otel.config.settings import RLSection
from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.pipeline.admission import Admission
from mlx_otel.pipeline.completions import CompletionLog
from mlx_otel.pipeline.completions import copy as copy_completions
from mlx_otel.pipeline.samples import SampleBuffers
from mlx_otel.pipeline.step_arguments import MISSING
from mlx_otel.pipeline.step_queue import StepQueue
from mlx_otel.records import (
    Completions,
    StepRecord,
    TrainerReport,
    to_numbers,
)

__all__ = ["StepRecorder"]


#: Custom value types stored without conversion (bool is not one: it is
#: checked; nor int: a huge int would overflow every float reader).
_PLAIN_NUMBERS = frozenset({float})
#: Largest step or token count recorded (floats hold integers exactly up to it).
_MAX_INT = 2**53
#: Catalogue keys a trainer report may carry: the recorder's metrics that are
#: neither histograms nor counted here (steps, tokens, custom, gradients).
_REPORTABLE = {
    m.key: m
    for m in METRICS
    if m.source in (Source.STEP, Source.TRAINER)
    and m.read_from == m.key
    and m.buckets is None
    and m.key not in ("steps", "step", "tokens", "custom", "anomaly_score", "anomalies")
}
#: Trainer metrics ``log_training_step`` also takes by their key (labelled ones
#: as a mapping of label values to numbers), as a trainer report carries them.
_TRAINER_KEYWORDS = {k: m for k, m in _REPORTABLE.items() if m.source is Source.TRAINER}
_NO_LABELS: Mapping[str, Mapping[str, float]] = {}


class StepRecorder:
    """Latest values, token counts and bounded sample buffers of one run.

    ``max_records`` bounds the queue of steps not yet handed to the worker
    and the two sample buffers (in steps); beyond it the oldest entry is
    dropped and counted (``mlx_otel_worker_dropped_total{task}``).
    """

    def __init__(
        self,
        *,
        ledger: ErrorLedger,
        profiler: MemoryProfiler,
        max_custom: int,
        max_records: int,
        reset_peak: bool = False,
        read_memory: bool = True,
        strict: bool = False,
        started: float | None = None,
        rl: RLSection | None = None,
    ) -> None:
        self._ledger = ledger
        self._profiler = profiler
        self._max_records = max_records
        self._reset_peak = reset_peak
        self._read_memory = read_memory
        # Hot-path state: plain Python objects the scrape thread only reads.
        self.tokens = {"thinking": 0, "answer": 0}
        self.steps = 0
        self.step_peak: int | None = None
        self._last_call: float | None = None
        #: Custom names and label values admitted so far; the refusal of the rest.
        self.admission = Admission(ledger=ledger, max_custom=max_custom, strict=strict)
        self.samples = SampleBuffers(ledger=ledger, max_samples=max_records)
        # Labelled values stored outside steps (the layers' gradient norms).
        self._series: dict[str, Mapping[str, float]] = {}
        # Completions: copied on the training thread, judged once off it.
        self._completions = CompletionLog(
            RLSection() if rl is None else rl, ledger=ledger,
            reject=lambda key, value, kind, reason: self.admission.reject(key, value, kind, reason),
        )  # fmt: skip
        self._group_size = self._completions.group_size
        #: The steps queued for the worker and the latest values they give.
        self.queue = StepQueue(admission=self.admission, completions=self._completions,
                               started=started)  # fmt: skip
        # Plain tuples in StepRecord's field order (see StepQueue), appended here.
        self._records = self.queue.records

    @property
    def strict(self) -> bool:
        """Raise on bad input instead of counting it (tests, debugging)."""
        return self.admission.strict

    @strict.setter
    def strict(self, strict: bool) -> None:
        self.admission.strict = strict

    def fold_into(self, histograms: Mapping[str, Callable[[np.ndarray], None]]) -> None:
        """Where :meth:`fold` records buffered samples, by buffer: ``rewards``,
        ``durations`` and ``completion_lengths`` (finite float64 arrays, e.g.
        :meth:`~mlx_otel.exporter.histograms.BulkHistogram.record_many`); other
        names are not the recorder's."""
        names = SampleBuffers.NAMES
        self.samples.fold_into({k: v for k, v in histograms.items() if k in names})

    # -- what the instruments read ------------------------------------------------
    def value(self, key: str) -> float | None:
        """The latest value stored under ``key`` (a catalogue ``read_from``), or None."""
        if key == "steps":
            return self.steps
        return self.view.get(key)

    def series(self, key: str) -> Mapping[str, float]:
        """The latest labelled values under ``key``: label value -> number."""
        if key == "tokens":
            listed = self._completions.tokens
            if not (listed["thinking"] or listed["answer"]):
                return self.tokens
            tokens = self.tokens
            return {"thinking": tokens["thinking"] + listed["thinking"],
                    "answer": tokens["answer"] + listed["answer"]}  # fmt: skip
        if key == "custom":
            return self.custom_view
        stored = self._series.get(key)
        return stored if stored is not None else self.labelled_view.get(key, {})

    def set_series(self, key: str, values: Mapping[str, float]) -> None:
        """Replace labelled values that do not come from a step (layer gradient norms)."""
        self._series[key] = values  # replaced whole: a scrape sees one version

    # -- the hot path ----------------------------------------------------------
    def record(
        self, step: Any, custom: dict[str, Any], timings: Mapping[str, float] | None = None
    ) -> None:
        """One ``log_training_step(step, **custom)`` call; named arguments are popped.

        The names popped here are those of :data:`STEP_ARGUMENTS` (a test holds them equal).
        ``timings`` are the step's phase times (``timing/<phase>``), stored as they are.
        """
        # The parameters are taken from **custom on purpose: CPython matches
        # every extra keyword against each named parameter, which cost more
        # (about 1 µs for 13 custom metrics) than popping them here.
        pop = custom.pop
        if step is MISSING:
            step = pop("step", MISSING)
            if step is MISSING:
                raise TypeError("log_training_step() needs the step: log_training_step(step=...)")
        loss = pop("loss", MISSING)
        reward = pop("reward", MISSING)
        grad_norm = pop("grad_norm", MISSING)
        learning_rate = pop("learning_rate", MISSING)
        thinking_tokens = pop("thinking_tokens", MISSING)
        answer_tokens = pop("answer_tokens", MISSING)
        memory_allocated_mb = pop("memory_allocated_mb", MISSING)
        rewards = pop("rewards", MISSING)
        step_time = pop("step_time", MISSING)
        try:
            now = time.perf_counter()
            values: dict[str, float] = {}
            # Unrolled on purpose: this runs every step and a loop over a
            # tuple of pairs costs more than the checks themselves.
            if loss.__class__ is float:
                values["loss"] = loss
            elif loss is not MISSING:
                self._store_slow(values, "loss", loss)
            if reward.__class__ is float:
                values["reward_mean"] = reward
            elif reward is not MISSING:
                self._store_slow(values, "reward_mean", reward)
            if grad_norm.__class__ is float:
                values["grad_norm"] = grad_norm
            elif grad_norm is not MISSING:
                self._store_slow(values, "grad_norm", grad_norm)
            if learning_rate.__class__ is float:
                values["learning_rate"] = learning_rate
            elif learning_rate is not MISSING:
                self._store_slow(values, "learning_rate", learning_rate)
            if memory_allocated_mb.__class__ is float:
                values["memory_allocated_mb"] = memory_allocated_mb
            elif memory_allocated_mb is not MISSING:
                self._store_slow(values, "memory_allocated_mb", memory_allocated_mb)
            tokens = self.tokens
            thinking = answer = None  # per-completion counts
            if thinking_tokens.__class__ is int and 0 <= thinking_tokens <= _MAX_INT:
                tokens["thinking"] += thinking_tokens
                values["thinking_tokens"] = thinking_tokens
            elif thinking_tokens is not MISSING:
                thinking = self._count_slow(values, "thinking", thinking_tokens)
            if answer_tokens.__class__ is int and 0 <= answer_tokens <= _MAX_INT:
                tokens["answer"] += answer_tokens
                values["answer_tokens"] = answer_tokens
            elif answer_tokens is not MISSING:
                answer = self._count_slow(values, "answer", answer_tokens)
            rl = None
            labelled: Mapping[str, Mapping[str, float]] = _NO_LABELS
            if custom and not (
                custom.keys() <= self.admission.admitted_custom
                and _PLAIN_NUMBERS.issuperset(map(type, custom.values()))
            ):
                # RL keywords are never admitted as custom names, so a step
                # that has them comes here: a scalar-only step never pops them.
                group_size = pop("group_size", MISSING)
                completion_lengths = pop("completion_lengths", MISSING)
                truncated = pop("truncated", MISSING)
                correct = pop("correct", MISSING)
                entropy = pop("entropy", MISSING)
                kl = pop("kl", MISSING)
                validation_reward = pop("validation_reward", MISSING)
                if entropy.__class__ is float and entropy == entropy:  # NaN is refused
                    values["entropy"] = entropy
                elif entropy is not MISSING:
                    self._store_slow(values, "entropy", entropy)
                if kl.__class__ is float:
                    values["kl"] = kl
                elif kl is not MISSING:
                    self._store_slow(values, "kl", kl)
                if validation_reward is not MISSING:
                    self._store_slow(values, "validation_reward", validation_reward)
                if not (
                    group_size is MISSING
                    and completion_lengths is MISSING
                    and truncated is MISSING
                    and correct is MISSING
                ):
                    rl = self._completions.new(group_size, completion_lengths, truncated, correct)
                if custom:
                    trainer_values: dict[str, Mapping[str, float]] = {}
                    custom = self._custom_slow(custom, values, trainer_values)
                    labelled = trainer_values
            if thinking is not None or answer is not None:
                rl = self._with_tokens(rl, thinking, answer)
            if step.__class__ is not int or not -_MAX_INT <= step <= _MAX_INT:
                step = self._to_step(step)
            if step_time is not MISSING:
                duration = self.admission.to_float("step_time", step_time)
            elif self._last_call is not None:
                duration = now - self._last_call
            else:
                duration = None
            self._last_call = now
            samples = self.samples
            # samples.add() and _buffer(), inlined while a buffer has room (the
            # usual case; 0.3 µs of a 5 µs step): the sample buffers were made
            # with the same bound as the step records.
            bound = self._max_records
            if duration is not None:
                values["step_time"] = duration
                if len(samples.durations) < bound:
                    samples.durations.append(duration)
                else:
                    samples.add(samples.durations, duration, "step_duration")
            chunk = None
            if rewards is not MISSING:
                # Copy now: the caller may reuse its list or buffer next step. A
                # tuple of floats, not a list: the garbage collector stops
                # tracking it, so thousands of queued steps do not make every
                # full collection (which holds the interpreter) longer.
                chunk = tuple(rewards) if rewards.__class__ is list else self._copy_samples(rewards)
                if chunk is not None:
                    if len(samples.rewards) < bound:
                        samples.rewards.append(chunk)
                    else:
                        samples.add(samples.rewards, chunk, "rewards")
                    if rl is None and self._group_size is not None:
                        rl = [None, None, None, None, None, None, None]  # groups by the config
            if timings:
                values.update(timings)
            if rl is not None:
                self._add_lengths(rl)
                if self.strict:
                    self._completions.check(chunk, rl)
            # _queue(), inlined: a call costs about 0.1 µs on this path.
            memory = None
            if self._read_memory:
                memory = self._profiler.end_step(reset_peak=self._reset_peak)
                self.step_peak = memory[2]
            self.steps += 1
            record = (step, time.time(), values, custom, chunk, duration, memory, labelled, rl)
            if len(self._records) < bound:  # _buffer(), inlined
                self._records.append(record)
            else:
                self._buffer(self._records, record, "step_record")
        except Exception as exc:  # monitoring never kills training
            if self.strict:
                raise
            self._ledger.report_exception("invalid_value", "log_training_step", exc)

    def record_report(
        self, report: TrainerReport, timings: Mapping[str, float] | None = None
    ) -> None:
        """One trainer report: a step whose values come by catalogue key.

        Values that are not numbers are counted as from ``log_training_step``;
        each labelled metric admits at most ``max_custom`` label values.
        ``timings`` are as for :meth:`record`.
        """
        try:
            now = time.perf_counter()
            values: dict[str, float] = {}
            for key, value in report.values.items():
                metric = _REPORTABLE.get(key)
                if metric is None or metric.labels:
                    raise ValueError(f"{key!r} is no unlabelled metric a trainer reports")
                self._store_slow(values, key, value)
            labelled: dict[str, dict[str, float]] = {}
            for key, series in report.labelled.items():
                metric = _REPORTABLE.get(key)
                if metric is None or not metric.labels:
                    raise ValueError(f"{key!r} is no labelled metric a trainer reports")
                stored = self.admission.labelled(key, series)
                if stored:
                    labelled[key] = stored
            custom = self._custom_slow(report.custom, values) if report.custom else {}
            chunk = rl = None
            if report.completions is not None:
                chunk, rl = self._completions_slow(report.completions, values)
            step = report.step
            if step.__class__ is not int or not -_MAX_INT <= step <= _MAX_INT:
                step = self._to_step(step)
            duration = None if self._last_call is None else now - self._last_call
            self._last_call = now
            if duration is not None:
                values["step_time"] = duration
                self.samples.add(self.samples.durations, duration, "step_duration")
            if timings:
                values.update(timings)
            self._queue(step, values, custom, chunk, duration, labelled, rl)
        except Exception as exc:  # monitoring never kills training
            if self.strict:
                raise
            self._ledger.report_exception("invalid_value", "trainer report", exc)

    def _queue(
        self,
        step: int,
        values: dict[str, float],
        custom: dict[str, float],
        chunk: Any,
        duration: float | None,
        labelled: Mapping[str, Mapping[str, float]],
        rl: Any = None,
    ) -> None:
        """Count the step and queue it for the worker."""
        memory = None
        if self._read_memory:
            # MLX's counters at the step boundary, for leak detection; the
            # profiler carries the peak across MemoryMonitor blocks.
            memory = self._profiler.end_step(reset_peak=self._reset_peak)
            self.step_peak = memory[2]
        self.steps += 1
        self._buffer(
            self._records,
            (step, time.time(), values, custom, chunk, duration, memory, labelled, rl),
            "step_record",
        )

    def _buffer(self, buffer: deque[Any], item: Any, task: str) -> None:
        if len(buffer) >= self._max_records:
            buffer.popleft()
            self._ledger.drop(task)
        buffer.append(item)

    # -- validation (off the fast path) -----------------------------------------
    def _custom_slow(
        self,
        custom: dict[str, Any],
        values: dict[str, float],
        labelled: dict[str, Mapping[str, float]] | None = None,
    ) -> dict[str, float]:
        """Admit new custom keywords and convert values that are not plain numbers.

        With ``labelled``, a keyword named after a catalogued trainer metric
        (``reward_std=``, ``validation_loss=``, ``reward_function_mean={"format": 0.3}``)
        is stored as that metric, as a trainer report would store it.
        """
        checked: dict[str, float] = {}
        names = self.admission.custom_names
        for key, value in custom.items():
            if labelled is not None and key in _TRAINER_KEYWORDS:
                self._trainer_keyword(values, labelled, key, value)
                continue
            name = names.get(key)
            if name is None:
                name = self.admission.custom_name(key)
            if not name:
                continue  # refused (counted when first seen)
            if value.__class__ is not float:
                value = self.admission.to_float(key, value)
                if value is None:
                    continue
            checked[key] = value
        return checked

    # -- RL completions (copied here; judged by the CompletionLog off this thread) ---
    def _completions_slow(
        self, completions: Completions, values: dict[str, float]
    ) -> tuple[Any, list[Any]]:
        """A report's completions as ``log_training_step`` takes the same keywords:
        (the rewards' copy, the step's completions)."""
        rewards = completions.rewards
        chunk = tuple(rewards) if rewards.__class__ is list else self._copy_samples(rewards)
        if chunk is not None:
            self.samples.add(self.samples.rewards, chunk, "rewards")
        thinking = answer = None
        if completions.thinking_tokens is not None:
            thinking = self._count_slow(values, "thinking", completions.thinking_tokens)
        if completions.answer_tokens is not None:
            answer = self._count_slow(values, "answer", completions.answer_tokens)
        given = [MISSING if v is None else v for v in (
            completions.group_size, completions.lengths, completions.truncated,
            completions.correct)]  # fmt: skip
        rl = self._with_tokens(self._completions.new(*given), thinking, answer)
        self._add_lengths(rl)
        if self.strict:
            self._completions.check(chunk, rl)
        return chunk, rl

    @staticmethod
    def _with_tokens(rl: list[Any] | None, thinking: Any, answer: Any) -> list[Any]:
        """The step's completions with per-completion token counts."""
        if rl is None:
            return [None, None, None, None, thinking, answer, None]
        rl[4], rl[5] = thinking, answer
        return rl

    def _add_lengths(self, rl: list[Any]) -> None:
        samples = self.samples
        if rl[1] is not None and samples.wants("completion_lengths"):
            samples.add(samples.completion_lengths, rl[1], "completion_lengths")

    def _trainer_keyword(
        self,
        values: dict[str, float],
        labelled: dict[str, Mapping[str, float]],
        key: str,
        value: Any,
    ) -> None:
        """Store a catalogued trainer value given to ``log_training_step`` by its key."""
        if not _TRAINER_KEYWORDS[key].labels:
            self._store_slow(values, key, value)
        elif isinstance(value, Mapping):
            stored = self.admission.labelled(key, value)
            if stored:
                labelled[key] = stored
        else:
            self.admission.reject(key, value, "invalid_value")

    def _store_slow(self, values: dict[str, float], key: str, value: Any) -> None:
        number = self.admission.to_float(key, value)
        if number is None:
            return
        if key == "entropy" and math.isnan(number):
            # NaN is a loss's signal; a NaN entropy is a bug in computing it.
            self.admission.reject(key, value, "invalid_value", "the policy's entropy is NaN")
            return
        values[key] = number

    def _count_slow(self, values: dict[str, float], kind: str, value: Any) -> Any:
        """Count a step's tokens; a per-completion list is copied, returned and
        counted with the step's completions (:meth:`CompletionLog.derive`)."""
        key = f"{kind}_tokens"
        if value.__class__ in (list, tuple) or (
            getattr(value, "ndim", 0) != 0 and getattr(value, "size", 1) != 1
        ):
            return copy_completions(value)
        number = self.admission.to_float(key, value)
        if number is None:
            return None
        if not math.isfinite(number) or number != int(number) or number > _MAX_INT:
            self.admission.reject(key, value, "invalid_value")
            return None
        if number < 0:
            self.admission.reject(key, value, "negative_count")
            return None
        self.tokens[kind] += int(number)
        values[key] = int(number)
        return None

    def _to_step(self, value: Any) -> int:
        number = self.admission.to_float("step", value)
        if number is None:
            return self.steps
        if not math.isfinite(number) or abs(number) > _MAX_INT:
            self.admission.reject("step", value, "invalid_value")
            return self.steps
        return int(number)

    def _copy_samples(self, samples: Any) -> Any:
        if isinstance(samples, np.ndarray) and samples.dtype.kind in "biuf":
            return samples.ravel().copy()
        # MLX arrays: convert on this thread, where the array was made.
        array = to_numbers(samples)
        if array is None:
            self.admission.reject("rewards", samples, "invalid_value")
        return array

    # -- off the training thread: the queue's side ---------------------------------
    def refresh_view(self) -> None:
        """Latest values for a scrape (see :meth:`StepQueue.refresh_view`)."""
        self.queue.refresh_view()

    @property
    def view(self) -> dict[str, float]:
        """The latest unlabelled values a scrape reads, by catalogue key."""
        return self.queue.view

    @property
    def custom_view(self) -> dict[str, float]:
        """The latest custom values a scrape reads, by sanitised name."""
        return self.queue.custom_view

    @property
    def labelled_view(self) -> dict[str, dict[str, float]]:
        """The latest labelled values a scrape reads: key -> label value -> number."""
        return self.queue.labelled_view

    def set_latest(self, key: str, value: float) -> None:
        """Store a value that does not come from a step (the global gradient norm)."""
        self.queue.set_latest(key, value)

    @property
    def pending(self) -> int:
        """Steps queued and not drained yet."""
        return len(self._records)

    def drain(self, limit: int | None = None) -> list[StepRecord]:
        """Queued steps as records (see :meth:`StepQueue.drain`)."""
        return self.queue.drain(limit)

    def fold(self) -> None:
        """Fold buffered samples into the histograms (see :class:`SampleBuffers`)."""
        self.samples.fold()
