"""A real demo run scraped by the real Prometheus, checked through its HTTP API."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx_otel.catalog import METRICS, Kind, Source
from tests import processes
from tests.servers import PrometheusServer, free_port, python_command, wait_for

pytestmark = pytest.mark.integration

STEPS = 40
RUN_ID = "integration_run"


@pytest.fixture(scope="module")
def demo_and_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    workdir = tmp_path_factory.mktemp("prom_integration")
    port = free_port()
    with PrometheusServer(workdir / "prometheus", targets=[f"127.0.0.1:{port}"]) as prom:
        log_path = workdir / "demo.log"
        with open(log_path, "w") as log:
            demo = processes.popen(
                python_command(
                    "demo", "--steps", str(STEPS), "--port", str(port),
                    "--output-dir", str(workdir / "outputs"), "--wandb", "disabled",
                    "--linger", "60", "--run-id", RUN_ID, "--no-progress",
                    "--step-delay", "0.05",
                ),  # fmt: skip
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            # The demo lingers after its last step: wait until Prometheus saw all steps.
            wait_for(
                lambda: prom.query_values(f'mlx_train_steps_total{{run_id="{RUN_ID}"}}')
                and max(prom.query_values(f'mlx_train_steps_total{{run_id="{RUN_ID}"}}').values())
                == STEPS,
                timeout=120,
                what=f"Prometheus to scrape {STEPS} steps (demo log: {log_path})",
            )
            yield prom, demo, log_path
        finally:
            demo.terminate()
            demo.wait(timeout=30)


def test_every_catalogued_metric_is_in_prometheus_with_run_id(demo_and_prometheus: tuple) -> None:
    prom, _, _ = demo_and_prometheus
    missing = []
    for metric in METRICS:
        if metric.key in ("custom", "memory_block_delta", "memory_block_peak", "dropped_tasks"):
            continue  # only served once a custom value, block or dropped task exists
        if metric.source is Source.TRAINER:
            continue  # served from trainer reports: tests/test_trainers.py proves each one
        name = metric.prometheus_name + ("_count" if metric.kind is Kind.HISTOGRAM else "")
        if not prom.query(f'{name}{{run_id="{RUN_ID}"}}'):
            missing.append(name)
    assert not missing, f"not in Prometheus for run {RUN_ID}: {missing}"


def test_steps_total_equals_steps_run(demo_and_prometheus: tuple) -> None:
    prom, _, log_path = demo_and_prometheus
    values = prom.query_values(f'mlx_train_steps_total{{run_id="{RUN_ID}"}}')
    assert list(values.values()) == [STEPS]
    assert prom.query_values(f'mlx_train_step{{run_id="{RUN_ID}"}}') != {}
    assert max(prom.query_values(f'mlx_train_step{{run_id="{RUN_ID}"}}').values()) == STEPS - 1
    log = log_path.read_text()
    assert re.search(r"metrics: http://127\.0\.0\.1:\d+/metrics", log)


def test_mlx_memory_gauges_are_positive_while_the_model_lives(demo_and_prometheus: tuple) -> None:
    prom, _, _ = demo_and_prometheus
    for name in ("mlx_memory_active_bytes", "mlx_memory_peak_bytes", "mlx_memory_limit_bytes",
                 "mlx_process_resident_memory_bytes", "mlx_system_memory_available_bytes"):
        values = prom.query_values(f'{name}{{run_id="{RUN_ID}"}}')
        assert values and min(values.values()) > 0, f"{name}: {values}"


def test_reward_histogram_counts_every_sample(demo_and_prometheus: tuple) -> None:
    from mlx_otel.demo.rl import DemoSettings

    prom, _, _ = demo_and_prometheus
    settings = DemoSettings()
    per_step = settings.prompts_per_step * settings.group_size
    count = prom.query_values(f'mlx_train_reward_count{{run_id="{RUN_ID}"}}')
    assert list(count.values()) == [STEPS * per_step]
    inf = prom.query_values(f'mlx_train_reward_bucket{{run_id="{RUN_ID}",le="+Inf"}}')
    assert list(inf.values()) == [STEPS * per_step]
    tokens = prom.query_values(f'mlx_train_tokens_total{{run_id="{RUN_ID}"}}')
    assert len(tokens) == 2 and min(tokens.values()) > 0


def test_demo_wrote_the_seed_output_files(demo_and_prometheus: tuple, tmp_path: Path) -> None:
    prom, _, log_path = demo_and_prometheus
    outputs = log_path.parent / "outputs"
    wait_for(lambda: f"wrote {outputs}" in log_path.read_text(), timeout=30,
             what="the demo's export")  # fmt: skip
    for name in ("training_metrics.csv", "training_metrics.json", "stats/metrics_history.csv"):
        assert (outputs / name).stat().st_size > 0
    assert list((outputs / "stats").glob("stats_export_*.json"))
    # A chart not done within charts_timeout is finished by the chart process
    # after the export (a busy machine): it arrives, a little later.
    wait_for(lambda: list((outputs / "charts").glob("dashboard_step_*.png")), timeout=120,
             what="the dashboard chart")  # fmt: skip
    del prom, tmp_path
