"""log_training_step: what it records, what it rejects, and that scrapes stay valid."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_otel.catalog import REWARD_BUCKETS
from mlx_otel.errors import PortInUseError
from mlx_otel.monitor import TrainingMonitor
from tests.conftest import parse_exposition, sample, scrape


def served(monitor: TrainingMonitor) -> dict:
    return parse_exposition(scrape(monitor.endpoint))


def test_values_are_served_with_run_id(monitor: TrainingMonitor) -> None:
    monitor.log_training_step(
        step=7, loss=0.25, reward=0.5, grad_norm=1.5, learning_rate=2e-6,
        thinking_tokens=40, answer_tokens=8, rewards=[0.0, 0.5, 1.0],
    )  # fmt: skip
    s = served(monitor)
    assert sample(s, "mlx_train_loss", run_id="test_run") == 0.25
    assert sample(s, "mlx_train_reward_mean") == 0.5
    assert sample(s, "mlx_train_grad_norm") == 1.5
    assert sample(s, "mlx_train_learning_rate") == 2e-6
    assert sample(s, "mlx_train_step") == 7
    assert sample(s, "mlx_train_steps_total") == 1
    assert sample(s, "mlx_train_tokens_total", kind="thinking") == 40
    assert sample(s, "mlx_train_tokens_total", kind="answer") == 8
    assert sample(s, "mlx_train_reward_count") == 3
    assert sample(s, "mlx_train_reward_sum") == 1.5
    assert sample(s, "mlx_train_reward_bucket", le="0.5") == 2
    assert sample(s, "mlx_memory_active_bytes") >= 0
    assert sample(s, "mlx_memory_limit_bytes") > 0
    assert sample(s, "mlx_process_resident_memory_bytes") > 0
    assert monitor.endpoint.startswith("http://127.0.0.1:")


def test_numpy_and_mlx_scalars_are_accepted(monitor: TrainingMonitor) -> None:
    monitor.log_training_step(
        step=np.int64(3), loss=mx.array(0.5), reward=np.float32(0.25), grad_norm=mx.array([2.0]),
        thinking_tokens=np.int32(5), answer_tokens=mx.array(2), rewards=mx.array([0.2, 0.4]),
    )  # fmt: skip
    s = served(monitor)
    assert sample(s, "mlx_train_loss") == 0.5
    assert sample(s, "mlx_train_reward_mean") == 0.25
    assert sample(s, "mlx_train_grad_norm") == 2.0
    assert sample(s, "mlx_train_step") == 3
    assert sample(s, "mlx_train_tokens_total", kind="answer") == 2
    assert sample(s, "mlx_train_reward_count") == 2
    assert monitor.error_counts() == {}


def test_bad_values_are_counted_logged_once_and_training_goes_on(
    monitor: TrainingMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mlx_otel"):
        for step in range(3):
            monitor.log_training_step(
                step=step, loss=None, reward="high", thinking_tokens=-4, answer_tokens=2,
                grad_norm=1.0,
            )  # fmt: skip
    s = served(monitor)
    assert sample(s, "mlx_otel_errors_total", kind="invalid_value") == 6  # loss and reward, 3x
    assert sample(s, "mlx_otel_errors_total", kind="negative_count") == 3
    assert sample(s, "mlx_train_steps_total") == 3
    assert sample(s, "mlx_train_grad_norm") == 1.0
    assert sample(s, "mlx_train_tokens_total", kind="answer") == 6
    assert sample(s, "mlx_train_tokens_total", kind="thinking") == 0
    assert not any(k == "mlx_train_loss" for k, _ in s), "None must not become a loss value"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("loss=None" in m for m in messages) == 1, messages
    assert sum("reward='high'" in m for m in messages) == 1
    assert sum("thinking_tokens=-4" in m for m in messages) == 1


def test_strict_mode_raises_naming_key_and_value(tmp_path: Path) -> None:
    config = {"exporter": {"enabled": False}, "monitoring": {"output_dir": str(tmp_path)}}
    with TrainingMonitor(config, run_id="s", strict=True) as m:
        with pytest.raises(ValueError, match=r"loss='nan\?'"):
            m.log_training_step(step=0, loss="nan?")
        with pytest.raises(ValueError, match="answer_tokens=-1.*negative"):
            m.log_training_step(step=0, answer_tokens=-1)


def test_run_id_comes_from_mlx_otel_run_id_unless_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"exporter": {"port": 0}, "monitoring": {"output_dir": str(tmp_path)}}
    monkeypatch.setenv("MLX_OTEL_RUN_ID", "launcher_run_7")
    m = TrainingMonitor(config)
    try:
        m.log_training_step(step=1, loss=0.5)
        s = served(m)
    finally:
        m.cleanup()
    assert m.run_id == "launcher_run_7"
    assert sample(s, "mlx_train_loss", run_id="launcher_run_7") == 0.5
    explicit = TrainingMonitor({**config, "exporter": {"enabled": False}}, run_id="mine")
    explicit.cleanup()
    assert explicit.run_id == "mine"
    monkeypatch.delenv("MLX_OTEL_RUN_ID")
    fresh = TrainingMonitor({**config, "exporter": {"enabled": False}})
    fresh.cleanup()
    assert fresh.run_id.startswith("run_") and fresh.run_id != "launcher_run_7"


def test_nan_and_inf_gauges_are_exported_as_they_are(monitor: TrainingMonitor) -> None:
    monitor.log_training_step(step=0, loss=float("nan"), grad_norm=float("inf"),
                              rewards=[0.5, float("nan"), float("inf")])  # fmt: skip
    s = served(monitor)
    assert math.isnan(sample(s, "mlx_train_loss"))
    assert sample(s, "mlx_train_grad_norm") == math.inf
    # Histograms leave non-finite samples out and count them.
    assert sample(s, "mlx_train_reward_count") == 1
    assert sample(s, "mlx_otel_errors_total", kind="non_finite") == 2
    monitor.log_training_step(step=1, loss=0.75)
    assert sample(served(monitor), "mlx_train_loss") == 0.75


def test_custom_metrics_are_sanitised_and_capped(tmp_path: Path) -> None:
    config = {"exporter": {"port": 0, "max_custom_metrics": 2},
              "monitoring": {"output_dir": str(tmp_path), "generate_charts_every": 0}}  # fmt: skip
    m = TrainingMonitor(config, run_id="c")
    try:  # no `with`: the end-of-run export (charts) is not what this test is about
        m.log_training_step(step=0, kl_div=0.1, **{"Entropy Bonus!": 0.2}, third=0.3)
        m.log_training_step(step=1, kl_div=0.15, fourth="x")
        s = served(m)
    finally:
        m.cleanup()
    assert sample(s, "mlx_train_custom", name="kl_div") == 0.15
    assert sample(s, "mlx_train_custom", name="entropy_bonus") == 0.2
    assert not [k for k in s if k[0] == "mlx_train_custom" and ("name", "third") in k[1]]
    assert sample(s, "mlx_otel_errors_total", kind="custom_metric_cap") == 2


def test_step_duration_from_interval_or_step_time(monitor: TrainingMonitor) -> None:
    monitor.log_training_step(step=0, loss=1.0)
    time.sleep(0.03)
    monitor.log_training_step(step=1, loss=1.0)
    monitor.log_training_step(step=2, loss=1.0, step_time=7.0)
    s = served(monitor)
    assert sample(s, "mlx_train_step_duration_seconds_count") == 2
    total = sample(s, "mlx_train_step_duration_seconds_sum")
    assert 7.03 <= total < 7.5
    assert sample(s, "mlx_train_step_duration_seconds_bucket", le="5.0") == 1


def test_port_in_use_names_port_and_how_to_change_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            TrainingMonitor({"exporter": {"port": port}}, run_id="p")
    message = str(info.value)
    assert str(port) in message and "exporter.port" in message and "--port" in message


def test_reward_histogram_uses_reward_buckets(monitor: TrainingMonitor) -> None:
    monitor.log_training_step(step=0, rewards=[0.05])
    s = served(monitor)
    bounds = sorted(float(dict(k[1])["le"]) for k in s if k[0] == "mlx_train_reward_bucket")
    assert bounds == [*REWARD_BUCKETS, math.inf]


def test_scrapes_stay_valid_under_concurrency_and_end_exact(monitor: TrainingMonitor) -> None:
    rng = np.random.default_rng(0)
    all_rewards = rng.uniform(0, 1, size=(2000, 64))
    stop = threading.Event()
    problems: list[str] = []
    scrapes = 0

    def scraper() -> None:
        nonlocal scrapes
        last_count = last_steps = 0.0
        while not stop.is_set():
            s = served(monitor)
            scrapes += 1
            buckets = sorted(
                ((float(dict(k[1])["le"]), v) for k, v in s.items() if k[0] == "mlx_train_reward_bucket"),
            )
            counts = [v for _, v in buckets]
            if counts != sorted(counts):
                problems.append(f"buckets not monotone: {counts}")
            count = s.get(next((k for k in s if k[0] == "mlx_train_reward_count"), None), 0.0)
            if buckets and buckets[-1][1] != count:
                problems.append(f"+Inf {buckets[-1][1]} != _count {count}")
            steps = sample(s, "mlx_train_steps_total")
            if count < last_count or steps < last_steps:
                problems.append("a counter went down")
            last_count, last_steps = count, steps
            time.sleep(0.003)

    thread = threading.Thread(target=scraper)
    thread.start()
    for step, rewards in enumerate(all_rewards):
        monitor.log_training_step(step=step, loss=1.0, reward=float(rewards.mean()), rewards=rewards)
        time.sleep(0.0005)  # a (very fast) training step
    stop.set()
    thread.join()
    assert not problems, problems[:5]
    assert scrapes > 5
    s = served(monitor)
    flat = all_rewards.ravel()
    assert sample(s, "mlx_train_reward_count") == flat.size
    assert sample(s, "mlx_train_reward_sum") == pytest.approx(flat.sum(), rel=1e-12)
    for bound in REWARD_BUCKETS:
        assert sample(s, "mlx_train_reward_bucket", le=str(bound)) == np.count_nonzero(flat <= bound)
    assert sample(s, "mlx_train_steps_total") == len(all_rewards)


def test_log_gradients_serves_layer_norms_with_a_bounded_layer_count(tmp_path: Path) -> None:
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(12)])
    x = mx.random.normal((8, 4))
    _, grads = nn.value_and_grad(model, lambda m, x: (m(x) ** 2).mean())(model, x)
    config = {"exporter": {"port": 0, "max_layer_series": 5},
              "monitoring": {"output_dir": str(tmp_path), "generate_charts_every": 0,
                             "log_gradients_every": 2}}  # fmt: skip
    with TrainingMonitor(config, run_id="g") as m:
        norms = m.log_gradients(0, grads)
        assert m.log_gradients(1, grads) is None  # between the configured steps
        s = served(m)
    layers = {dict(k[1])["layer"]: v for k, v in s.items() if k[0] == "mlx_train_layer_grad_norm"}
    assert 1 < len(layers) <= 5 and norms is not None and norms.grouped
    flat = np.concatenate([np.array(g).ravel() for _, g in tree_flatten(grads)])
    assert sample(s, "mlx_train_grad_norm") == pytest.approx(float(np.linalg.norm(flat)), rel=1e-5)
    # Grouping keeps the global norm: the groups' norms add up in quadrature.
    assert math.sqrt(sum(v * v for v in layers.values())) == pytest.approx(
        float(np.linalg.norm(flat)), rel=1e-5
    )


def test_step_may_be_positional_and_is_required(monitor: TrainingMonitor) -> None:
    monitor.log_training_step(4, loss=0.5, kl=0.25)
    s = served(monitor)
    assert sample(s, "mlx_train_step") == 4
    assert sample(s, "mlx_train_kl") == 0.25
    with pytest.raises(TypeError, match="step"):
        monitor.log_training_step(loss=0.5)
