"""``mlx-otel stack init DIR``: write a ready monitoring folder (Prometheus, Alertmanager, Grafana).

    mlx-otel stack init monitoring            # for docker compose
    mlx-otel stack init --local monitoring    # 127.0.0.1 addresses, binaries on one machine
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from mlx_otel import __version__
from mlx_otel.assets.stack import LocalPorts, init_stack, local_commands
from mlx_otel.cli.options import port
from mlx_otel.errors import MlxOtelError

__all__ = ["add_parser"]

_PORT_FLAGS = (
    ("--metrics-port", "metrics", "the trainer's metrics endpoint"),
    ("--prometheus-port", "prometheus", "Prometheus"),
    ("--alertmanager-port", "alertmanager", "Alertmanager"),
    ("--alert-sink-port", "alert_sink", "the alert sink (mlx-otel alert-sink)"),
)


def _run_init(args: argparse.Namespace) -> int:
    given = {field: getattr(args, field) for _, field, _ in _PORT_FLAGS}
    chosen = {k: v for k, v in given.items() if v is not None}
    if chosen and not args.local:
        flags = ", ".join(f for f, field, _ in _PORT_FLAGS if field in chosen)
        print(f"mlx-otel stack init: {flags} need --local (the compose stack fixes its ports)",
              file=sys.stderr)  # fmt: skip
        return 2
    ports = LocalPorts(**chosen) if args.local else None
    try:
        written = init_stack(
            args.dir, local=args.local, force=args.force, ports=ports, version=__version__
        )
    except MlxOtelError as exc:
        print(f"mlx-otel stack init: {exc}", file=sys.stderr)
        return 2
    directory = Path(args.dir).resolve()
    print(f"wrote {len(written)} files to {directory}")
    where = shlex.quote(str(directory))
    print("check them:")
    print(f"  cd {where}")
    print("  promtool check config prometheus/prometheus.yml")
    print("  promtool test rules prometheus/tests/*.yml")
    if args.local:
        print("start, each in its own terminal, from that folder:")
        for command in local_commands(ports or LocalPorts()):
            print(f"  {command}")
    else:
        print(f"start it: cd {where} && docker compose up --build")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``stack`` (with ``stack init``) on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "stack",
        help="write a monitoring folder: Prometheus, rules, Alertmanager, Grafana, compose",
        description="Monitoring stacks built from the files shipped in the package.",
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    commands = parser.add_subparsers(dest="stack_command", metavar="{init}")
    init = commands.add_parser(
        "init",
        help="write a ready monitoring folder into DIR",
        description=(
            "Write prometheus.yml (job mlx_otel: rules, Alertmanager, a static target and the "
            "file_sd folder prometheus/targets/), the rules and their promtool tests, "
            "alertmanager.yml, Grafana provisioning with the dashboards, runbooks and "
            "docker-compose.yml into DIR. With --local, every address is 127.0.0.1 for running "
            "the binaries on one machine (no compose file)."
        ),
    )
    init.add_argument("dir", type=Path, metavar="DIR", help="folder to write (new or empty)")
    init.add_argument(
        "--local", action="store_true", help="127.0.0.1 addresses, for binaries on one machine"
    )
    init.add_argument(
        "--force", action="store_true", help="write into a non-empty DIR, overwriting its files"
    )
    defaults = LocalPorts()
    for flag, field, what in _PORT_FLAGS:
        init.add_argument(
            flag,
            dest=field,
            type=port,
            default=None,
            metavar="PORT",
            help=f"with --local: port of {what} (default {getattr(defaults, field)})",
        )
    init.set_defaults(func=_run_init)
