"""Shared fixtures: a monitor on a free port and a parsed scrape of it; and two
guards every test runs under: no child process outlives its test, and no test
writes into the checkout (tests write under ``tmp_path`` only)."""

from __future__ import annotations

import gc
import math
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlx_otel.monitor import TrainingMonitor
from tests import processes

REPO = Path(__file__).resolve().parent.parent
#: Folders of tools' caches and environments, not of anything a test writes.
NOT_WATCHED = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
               ".import_linter_cache", ".hypothesis", "node_modules"}  # fmt: skip


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a Prometheus text exposition keyed by (name, labels)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def sample(samples: dict[Any, float], name: str, /, **labels: str) -> float:
    """The one sample called ``name`` whose labels include ``labels``."""
    found = [
        v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)
    ]
    if len(found) != 1:
        names = sorted({n for n, _ in samples})
        raise AssertionError(f"{len(found)} samples {name}{labels}; names present: {names}")
    return found[0]


def same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.fixture(autouse=True)
def _no_shared_wandb_service() -> Iterator[None]:
    """wandb exports WANDB_SERVICE for child processes once it ran in the test process;
    a trainer or demo subprocess started later would attach to that service (which
    does not finish its runs when the child exits) instead of starting its own."""
    os.environ.pop("WANDB_SERVICE", None)
    yield
    os.environ.pop("WANDB_SERVICE", None)


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[TrainingMonitor]:
    config = {
        "exporter": {"port": 0},
        "monitoring": {"output_dir": str(tmp_path / "outputs"), "generate_charts_every": 0},
    }
    m = TrainingMonitor(config, run_id="test_run")
    try:
        yield m
    finally:
        m.cleanup()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Full garbage collections (the MLX memory tests run two a test, the
    monitor's aggressive cleanup one) need not traverse the libraries imported
    to collect the tests: frozen, those objects are never traversed again."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _children_stopped() -> Iterator[None]:
    """Whatever child process a test started and left running is killed (with
    its process group) when the test ends, passed, failed or timed out."""
    since = processes.mark()
    yield
    processes.stop_all(since)


def _checkout_files() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file in the checkout, tools' caches left out."""
    files = {}
    for folder, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in NOT_WATCHED
                   and not d.startswith(".venv") and not d.endswith(".egg-info")]  # fmt: skip
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.lstat(path)
            except OSError:
                continue
            files[os.path.relpath(path, REPO)] = (stat.st_mtime_ns, stat.st_size)
    return files


def _tracked_files() -> set[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                                timeout=60, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return set()
    return {os.path.normpath(name) for name in listed.decode(errors="replace").split("\0") if name}


@pytest.fixture(scope="session", autouse=True)
def _checkout_untouched() -> Iterator[None]:
    """Fails the run if a test wrote into the checkout (a monitor left at its
    default ``./outputs``, a tool writing next to the code): a user's
    ``make demo`` output lives there. Tracked files are left out (a developer
    may edit code while the suite runs; git itself shows a test that changed
    one); new files and changed or removed untracked ones are reported."""
    before = _checkout_files()
    yield
    processes.stop_all()
    after = _checkout_files()
    tracked = _tracked_files()
    added = sorted(p for p in set(after) - set(before) if p not in tracked)
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p] and p not in tracked)
    removed = sorted(p for p in set(before) - set(after) if p not in tracked)
    if added or changed or removed:
        lines = [f"  added   {p}" for p in added] + [f"  changed {p}" for p in changed]
        lines += [f"  removed {p}" for p in removed]
        pytest.fail("tests wrote into the checkout (write under tmp_path instead):\n"
                    + "\n".join(lines[:50]), pytrace=False)  # fmt: skip
