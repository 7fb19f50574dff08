"""A background worker with a bounded queue, so the training thread never waits.

WandB forwarding, chart rendering and file exports run here. When the queue
is full the oldest task is dropped and counted (``on_drop``); a failing task
is reported (``on_error``) and the worker goes on.

    worker = BackgroundWorker(maxlen=1024)
    future = worker.submit("charts", lambda: render(step))
    worker.close()
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["BackgroundWorker"]

log = logging.getLogger(__name__)


class BackgroundWorker:
    """One daemon thread that runs submitted tasks and periodic jobs.

    ``periodic`` jobs run every ``interval`` seconds and before each batch of
    tasks (the monitor drains its step records this way). ``flush`` waits
    until everything submitted so far has run.
    """

    def __init__(
        self,
        *,
        maxlen: int = 1024,
        interval: float = 0.1,
        on_drop: Callable[[str], None] | None = None,
        on_error: Callable[[str, BaseException], None] | None = None,
        name: str = "mlx-otel-worker",
    ) -> None:
        self._tasks: deque[tuple[str, Callable[[], Any], Future[Any]]] = deque()
        self._maxlen = maxlen
        self._interval = interval
        self._on_drop = on_drop or (lambda task: None)
        self._on_error = on_error or (lambda task, exc: log.error("%s failed: %s", task, exc))
        self._periodic: list[tuple[str, Callable[[], Any]]] = []
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._generation = 0  # completed cycles, for flush()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add_periodic(self, name: str, job: Callable[[], Any]) -> None:
        """Run ``job`` every cycle (errors are reported, never raised)."""
        self._periodic.append((name, job))

    def submit(self, name: str, task: Callable[[], Any]) -> Future[Any]:
        """Queue ``task``; returns a Future. Drops (and cancels) the oldest when full."""
        future: Future[Any] = Future()
        if self._stopping:
            future.set_exception(RuntimeError("the monitor's background worker is closed"))
            return future
        with self._lock:
            if len(self._tasks) >= self._maxlen:
                dropped_name, _, dropped = self._tasks.popleft()
                dropped.cancel()
                self._on_drop(dropped_name)
            self._tasks.append((name, task, future))
        self._wake.set()
        return future

    def on_worker_thread(self) -> bool:
        """Whether the caller is this worker's thread (running a task or periodic job)."""
        return threading.current_thread() is self._thread

    def pending(self) -> int:
        """Tasks waiting to run."""
        return len(self._tasks)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until all tasks submitted so far ran and a periodic cycle completed."""
        if self.on_worker_thread():
            return True
        with self._idle:
            target = self._generation + 2  # a full cycle that began after this call

            def done() -> bool:
                if self._generation >= target or not self._thread.is_alive():
                    return True
                # Wake the worker for each cycle still owed, not only the first:
                # the second would otherwise wait out the interval.
                self._wake.set()
                return False

            return self._idle.wait_for(done, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Run what is queued, then stop the thread."""
        if self._stopping:
            return
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _run_job(self, name: str, job: Callable[[], Any]) -> None:
        try:
            job()
        except Exception as exc:  # a failing job must not stop the worker
            self._on_error(name, exc)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            for name, job in self._periodic:
                self._run_job(name, job)
            while True:
                with self._lock:
                    if not self._tasks:
                        break
                    name, task, future = self._tasks.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(task())
                except Exception as exc:
                    future.set_exception(exc)
                    self._on_error(name, exc)
            with self._idle:
                self._generation += 1
                self._idle.notify_all()
            if self._stopping:
                return
