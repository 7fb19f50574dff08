"""Render charts in a child process, so they never compete with training.

Matplotlib holds the interpreter for seconds per checkpoint; in the training
process that time is taken from the training thread. The child is started
with ``python -c`` (not ``multiprocessing``, which
would re-import the user's training script in the child) and kept for the
whole run; requests and replies are length-prefixed pickles on its pipes.

    process = ChartProcess()
    paths, errors = process.render(config, frame, {"step": 100})
    process.close()
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from mlx_otel.catalog import is_memory_field

__all__ = ["ChartProcess", "render_checkpoint_charts"]

_HEADER = struct.Struct("!Q")


def chart_inputs(histories: list[Any], arguments: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The data frame and chart arguments of a run's statistics histories.

    Runs where the charts render (the chart process), so that the training
    process never builds a DataFrame for a chart.
    """
    from mlx_otel.numbers.stats import histories_frame

    frame = histories_frame(histories)
    # Keep "step" so charts plot against real steps, not row numbers.
    data = frame.drop(columns=[c for c in ("timestamp", "run_id") if c in frame])
    memory_columns = [c for c in frame.columns if c != "step" and is_memory_field(str(c))]
    arguments = dict(arguments)
    arguments["memory"] = frame[["step", *memory_columns]] if memory_columns else None
    for tokens in ("thinking_tokens", "answer_tokens"):
        arguments[tokens] = frame[tokens].dropna().tolist() if tokens in frame else None
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
    return pickle.loads(stream.read(size))


class ChartProcess:
    """A long-lived child process that renders checkpoint charts."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the child now, so its imports are done before the first chart."""
        with self._lock:
            self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            # The child must import this very package, installed or not.
            root = str(Path(__file__).resolve().parents[2])
            path = os.environ.get("PYTHONPATH")
            env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from mlx_otel.integrations.chart_process import main; main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        return self._process

    def render(
        self, config: Any, data: Any, arguments: dict[str, Any]
    ) -> tuple[dict[str, Path], dict[str, str]]:
        """Render in the child; raises RuntimeError if the child fails."""
        with self._lock:
            process = self._start()
            assert process.stdin is not None and process.stdout is not None
            try:
                _write(process.stdin, (config, data, arguments))
                ok, result = _read(process.stdout)
            except (OSError, EOFError) as exc:
                self._process = None
                raise RuntimeError(f"the chart process stopped: {exc}") from None
            if not ok:
                raise RuntimeError(f"chart rendering failed in the chart process: {result}")
            return result  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def main() -> None:
    """The child's loop: read a request, render, reply; exit when stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Charts can wait; training cannot: leave the CPU to it first.
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
        _write(stdout, reply)


if __name__ == "__main__":
    main()
