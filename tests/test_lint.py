"""The code passes ruff (the rules are in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests import processes

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_ruff_check_passes() -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    result = processes.run(
        [sys.executable, "-m", "ruff", "check", "mlx_otel", "tests", "benchmarks", "grafana"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
