"""The monitor end to end: the seed's basic usage, its files and its WandB run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlx_otel import MonitorConfig, MonitoringManager
from tests.wandb_records import read_run

#: A whole run with a real WandB offline run (its wandb-core service) and charts.
pytestmark = pytest.mark.integration

STEPS = 12


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    os.environ.setdefault("WANDB_SILENT", "true")
    out = tmp_path_factory.mktemp("monitor_outputs")
    config = MonitorConfig.model_validate({
        "monitoring": {"use_wandb": True, "wandb_mode": "offline", "output_dir": str(out),
                       "log_samples_every": 5, "generate_charts_every": 10},
        "trainer": {"memory_safety_threshold_mb": 8000},
        "exporter": {"port": 0},
    })  # fmt: skip
    rng = np.random.default_rng(3)
    truth: dict[int, dict[str, float]] = {}
    # The seed's "Basic Usage", with the monitor's real names.
    monitor = MonitoringManager(config=config, run_id="run_001")
    for step in range(STEPS):
        loss, reward = float(1 / (step + 1)), float(step / STEPS)
        monitor.log_training_step(
            step=step, loss=loss, reward=reward, grad_norm=0.1 * step, learning_rate=2e-6,
            thinking_tokens=100 + step, answer_tokens=20, memory_allocated_mb=512.0,
            rewards=rng.uniform(size=8).tolist(), kl=0.01 * step,
        )  # fmt: skip
        monitor.log_samples(step, ["#12?"], ["..7=93$"], ["12"], [0.9])
        truth[step] = {"loss": loss, "reward_mean": reward}
        if step % 10 == 0:
            assert monitor.check_memory_health()[0]
        if step % 100 == 0:
            monitor.generate_charts(step)
    checkpoint = out / "checkpoint.safetensors"
    checkpoint.write_bytes(b"weights")
    charts = monitor.checkpoint(STEPS - 1, checkpoint).result(timeout=120)
    assert charts["dashboard"].name == f"dashboard_step_{STEPS - 1}.png"
    monitor.export_all()
    monitor.cleanup()
    return out, truth


def test_seed_output_files_are_written(finished_run: tuple[Path, dict]) -> None:
    out, truth = finished_run
    frame = pd.read_csv(out / "training_metrics.csv")
    assert list(frame.columns[:7]) == [
        "step", "run_id", "timestamp", "loss", "reward_mean", "grad_norm", "learning_rate",
    ]  # fmt: skip
    assert frame["step"].tolist() == list(range(STEPS))
    assert frame["loss"].tolist() == pytest.approx([truth[s]["loss"] for s in range(STEPS)])
    assert set(frame["run_id"]) == {"run_001"}
    assert frame["kl"].tolist() == pytest.approx([0.01 * s for s in range(STEPS)])
    summary = json.loads((out / "monitoring_summary.json").read_text())
    assert summary["session"]["total_steps"] == STEPS
    assert summary["metrics"]["loss"]["final"] == pytest.approx(truth[STEPS - 1]["loss"])
    assert json.loads((out / "training_metrics.json").read_text())["run_id"] == "run_001"
    assert list((out / "stats").glob("stats_export_*.json"))
    assert (out / "stats" / "metrics_history.csv").exists()
    for chart in ("training_curves", "dashboard", "reward_dist", "memory"):
        assert (out / "charts" / f"{chart}_step_10.png").exists(), chart
    assert (out / "charts" / "correlation_matrix.png").exists()


def test_wandb_run_holds_the_same_metrics_grouped(finished_run: tuple[Path, dict]) -> None:
    out, truth = finished_run
    run = read_run(out / "wandb")
    rows = run.by_step()
    for step in range(STEPS):
        assert rows[step]["train/loss"] == pytest.approx(truth[step]["loss"])
        assert rows[step]["rl/reward_mean"] == pytest.approx(truth[step]["reward_mean"])
        assert rows[step]["rl/kl"] == pytest.approx(0.01 * step)
    assert run.steps_with("rl/samples") == [0, 5, 10]
    assert run.steps_with("rl/rewards") == [0, 5, 10]


def test_checkpoint_is_a_model_artifact_with_charts(finished_run: tuple[Path, dict]) -> None:
    out, _ = finished_run
    run = read_run(out / "wandb")
    models = [a for a in run.artifacts if a.get("type") == "model"]
    assert models, f"no model artifact; artifacts: {[a.get('name') for a in run.artifacts]}"
    assert (out / "charts" / f"dashboard_step_{STEPS - 1}.png").exists()
    assert run.steps_with("charts/dashboard")  # charts were forwarded to WandB as images


def test_failed_health_check_becomes_one_wandb_alert(tmp_path: Path) -> None:
    import mlx.core as mx

    config = {
        "monitoring": {"use_wandb": True, "wandb_mode": "offline", "output_dir": str(tmp_path),
                       "generate_charts_every": 0},
        "trainer": {"memory_safety_threshold_mb": 1},
        "exporter": {"port": 0},
    }  # fmt: skip
    held = mx.ones((1024, 1024))  # 4 MB against a 1 MB threshold
    mx.eval(held)
    monitor = MonitoringManager(config=config, run_id="unhealthy")
    for step in range(3):
        monitor.log_training_step(step=step, loss=0.5)
        assert not monitor.check_memory_health()[0]
    monitor.cleanup()
    alerts = read_run(tmp_path / "wandb").alerts
    assert len(alerts) == 1, alerts  # once per episode, not per check
    assert alerts[0]["title"] == "MLX memory unhealthy"
    assert "unhealthy" in alerts[0]["text"] and "threshold" in alerts[0]["text"]
    del held
