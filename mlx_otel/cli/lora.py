"""``mlx-otel lora`` and ``mlx-otel lora-train``: the trainers, monitored.

    mlx-otel lora --model mlx-community/Qwen3-0.6B-4bit --train --data ./data \\
        --metrics-port 9464 --run-id sft_001
    mlx-otel lora-train --model ... --train --train-mode grpo --data ./data \\
        --metrics-port 9464 --run-id grpo_001

Every flag of ``mlx_lm.lora`` (respectively ``mlx_lm_lora.train``), YAML
configs included, is passed through unchanged; these commands add
``--metrics-port``, ``--run-id``, ``--monitor-config`` and
``--metrics-linger``. ``mlx_lm.lora`` builds its reporting callbacks in
``get_reporting_callbacks``: the monitor's callback is added there, around
whatever ``--report-to`` asked for. ``mlx_lm_lora.train.main`` calls ``run``
without a callback: ``run`` is called with one instead. The callbacks
observe the trainers' own functions (GRPO's completions and rewards, the
phases of each iteration) until the run ends, when the originals are back.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]

_MONITOR_FLAGS = """\
mlx-otel flags (every other flag goes to {trainer}):
  --metrics-port PORT    serve metrics on this port (default: exporter.port, 9464; 0 = free)
  --run-id ID            the run_id label of every series (default: generated)
  --monitor-config FILE  mlx_otel YAML config (exporter, monitoring, trainer sections)
  --metrics-linger SEC   keep serving this long after training so Prometheus scrapes
                         the last values (default 0)
"""


def add_parser(subparsers: Any) -> None:
    """Register ``lora`` and ``lora-train`` on an argparse subparsers object.

    >>> parser = argparse.ArgumentParser(prog="mlx-otel")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["lora", "--model", "m", "--run-id", "r", "--train"])
    >>> args.run_id, args.trainer_args
    ('r', ['--model', 'm', '--train'])
    """
    for command, trainer, run, extra in (
        ("lora", "mlx_lm.lora", _run_lora, "mlx-lm"),
        ("lora-train", "mlx_lm_lora.train", _run_lora_train, "mlx-lm-lora"),
    ):
        p = subparsers.add_parser(
            command,
            help=f"run {trainer} with its metrics served for Prometheus",
            description=(
                f"Run {trainer} with every flag you give it, its reports served as "
                "mlx_otel metrics for Prometheus."
            ),
            add_help=False,  # --help is the trainer's; ours are printed before it
            allow_abbrev=False,  # a trainer flag must never be taken for one of ours
        )
        p.add_argument("--metrics-port", type=int, default=None)
        p.add_argument("--run-id", default=None)
        p.add_argument("--monitor-config", type=Path, default=None)
        p.add_argument("--metrics-linger", type=float, default=0.0)
        p.set_defaults(func=run, trainer=trainer, extra=extra, trainer_args=[])
        _pass_unknown_flags_through(p, trainer)


def _pass_unknown_flags_through(parser: argparse.ArgumentParser, trainer: str) -> None:
    """Keep the flags this parser does not know, in order, as ``trainer_args``.

    ``--help`` prints this command's flags, then the trainer's own help.
    """
    parse_known = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> tuple[Any, list[str]]:
        namespace, rest = parse_known(args, namespace)
        if "-h" in rest or "--help" in rest:
            _print_help(trainer)
            parser.exit(0)
        namespace.trainer_args = [*namespace.trainer_args, *rest]
        return namespace, []

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _print_help(trainer: str) -> None:
    import importlib

    print(_MONITOR_FLAGS.format(trainer=trainer))
    try:
        importlib.import_module(trainer).build_parser().print_help()
    except ImportError:
        extra = "mlx-lm" if trainer == "mlx_lm.lora" else "mlx-lm-lora"
        print(f"({trainer} is not installed: pip install 'mlx-otel[{extra}]')")


def _monitor_config(args: argparse.Namespace) -> Any:
    from mlx_otel.config import load_config

    config = load_config(args.monitor_config)
    if args.metrics_port is not None:
        config.exporter.port = args.metrics_port
    return config


@contextlib.contextmanager
def _patched(module: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def _import_trainer(args: argparse.Namespace) -> Any:
    import importlib

    try:
        return importlib.import_module(args.trainer)
    except ImportError as exc:
        print(
            f"mlx-otel {args.command}: {args.trainer} is not installed ({exc.name} is missing): "
            f"pip install 'mlx-otel[{args.extra}]'",
            file=sys.stderr,
        )
        return None


def _run_lora(args: argparse.Namespace) -> int:
    lora = _import_trainer(args)
    if lora is None:
        return 2
    from mlx_otel.trainers import MlxLmCallback

    monitor_config = _monitor_config(args)
    made: list[Any] = []
    original = lora.get_reporting_callbacks

    def get_reporting_callbacks(
        report_to: Any = None, project_name: Any = None, log_dir: Any = None, config: Any = None
    ) -> Any:
        # --report-to's callbacks first (WandB, SwanLab), then ours around them.
        wrapped = original(report_to, project_name=project_name, log_dir=log_dir, config=config)
        callback = MlxLmCallback(
            project_name=project_name, log_dir=log_dir, config=config,
            wrapped_callback=wrapped, monitor_config=monitor_config, run_id=args.run_id,
            close_at_end=False,
        )  # fmt: skip
        made.append(callback)
        return callback

    with _patched(lora, "get_reporting_callbacks", get_reporting_callbacks):
        return _run_trainer(args, lora.main, made)


def _run_lora_train(args: argparse.Namespace) -> int:
    train = _import_trainer(args)
    if train is None:
        return 2
    from mlx_otel.instrumentation.device import working_set_supplied
    from mlx_otel.trainers import MlxLmLoraCallback

    monitor_config = _monitor_config(args)
    made: list[Any] = []
    original = train.run

    def run(trainer_args: Any, training_callback: Any = None) -> Any:
        callback = MlxLmLoraCallback(
            project_name=getattr(trainer_args, "wandb", None),
            log_dir=getattr(trainer_args, "adapter_path", None),
            config=vars(trainer_args), wrapped_callback=training_callback,
            monitor_config=monitor_config, run_id=args.run_id, close_at_end=False,
        )  # fmt: skip
        made.append(callback)
        with working_set_supplied():  # MLX's Linux CPU build lacks the key most modes read
            return original(trainer_args, training_callback=callback)

    with _patched(train, "run", run):
        return _run_trainer(args, train.main, made)


def _run_trainer(args: argparse.Namespace, main: Callable[[], Any], made: list[Any]) -> int:
    """Run the trainer's ``main`` on our argv; then export, linger and close."""
    stop = threading.Event()

    def on_sigterm(*_: Any) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    argv = sys.argv
    sys.argv = [args.trainer, *args.trainer_args]
    code = 0
    try:
        main()
    except SystemExit as exc:  # the trainer's argparse (--help, a bad flag)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        print(f"mlx-otel {args.command}: interrupted; exporting what was recorded", file=sys.stderr)
        code = 130
    except BaseException:
        code = 1
        raise
    finally:
        sys.argv = argv
        try:
            for callback in made:
                callback.close(linger=args.metrics_linger if code == 0 else 0.0, stop=stop)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return code
