"""Hand the training thread's records to every sink, in bounded batches.

The background worker runs :meth:`Dispatcher.drain` every cycle. A worker
that fell behind (a flood of steps, a starved CPU) drains in batches of
:data:`DRAIN_BATCH`, folding the buffered samples into the histograms
between them, so the served histograms stay current and their buffers do not
overflow; a sink that wants the whole drain (``whole_drain``: charts render
once per drain at most) gets it once, at the end. One sink failing is
reported under its ``error_kind`` and never starves the others. A drain
may run inside a sink's ``handle`` (the chart sink drains while it awaits a
render, so that a long render does not fill the queue): the sink whose
``handle`` is under way is left out of that inner drain. The dispatcher does
not know which sinks exist.

    dispatcher = Dispatcher(recorder, sinks, on_error=ledger.report_exception)
    worker.add_periodic("records", dispatcher.drain)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mlx_otel.pipeline.sink import Record, Sink

__all__ = ["DRAIN_BATCH", "Dispatcher", "RecordSource"]

#: Step records handed to the sinks at once; samples are folded between batches.
DRAIN_BATCH = 128


class RecordSource(Protocol):
    """Where records wait for the worker: the training thread's recorder."""

    @property
    def pending(self) -> int: ...

    def drain(self, limit: int | None = None) -> Sequence[Record]: ...

    def fold(self) -> None: ...


class Dispatcher:
    """Drains a record source into every sink; what the worker runs each cycle."""

    def __init__(
        self,
        source: RecordSource,
        sinks: Sequence[Sink],
        *,
        on_error: Callable[[str, str, BaseException], None],
        batch: int = DRAIN_BATCH,
    ) -> None:
        self.sinks = list(sinks)
        self._source = source
        self._on_error = on_error
        self._batch = batch
        self._busy: list[Sink] = []  # sinks whose handle() is under way (a drain inside it)

    def drain(self) -> None:
        """Everything pending, to the batched sinks in batches, then to the whole-drain ones."""
        source = self._source
        pending = source.pending
        drained: list[Record] = []
        batched = [sink for sink in self.sinks if not sink.whole_drain]
        while pending > 0:
            batch = source.drain(min(pending, self._batch))
            if not batch:
                break
            pending -= len(batch)
            self.dispatch(batch, batched)
            source.fold()
            drained.extend(batch)
        if drained:
            self.dispatch(drained, [sink for sink in self.sinks if sink.whole_drain])

    def dispatch(self, batch: Sequence[Record], sinks: Sequence[Sink] | None = None) -> None:
        """``batch`` to ``sinks`` (default: every sink); a failing sink is reported."""
        for sink in self.sinks if sinks is None else sinks:
            if any(sink is busy for busy in self._busy):
                continue  # this drain runs inside its handle(): it has moved on
            self._busy.append(sink)
            try:
                sink.handle(batch)
            except Exception as exc:  # one sink failing must not starve the others
                self._on_error(sink.error_kind, f"the {sink.name} sink", exc)
            finally:
                self._busy.pop()
