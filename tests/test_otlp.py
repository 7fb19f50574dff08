"""OTLP export to a real OpenTelemetry collector: Rotel, from PyPI.

The ``rotel`` package ships the Rotel collector binary; started with its
debug log on, it prints every metric it receives with its resource
attributes, which these tests read back. A demo run configured only by the
standard OTEL_* variables, an in-process monitor over gRPC, and a monitor
whose collector is down (training goes on, the failures are counted).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlx_otel.config import MonitorConfig
from mlx_otel.errors import ConfigError
from mlx_otel.exporter.otlp import otlp_settings
from mlx_otel.monitor import TrainingMonitor
from tests import processes
from tests.conftest import parse_exposition
from tests.servers import REPO, _Server, free_port, python_command, wait_for

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def rotel_binary() -> str:
    """The collector binary inside the installed ``rotel`` package."""
    try:
        import rotel
    except ImportError:
        message = "the rotel package is not installed: pip install -e '.[dev]'"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    path = Path(rotel.__file__).parent / "rotel-agent"
    if not path.exists():
        pytest.fail(f"the rotel package has no collector binary at {path}")
    return str(path)


class RotelCollector(_Server):
    """The real Rotel collector: OTLP over HTTP and gRPC in, its debug log out."""

    name = "rotel"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)  # self.port: OTLP/HTTP
        self.binary = rotel_binary()
        self.grpc_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = f"http://127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        return [
            self.binary, "start",
            "--otlp-http-endpoint", f"127.0.0.1:{self.port}",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            "--exporter", "blackhole",
            "--debug-log", "metrics", "--debug-log-verbosity", "detailed",
            "--pid-file", str(self.workdir / "rotel.pid"),
            "--log-file", str(self.workdir / "rotel-agent.log"),
        ]  # fmt: skip

    def ready(self) -> bool:
        for port in (self.port, self.grpc_port):
            with socket.socket() as s:
                s.settimeout(1)
                s.connect(("127.0.0.1", port))
        return True

    def exports(self, run_id: str) -> list[dict[str, Any]]:
        """Every export of ``run_id`` the collector logged, oldest first."""
        text = _ANSI.sub("", self.log_path.read_text(errors="replace"))
        return [e for e in parse_debug_log(text) if e["resource"].get("run_id") == run_id]


def parse_debug_log(text: str) -> list[dict[str, Any]]:
    """Rotel's detailed debug log as [{resource: {k: v}, metrics: {name: [point]}}].

    A point is {"attributes": {...}} plus "value" (sums, gauges) or "count"
    and "sum" (histograms).
    """
    exports: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    section = ""
    metric = ""
    point: dict[str, Any] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("ResourceMetrics #"):
            current = {"resource": {}, "metrics": {}}
            exports.append(current)
            section = "resource"
            continue
        if current is None:
            continue
        attribute = re.fullmatch(r"-> ([\w.]+): \w+\((.*)\)", stripped)
        if line.startswith("ScopeMetrics #"):
            section = "scope"
        elif stripped.startswith("-> Name: "):
            metric = stripped[len("-> Name: ") :]
            current["metrics"].setdefault(metric, [])
        elif re.match(r"(Number|Histogram)DataPoints #", line):
            point = {"attributes": {}}
            current["metrics"][metric].append(point)
            section = "point"
        elif attribute and section == "resource":
            current["resource"][attribute[1]] = attribute[2]
        elif attribute and section == "point" and point is not None:
            point["attributes"][attribute[1]] = attribute[2]
        elif point is not None and (found := re.fullmatch(r"(Value|Count|Sum): (\S+)", stripped)):
            point[found[1].lower()] = float(found[2])
        elif line.startswith("Metric #"):
            section, point = "metric", None
    return exports


def last_value(exports: list[dict[str, Any]], name: str, **attributes: str) -> Any:
    """The field of ``name``'s last point with these attributes (value or count)."""
    for export in reversed(exports):
        for point in export["metrics"].get(name, []):
            if all(point["attributes"].get(k) == v for k, v in attributes.items()):
                return point.get("value", point.get("count"))
    return None


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotelCollector]:
    with RotelCollector(tmp_path_factory.mktemp("rotel")) as rotel:
        yield rotel


# --- settings ---------------------------------------------------------------


def exporter_config(**values: Any) -> Any:
    return MonitorConfig.model_validate({"exporter": values}).exporter


def test_otlp_is_off_unless_configured_or_asked_for_by_the_environment() -> None:
    assert otlp_settings(exporter_config(), environ={}) is None
    assert otlp_settings(exporter_config(), environ={"OTEL_METRICS_EXPORTER": "none"}) is None
    settings = otlp_settings(exporter_config(), environ={"OTEL_METRICS_EXPORTER": "otlp"})
    assert settings is not None and settings.protocol == "http/protobuf"
    assert settings.endpoint is None  # the SDK reads OTEL_EXPORTER_OTLP_ENDPOINT itself


def test_a_configured_base_url_gets_the_metrics_path_as_the_standard_variable_does() -> None:
    settings = otlp_settings(exporter_config(otlp_endpoint="http://collector:4318"), environ={})
    assert settings is not None and settings.endpoint == "http://collector:4318/v1/metrics"
    grpc = otlp_settings(
        exporter_config(otlp_endpoint="http://collector:4317", otlp_protocol="grpc"), environ={}
    )
    assert grpc is not None and grpc.endpoint == "http://collector:4317"


def test_an_unknown_protocol_in_the_environment_names_the_variable() -> None:
    env = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json'.*grpc"):
        otlp_settings(exporter_config(), environ=env)


def test_an_unknown_protocol_in_the_config_names_the_key() -> None:
    with pytest.raises(Exception, match="otlp_protocol"):
        exporter_config(otlp_protocol="thrift")


# --- a real collector -------------------------------------------------------


@pytest.mark.integration
def test_a_demo_run_configured_by_the_standard_variables_reaches_the_collector(
    collector: RotelCollector, tmp_path: Path
) -> None:
    run_id = "otlp-demo"
    steps = 20
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLX_RANK": "0",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=mlx",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    result = processes.run(
        python_command("demo", "--steps", str(steps), "--port", "0", "--run-id", run_id,
                       "--output-dir", str(tmp_path / "out"), "--no-progress"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # The last export (at shutdown) has the whole run.
    wait_for(
        lambda: last_value(collector.exports(run_id), "mlx.train.steps") == steps,
        timeout=30, what=f"{steps} steps of {run_id} in the collector's log",
    )  # fmt: skip
    exports = collector.exports(run_id)
    resource = exports[-1]["resource"]
    assert resource["run_id"] == run_id and resource["rank"] == "0"
    assert resource["service.name"] == "mlx_otel"
    assert last_value(exports, "mlx.train.step") == steps - 1
    loss = last_value(exports, "mlx.train.loss")
    assert loss is not None and loss == loss  # a finite number
    assert last_value(exports, "mlx.memory.active") > 0
    assert last_value(exports, "mlx.memory.limit") > 0
    # 64 rewards a step, all folded into the histogram before the last export.
    assert last_value(exports, "mlx.train.reward") == 64 * steps
    assert last_value(exports, "mlx.train.step.duration") == steps
    assert last_value(exports, "mlx.train.tokens", kind="thinking") > 0
    assert last_value(exports, "mlx_otel.run.finished") == 1


@pytest.mark.integration
def test_a_monitor_exports_over_grpc_the_series_it_serves(collector: RotelCollector) -> None:
    run_id = "otlp-grpc"
    config = {"exporter": {"port": 0, "otlp_endpoint": collector.grpc_url,
                           "otlp_protocol": "grpc", "otlp_interval_seconds": 0.5}}  # fmt: skip
    monitor = TrainingMonitor(config, run_id=run_id, rank=3, serve=False)
    try:
        layers = {f"model.layers.{i}.mlp": float(i) for i in range(50)}
        monitor.recorder.set_series("layer_grad_norm", layers)
        for step in range(5):
            loss = float("nan") if step == 4 else 1.0 / (step + 1)
            monitor.log_training_step(step, loss=loss, rewards=[0.5, 0.7, float("inf")])
        # The endpoint serves the NaN loss as it is; the layer series are all there.
        samples = parse_exposition(monitor.telemetry.exposition())
        losses = [v for (name, _), v in samples.items() if name == "mlx_train_loss"]
        assert len(losses) == 1 and losses[0] != losses[0]
        served = {dict(labels)["layer"] for (name, labels) in samples
                  if name == "mlx_train_layer_grad_norm"}  # fmt: skip
        assert served == set(layers)
    finally:
        monitor.cleanup()
    wait_for(
        lambda: last_value(collector.exports(run_id), "mlx.train.steps") == 5,
        timeout=30, what=f"the steps of {run_id} over gRPC",
    )  # fmt: skip
    exports = collector.exports(run_id)
    assert exports[-1]["resource"]["rank"] == "3"
    # The same layer series reach OTLP, with the values served.
    for layer, norm in layers.items():
        assert last_value(exports, "mlx.train.layer_grad_norm", layer=layer) == norm
    # Finite rewards only (the inf is counted, not exported); NaN loss left out.
    assert last_value(exports, "mlx.train.reward") == 10
    assert last_value(exports, "mlx_otel.errors", kind="non_finite") >= 5


@pytest.mark.integration
def test_a_collector_that_is_down_neither_stops_training_nor_goes_unnoticed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Short SDK timeouts so its retries give up within the test.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1")
    down = f"http://127.0.0.1:{free_port()}"
    config = {"exporter": {"port": 0, "otlp_endpoint": down, "otlp_interval_seconds": 0.2}}
    monitor = TrainingMonitor(config, run_id="otlp-down", serve=False)
    try:
        step = 0

        def failure_counted() -> bool:
            nonlocal step
            monitor.log_training_step(step, loss=1.0, rewards=[0.5])
            step += 1
            return monitor.error_counts().get("otlp", 0) > 0

        wait_for(failure_counted, timeout=60, interval=0.05, what="a counted OTLP failure")
        assert monitor.steps_logged == step
        samples = parse_exposition(monitor.telemetry.exposition())
        counted = [v for (name, labels), v in samples.items()
                   if name == "mlx_otel_errors_total" and ("kind", "otlp") in labels]  # fmt: skip
        assert counted and counted[0] >= 1
    finally:
        monitor.cleanup()
