"""End to end: a leaking demo run pages through real Prometheus and Alertmanager.

Two real demo runs (``python -m mlx_otel demo``) train side by side: one
keeps ``--leak-mb-per-step`` MB of new MLX arrays alive every step, the
other does not. The real Prometheus scrapes both every second and evaluates
the project's rules; the real Alertmanager, configured from
prometheus/alertmanager.yml, delivers to an in-process AlertSink.

Time is compressed by ``TIME_SCALE``: every duration in a COPY of the rules
(range selectors such as ``[30m]`` and each ``for:``) is divided by 60, so
one minute of the production rules is one second here. ``[30m]`` becomes
``[30s]``, ``for: 30m`` becomes ``for: 30s``, ``[1h]`` becomes ``[60s]``.
Numbers in the expressions are left alone: rates stay real rates (the leak
floor remains 1% of the memory limit per hour, far below the demo's leak),
and so do horizons such as ``predict_linear(..., 3600)``. The rule files
themselves are never edited. Alertmanager's group_wait, group_interval and
repeat_interval become 1 s.

The module takes about a minute and a half: the leak alert needs its 30 s
window and 30 s ``for:``, and the quiet run is watched for as long.
"""

from __future__ import annotations

import copy
import io
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlx_otel.catalog import by_key
from mlx_otel.integrations.alert_sink import AlertSink
from tests import processes

try:
    from tests.servers import (
        REPO,
        AlertmanagerServer,
        PrometheusServer,
        free_port,
        http_get_text,
        python_command,
        wait_for,
    )
    from tests.test_alert_sink import alertmanager_config_for
except ImportError:  # run from inside tests/
    from servers import (  # type: ignore[no-redef]
        REPO,
        AlertmanagerServer,
        PrometheusServer,
        free_port,
        http_get_text,
        python_command,
        wait_for,
    )
    from test_alert_sink import alertmanager_config_for  # type: ignore[no-redef]

pytestmark = pytest.mark.integration

RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
LEAK_ALERT = "MLXMemoryLeakSuspected"
#: One minute of the rules is one second of this test.
TIME_SCALE = 60
#: A leak fires after the slope window plus the `for:` of MLXMemoryLeakSuspected
#: (30 s + 30 s here); the quiet run is watched at least that long.
QUIET_PERIOD_S = 60.0
LEAK_MB_PER_STEP = 0.5
#: Slows the demo to about 10 steps a second: the leak stays far above the
#: alert's floor while two runs, Prometheus and Alertmanager share two cores.
STEP_DELAY_S = 0.05

ACTIVE = by_key("memory_active").prometheus_name
STEPS = by_key("steps").prometheus_name

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "y": 31536000,
}


def seconds(duration: str) -> float:
    """Seconds of a Prometheus duration such as ``1h30m``."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def compressed(duration: str) -> str:
    """``duration`` divided by TIME_SCALE, at least one second (``30m`` -> ``30s``)."""
    return f"{max(1, round(seconds(duration) / TIME_SCALE))}s"


# A range selector or subquery: [30m], [1h30m:1m], [5m:].
_RANGE = re.compile(r"\[(?P<range>[0-9a-z]+)(?::(?P<step>[0-9a-z]*))?\]")


def _compress_range(match: re.Match[str]) -> str:
    text = compressed(match["range"])
    if match["step"] is not None:  # a subquery; its step may be empty
        text += ":" + (compressed(match["step"]) if match["step"] else "")
    return f"[{text}]"


def compress_rules(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a rule file with every range and ``for:`` divided by TIME_SCALE."""
    document = copy.deepcopy(document)
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(_compress_range, rule["expr"])
            if "for" in rule:
                rule["for"] = compressed(rule["for"])
    return document


def test_compress_rules_divides_ranges_and_for_but_not_numbers() -> None:
    doc = {
        "groups": [
            {
                "name": "g",
                "rules": [
                    {
                        "alert": "A",
                        "expr": "deriv(x[30m]) * 3600 > y and z[1h30m:1m] and w[5m:]",
                        "for": "30m",
                    }
                ],
            }
        ]
    }
    rule = compress_rules(doc)["groups"][0]["rules"][0]
    assert rule["expr"] == "deriv(x[30s]) * 3600 > y and z[90s:1s] and w[5s:]"
    assert rule["for"] == "30s"
    assert doc["groups"][0]["rules"][0]["for"] == "30m"  # the original is untouched


# ---------------------------------------------------------------- fixtures


@dataclass
class DemoRun:
    """A ``mlx-otel demo`` subprocess serving metrics on ``port``."""

    run_id: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until the run has logged a step; fail at once if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"demo {self.run_id} exited:\n{self.log()}")
            try:
                text = http_get_text(f"http://{self.target}/metrics", timeout=2)
            except OSError:  # not listening yet
                text = ""
            if f'{STEPS}{{run_id="{self.run_id}"' in text:
                return
            time.sleep(0.2)
        raise AssertionError(f"demo {self.run_id} logged no step in {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM (the demo's clean stop), then kill if it does not end."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def demo_env() -> dict[str, str]:
    """The environment of a demo subprocess.

    A run writes into its own folder; PYTHONPATH finds this checkout of
    mlx_otel from there even when it is not installed.
    """
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path}


def start_demo(workdir: Path, name: str, *, leak_mb_per_step: float) -> DemoRun:
    run_id = f"e2e-{name}-{uuid.uuid4().hex[:6]}"
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    command = python_command(
        "demo",
        "--steps", "100000",  # runs until stopped
        "--port", str(port),
        "--output-dir", str(workdir / name),
        "--wandb", "disabled",
        "--linger", "0",
        "--leak-mb-per-step", str(leak_mb_per_step),
        "--run-id", run_id,
        "--step-delay", str(STEP_DELAY_S),
        "--no-progress",
    )  # fmt: skip
    with open(log_path, "wb") as log:
        process = processes.popen(
            command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=demo_env()
        )
    return DemoRun(run_id, port, log_path, process)


def _demo_available() -> bool:
    result = processes.run(
        python_command("demo", "--help"), capture_output=True, text=True, timeout=60, env=demo_env()
    )
    return result.returncode == 0 and "--leak-mb-per-step" in result.stdout


@pytest.fixture(scope="module")
def sink() -> Iterator[AlertSink]:
    with AlertSink(port=0, out=io.StringIO()) as s:
        yield s


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, sink: AlertSink) -> Iterator[Any]:
    workdir = tmp_path_factory.mktemp("alertmanager")
    with AlertmanagerServer(workdir, config=alertmanager_config_for(sink.url)) as am:
        yield am


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DemoRun]]:
    if not _demo_available():
        pytest.skip("`python -m mlx_otel demo` with --leak-mb-per-step is not available")
    workdir = tmp_path_factory.mktemp("demos")
    runs = {
        "leak": start_demo(workdir, "leak", leak_mb_per_step=LEAK_MB_PER_STEP),
        "quiet": start_demo(workdir, "quiet", leak_mb_per_step=0.0),
    }
    try:
        for run in runs.values():
            run.wait_serving()
        yield runs
    finally:
        for run in runs.values():
            run.stop()


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, alertmanager: Any, demos: dict[str, DemoRun]
) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("prometheus")
    server = PrometheusServer(
        workdir,
        targets=[run.target for run in demos.values()],
        rule_files=RULE_FILES,
        rule_transform=compress_rules,
        alertmanager_port=alertmanager.port,
        interval="1s",
    )
    with server as prom:
        wait_for(prom.targets_up, timeout=30, what="both demo runs to be scraped")
        yield prom


def diagnostics(prom: PrometheusServer, sink: AlertSink, demos: dict[str, DemoRun]) -> str:
    """What to look at when an assertion fails."""
    try:
        alerts = [
            (a["labels"].get("alertname"), a["labels"].get("run_id"), a["state"])
            for a in prom.alerts()
        ]
    except Exception as exc:  # Prometheus itself may be the problem
        alerts = [f"cannot list alerts: {exc!r}"]
    out = sink.out.getvalue() if isinstance(sink.out, io.StringIO) else ""
    logs = "\n".join(f"--- demo {name}:\n{run.log()}" for name, run in demos.items())
    return (
        f"\nPrometheus alerts: {alerts}\nsink received:\n{out or '(nothing)'}\n{logs}"
        f"\n--- prometheus:\n{prom.log()[-2000:]}"
    )


def leak_alerts(sink: AlertSink, run_id: str, status: str | None = None) -> list[dict[str, Any]]:
    return [
        a
        for a in sink.alerts
        if a["labels"].get("alertname") == LEAK_ALERT
        and a["labels"].get("run_id") == run_id
        and (status is None or a["status"] == status)
    ]


# ---------------------------------------------------------------- tests


def test_the_compressed_rules_load_and_evaluate_without_errors(prometheus) -> None:
    groups = prometheus.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert {r["health"] for r in rules.values()} == {"ok"}, [
        (name, r.get("lastError")) for name, r in rules.items() if r["health"] != "ok"
    ]
    assert rules[LEAK_ALERT]["duration"] == 30  # for: 30m -> 30s
    assert "[30s]" in rules["instance:mlx_memory_active_bytes:deriv30m"]["query"]


def test_a_leaking_run_reaches_the_sink_with_its_run_id_and_resolves_when_it_ends(
    prometheus, sink, demos
) -> None:
    leak = demos["leak"]
    # The run's own series carry its run_id.
    assert prometheus.query_values(f'{ACTIVE}{{run_id="{leak.run_id}"}}')

    fired = sink.wait_for(
        lambda a: (
            a["labels"].get("alertname") == LEAK_ALERT
            and a["labels"].get("run_id") == leak.run_id
            and a["status"] == "firing"
        ),
        timeout=120,
    )
    assert fired is not None, "no leak notification" + diagnostics(prometheus, sink, demos)
    fired_after = time.monotonic() - leak.started
    assert fired["labels"] == {
        "alertname": LEAK_ALERT,
        "severity": "warning",
        "job": "mlx_otel",
        "instance": leak.target,
        "run_id": leak.run_id,
    }
    assert fired["annotations"]["description"].startswith(
        f"MLX active memory of run {leak.run_id} on {leak.target} has kept growing"
    )
    assert fired["annotations"]["runbook_url"].endswith("docs/runbooks.md#mlxmemoryleaksuspected")
    # Warnings go to the ticket receiver (prometheus/alertmanager.yml).
    receivers = {
        p["receiver"]
        for p in sink.notifications
        for a in p["alerts"]
        if a["labels"].get("alertname") == LEAK_ALERT
    }
    assert receivers == {"ticket"}
    # No other memory alert for this run: it is far from its threshold and limit.
    memory_alerts = {
        a["labels"]["alertname"]
        for a in sink.alerts
        if a["labels"].get("run_id") == leak.run_id
        and a["labels"]["alertname"].startswith("MLXMemory")
    }
    assert memory_alerts == {LEAK_ALERT}, diagnostics(prometheus, sink, demos)

    # The run ends (the demo stops cleanly on SIGTERM); its series go stale
    # and Prometheus resolves the alert.
    stopped = time.monotonic()
    assert leak.stop() == 0, leak.log()
    resolved = sink.wait_for(
        lambda a: (
            a["labels"].get("alertname") == LEAK_ALERT
            and a["labels"].get("run_id") == leak.run_id
            and a["status"] == "resolved"
        ),
        timeout=60,
    )
    assert resolved is not None, "no resolved notification" + diagnostics(prometheus, sink, demos)
    assert resolved["endsAt"] >= resolved["startsAt"]
    print(
        f"leak notified {fired_after:.0f} s after the demo started; "
        f"resolved {time.monotonic() - stopped:.0f} s after it stopped"
    )


def test_a_run_without_a_leak_delivers_no_leak_notification(prometheus, sink, demos) -> None:
    quiet = demos["quiet"]
    # Watch the quiet run for as long as a leak needs to fire, while it trains.
    remaining = QUIET_PERIOD_S - (time.monotonic() - quiet.started)
    if remaining > 0:
        time.sleep(remaining)
    assert quiet.process.poll() is None, quiet.log()
    progressing = prometheus.query_values(f'increase({STEPS}{{run_id="{quiet.run_id}"}}[10s]) > 0')
    assert progressing, "the quiet run stopped training" + diagnostics(prometheus, sink, demos)

    assert leak_alerts(sink, quiet.run_id) == [], diagnostics(prometheus, sink, demos)
    # Not even firing inside Prometheus during the whole period.
    window = f"{int(time.monotonic() - quiet.started) + 5}s"
    fired = prometheus.query_values(
        f'count_over_time(ALERTS{{alertname="{LEAK_ALERT}", alertstate="firing", '
        f'run_id="{quiet.run_id}"}}[{window}])'
    )
    assert fired == {}, diagnostics(prometheus, sink, demos)
