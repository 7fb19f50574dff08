"""Render charts in a child process, so they never compete with training.

Matplotlib holds the interpreter for seconds per checkpoint; in the training
process that time is taken from the training thread. The child is started
with ``python -c`` (not ``multiprocessing``, which
would re-import the user's training script in the child) and kept for the
whole run; requests and replies are length-prefixed pickles on its pipes.

    process = ChartProcess()
    paths, errors = process.render(config, frame, {"step": 100})
    process.close()

A render that does not answer in time (``timeout=``, or :meth:`ChartProcess.cut_short`
at the end of a run) is not waited for: the child is left to finish those
charts on its own (it writes the PNGs, then exits, as its input is closed),
so the end of a run never waits for matplotlib on a busy machine.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["ChartProcess", "ChartsCutShort", "render_checkpoint_charts"]

_HEADER = struct.Struct("!Q")
#: The child's program. It lowers its priority before anything else: importing
#: this package (MLX, OpenTelemetry) costs half a second of CPU, and training
#: runs beside it on a machine of few cores.
_CHILD = (
    "import os\n"
    "if hasattr(os, 'nice'): os.nice(19)\n"
    "from mlx_otel.integrations.chart_process import main\n"
    "main()\n"
)


def chart_inputs(histories: list[Any], arguments: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The metric series and chart arguments of a run's statistics histories.

    Each metric keeps its own steps (``arguments["steps"]``): a metric logged
    on some steps only (validation, spike scores) is drawn at those steps,
    not padded with NaN that the charts would count as non-finite values.
    Runs where the charts render (the chart process), so that the training
    process never builds the charts' inputs.
    """
    import numpy as np

    data = {history.name: history.values for history in histories}
    arguments = dict(arguments)
    arguments["steps"] = {history.name: history.steps for history in histories}
    for tokens in ("thinking_tokens", "answer_tokens"):
        values = data.get(tokens)
        arguments[tokens] = None if values is None else values[~np.isnan(values)].tolist()
    return data, arguments


def render_checkpoint_charts(
    config: Any, data: Any, arguments: dict[str, Any]
) -> tuple[dict[str, Path], dict[str, str]]:
    """Render one checkpoint's charts; returns ({kind: path}, {kind: error}).

    ``data`` is a DataFrame, or a list of statistics histories (see
    :func:`chart_inputs`).
    """
    from mlx_otel.integrations.charts import ChartGenerator

    if isinstance(data, list):
        data, arguments = chart_inputs(data, arguments)
    batch = ChartGenerator(config=config).generate_checkpoint_charts(data, **arguments)
    return dict(batch.paths), {kind: str(error) for kind, error in batch.errors.items()}


def _write(stream: IO[bytes], obj: Any) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("chart process closed its pipe")
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:  # the run ended in the middle of a request
        raise EOFError("chart process closed its pipe")
    return pickle.loads(payload)


def _close_pipes(process: subprocess.Popen[bytes]) -> None:
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class ChartsCutShort(RuntimeError):
    """The chart process did not answer in time; it finishes the charts on its own."""


class ChartProcess:
    """A long-lived child process that renders checkpoint charts."""

    def __init__(self, on_restart: Callable[[int], None] | None = None) -> None:
        #: Called with the exit code when a child that died is replaced.
        self._on_restart = on_restart
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._interrupt = threading.Event()
        #: Children left to finish a render on their own (their input is closed).
        self.finishing: list[subprocess.Popen[bytes]] = []
        #: Called about every 0.1 s while a render is awaited or its request
        #: waits for the child to read (the caller's thread is otherwise idle:
        #: the monitor drains its steps and folds its samples there).
        self.while_waiting: Callable[[], None] | None = None

    def cut_short(self) -> None:
        """Stop waiting for renders (the run ends); later renders are refused."""
        self._cut.set()

    def stop_waiting(self) -> None:
        """Stop waiting for the interruptible render in flight (a periodic chart):
        the child finishes it alone; the next render starts a fresh child."""
        self._interrupt.set()

    def start(self) -> None:
        """Start the child now, so its imports are done before the first chart."""
        with self._lock:
            self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self._reap()
        dead = self._process
        if dead is not None and dead.poll() is not None:
            # Killed (OOM killer, a user) or crashed: count it, start another.
            _close_pipes(dead)
            if self._on_restart is not None:
                self._on_restart(int(dead.returncode))
        if self._process is None or self._process.poll() is not None:
            # The child must import this very package, installed or not.
            root = str(Path(__file__).resolve().parents[2])
            path = os.environ.get("PYTHONPATH")
            env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        return self._process

    def render(
        self,
        config: Any,
        data: Any,
        arguments: dict[str, Any],
        *,
        timeout: float | None = None,
        interruptible: bool = True,
    ) -> tuple[dict[str, Path], dict[str, str]]:
        """Render in the child; raises RuntimeError if the child fails.

        Waits at most ``timeout`` seconds (and not past :meth:`cut_short`, nor
        :meth:`stop_waiting` when ``interruptible``); then raises
        :class:`ChartsCutShort` and leaves the child to finish alone.
        """
        if self._cut.is_set():
            raise ChartsCutShort("the run is ending: no new charts")
        with self._lock:
            if interruptible:
                self._interrupt.clear()
            process = self._start()
            assert process.stdin is not None and process.stdout is not None
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                # A child still importing matplotlib on a busy machine does not
                # read yet: a request larger than the pipe must not block.
                sent = self._send(process, (config, data, arguments), deadline, interruptible)
                if not sent or not self._wait_reply(process, deadline, interruptible):
                    self._leave_to_finish(process)
                    raise ChartsCutShort(
                        f"charts of step {arguments.get('step')} are still rendering in the "
                        f"chart process (pid {process.pid}); it writes them when it is done"
                    )
                ok, result = _read(process.stdout)
            except (OSError, EOFError) as exc:
                self._process = None
                _close_pipes(process)
                raise RuntimeError(f"the chart process stopped: {exc}") from None
            if not ok:
                raise RuntimeError(f"chart rendering failed in the chart process: {result}")
            return result  # type: ignore[no-any-return]

    def _stop(self, deadline: float | None, interruptible: bool) -> bool:
        if self._cut.is_set() or (interruptible and self._interrupt.is_set()):
            return True
        return deadline is not None and time.monotonic() > deadline

    def _send(
        self, process: subprocess.Popen[bytes], request: Any, deadline: float | None,
        interruptible: bool,
    ) -> bool:
        """Write the request without blocking past the deadline; False if cut short."""
        assert process.stdin is not None
        payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(payload)) + payload)
        fd = process.stdin.fileno()
        os.set_blocking(fd, False)
        while view:
            _, writable, _ = select.select([], [fd], [], 0.1)
            if writable:
                with contextlib.suppress(BlockingIOError):
                    view = view[os.write(fd, view[: 1 << 16]) :]
                continue
            if self.while_waiting is not None:  # the child is still importing: not reading
                self.while_waiting()
            if process.poll() is not None:
                raise EOFError("chart process exited")
            if self._stop(deadline, interruptible):
                return False
        return True

    def _wait_reply(
        self, process: subprocess.Popen[bytes], deadline: float | None, interruptible: bool
    ) -> bool:
        """Whether the reply arrived before the deadline or :meth:`cut_short`."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                return True
            if self.while_waiting is not None:
                self.while_waiting()
            if process.poll() is not None:
                return True  # died: the read reports it
            if self._stop(deadline, interruptible):
                return False

    def _reap(self) -> None:
        """Close the pipes of children that finished their last render alone."""
        for process in [p for p in self.finishing if p.poll() is not None]:
            self.finishing.remove(process)
            _close_pipes(process)

    def _leave_to_finish(self, process: subprocess.Popen[bytes]) -> None:
        """Close the child's input: it finishes the render in hand, then exits."""
        self._process = None
        self.finishing.append(process)
        # Its reply is never read: closing both ends now leaves no pipe open
        # for the garbage collector to find (the child's write of the reply
        # fails quietly once its charts are written).
        _close_pipes(process)

    def close(self, timeout: float = 2.0) -> None:
        """Close the idle child (it exits at once); children still rendering finish alone."""
        with self._lock:
            process, self._process = self._process, None
            self._reap()
        if process is None:
            return
        if process.poll() is None:
            assert process.stdin is not None
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.finishing.append(process)  # busy after all: let it finish
        _close_pipes(process)


def main() -> None:
    """The child's loop: read a request, render, reply; exit when stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Charts can wait; training cannot: leave the CPU to it first (the program
    # started by ChartProcess has done so already; niceness stops at 19).
    if hasattr(os, "nice"):
        os.nice(19)
    import mlx_otel.integrations.charts  # noqa: F401 - import matplotlib/seaborn before the first request
    # Nothing else may write to the reply pipe.
    sys.stdout = sys.stderr
    while True:
        try:
            config, data, arguments = _read(stdin)
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, render_checkpoint_charts(config, data, arguments))
        except Exception as exc:
            reply = (False, repr(exc))
        try:
            _write(stdout, reply)
        except (BrokenPipeError, OSError):
            return  # the run ended without waiting: the charts are written, that is all


if __name__ == "__main__":
    main()
