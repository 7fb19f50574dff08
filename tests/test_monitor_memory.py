"""Memory in the monitor: real demo runs, leak or not, and the seed's profiling example."""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest

from mlx_otel import TrainingMonitor
from mlx_otel.demo.rl import DemoSettings, DemoTrainer
from tests.conftest import parse_exposition, sample

STEPS = 40


def run_demo(tmp_path: Path, leak_mb: float) -> tuple[TrainingMonitor, dict]:
    config = {"exporter": {"port": 0},
              "monitoring": {"generate_charts_every": 0, "output_dir": str(tmp_path)},
              "trainer": {"leak_detection_window": 30}}  # fmt: skip
    # Earlier tests' garbage, collected mid-run, would move active memory.
    gc.collect()
    monitor = TrainingMonitor(config, run_id=f"leak_{leak_mb}")
    trainer = DemoTrainer(DemoSettings(steps=STEPS, leak_mb_per_step=leak_mb))
    for step in range(STEPS):
        result = trainer.train_step(step)
        monitor.log_training_step(step=step, loss=result.loss, rewards=result.rewards)
    monitor.flush()
    samples = parse_exposition(monitor.telemetry.exposition())
    trainer.release_leak()
    return monitor, samples


@pytest.mark.integration
def test_a_demo_run_without_a_leak_never_reports_one(tmp_path: Path) -> None:
    monitor, samples = run_demo(tmp_path, 0.0)
    try:
        leaking, description = monitor.memory_profiler.detect_memory_leak()
        assert not leaking, description
        assert abs(sample(samples, "mlx_memory_leak_slope_per_step_bytes")) < 0.5 * 2**20
    finally:
        monitor.cleanup()


@pytest.mark.integration
def test_a_leaking_demo_run_is_reported_with_its_slope(tmp_path: Path) -> None:
    monitor, samples = run_demo(tmp_path, 2.0)
    try:
        leaking, description = monitor.memory_profiler.detect_memory_leak()
        assert leaking, description
        # It names the slope it measured (2 MB a step, as the gauge below).
        named = re.search(r"grows ([0-9.]+) MB/step", description)
        assert named and float(named.group(1)) == pytest.approx(2.0, rel=0.05), description
        slope = sample(samples, "mlx_memory_leak_slope_per_step_bytes")
        assert slope == pytest.approx(2 * 2**20, rel=0.05)
        assert sample(samples, "mlx_memory_leak_slope_bytes_per_second") > 0
    finally:
        monitor.cleanup()


def test_unhealthy_memory_is_warned_once_per_episode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import mlx.core as mx

    config = {"exporter": {"port": 0}, "trainer": {"memory_safety_threshold_mb": 1},
              "monitoring": {"generate_charts_every": 0, "output_dir": str(tmp_path)}}  # fmt: skip
    held = mx.ones((1024, 1024))  # 4 MB, above the 1 MB threshold
    mx.eval(held)
    with TrainingMonitor(config, run_id="health") as monitor:
        with caplog.at_level("WARNING", logger="mlx_otel"):
            results = [monitor.check_memory_health() for _ in range(5)]
        assert all(not healthy for healthy, _ in results)
        assert "threshold" in results[0][1]
        assert sum("MLX memory" in r.getMessage() or "threshold" in r.getMessage()
                   for r in caplog.records) == 1  # fmt: skip
    del held


def test_seed_memory_profiling_example_runs(tmp_path: Path) -> None:
    # The seed's "Memory Profiling" usage, imports adjusted.
    from mlx_otel import MemoryMonitor, MemoryProfiler

    # Initialize
    profiler = MemoryProfiler(
        alert_threshold_mb=8000,
        leak_detection_window=50
    )

    # Take snapshots
    snapshot = profiler.take_snapshot()
    print(f"Allocated: {snapshot.mlx_allocated_mb:.1f}MB")

    # Check health
    is_healthy, message = profiler.check_memory_health()

    # Detect leaks
    leak_detected, description = profiler.detect_memory_leak()

    # Cleanup
    profiler.aggressive_cleanup()

    # Use context manager
    with MemoryMonitor(profiler, "training_step"):
        # ... code to monitor ...
        pass

    assert is_healthy and "MB" in message
    assert not leak_detected and description
    assert "training_step" in profiler.block_stats()
