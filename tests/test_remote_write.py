"""Scale out with existing engines: a Prometheus agent beside the trainer
forwards its scrapes by remote_write to a central Prometheus."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlx_otel import TrainingMonitor
from tests.servers import REPO, PrometheusServer, wait_for

pytestmark = pytest.mark.integration


def test_agent_mode_forwards_the_run_to_a_central_prometheus(tmp_path: Path) -> None:
    config = {"exporter": {"port": 0},
              "monitoring": {"generate_charts_every": 0, "output_dir": str(tmp_path / "out")}}  # fmt: skip
    with TrainingMonitor(config, run_id="remote_run", rank=1) as monitor:
        for step in range(5):
            monitor.log_training_step(step=step, loss=0.5, rewards=[0.25, 0.75])
        target = monitor.endpoint.split("//")[1].split("/")[0]
        central = PrometheusServer(tmp_path / "central", remote_write_receiver=True)
        agent = PrometheusServer(
            tmp_path / "agent",
            targets=[target],
            agent=True,
            remote_write_url=f"{central.url}/api/v1/write",
        )
        with central, agent:
            query = 'mlx_train_steps_total{run_id="remote_run",rank="1"}'
            wait_for(lambda: central.query_values(query), timeout=60,
                     what="the agent's samples in the central Prometheus")  # fmt: skip
            assert list(central.query_values(query).values()) == [5.0]
            count = central.query_values('mlx_train_reward_count{run_id="remote_run"}')
            assert list(count.values()) == [10.0]


def test_the_shipped_agent_config_is_valid() -> None:
    from tests.servers import run_promtool

    path = REPO / "prometheus" / "agent.yml"
    config = yaml.safe_load(path.read_text())
    assert config["remote_write"], "agent.yml must forward somewhere"
    result = run_promtool("check", "config", "--agent", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
