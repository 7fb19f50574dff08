"""Finish live monitors when the process is told to stop or simply ends.

A job scheduler, ``timeout`` or ``kill`` sends SIGTERM; Python's default is
to die on the spot, and a script that ends without ``cleanup()`` (or outside
a ``with`` block) leaves its monitor unfinished. Either way the run's files
(``training_metrics.csv``, ``monitoring_summary.json``...), the final
Pushgateway push and the WandB finish would be lost. So every live
:class:`~mlx_otel.TrainingMonitor` is registered here, and

* on **SIGTERM** each one is finished as ``with`` would (its one end of
  run: files, then final push, WandB finish), all at once and within
  :data:`FINISH_TIMEOUT_S` (end-of-run charts are left to the chart
  process); then the handler that was there before runs
  (a user's handler is chained, not replaced) or, when it was the default,
  the process dies of SIGTERM as it would have (exit status 143 in a shell);
* at **interpreter exit** (the end of the script, ``sys.exit``, an uncaught
  exception, Ctrl-C's ``KeyboardInterrupt`` outside a ``with`` block) the
  same happens from an ``atexit`` hook.

SIGINT keeps Python's own behaviour (``KeyboardInterrupt``): inside a
``with`` block its ``__exit__`` finishes the run, outside one the exit hook
does. SIGKILL and the kernel's OOM killer cannot be caught: what survives
them is what was already written (see the README's "Failure modes").

Handlers can only be installed from the main thread; a monitor created in
another thread is still finished at exit, and the SIGTERM handler is
installed by the next monitor created in the main thread.

Nothing here needs calling by hand; ``TrainingMonitor`` registers itself::

    monitor = TrainingMonitor(run_id="run_001")   # registered
    monitor.cleanup()                             # unregistered
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any, Protocol

__all__ = ["FINISH_TIMEOUT_S", "finish_all", "register", "unregister"]

log = logging.getLogger("mlx_otel")

#: Upper bound (seconds) on finishing every live monitor at a signal or exit.
#: What is not done by then (a hung WandB upload, a huge export) is left;
#: the process ends anyway.
FINISH_TIMEOUT_S = 20.0


class _Finishable(Protocol):
    run_id: str

    def finish_run(self, *, leave: bool = ..., timeout: float | None = ...) -> Any: ...


_lock = threading.Lock()
_live: dict[int, weakref.ref[Any]] = {}
_previous: dict[int, Any] = {}
_installed = False
_atexit_registered = False


def register(monitor: _Finishable) -> None:
    """Finish ``monitor`` on SIGTERM and at interpreter exit (until :func:`unregister`)."""
    global _atexit_registered
    with _lock:
        _live[id(monitor)] = weakref.ref(monitor)
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True
    _install_handlers()


def unregister(monitor: _Finishable) -> None:
    """Forget ``monitor`` (it was finished by its owner)."""
    with _lock:
        _live.pop(id(monitor), None)


def _install_handlers() -> None:
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return  # signal.signal works in the main thread only; a later monitor retries
    try:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError) as exc:  # an embedded interpreter without signals
        log.debug("mlx_otel: no SIGTERM handler installed: %s", exc)
        return
    _previous[signal.SIGTERM] = previous
    _installed = True


def _monitors() -> list[_Finishable]:
    with _lock:
        refs = list(_live.values())
    return [m for m in (ref() for ref in refs) if m is not None]


def finish_all(reason: str, timeout: float = FINISH_TIMEOUT_S) -> list[str]:
    """Finish every live monitor at once; return the run ids not done in ``timeout``.

    Each monitor finishes on its own thread, so a monitor that hangs (WandB,
    a lock held by the interrupted training thread) cannot keep the others
    from finishing, nor the process from ending.
    """
    monitors = _monitors()
    if not monitors:
        return []
    log.warning("mlx_otel: %s: finishing %d run(s) (at most %.0f s)", reason, len(monitors), timeout)
    threads = []
    finished: set[int] = set()
    for monitor in monitors:
        thread = threading.Thread(
            target=_finish_one, args=(monitor, timeout, finished), daemon=True,
            name=f"mlx-otel-finish-{monitor.run_id}",
        )  # fmt: skip
        try:
            thread.start()
        except RuntimeError:  # no new threads this late in shutdown: finish inline
            _finish_one(monitor, timeout, finished)
            continue
        threads.append((monitor, thread))
    deadline = time.monotonic() + timeout
    for _, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = [m.run_id for m in monitors if id(m) not in finished]
    if late:
        log.error("mlx_otel: run(s) %s did not finish within %.0f s; ending anyway",
                  ", ".join(late), timeout)  # fmt: skip
    return late


def _finish_one(monitor: _Finishable, timeout: float, finished: set[int]) -> None:
    try:
        # The process is going: the chart process finishes its charts alone.
        if monitor.finish_run(leave=True, timeout=timeout) is not False:
            finished.add(id(monitor))
    except Exception:  # finishing must never turn an exit into a traceback
        log.exception("mlx_otel: finishing run %s failed", monitor.run_id)


def _at_exit() -> None:
    finish_all("the interpreter is exiting")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    finish_all("SIGTERM received")
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # the user's handler decides what happens next
        return
    if previous == signal.SIG_IGN:
        return
    # The default action: die of the signal, so the parent sees SIGTERM.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
