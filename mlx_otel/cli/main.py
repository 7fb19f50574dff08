"""The ``mlx-otel`` command.

    mlx-otel demo --steps 200 --port 9464        # a real MLX RL run, monitored
    mlx-otel check-config config.yaml            # validate a config file
    mlx-otel stack init [--local] DIR            # Prometheus, rules, Alertmanager, Grafana
    mlx-otel rules [--out DIR]                   # the shipped alert and recording rules
    mlx-otel dashboards                          # regenerate Grafana JSON (repository)
    mlx-otel alert-sink --port 9095              # print Alertmanager notifications
    mlx-otel run -- mlx_lm.lora --train ...      # any supported trainer's command, monitored
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlx_otel import __version__
from mlx_otel.cli.options import non_negative_float, non_negative_int, port, positive_int
from mlx_otel.config import load_config
from mlx_otel.errors import ConfigError, MlxOtelError

__all__ = ["build_parser", "main"]

log = logging.getLogger("mlx_otel")

#: Subcommands contributed by other modules (each has ``add_parser(subparsers)``)
#: and the extra that provides their dependencies.
_PLUGIN_COMMANDS = (
    ("mlx_otel.cli.stack", "stack", None),
    ("mlx_otel.cli.rules", "rules", None),
    ("mlx_otel.cli.dashboards", "dashboards", "dashboards"),
    ("mlx_otel.cli.alert_sink", "alert-sink", None),
    ("mlx_otel.cli.lora", "lora", "trainers"),
    ("mlx_otel.cli.run", "run", None),
)


def _add_demo(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run a real, small MLX RL training with monitoring on",
        description=(
            "Train a tiny MLX policy with group-relative policy optimisation on a "
            "verifiable toy task, serving its metrics for Prometheus."
        ),
    )
    p.add_argument("--steps", type=positive_int, default=None, metavar="N", help="training steps (default 200)")
    p.add_argument("--port", type=port, default=None, metavar="PORT", help="metrics port (default 9464; 0 = free)")
    p.add_argument("--host", default=None, metavar="HOST", help="metrics host (default 127.0.0.1)")
    p.add_argument("--output-dir", type=Path, default=None, metavar="DIR", help="where files go (./outputs)")
    p.add_argument(
        "--wandb",
        choices=("offline", "online", "disabled"),
        default="disabled",
        help="forward metrics to WandB (default disabled)",
    )
    p.add_argument(
        "--linger",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="keep serving this many seconds after the run",
    )
    p.add_argument(
        "--leak-mb-per-step",
        type=non_negative_float,
        default=0.0,
        metavar="MB",
        help="keep this many MB of new MLX arrays alive every step (a real leak, for alerts)",
    )
    p.add_argument(
        "--leak-steps",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="stop leaking (and free the leak) after this many steps",
    )
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help="YAML config file")
    p.add_argument(
        "--file-sd-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="register each rank's target in this folder for Prometheus file_sd",
    )
    p.add_argument("--run-id", default=None, metavar="ID", help="run id label (default: generated)")
    p.add_argument("--seed", type=non_negative_int, default=0, metavar="N", help="random seed")
    p.add_argument(
        "--step-delay",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="sleep this many seconds after each step (slows the demo to watch it live)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_demo)


def _add_check_config(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "check-config",
        help="validate a YAML config file",
        description="Load FILE like TrainingMonitor would and report every problem.",
    )
    p.add_argument("file", type=Path)
    p.set_defaults(func=_run_check_config)


def _run_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    e = config.exporter
    m = config.monitoring
    print(
        f"{args.file}: OK (metrics at {e.host}:{e.port}, "
        f"wandb {'on' if m.use_wandb else 'off'}, outputs in {m.output_dir})"
    )
    return 0


def _demo_config(args: argparse.Namespace) -> Any:
    config = load_config(args.config)
    if args.port is not None:
        config.exporter.port = args.port
    if args.host is not None:
        config.exporter.host = args.host
    if args.output_dir is not None:
        config.monitoring.output_dir = args.output_dir
    if getattr(args, "file_sd_dir", None) is not None:
        config.exporter.file_sd_dir = args.file_sd_dir
    if args.wandb != "disabled":
        config.monitoring.use_wandb = True
        config.monitoring.wandb_mode = args.wandb
    elif args.config is None:
        config.monitoring.use_wandb = False
    return config


def _run_demo(args: argparse.Namespace) -> int:
    from mlx_otel.demo.rl import DemoSettings, DemoTrainer, describe_task
    from mlx_otel.errors import PortInUseError
    from mlx_otel.monitor import TrainingMonitor

    try:
        config = _demo_config(args)
    except ConfigError as exc:
        print(f"mlx-otel demo: {exc}", file=sys.stderr)
        return 2
    defaults = DemoSettings()
    settings = DemoSettings(
        steps=args.steps if args.steps is not None else defaults.steps,
        seed=args.seed,
        leak_mb_per_step=args.leak_mb_per_step,
    )
    try:
        monitor = TrainingMonitor(config, run_id=args.run_id)
    except PortInUseError as exc:
        print(f"mlx-otel demo: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Of several ranks, rank 0 alone tells the story; the others say one line.
    quiet = monitor.rank not in (None, 0)
    say = (lambda *_: None) if quiet else print
    if quiet:
        args.no_progress = True
        print(f"mlx-otel demo: run {monitor.run_id} rank {monitor.rank}: metrics at "
              f"{monitor.endpoint}, outputs in {monitor.output_dir.resolve()}")  # fmt: skip
    try:
        say(f"mlx-otel demo: run {monitor.run_id}")
        say(textwrap.fill(describe_task(), width=100, initial_indent="  task: ",
                          subsequent_indent="        "))  # fmt: skip
        say(f"  metrics: {monitor.endpoint}")
        say(f"  outputs: {monitor.output_dir.resolve()}")
        trainer = DemoTrainer(settings)
        rewards = _train(trainer, monitor, args, stop)
        if rewards:
            tenth = max(1, len(rewards) // 10)
            first, last = sum(rewards[:tenth]) / tenth, sum(rewards[-tenth:]) / tenth
            say(f"mean reward: first {tenth} steps {first:.3f} -> last {tenth} steps {last:.3f}")
        monitor.export_all()
        say(f"wrote {monitor.output_dir.resolve()}")
        if not stop.is_set():
            monitor.mark_finished()  # training is over: lingering is not stalling
        if args.linger > 0 and not stop.is_set():
            say(f"serving metrics at {monitor.endpoint} for {args.linger:.0f} s (Ctrl-C stops)")
            stop.wait(args.linger)
    except KeyboardInterrupt:
        print("interrupted; writing what was recorded", file=sys.stderr)
        monitor.export_all()
    finally:
        signal.signal(signal.SIGTERM, previous)
        monitor.cleanup()
    return 0


def _train(trainer: Any, monitor: Any, args: argparse.Namespace, stop: threading.Event) -> list[float]:
    from mlx_otel.demo.loop import train

    return train(trainer, monitor, stop=stop, progress=not args.no_progress,
                 leak_steps=args.leak_steps, step_delay=args.step_delay)  # fmt: skip


def _add_plugins(subparsers: Any) -> None:
    for module_name, command, extra in _PLUGIN_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f"pip install 'mlx-otel[{extra}]'" if extra else "reinstall mlx-otel"
            message = f"`mlx-otel {command}` needs a missing package ({exc.name}): {hint}"
            p = subparsers.add_parser(command, help=f"(unavailable: {hint})")
            p.set_defaults(func=lambda args, message=message: _unavailable(message))
            continue
        module.add_parser(subparsers)


def _unavailable(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlx-otel`` (all subcommands)."""
    parser = _Parser(
        prog="mlx-otel",
        description="Observability for MLX training: Prometheus, Grafana, Alertmanager, WandB.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"mlx-otel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(subparsers)
    _add_check_config(subparsers)
    _add_plugins(subparsers)
    return parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that notes in the namespace which (sub)command parsed it.

    Subparsers are made of the parent's class, so the innermost one, e.g. that
    of ``dashboards preview``, records itself first and is kept.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if getattr(parsed, "command_parser", None) is None:
            parsed.command_parser = self
        return parsed, extras


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse like ``parse_args``, but an unknown flag of a subcommand prints that subcommand's
    usage (argparse would print the top-level one)."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlx-otel`` console script."""
    parser = build_parser()
    args = _parse(parser, argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # Third-party chatter is not the user's business unless asked for.
    for noisy in ("urllib3", "matplotlib", "PIL", "wandb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MlxOtelError as exc:
        print(f"mlx-otel {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

