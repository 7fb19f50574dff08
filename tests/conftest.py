"""Shared fixtures: a monitor on a free port and a parsed scrape of it."""

from __future__ import annotations

import math
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlx_otel.monitor import TrainingMonitor


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
