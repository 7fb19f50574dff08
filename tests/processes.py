"""Child processes started by tests: signals at their defaults, never left running.

Every test that starts a process goes through :func:`popen` or :func:`run`,
for two reasons a plain ``subprocess.Popen`` does not cover:

- A shell that is not interactive (a CI job, ``nohup``, ``cmd &``) starts its
  children with SIGINT ignored, and an ignored signal stays ignored across
  ``exec``. Python then installs no ``KeyboardInterrupt`` handler, and a test
  that presses Ctrl-C on its child waits for nothing. The signals tests send
  are reset to their defaults in the child before it runs, so a Python child
  sees SIGINT at its default and installs its handler, as in a terminal.
- A test that fails or times out must not leave its child behind, nor the
  child's own children (a chart process, a server it launched). Each child
  leads its own process group; :func:`stop` kills the group. The ``conftest``
  stops every child a test started that is still running when the test ends,
  and at the end of the session whatever a wider fixture left.

    process = popen([sys.executable, "train.py"], stdout=subprocess.PIPE, text=True)
    result = run(["promtool", "check", "rules", "alerts.yml"], capture_output=True, timeout=60)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["popen", "run", "started", "stop", "stop_all", "running_since", "mark"]

#: The signals tests send to their children (SIGKILL cannot be ignored).
SENT = (signal.SIGINT, signal.SIGTERM)

_started: list[subprocess.Popen[Any]] = []


def _signals_at_default() -> None:
    # Runs in the child between fork and exec, where little is safe: keep it to this.
    for signum in SENT:
        signal.signal(signum, signal.SIG_DFL)


def popen(args: Sequence[str] | str, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` with the child's signals at their defaults, in its own group."""
    kwargs.setdefault("start_new_session", True)
    process: subprocess.Popen[Any] = subprocess.Popen(
        args, preexec_fn=_signals_at_default, **kwargs
    )
    _started.append(process)
    return process


def run(
    args: Sequence[str] | str,
    *,
    timeout: float = 600,
    input: Any = None,  # noqa: A002 - the name subprocess.run uses
    check: bool = False,
    capture_output: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` through :func:`popen`: on timeout the child's whole group is killed."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with started(args, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as timed_out:
            stop(process)
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                timed_out.stdout, timed_out.stderr = process.communicate(timeout=10)
            raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check:
        result.check_returncode()
    return result


@contextlib.contextmanager
def started(args: Sequence[str] | str, **kwargs: Any) -> Iterator[subprocess.Popen[Any]]:
    """A child for the length of a ``with`` block; stopped (group and all) when it ends."""
    process = popen(args, **kwargs)
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Kill ``process`` and what runs in its process group; reap it and close its pipes."""
    if process.poll() is None or _group_alive(process.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def mark() -> int:
    """A point in the list of started children, for :func:`running_since`."""
    return len(_started)


def running_since(point: int) -> list[subprocess.Popen[Any]]:
    """Children started after ``point`` that still run (or whose group still does)."""
    return [p for p in _started[point:] if p.poll() is None or _group_alive(p.pid)]


def stop_all(since: int = 0) -> list[str]:
    """Stop every child started after ``since`` still running; what was stopped."""
    left = running_since(since)
    for process in left:
        stop(process)
    if since == 0:
        _started.clear()
    return [str(p.args)[:200] for p in left]
