"""Traces of training steps: a ``train.step`` span per logged step, a span per phase.

With ``OTEL_TRACES_EXPORTER=otlp`` (and the usual ``OTEL_EXPORTER_OTLP_*``
variables), each logged step becomes a ``train.step`` span (attributes
``step``, ``run_id``, ``rank``) from the previous step's log to this one, with
one child span per timed phase (``monitor.phase``), nested as the phases were.
A trace viewer (Jaeger, Tempo) then shows where each step's time went.

The training thread does not build spans. At ``log_training_step`` it hands
the step's phase times, already recorded by the phase timer, to a bounded
queue (:meth:`StepTracer.step_ended`, a clock read and an append). The
background worker turns them into finished spans with explicit start and end
times (:meth:`StepTracer.export_pending`) and gives them to the SDK's
``BatchSpanProcessor``, whose own thread exports them by OTLP. The spans are
built as the SDK's ``ReadableSpan`` directly: through a ``Tracer`` each cost
about 22 µs of the interpreter, directly about 2 µs, and a span that is
finished when it is made needs nothing a live span offers.

Trace and span ids come from a generator of their own, seeded by the
operating system: training scripts seed Python's ``random`` for
reproducibility, which would give two runs the same trace ids.

A collector that is down costs an export that fails on the processor's
thread: it is counted in ``mlx_otel_errors_total{kind="otlp"}``, and the end
of a run waits for the last export at most until its deadline.

    tracer = step_tracer(resource, run_id="run_001", rank=None, on_failure=print)
    if tracer is not None:
        tracer.step_ended(7, [("generate", 10.0, 10.5, 0)])   # on the training thread
        tracer.export_pending()                                # on the worker
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from mlx_otel.errors import ConfigError
from mlx_otel.exporter.otlp import OtlpSettings, traces_settings
from mlx_otel.records import to_number

__all__ = ["STEP_SPAN", "StepTracer", "step_tracer"]

#: The name of a logged step's span.
STEP_SPAN = "train.step"
#: A finished phase: (name, start, end, nesting depth), ``time.perf_counter()`` seconds.
Entry = tuple[str, float, float, int]
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("mlx_otel")
#: At most this long for the last export at the end of a run.
_CLOSE_SECONDS = 5.0


class _CountingSpanExporter(SpanExporter):
    """Delegates to the SDK's OTLP span exporter and reports exports that failed."""

    def __init__(self, inner: SpanExporter, on_failure: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_failure = on_failure

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter bug must not end the processor's thread
            self._on_failure(f"OTLP span export raised {exc!r}")
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._on_failure(
                f"the OTLP collector did not accept {len(spans)} spans (after the SDK's retries)"
            )
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class StepTracer:
    """Turns each logged step and its phases into spans, off the training thread.

    ``exporter`` is any SDK span exporter (OTLP in a run); ``max_pending``
    bounds the steps waiting for the worker (beyond, the oldest is dropped
    and counted by ``on_drop``). The worker runs ten times a second, so the
    default traces up to about 10,000 steps a second; a flood beyond that
    keeps the newest steps rather than let span building and export compete
    with training for the interpreter.
    """

    name = "traces"
    error_kind = "otlp"

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        resource: Resource,
        run_id: str,
        rank: int | None,
        on_failure: Callable[[str], None],
        on_drop: Callable[[str], None] = lambda task: None,
        max_pending: int = 1024,
        processor_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._resource = resource
        self._attributes = {"run_id": run_id, "rank": 0 if rank is None else rank}
        self._processor = BatchSpanProcessor(
            _CountingSpanExporter(exporter, on_failure), **dict(processor_options or {})
        )
        self._on_drop = on_drop
        self._max_pending = max(1, max_pending)
        self._pending: deque[tuple[Any, float, float, Sequence[Entry]]] = deque()
        self._ids = random.Random(os.urandom(16))
        # perf_counter seconds -> Unix nanoseconds, fixed once: spans of one run
        # keep their exact relative times.
        self._offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)
        self._previous = time.perf_counter()  # the first step begins with the run
        self._export_lock = threading.Lock()
        self._closed = False

    # -- the training thread -------------------------------------------------------
    def step_ended(self, step: Any, phases: Sequence[Entry]) -> None:
        """A step was logged now; ``phases`` are the phases finished during it."""
        if self._closed:  # steps logged after the end of the run are not traced
            return
        now = time.perf_counter()
        pending = self._pending
        if len(pending) >= self._max_pending:
            pending.popleft()
            self._on_drop("trace")
        pending.append((step, self._previous, now, phases))
        self._previous = now

    # -- the worker ------------------------------------------------------------------
    def export_pending(self) -> None:
        """Build the spans of the steps logged so far and queue them for export."""
        with self._export_lock:
            if self._closed:
                return
            pending = self._pending
            for _ in range(len(pending)):
                step, start, end, phases = pending.popleft()
                for span in self.spans(step, start, end, phases):
                    self._processor.on_end(span)

    def spans(
        self, step: Any, start: float, end: float, phases: Sequence[Entry]
    ) -> list[ReadableSpan]:
        """The step's span and its phases' spans (times in ``perf_counter`` seconds)."""
        if phases:
            start = min(start, min(entry[1] for entry in phases))
            end = max(end, max(entry[2] for entry in phases))
        bits = self._ids.getrandbits
        trace_id = bits(128) or 1
        step_context = SpanContext(trace_id, bits(64) or 1, False, _SAMPLED)
        attributes: dict[str, Any] = dict(self._attributes)
        number = to_number(step)
        if number is not None and number == number and abs(number) < 2**63:
            attributes["step"] = int(number)
        spans = [self._span(STEP_SPAN, step_context, None, attributes, start, end)]
        # Phases are recorded as they end: children before their parent. A
        # phase at depth d adopts the phases at depth d + 1 that ended since
        # the last phase at depth d; what is left over hangs off the step.
        contexts = [SpanContext(trace_id, bits(64) or 1, False, _SAMPLED) for _ in phases]
        parents: list[SpanContext] = [step_context] * len(phases)
        waiting: dict[int, list[int]] = {}
        for index, (_name, _start, _end, depth) in enumerate(phases):
            for child in waiting.pop(depth + 1, ()):
                parents[child] = contexts[index]
            waiting.setdefault(depth, []).append(index)
        for index, (name, phase_start, phase_end, _depth) in enumerate(phases):
            spans.append(
                self._span(
                    name, contexts[index], parents[index], {"phase": name}, phase_start, phase_end
                )  # fmt: skip
            )
        return spans

    def _span(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: Mapping[str, Any],
        start: float,
        end: float,
    ) -> ReadableSpan:
        offset = self._offset_ns
        return ReadableSpan(
            name, context, parent, self._resource, attributes,
            start_time=int(start * 1e9) + offset, end_time=int(end * 1e9) + offset,
            instrumentation_scope=_SCOPE,
        )  # fmt: skip

    def close(self, deadline: float) -> None:
        """Export what is pending and shut the processor down, by ``deadline`` at the latest."""
        self.export_pending()
        with self._export_lock:
            self._closed = True
        # The processor's shutdown waits for its last export, which retries
        # against a collector that is down: wait on another thread, bounded.
        closing = threading.Thread(
            target=self._processor.shutdown, name="mlx-otel-traces-close", daemon=True
        )
        closing.start()
        closing.join(max(0.0, min(_CLOSE_SECONDS, deadline - time.monotonic())))


def _sdk_span_exporter(settings: OtlpSettings) -> SpanExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


def step_tracer(
    resource: Resource,
    *,
    run_id: str,
    rank: int | None,
    on_failure: Callable[[str], None],
    on_drop: Callable[[str], None] = lambda task: None,
    max_pending: int = 1024,
    environ: Mapping[str, str] | None = None,
) -> StepTracer | None:
    """A tracer exporting by OTLP as the ``OTEL_*`` variables say, or ``None`` when off.

    Raises :class:`ConfigError` when traces are asked for but the OTLP
    package is missing (``pip install 'mlx-otel[otlp]'``) or the protocol is unknown.
    """
    settings = traces_settings(environ)
    if settings is None:
        return None
    try:
        exporter = _sdk_span_exporter(settings)
    except ImportError as exc:
        raise ConfigError(
            f"OTLP traces ({settings.protocol}) need {exc.name}: pip install 'mlx-otel[otlp]'"
        ) from None
    return StepTracer(
        exporter, resource=resource, run_id=run_id, rank=rank, on_failure=on_failure,
        on_drop=on_drop, max_pending=max_pending,
    )  # fmt: skip
