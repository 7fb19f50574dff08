"""``mlx-otel dashboards``: generate, check, validate, export and preview the dashboards.

    mlx-otel dashboards [--dir grafana/dashboards] [--check]   # repository: JSON from the .py files
    mlx-otel dashboards validate [--dir DIR] [--promtool]      # check JSON (default: the shipped one)
    mlx-otel dashboards export OUT                             # write the shipped JSON into OUT
    mlx-otel dashboards preview --prometheus URL --out DIR     # PNG of each dashboard
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from mlx_otel.dashboards import (
    DEFAULT_DIRECTORY,
    DashboardError,
    generate,
    preview,
    shipped_directory,
    validate,
)
from mlx_otel.errors import MlxOtelError

__all__ = ["add_parser"]


def _fail(exc: Exception) -> int:
    print(f"mlx-otel dashboards: {exc}", file=sys.stderr)
    return 2


def _run_generate(args: argparse.Namespace) -> int:
    directory = getattr(args, "dir", DEFAULT_DIRECTORY)
    try:
        changed = generate(directory, check=args.check)
    except DashboardError as exc:
        return _fail(exc)
    if args.check:
        if changed:
            print(
                "stale dashboard JSON (regenerate with `mlx-otel dashboards` and commit):",
                file=sys.stderr,
            )
            for path in changed:
                print(f"  {path}", file=sys.stderr)
            return 1
        print(f"dashboard JSON in {directory} is up to date")
        return 0
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"dashboard JSON in {directory} is up to date")
    return 0


def _json_dir(args: argparse.Namespace) -> Path:
    given = getattr(args, "dir", None)
    return Path(given) if given is not None else shipped_directory()


def _run_validate(args: argparse.Namespace) -> int:
    try:
        directory = _json_dir(args)
        problems = validate(directory, promtool=args.promtool)
    except MlxOtelError as exc:
        return _fail(exc)
    if problems:
        print(f"dashboard JSON in {directory} has problems:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    files = sorted(p.name for p in directory.glob("*.json"))
    parsed = ", every query parsed by promtool" if args.promtool else ""
    print(f"dashboard JSON in {directory} is valid ({', '.join(files)}{parsed})")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    try:
        source = shipped_directory()
    except MlxOtelError as exc:
        return _fail(exc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.json")):
        target = out / path.name
        if target.exists() and not args.force and target.read_bytes() != path.read_bytes():
            return _fail(
                DashboardError(f"{target} exists and differs; pass --force to overwrite it")
            )
        shutil.copyfile(path, target)
        print(f"wrote {target}")
    return 0


def _run_preview(args: argparse.Namespace) -> int:
    try:
        written = preview(
            args.prometheus,
            args.out,
            directory=getattr(args, "dir", None),
            run_id=args.run_id,
            minutes=args.minutes,
        )
    except MlxOtelError as exc:
        return _fail(exc)
    for path in written:
        print(f"wrote {path}")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def add_parser(subparsers: Any) -> None:
    """Register ``dashboards`` and its subcommands on an argparse subparsers object.

    >>> parser = argparse.ArgumentParser(prog="mlx-otel")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["dashboards", "--check"])
    >>> args.func is _run_generate, args.check
    (True, True)
    """
    parser = subparsers.add_parser(
        "dashboards",
        help="Grafana dashboards: generate (repository), validate, export or preview them",
        description=(
            "Without a subcommand: generate grafana/dashboards/*.json from the dashboard modules "
            "beside them (in the repository; needs grafanalib). The subcommands work on the "
            "JSON shipped in the package."
        ),
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"folder of the dashboard modules (default: {DEFAULT_DIRECTORY})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing JSON files that are stale",
    )
    parser.set_defaults(func=_run_generate)
    commands = parser.add_subparsers(
        dest="dashboards_command", metavar="{validate,export,preview}"
    )
    # SUPPRESS keeps `dashboards --dir X preview` from being reset, and tells the
    # subcommands whether a folder was given at all (else: the shipped JSON).
    dir_help = "folder of the dashboard JSON (default: the JSON shipped in the package)"

    check = commands.add_parser(
        "validate",
        help="check dashboard JSON: structure, variables, and PromQL with --promtool",
        description=(
            "Check that every dashboard JSON file parses, has a title and a unique uid, unique "
            "panel ids, and queries that use only Grafana's variables; exit 1 listing problems."
        ),
    )
    check.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=dir_help)
    check.add_argument(
        "--promtool",
        nargs="?",
        const="promtool",
        default=None,
        metavar="PATH",
        help="also parse every query with Prometheus' promtool (default PATH: promtool)",
    )
    check.set_defaults(func=_run_validate)

    export = commands.add_parser(
        "export",
        help="write the shipped dashboard JSON into a folder (for your Grafana)",
        description="Copy the dashboard JSON shipped in the package into OUT.",
    )
    export.add_argument("out", type=Path, metavar="OUT", help="folder to write the JSON files to")
    export.add_argument("--force", action="store_true", help="overwrite files that differ")
    export.set_defaults(func=_run_export)

    show = commands.add_parser(
        "preview",
        help="render the dashboards' panels from a Prometheus into PNG files",
        description="Render each dashboard's panels, queried from Prometheus, into <out>/<name>.png.",
    )
    show.add_argument(
        "--prometheus",
        required=True,
        metavar="URL",
        help="Prometheus to query, e.g. http://127.0.0.1:9090",
    )
    show.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the PNG files"
    )
    show.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=dir_help)
    show.add_argument("--run-id", default=None, help="show one run (default: all runs)")
    show.add_argument(
        "--minutes",
        type=_positive_float,
        default=30.0,
        help="time range to show, ending now (default: %(default)s)",
    )
    show.set_defaults(func=_run_preview)
