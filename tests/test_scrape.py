"""The endpoint serves observable series itself: the same text the SDK would serve.

Gauges and counters are built from their readers by a prometheus-client
collector, not through the OpenTelemetry SDK's aggregation (which cost
several times more with thousands of series). These tests hold that path to
what OpenTelemetry's own Prometheus exporter makes of the same instruments,
and check the scrape bookkeeping a clean end relies on.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.request

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from mlx_otel.catalog import METRICS, RESOURCE_LABELS, Kind
from mlx_otel.monitor import TrainingMonitor
from tests.conftest import parse_exposition


def sdk_exposition(monitor: TrainingMonitor) -> str:
    """What OpenTelemetry's Prometheus exporter serves for the monitor's observables."""
    telemetry = monitor.telemetry
    registry = CollectorRegistry(auto_describe=False)
    reader = PrometheusMetricReader(
        disable_target_info=True, scope_info_enabled=False,
        resource_attribute_filter=lambda key: key in RESOURCE_LABELS, registry=registry,
    )  # fmt: skip
    attributes = {"run_id": telemetry.run_id, "rank": str(telemetry.rank)}
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create(attributes))
    meter = provider.get_meter("reference")
    for metric, read in telemetry._observed:
        create = (
            meter.create_observable_counter if metric.kind is Kind.COUNTER
            else meter.create_observable_gauge
        )  # fmt: skip
        create(
            metric.otel_name, unit=metric.unit, description=metric.description,
            callbacks=[lambda options, read=read: [Observation(v, a) for v, a in read()]],
        )  # fmt: skip
    try:
        return generate_latest(registry).decode()
    finally:
        provider.shutdown()


def test_served_series_equal_the_sdk_exporters_for_the_same_instruments() -> None:
    config = {"exporter": {"port": 0}, "monitoring": {"generate_charts_every": 0}}
    monitor = TrainingMonitor(config, run_id="same-text", rank=2, serve=False)
    try:
        monitor.log_training_step(
            0, loss=0.25, reward=0.5, grad_norm=2.0, learning_rate=1e-3, thinking_tokens=7,
            answer_tokens=2, memory_allocated_mb=3.0, rewards=[0.1, 0.9], kl=0.01,
        )  # fmt: skip
        monitor.recorder.set_series("layer_grad_norm", {f"layers.{i}": float(i) / 3 for i in range(100)})
        ours = parse_exposition(monitor.telemetry.exposition())
        reference = parse_exposition(sdk_exposition(monitor))
    finally:
        monitor.cleanup()
    histograms = {f"{m.prometheus_name}_{suffix}" for m in METRICS if m.kind is Kind.HISTOGRAM
                  for suffix in ("bucket", "count", "sum")}  # fmt: skip
    observables = {k: v for k, v in ours.items() if k[0] not in histograms}
    # Memory is read at most every 0.25 s: both read the same cached values.
    assert observables == reference
    assert len([k for k in observables if k[0] == "mlx_train_layer_grad_norm"]) == 100


def test_non_finite_gauges_are_served_as_they_are() -> None:
    monitor = TrainingMonitor({"exporter": {"port": 0}}, run_id="nan", serve=False)
    try:
        monitor.log_training_step(0, loss=float("nan"), grad_norm=float("inf"))
        samples = parse_exposition(monitor.telemetry.exposition())
    finally:
        monitor.cleanup()
    loss = [v for (name, _), v in samples.items() if name == "mlx_train_loss"]
    grad = [v for (name, _), v in samples.items() if name == "mlx_train_grad_norm"]
    assert len(loss) == 1 and math.isnan(loss[0])
    assert grad == [math.inf]


def test_a_clean_end_waits_for_one_more_scrape_when_something_scrapes() -> None:
    monitor = TrainingMonitor(
        {"exporter": {"port": 0}, "monitoring": {"generate_charts_every": 0}}, run_id="last-word"
    )
    assert monitor.endpoint is not None
    seen: list[str] = []
    stop = threading.Event()

    def scraper() -> None:  # a Prometheus every 0.2 s
        while not stop.is_set():
            try:
                with urllib.request.urlopen(monitor.endpoint, timeout=5) as response:
                    seen.append(response.read().decode())
            except OSError:
                return
            time.sleep(0.2)

    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        while monitor.telemetry.scrapes < 2:
            time.sleep(0.05)
        monitor.log_training_step(0, loss=1.0)
        monitor.cleanup()
    finally:
        stop.set()
        thread.join(timeout=10)
    finished = [
        v for text in seen for (name, _), v in parse_exposition(text).items()
        if name == "mlx_otel_run_finished"
    ]  # fmt: skip
    assert finished[0] == 0.0
    assert finished[-1] == 1.0, "the endpoint closed before a scrape saw the end"


def test_an_unscraped_monitor_ends_without_waiting() -> None:
    monitor = TrainingMonitor(
        {"exporter": {"port": 0, "finish_grace_seconds": 600}}, run_id="nobody-scrapes"
    )
    monitor.log_training_step(0, loss=1.0)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (monitor.cleanup(), done.set()))
    thread.start()
    # Far less than the 600 s grace: nothing was scraping, so nothing is awaited.
    assert done.wait(timeout=60)
    thread.join()
