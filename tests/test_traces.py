"""Traces of training steps received by a real OpenTelemetry collector (Rotel, from PyPI).

A monitor configured only by the standard OTEL_* variables sends each logged
step as a ``train.step`` span with its phases as child spans; the Rotel
collector's debug log prints every span (and metric) it receives, which these
tests read back: names, parent/child links, attributes and the resource, and
the phase histogram by phase. A collector that is down neither stops training
nor goes unnoticed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlx_otel.errors import ConfigError
from mlx_otel.exporter.otlp import traces_settings
from mlx_otel.monitor import TrainingMonitor
from tests.servers import free_port, wait_for
from tests.test_otlp import RotelCollector, last_value, parse_debug_log


class RotelTraces(RotelCollector):
    """The Rotel collector logging every span it receives."""

    name = "rotel-traces"

    def command(self) -> list[str]:
        return [*super().command(), "--debug-log", "traces"]  # and metrics

    def metric_exports(self, run_id: str) -> list[dict[str, Any]]:
        """The metric exports of ``run_id``, read from the log's metric blocks only."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))
        blocks = re.split(r"(?m)^(?=Resource(?:Metrics|Spans) #)", text)
        metrics = "".join(b for b in blocks if b.startswith("ResourceMetrics #"))
        return [e for e in parse_debug_log(metrics) if e["resource"].get("run_id") == run_id]

    def spans(self, run_id: str) -> list[dict[str, Any]]:
        """Every span of ``run_id`` the collector logged, oldest first."""
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))
        return [s for s in parse_spans(text) if s["resource"].get("run_id") == run_id]


def parse_spans(text: str) -> list[dict[str, Any]]:
    """Rotel's detailed trace log as [{name, trace, id, parent, attributes, resource}]."""
    spans: list[dict[str, Any]] = []
    resource: dict[str, str] = {}
    section = ""
    span: dict[str, Any] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        attribute = re.fullmatch(r"-> ([\w.]+): \w+\((.*)\)", stripped)
        field = re.fullmatch(r"(Trace ID|Parent ID|ID|Name)\s*: ?(.*)", stripped)
        if line.startswith("ResourceSpans #"):
            resource, section = {}, "resource"
        elif line.startswith("Span #"):
            span = {"resource": resource, "attributes": {}}
            spans.append(span)
            section = "span"
        elif line.startswith("ScopeSpans #"):
            section = "scope"
        elif attribute and section == "resource":
            resource[attribute[1]] = attribute[2]
        elif attribute and section == "span" and span is not None:
            span["attributes"][attribute[1]] = attribute[2]
        elif field and span is not None and section == "span":
            key = {"Trace ID": "trace", "Parent ID": "parent", "ID": "id", "Name": "name"}
            span[key[field[1]]] = field[2].strip()
        elif stripped.startswith(("Start time:", "End time:")) and span is not None:
            name, value = stripped.split(":", 1)
            span[name.split()[0].lower()] = int(value)
    return spans


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotelTraces]:
    with RotelTraces(tmp_path_factory.mktemp("rotel-traces")) as rotel:
        yield rotel


def monitor_config(tmp_path: Path) -> dict[str, Any]:
    return {"exporter": {"port": 0},
            "monitoring": {"output_dir": str(tmp_path), "generate_charts_every": 0}}  # fmt: skip


# --- settings ---------------------------------------------------------------


def test_traces_are_off_unless_the_standard_variable_asks_for_them() -> None:
    assert traces_settings({}) is None
    assert traces_settings({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert traces_settings({"OTEL_TRACES_EXPORTER": "console,otlp"}) is not None
    grpc = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert traces_settings(grpc).protocol == "grpc"  # type: ignore[union-attr]
    http = {**grpc, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert traces_settings(http).protocol == "http/protobuf"  # type: ignore[union-attr]


def test_an_unknown_trace_protocol_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'"):
        TrainingMonitor(monitor_config(tmp_path), run_id="bad-protocol", serve=False)


def test_without_traces_the_monitor_has_no_tracer(monitor: TrainingMonitor) -> None:
    assert monitor.tracer is None


# --- a real collector ---------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_each_step_reaches_the_collector_as_a_span_with_its_phases(
    collector: RotelTraces, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str
) -> None:
    run_id = f"traces-{protocol.split('/')[0]}"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    if protocol == "grpc":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_url)
    else:  # the signal's own variable, a full URL; metrics too, to the base URL
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector.http_url}/v1/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_url)
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monitor = TrainingMonitor(monitor_config(tmp_path), run_id=run_id, rank=1, serve=False)
    try:
        for step in range(3):
            with monitor.phase("generate", sync=True):
                time.sleep(0.01)
            with monitor.phase("update"), monitor.phase("validation"):
                time.sleep(0.005)
            monitor.log_training_step(step, loss=1.0)
    finally:
        monitor.cleanup()  # the last spans leave at the end of the run
    wait_for(lambda: len(collector.spans(run_id)) >= 12, timeout=30,
             what=f"the spans of {run_id}")  # fmt: skip
    spans = collector.spans(run_id)
    steps = sorted((s for s in spans if s["name"] == "train.step"),
                   key=lambda s: int(s["attributes"]["step"]))  # fmt: skip
    assert [s["attributes"] for s in steps] == [
        {"run_id": run_id, "rank": "1", "step": str(step)} for step in range(3)
    ]
    assert steps[0]["resource"]["service.name"] == "mlx_otel"
    assert steps[0]["resource"]["rank"] == "1"
    by_id = {s["id"]: s for s in spans}
    for step in steps:
        assert step["parent"] == ""
        children = [s for s in spans if s["parent"] == step["id"]]
        assert sorted(s["name"] for s in children) == ["generate", "update"]
        update = next(s for s in children if s["name"] == "update")
        (validation,) = [s for s in spans if s["parent"] == update["id"]]
        assert validation["name"] == "validation"
        assert validation["attributes"] == {"phase": "validation"}
        for child in [*children, validation]:
            assert child["trace"] == step["trace"]
            parent = by_id[child["parent"]]
            assert parent["start"] <= child["start"] <= child["end"] <= parent["end"]
    # One trace per step; the steps follow each other.
    assert len({s["trace"] for s in steps}) == 3
    assert steps[0]["end"] <= steps[1]["start"] + 1000
    if protocol == "http/protobuf":  # the phase histogram reached the collector as metrics
        wait_for(lambda: collector.metric_exports(run_id), timeout=30, what="the metrics")
        exports = collector.metric_exports(run_id)
        for phase in ("generate", "update", "validation"):
            assert last_value(exports, "mlx.train.phase.duration", phase=phase) == 3


@pytest.mark.integration
def test_a_trace_collector_that_is_down_neither_stops_training_nor_goes_unnoticed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Short SDK timeouts so its retries give up within the test.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monitor = TrainingMonitor(monitor_config(tmp_path), run_id="traces-down", serve=False)
    try:
        step = 0

        def failure_counted() -> bool:
            nonlocal step
            began = time.perf_counter()
            with monitor.phase("generate"):
                pass
            monitor.log_training_step(step, loss=1.0)
            assert time.perf_counter() - began < 0.5, "a step waited for the collector"
            step += 1
            return monitor.error_counts().get("otlp", 0) > 0

        wait_for(failure_counted, timeout=60, interval=0.05, what="a counted OTLP failure")
        assert monitor.steps_logged == step
    finally:
        began = time.monotonic()
        monitor.cleanup()
    assert time.monotonic() - began < 15, "the end of the run waited too long for the collector"
