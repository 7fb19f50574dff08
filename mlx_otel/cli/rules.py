"""``mlx-otel rules``: print or write the shipped Prometheus rules and their promtool tests.

    mlx-otel rules > mlx_otel_rules.yml     # one rule file: recording rules and alerts
    mlx-otel rules --out DIR                # DIR/rules/*.yml and DIR/tests/*.yml
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from mlx_otel.assets import asset_path, rule_files, rule_test_files
from mlx_otel.errors import MlxOtelError

__all__ = ["add_parser", "combined_rules"]


def combined_rules() -> str:
    """All shipped rule groups in one Prometheus rule file (YAML text)."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    groups = []
    for path in rule_files():
        groups += yaml.safe_load(path.read_text())["groups"]
    header = (
        "# mlx_otel's Prometheus rules (recording rules and alerts), from `mlx-otel rules`.\n"
        "# Load with rule_files in prometheus.yml; documented in docs/alerts.md.\n"
    )
    return header + yaml.dump(
        {"groups": groups}, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True
    )


def _run_rules(args: argparse.Namespace) -> int:
    try:
        if args.out is None:
            sys.stdout.write(combined_rules())
            return 0
        out = Path(args.out)
        for folder, files in (("rules", rule_files()), ("tests", rule_test_files())):
            (out / folder).mkdir(parents=True, exist_ok=True)
            for path in files:
                shutil.copyfile(path, out / folder / path.name)
                print(f"wrote {out / folder / path.name}")
        runbooks = out / "runbooks.md"
        shutil.copyfile(asset_path("docs", "runbooks.md"), runbooks)
        print(f"wrote {runbooks}")
    except (MlxOtelError, OSError) as exc:
        print(f"mlx-otel rules: {exc}", file=sys.stderr)
        return 2
    print(f"load {out / 'rules'}/*.yml from prometheus.yml (rule_files); test them with")
    print(f"  promtool test rules {out / 'tests'}/*.yml")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``rules`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "rules",
        help="print the shipped Prometheus rules, or write them with their tests",
        description=(
            "Without --out: print every recording rule and alert as one Prometheus rule file. "
            "With --out DIR: write DIR/rules/*.yml, their promtool tests DIR/tests/*.yml "
            "and DIR/runbooks.md."
        ),
    )
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="folder to write to")
    parser.set_defaults(func=_run_rules)
