"""The catalogue is the single source of metric names."""

from __future__ import annotations

import re

import mlx.core as mx
import pytest

from mlx_otel.catalog import METRICS, Kind, Source, by_key, by_prometheus_name
from mlx_otel.monitor import TrainingMonitor
from mlx_otel.records import TrainerReport
from tests.conftest import parse_exposition

DESIGN_CONTRACT = {
    "mlx_memory_active_bytes", "mlx_memory_cache_bytes", "mlx_memory_peak_bytes",
    "mlx_memory_limit_bytes", "mlx_otel_memory_threshold_bytes",
    "mlx_system_memory_available_bytes", "mlx_process_resident_memory_bytes",
    "mlx_train_steps_total", "mlx_train_step", "mlx_train_loss", "mlx_train_reward_mean",
    "mlx_train_grad_norm", "mlx_train_learning_rate", "mlx_train_reward",
    "mlx_train_tokens_total", "mlx_train_step_duration_seconds",
    "mlx_train_layer_grad_norm", "mlx_otel_errors_total",
}  # fmt: skip


def test_every_contract_name_is_catalogued() -> None:
    assert {m.prometheus_name for m in METRICS} >= DESIGN_CONTRACT


def test_exporter_produces_exactly_the_catalogued_names(monitor: TrainingMonitor) -> None:
    # Give every metric a value, then compare what the real exporter emits.
    with monitor.phase("generate"):  # a timed phase of the step
        pass
    monitor.log_training_step(
        0, loss=1.0, reward=0.5, grad_norm=2.0, learning_rate=1e-3, thinking_tokens=3,
        answer_tokens=2, memory_allocated_mb=10.0, rewards=[0.1, 0.2], my_metric=1.0,
    )
    # What the trainer integrations report (mlx_otel.trainers).
    trainer = [m for m in METRICS if m.source is Source.TRAINER]
    monitor.record_report(TrainerReport(
        1, values={m.key: 1.0 for m in trainer if not m.labels},
        labelled={m.key: {"x": 1.0} for m in trainer if m.labels},
    ))  # fmt: skip
    monitor.log_training_step(1, loss=1.0)
    # RL health: every per-completion list, over enough steps for anomaly scores.
    for step in range(2, 30):
        monitor.log_training_step(
            step, loss=1.0, rewards=[1.0, 0.0], group_size=2, completion_lengths=[3, 5],
            truncated=[False, True], correct=[True, False], thinking_tokens=[2, 1],
            answer_tokens=[1, 0], entropy=0.5, kl=0.1, validation_reward=0.5,
        )  # fmt: skip
    assert monitor.flush()
    monitor.log_gradients(1, {"layers": [{"weight": mx.ones((2,))}]})
    monitor.errors.drop("charts")
    samples = parse_exposition(monitor.telemetry.exposition())
    served = {name for name, _ in samples}
    for metric in METRICS:
        if metric.key.startswith("memory_block") or metric.key.startswith("memory_leak"):
            continue  # served once a MemoryMonitor block / leak window exists (test_memory)
        if metric.kind is Kind.HISTOGRAM:
            expected = {f"{metric.prometheus_name}_{s}" for s in ("bucket", "count", "sum")}
        else:
            expected = {metric.prometheus_name}
        assert expected <= served, f"{metric.key}: exporter did not produce {expected}"
    for (name, labels) in samples:
        assert ("run_id", "test_run") in labels, f"{name} has no run_id label"


def test_lookup_errors_name_the_known_metrics() -> None:
    assert by_key("loss").prometheus_name == "mlx_train_loss"
    assert by_prometheus_name("mlx_train_loss").key == "loss"
    with pytest.raises(KeyError, match="known:.*loss"):
        by_key("los")


def test_histograms_have_buckets_and_counters_end_in_total() -> None:
    for m in METRICS:
        if m.kind is Kind.HISTOGRAM:
            assert m.buckets and list(m.buckets) == sorted(m.buckets)
            assert m.buckets[0] >= 0, "negative buckets make the client drop _count/_sum"
        if m.kind is Kind.COUNTER:
            assert m.prometheus_name.endswith("_total")
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", m.prometheus_name)
        assert m.description.endswith(".")
