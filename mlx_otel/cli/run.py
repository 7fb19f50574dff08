"""``mlx-otel run -- COMMAND ARGS...``: any supported trainer's command, monitored.

    mlx-otel run --metrics-port 9464 --run-id dpo_001 -- \\
        mlx_lm_lora.train --train-mode dpo --model ... --train --data ...
    mlx-otel run -- python -m mlx_lm lora --model ... --train --data ...
    mlx-otel run -- python train.py          # a script that calls mlx-lm's train

It does what ``opentelemetry-instrument`` does with mlx_otel's instrumentors
(:mod:`mlx_otel.instrumentation`), without the launcher and with mlx_otel's
own flags: the trainer instrumentors are loaded in this process, then the
command's Python entry point runs here too (a console script such as
``mlx_lm.lora``, ``-m MODULE``, ``-c CODE`` or a ``.py`` script, optionally after
``python``). In-process is the simplest robust way: no interpreter start-up
hook to install, the trainer's exit code and Ctrl-C are its own, and the
runs are ended (exported, lingered, closed) after the command returns. A
command that is not Python (a shell script, a binary) is refused with a
pointer to ``opentelemetry-instrument``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import runpy
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mlx_otel.cli.options import non_negative_float, port

__all__ = ["add_parser", "entry_point"]

_PYTHONS = frozenset({"python", "python3", f"python3.{sys.version_info.minor}"})


def add_parser(subparsers: Any) -> None:
    """Register ``run`` on an argparse subparsers object.

    >>> parser = argparse.ArgumentParser(prog="mlx-otel")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["run", "--run-id", "r", "--", "mlx_lm.lora", "--train"])
    >>> args.run_id, args.target
    ('r', ['--', 'mlx_lm.lora', '--train'])
    """
    p = subparsers.add_parser(
        "run",
        help="run a trainer's command with its metrics served for Prometheus",
        description=(
            "Run COMMAND (a Python console script, -m MODULE or a script, optionally after "
            "`python`) with mlx_otel's trainer instrumentors loaded: every mlx-lm, "
            "mlx-lm-lora, mlx-guided-grpo or mlx-vlm run it starts is served for Prometheus."
        ),
        usage="mlx-otel run [--metrics-port PORT] [--run-id ID] [--monitor-config FILE] "
        "[--metrics-linger SEC] -- COMMAND [ARGS...]",
    )
    p.add_argument("--metrics-port", type=port, default=None, metavar="PORT",
                   help="serve metrics on this port (default: exporter.port, 9464; 0 = free)")  # fmt: skip
    p.add_argument("--run-id", default=None, metavar="ID",
                   help="the run_id label (default: $MLX_OTEL_RUN_ID, else generated)")  # fmt: skip
    p.add_argument("--monitor-config", type=Path, default=None, metavar="FILE",
                   help="mlx_otel YAML config (exporter, monitoring, trainer sections)")  # fmt: skip
    p.add_argument("--metrics-linger", type=non_negative_float, default=None, metavar="SEC",
                   help="keep serving this long after the command so Prometheus scrapes "
                        "the last values (default $MLX_OTEL_METRICS_LINGER, else 0)")  # fmt: skip
    p.add_argument("target", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS")
    p.set_defaults(func=_run)


def entry_point(command: Sequence[str]) -> tuple[Callable[[], Any], list[str]]:
    """What to call for ``command`` and the ``sys.argv`` it expects.

    Raises :class:`LookupError` naming the command when it is not a Python
    entry point. Nothing of the command is imported before it is called.

    >>> main, argv = entry_point(["-m", "json.tool", "--help"])
    >>> argv
    ['json.tool', '--help']
    """
    if not command:
        raise LookupError("no command given: mlx-otel run -- COMMAND ARGS...")
    name, *rest = command
    if name in _PYTHONS or name == sys.executable:
        return entry_point(rest)
    if name == "-m":
        if not rest:
            raise LookupError("-m needs a module: mlx-otel run -- -m MODULE ARGS...")
        module, *module_args = rest
        return (lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)), [
            module, *module_args,
        ]  # fmt: skip
    if name == "-c" and rest:
        code, *code_args = rest
        return (lambda: exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})), [
            "-c", *code_args,
        ]  # fmt: skip
    if name.endswith(".py") or Path(name).is_file() and _is_python(Path(name)):
        path = str(Path(name))
        return (lambda: runpy.run_path(path, run_name="__main__")), [path, *rest]
    for script in importlib.metadata.entry_points(group="console_scripts", name=name):
        # Loaded when called: after the instrumentors, so that a module binding
        # the trainer's function at import (`from .trainer import train`) binds ours.
        return (lambda script=script: script.load()()), [name, *rest]
    found = shutil.which(name)
    if found and _is_python(Path(found)):
        return (lambda: runpy.run_path(found, run_name="__main__")), [found, *rest]
    raise LookupError(
        f"{name} is not a Python entry point mlx-otel run can start (a console script of this "
        f"environment, -m MODULE or a .py script); for another program use "
        f"opentelemetry-instrument {name} ..."
    )


def _is_python(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            first = file.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _instrumentors(args: argparse.Namespace) -> list[Any]:
    from mlx_otel.config import load_config
    from mlx_otel.instrumentation import INSTRUMENTORS

    config = load_config(args.monitor_config)  # a ConfigError is reported by main
    if args.metrics_port is not None:
        config.exporter.port = args.metrics_port
    loaded = []
    for cls in INSTRUMENTORS.values():
        instrumentor = cls()
        if instrumentor.is_instrumented_by_opentelemetry:  # opentelemetry-instrument did
            continue
        instrumentor.instrument(monitor_config=config, run_id=args.run_id, keep_open=True,
                                skip_dep_check=True)  # fmt: skip
        loaded.append(instrumentor)
    return loaded


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def _run(args: argparse.Namespace) -> int:
    target = list(args.target)
    if target[:1] == ["--"]:
        target = target[1:]
    try:
        main, argv = entry_point(target)
    except LookupError as exc:
        print(f"mlx-otel run: {exc}", file=sys.stderr)
        return 2
    from mlx_otel.instrumentation.base import linger_from_env

    instrumentors = _instrumentors(args)
    linger = linger_from_env() if args.metrics_linger is None else args.metrics_linger
    stop = threading.Event()

    def on_sigterm(*_: Any) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    code = 0
    try:
        with _argv(argv):
            result = main()
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        print("mlx-otel run: interrupted; exporting what was recorded", file=sys.stderr)
        code = 130
    finally:
        try:
            for instrumentor in instrumentors:
                instrumentor.close_runs(linger=linger if code == 0 else 0.0,
                                        stop=stop)  # fmt: skip
                instrumentor.uninstrument()
        finally:
            signal.signal(signal.SIGTERM, previous)
    return code
