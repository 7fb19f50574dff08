"""Every instrument comes from the catalogue: built from it, read where it says.

A store that answers every ``read_from`` name with a number of its own shows
that each catalogued gauge and counter is served from the part its
``source`` names, scaled as the catalogue says; then the real parts (the
recorder, the memory readings, the error ledger) show the values a user
logged, in the exposition text a scrape returns.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from mlx_otel.catalog import ERROR_KINDS, METRICS, Kind, Source, by_key
from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.instruments import LedgerStore, build_instruments, observed_metrics
from mlx_otel.exporter.memory_readings import MemoryReadings
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.exporter.telemetry import Telemetry
from mlx_otel.pipeline.recorder import StepRecorder
from mlx_otel.records import TrainerReport
from tests.conftest import parse_exposition, sample


def number_for(source: Source, key: str) -> float:
    """A distinct number for each (source, name): a mix-up shows as a wrong value."""
    return float(zlib.crc32(f"{source.value}:{key}".encode()) % 100_000)


class Answering:
    """A store that holds a value under every name it is asked for."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def value(self, key: str) -> float | None:
        return number_for(self.source, key)

    def series(self, key: str) -> Mapping[str, float]:
        return {"one": number_for(self.source, key)}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry(run_id="instruments", port=0)
    yield telemetry
    telemetry.shutdown()


def test_every_catalogued_metric_with_a_source_gets_its_instrument(telemetry: Telemetry) -> None:
    histograms = build_instruments(telemetry, {s: Answering(s) for s in Source})
    for histogram in histograms.values():  # a labelled one serves the label values it was given
        if histogram.metric.labels:
            histogram.record_many(np.zeros(0), label="one")
    samples = parse_exposition(telemetry.exposition())
    observed = observed_metrics()
    assert {m.key for m in observed} | set(histograms) | {"run_finished"} == {
        m.key for m in METRICS
    }  # run_finished is served by the run's lifecycle
    for metric in observed:
        assert metric.read_from is not None
        expected = number_for(metric.source, metric.read_from) * metric.scale
        name = metric.prometheus_name
        labels = {metric.labels[0]: "one"} if metric.labels else {}
        assert sample(samples, name, run_id="instruments", **labels) == expected, metric.key
    assert set(histograms) == {m.key for m in METRICS if m.kind is Kind.HISTOGRAM}
    for key, histogram in histograms.items():
        assert histogram.metric is by_key(key)
        name = histogram.metric.prometheus_name
        assert sample(samples, f"{name}_count", run_id="instruments") == 0


def test_a_store_with_nothing_yet_serves_no_series(telemetry: Telemetry) -> None:
    class Empty:
        def value(self, key: str) -> float | None:
            return None

        def series(self, key: str) -> Mapping[str, float]:
            return {}

    build_instruments(telemetry, {s: Empty() for s in Source})
    names = {name for name, _ in parse_exposition(telemetry.exposition())}
    assert names == {
        f"{m.prometheus_name}_{suffix}"
        for m in METRICS
        if m.kind is Kind.HISTOGRAM and not m.labels  # a labelled one: no label value yet
        for suffix in ("bucket", "count", "sum")
    }


def test_the_real_parts_serve_what_was_logged(telemetry: Telemetry) -> None:
    ledger = ErrorLedger(ERROR_KINDS)
    profiler = MemoryProfiler(reset_mlx_peak=False)
    recorder = StepRecorder(ledger=ledger, profiler=profiler, max_custom=4, max_records=64)
    memory = MemoryReadings(
        profiler, threshold_bytes=8 * 2**30, step_peak=lambda: None, ledger=ledger
    )
    stores = {Source.STEP: recorder, Source.TRAINER: recorder, Source.GRADIENTS: recorder,
              Source.MEMORY: memory, Source.EXPORTER: LedgerStore(ledger)}  # fmt: skip
    histograms = build_instruments(telemetry, stores)
    recorder.fold_into({h.metric.read_from or "": h.record_many for h in histograms.values()})
    telemetry.before_collect(recorder.refresh_view)
    telemetry.before_collect(recorder.fold)

    recorder.record(3, {"loss": 0.5, "memory_allocated_mb": 10.0, "thinking_tokens": 7,
                        "rewards": [0.25, 0.75], "my_metric": 2.0, "grad_norm": "x"})  # fmt: skip
    recorder.record_report(TrainerReport(
        4, values={"kl": 0.125}, labelled={"clip_ratio": {"low": 0.0625}},
    ))  # fmt: skip
    recorder.set_series("layer_grad_norm", {"layers.0": 1.5})
    ledger.drop("charts")
    samples = parse_exposition(telemetry.exposition())

    def value(series: str, /, **labels: str) -> float:
        return sample(samples, series, run_id="instruments", **labels)

    assert value("mlx_train_loss") == 0.5
    assert value("mlx_train_memory_allocated_bytes") == 10 * 2**20
    assert value("mlx_train_step") == 4 and value("mlx_train_steps_total") == 2
    assert value("mlx_train_tokens_total", kind="thinking") == 7
    assert value("mlx_train_custom", name="my_metric") == 2.0
    assert value("mlx_train_kl") == 0.125
    assert value("mlx_train_clip_ratio", bound="low") == 0.0625
    assert value("mlx_train_layer_grad_norm", layer="layers.0") == 1.5
    assert value("mlx_otel_errors_total", kind="invalid_value") == 1  # grad_norm="x"
    assert value("mlx_otel_worker_dropped_total", task="charts") == 1
    assert value("mlx_otel_memory_threshold_bytes") == 8 * 2**30
    assert value("mlx_memory_active_bytes") >= 0
    assert value("mlx_system_memory_total_bytes") > 0
    assert value("mlx_train_reward_count") == 2 and value("mlx_train_reward_sum") == 1.0
    assert value("mlx_train_reward_bucket", le="0.3") == 1


def test_a_process_that_does_not_report_its_host_serves_no_system_memory(
    telemetry: Telemetry,
) -> None:
    ledger = ErrorLedger(ERROR_KINDS)
    memory = MemoryReadings(MemoryProfiler(reset_mlx_peak=False), threshold_bytes=1.0,
                            step_peak=lambda: None, ledger=ledger, report_host=False)  # fmt: skip
    stores = {s: Answering(s) for s in Source}
    stores[Source.MEMORY] = memory  # type: ignore[assignment]
    build_instruments(telemetry, stores)
    names = {name for name, _ in parse_exposition(telemetry.exposition())}
    assert "mlx_process_resident_memory_bytes" in names
    assert not {n for n in names if n.startswith("mlx_system_memory")}
