"""The benchmarks still run and print their ratios (their figures are not judged here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests import processes

REPO = Path(__file__).resolve().parent.parent

CASES = {
    "bench_flood.py": (["--steps", "5000"], "single call (µs):"),
    "bench_hot_path.py": (["--quick"], "log_training_step / prometheus-client ="),
    "bench_memory_gradients.py": (["--rounds", "5"], "of an optimizer step"),
    "bench_phases.py": (["--quick"], "phase / prometheus-client ="),
    "bench_rl_step.py": (["--rounds", "2", "--calls", "100"],
                         "RL step ratio log_training_step / prometheus-client ="),
    "bench_scale.py": (["--quick"], "10,000 layer series: scrape mlx_otel / prometheus-client ="),
    "bench_startup.py": (["--repeats", "1"], "start-up ratio mlx_otel / bare ="),
    "bench_training_overhead.py": (["--steps", "20", "--repeats", "1"], "ratio on/off:"),
    "bench_trainer_end.py": (["--iters", "20", "--repeats", "1", "--only", "lora"],
                             "trainer end ratio mlx-otel lora / plain ="),
}


@pytest.mark.integration
@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_and_prints_its_ratio(script: str, tmp_path: Path) -> None:
    args, expected = CASES[script]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true"}
    result = processes.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout, result.stdout[-3000:]


def test_every_benchmark_is_covered() -> None:
    assert {p.name for p in (REPO / "benchmarks").glob("bench_*.py")} == set(CASES)
