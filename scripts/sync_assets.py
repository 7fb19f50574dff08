#!/usr/bin/env python3
"""Copy the monitoring files of the repository into the package (mlx_otel/assets/).

The repository's prometheus/, grafana/, docs/runbooks.md and
docker-compose.yml are the files people edit; the package ships a copy so
that `pip install mlx-otel` delivers them (`mlx-otel stack init`, `mlx-otel
rules`, `mlx-otel dashboards export`). Run this after editing any of them
(`make assets`; `make dashboards` runs it too):

    python scripts/sync_assets.py           # update mlx_otel/assets/
    python scripts/sync_assets.py --check   # exit 1 naming the files that differ
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "mlx_otel" / "assets"

#: What ships, as glob patterns relative to the repository root. The copy
#: keeps each file's path (prometheus/rules/x.yml -> assets/prometheus/rules/x.yml).
PATTERNS = (
    "prometheus/prometheus.yml",
    "prometheus/alertmanager.yml",
    "prometheus/agent.yml",
    "prometheus/targets.example.json",
    "prometheus/targets/README.md",
    "prometheus/rules/*.yml",
    "prometheus/tests/*.yml",
    "grafana/dashboards/*.json",
    "grafana/provisioning/**/*.y*ml",
    "docs/runbooks.md",
    "docker-compose.yml",
)
#: Folders of the copy that this script owns entirely (stale files there are removed).
OWNED = ("prometheus", "grafana", "docs", "docker-compose.yml")


def wanted() -> dict[Path, Path]:
    """{path in the package: path in the repository} of every shipped file."""
    files = {}
    for pattern in PATTERNS:
        matches = sorted(REPO.glob(pattern))
        if not matches:
            raise SystemExit(f"sync_assets: {pattern} matches no file in {REPO}")
        for source in matches:
            files[ASSETS / source.relative_to(REPO)] = source
    return files


def present() -> set[Path]:
    found = set()
    for name in OWNED:
        path = ASSETS / name
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found |= {p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return found


def differences() -> list[str]:
    """What differs between the repository and the package copy, one line each."""
    files = wanted()
    lines = []
    for target, source in sorted(files.items()):
        if not target.exists():
            lines.append(f"missing  {target.relative_to(REPO)}")
        elif target.read_bytes() != source.read_bytes():
            lines.append(f"differs  {target.relative_to(REPO)} (from {source.relative_to(REPO)})")
    for extra in sorted(present() - set(files)):
        lines.append(f"stale    {extra.relative_to(REPO)}")
    return lines


def sync() -> list[str]:
    changes = differences()
    files = wanted()
    for extra in present() - set(files):
        extra.unlink()
    for target, source in files.items():
        if not target.exists() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    for folder in sorted((p for p in ASSETS.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on differences")
    args = parser.parse_args(argv)
    if args.check:
        changes = differences()
        if changes:
            print("mlx_otel/assets/ differs from the repository's files; run "
                  "`python scripts/sync_assets.py` (or `make assets`) and commit:", file=sys.stderr)
            for line in changes:
                print(f"  {line}", file=sys.stderr)
            return 1
        print("mlx_otel/assets/ matches the repository")
        return 0
    for line in sync():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
