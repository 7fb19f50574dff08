"""BulkHistogram: exact counts, sums and buckets, and the exposition it serves.

The reward and step-duration histograms are folded in bulk with NumPy, away
from the OpenTelemetry SDK, so nothing else checks their arithmetic. These
tests assert on values, the way prometheus-client's own tests do: a fresh
registry, the served text compared to an expected block, sample values read
back by name.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import warnings

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mlx_otel.catalog import by_key
from mlx_otel.exporter.histograms import BulkHistogram, HistogramCollector
from mlx_otel.monitor import TrainingMonitor
from tests.conftest import parse_exposition, sample, scrape

BOUNDS = (0.0, 0.5, 1.0)


def histogram(bounds: tuple[float, ...] = BOUNDS) -> BulkHistogram:
    return BulkHistogram(dataclasses.replace(by_key("reward"), buckets=bounds))


def served(*histograms: BulkHistogram, labels: dict[str, str] | None = None) -> str:
    registry = CollectorRegistry()
    registry.register(HistogramCollector(histograms, labels or {"run_id": "r1"}))
    return generate_latest(registry).decode()


def test_the_exposition_is_the_expected_block() -> None:
    h = histogram()
    h.record_many(np.array([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 3.0]))
    assert served(h) == (
        "# HELP mlx_train_reward Per-sample rewards (the rewards= argument), "
        "non-finite ones left out.\n"
        "# TYPE mlx_train_reward histogram\n"
        'mlx_train_reward_bucket{le="0.0",run_id="r1"} 2.0\n'
        'mlx_train_reward_bucket{le="0.5",run_id="r1"} 4.0\n'
        'mlx_train_reward_bucket{le="1.0",run_id="r1"} 6.0\n'
        'mlx_train_reward_bucket{le="+Inf",run_id="r1"} 7.0\n'
        'mlx_train_reward_count{run_id="r1"} 7.0\n'
        'mlx_train_reward_sum{run_id="r1"} 4.5\n'
    )


def test_a_value_equal_to_a_bound_is_counted_in_that_bounds_bucket() -> None:
    h = histogram()
    for value in BOUNDS:
        h.record(value)
    s = parse_exposition(served(h))
    assert sample(s, "mlx_train_reward_bucket", le="0.0") == 1
    assert sample(s, "mlx_train_reward_bucket", le="0.5") == 2
    assert sample(s, "mlx_train_reward_bucket", le="1.0") == 3
    assert sample(s, "mlx_train_reward_bucket", le="+Inf") == 3


def test_a_fresh_histogram_serves_zeros() -> None:
    s = parse_exposition(served(histogram()))
    assert [sample(s, "mlx_train_reward_bucket", le=le) for le in ("0.0", "0.5", "1.0", "+Inf")] == [
        0, 0, 0, 0
    ]
    assert sample(s, "mlx_train_reward_count") == 0
    assert sample(s, "mlx_train_reward_sum") == 0


def test_many_folds_add_up_to_the_exact_counts_and_sum_of_all_values() -> None:
    rng = np.random.default_rng(7)
    bounds = by_key("reward").buckets
    assert bounds is not None
    h = histogram(bounds)
    pieces = [rng.uniform(-2, 12, size=n) for n in (1, 0, 64, 1000, 3, 20_000)]
    for piece in pieces:
        h.record_many(piece)
    values = np.concatenate(pieces).tolist()
    s = parse_exposition(served(h))
    for bound in bounds:
        expected = sum(1 for v in values if v <= bound)  # Prometheus' le, counted one by one
        assert sample(s, "mlx_train_reward_bucket", le=str(bound)) == expected, bound
    assert sample(s, "mlx_train_reward_bucket", le="+Inf") == len(values)
    assert sample(s, "mlx_train_reward_count") == len(values) == h.count
    assert sample(s, "mlx_train_reward_sum") == pytest.approx(math.fsum(values), rel=1e-12)


def test_an_empty_fold_changes_nothing() -> None:
    h = histogram()
    h.record_many(np.array([0.25, 0.75]))
    before = served(h)
    h.record_many(np.array([], dtype=np.float64))
    assert served(h) == before
    assert h.count == 2


def test_a_sum_past_the_largest_float_is_inf_without_a_warning() -> None:
    h = histogram()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h.record_many(np.array([1e308, 1e308]))
    s = parse_exposition(served(h))
    assert sample(s, "mlx_train_reward_sum") == math.inf
    assert sample(s, "mlx_train_reward_count") == 2
    assert sample(s, "mlx_train_reward_bucket", le="1.0") == 0


def test_non_finite_rewards_are_left_out_of_the_histogram_and_counted(monitor: TrainingMonitor) -> None:
    rewards = [0.25, math.nan, math.inf, -math.inf, 0.75]
    monitor.log_training_step(0, loss=1.0, rewards=rewards)
    monitor.log_training_step(1, loss=1.0, rewards=[1.0])
    assert monitor.flush(30)
    s = parse_exposition(scrape(str(monitor.endpoint)))
    assert sample(s, "mlx_train_reward_count") == 3
    assert sample(s, "mlx_train_reward_sum") == 2.0
    assert sample(s, "mlx_train_reward_bucket", le="0.5") == 1
    assert sample(s, "mlx_train_reward_bucket", le="+Inf") == 3
    assert sample(s, "mlx_otel_errors_total", kind="non_finite") == 3
    assert monitor.error_counts()["non_finite"] == 3


def test_the_collector_serves_each_histogram_with_the_fixed_labels() -> None:
    rewards = histogram()
    durations = BulkHistogram(by_key("step_duration"))
    rewards.record_many(np.array([0.5]))
    durations.record_many(np.array([0.002, 0.003]))
    s = parse_exposition(served(rewards, durations, labels={"run_id": "r2", "rank": "0"}))
    assert sample(s, "mlx_train_reward_count", run_id="r2", rank="0") == 1
    assert sample(s, "mlx_train_step_duration_seconds_count", run_id="r2", rank="0") == 2
    assert sample(s, "mlx_train_step_duration_seconds_bucket", le="0.0025") == 1
    assert sample(s, "mlx_train_step_duration_seconds_sum") == pytest.approx(0.005)


def test_folds_from_one_thread_while_another_collects_lose_nothing() -> None:
    h = histogram()
    piece = np.linspace(-1, 2, 1000)
    done = threading.Event()
    counts: list[float] = []

    def collect() -> None:
        while not done.is_set():
            counts.append(sample(parse_exposition(served(h)), "mlx_train_reward_count"))

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        for _ in range(300):
            h.record_many(piece)
    finally:
        done.set()
        collector.join()
    assert h.count == 300_000
    assert counts == sorted(counts)  # a collection never sees a fold half applied
    assert all(c % 1000 == 0 for c in counts)


def test_the_otlp_view_carries_the_same_counts_sum_and_extremes() -> None:
    h = histogram()
    assert h.otlp_metric().data.data_points[0].count == 0
    h.record_many(np.array([-1.0, 0.25, 0.75, 3.0]))
    metric = h.otlp_metric()
    point = metric.data.data_points[0]
    assert metric.name == "mlx.train.reward"
    assert list(point.bucket_counts) == [1, 1, 1, 1]  # per bucket, not cumulative
    assert list(point.explicit_bounds) == list(BOUNDS)
    assert (point.count, point.sum, point.min, point.max) == (4, 3.0, -1.0, 3.0)


def test_an_empty_histogram_reports_zero_extremes_to_otlp() -> None:
    point = histogram().otlp_metric().data.data_points[0]
    assert (point.count, point.sum, point.min, point.max) == (0, 0.0, 0.0, 0.0)


def test_a_metric_without_buckets_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="mlx_train_loss"):
        BulkHistogram(by_key("loss"))
