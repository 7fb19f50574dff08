"""The one way a run ends, whoever ends it, by one deadline.

``with`` blocks, ``cleanup()``, ``finish_run()``, SIGTERM and the exit hook
(:mod:`mlx_otel.shutdown`) and the trainers' last report all come here. In
order:

1. the end begins: the run is marked finished (``mlx_otel_run_finished 1``)
   and the sinks that do work of their own stop it (periodic charts);
2. when asked, the run's files are written (the worker drained first, the
   record written before a long wait: see ``TrainingMonitor.export_all``);
3. the background worker stops;
4. every closer is closed once, in order, by the deadline: the sinks
   (statistics, charts, WandB), then the final Pushgateway push, then
   serving (the last scrape, the file_sd target, the endpoint). A closer
   that fails is reported under its ``error_kind`` and the next one closes.

A caller may start the end and not wait (``wait=False``: a trainer's last
report must return at once); a later call waits for it and finishes what
is left. ``keep_serving`` leaves the closers that stop serving
(``ends_serving``) for a later call, so the endpoint can linger.

    end = RunEnd(worker=worker, closers=[statistics, charts, wandb, serving],
                 export=write_files, begin=lifecycle.mark_finished)
    end.finish(export=True, timeout=30.0)      # idempotent
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from mlx_otel.pipeline.sink import RunEnding, seconds_left
from mlx_otel.pipeline.worker import BackgroundWorker

__all__ = ["Closer", "RunEnd"]

log = logging.getLogger("mlx_otel")


class Closer(Protocol):
    """Anything the end of a run closes: the sinks, the final push, serving."""

    name: str
    error_kind: str

    def close(self, deadline: float) -> None: ...


class RunEnd:
    """Ends a run once: files, worker, then every closer, by one deadline."""

    def __init__(
        self,
        *,
        worker: BackgroundWorker,
        closers: Sequence[Closer],
        export: Callable[[float], object],
        on_error: Callable[[str, str, BaseException], None],
        begin: Callable[[], None] = lambda: None,
        ending: RunEnding | None = None,
    ) -> None:
        self.ending = ending or RunEnding()
        self._worker = worker
        self._closers = list(closers)
        self._export = export
        self._on_error = on_error
        self._begin = begin
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()  # one end at a time: each closer closed once
        self._thread: threading.Thread | None = None
        self._exported = False
        self._closed: set[int] = set()

    @property
    def begun(self) -> bool:
        return self.ending.begun.is_set()

    @property
    def done(self) -> bool:
        """Every closer is closed."""
        return len(self._closed) == len(self._closers)

    def finish(
        self,
        *,
        export: bool,
        timeout: float,
        wait: bool = True,
        keep_serving: bool = False,
        leave: bool = False,
    ) -> bool:
        """End the run (or what is left of its end); whether it is done in ``timeout``.

        ``export`` writes the run's files first (once per run). ``leave`` does
        not wait for work that finishes on its own (the chart process).
        """
        if leave:
            self.ending.leave.set()
        if self.done:
            return True
        deadline = time.monotonic() + timeout
        with self._lock:
            running = self._thread
            if running is None or not running.is_alive():
                running = threading.Thread(
                    target=self._run, args=(export, deadline, keep_serving),
                    name="mlx-otel-run-end", daemon=True,
                )  # fmt: skip
                self._thread = running
                try:
                    running.start()
                except RuntimeError:  # no new threads this late in shutdown: end inline
                    self._thread = None
                    self._run(export, deadline, keep_serving)
                    return self.done or keep_serving
        if not wait:
            return False
        running.join(seconds_left(deadline))
        if running.is_alive():
            return False
        if not keep_serving and not self.done:
            # The end that ran kept serving (or was started before): finish the rest.
            self._run(export, deadline, keep_serving=False)
        return self.done or keep_serving

    def _run(self, export: bool, deadline: float, keep_serving: bool) -> None:
        with self._run_lock:
            self._run_locked(export, deadline, keep_serving)

    def _run_locked(self, export: bool, deadline: float, keep_serving: bool) -> None:
        if self.done:
            return  # the run has ended: nothing is written after the fact
        if not self.ending.begun.is_set():
            self.ending.begun.set()
            self._step("begin", "export", self._begin)
        if export and not self._exported:
            self._exported = True
            self._step("writing the run's files", "export", lambda: self._export(deadline))
        self._step("stopping the worker", "worker",
                   lambda: self._worker.close(seconds_left(deadline)))  # fmt: skip
        for closer in self._closers:
            if id(closer) in self._closed or (keep_serving and getattr(closer, "ends_serving", False)):
                continue
            self._closed.add(id(closer))
            self._step(f"closing {closer.name}", closer.error_kind,
                       lambda c=closer: c.close(deadline))  # type: ignore[misc]  # fmt: skip

    def _step(self, what: str, kind: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:  # one part failing must not keep the others open
            self._on_error(kind, what, exc)
