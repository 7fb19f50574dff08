"""A short run pushes its last values to a real Pushgateway when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_otel import TrainingMonitor
from tests.conftest import parse_exposition, sample, scrape
from tests.servers import PushgatewayServer


@pytest.mark.integration
def test_final_values_reach_the_pushgateway_grouped_by_run(tmp_path: Path) -> None:
    with PushgatewayServer(tmp_path / "pushgateway") as gateway:
        config = {
            "exporter": {"port": 0, "pushgateway_url": gateway.url},
            "monitoring": {"generate_charts_every": 0, "output_dir": str(tmp_path / "out")},
        }
        with TrainingMonitor(config, run_id="short_job", rank=0) as monitor:
            for step in range(3):
                monitor.log_training_step(step=step, loss=1.0 / (step + 1), rewards=[0.5, 1.0])
        samples = parse_exposition(scrape(f"{gateway.url}/metrics"))
    group = {"job": "mlx_otel", "run_id": "short_job", "rank": "0"}
    assert sample(samples, "mlx_train_steps_total", **group) == 3
    assert sample(samples, "mlx_train_loss", **group) == 1.0 / 3
    assert sample(samples, "mlx_train_reward_count", **group) == 6


def test_an_unreachable_pushgateway_is_reported_not_raised(tmp_path: Path) -> None:
    config = {
        "exporter": {"port": 0, "pushgateway_url": "http://127.0.0.1:9"},
        "monitoring": {"generate_charts_every": 0, "output_dir": str(tmp_path / "out")},
    }
    monitor = TrainingMonitor(config, run_id="no_gateway")
    monitor.log_training_step(step=0, loss=0.5)
    monitor.cleanup()  # must not raise
    assert monitor.error_counts().get("export") == 1
