"""The alert sink over real HTTP: Alertmanager's webhook format in, readable text out.

Payloads are posted with urllib to a sink on a free port; the forwarding test
uses the real EnhancedWandBLogger in offline mode and reads the alerts back
from the run's ``.wandb`` log; the routing tests have the real Alertmanager,
configured with prometheus/alertmanager.yml (its http_config presenting the
sink's bearer token), deliver to the sink. Without the credential, a post is
refused with 401 and never reaches the sink.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import os
import re
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlx_otel.assets.stack import ensure_token_file
from mlx_otel.cli.alert_sink import add_parser
from mlx_otel.integrations.alert_sink import AlertSink, format_alert, receipt_time, wandb_level

try:
    from tests.servers import REPO, AlertmanagerServer, free_port, python_command, wait_for
except ImportError:  # run from inside tests/
    from servers import (  # type: ignore[no-redef]
        REPO,
        AlertmanagerServer,
        free_port,
        python_command,
        wait_for,
    )

ALERTMANAGER_CONFIG = REPO / "prometheus" / "alertmanager.yml"

# A notification as Alertmanager 0.25 posts it (webhook format version 4):
# one group, one firing and one resolved alert.
LEAK = {
    "status": "firing",
    "labels": {
        "alertname": "MLXMemoryLeakSuspected",
        "instance": "trainer:9464",
        "job": "mlx_otel",
        "run_id": "grpo-1",
        "severity": "warning",
    },
    "annotations": {
        "summary": "MLX active memory keeps growing; a memory leak is suspected.",
        "description": "MLX active memory of run grpo-1 on trainer:9464 has kept growing "
        "for more than 30 minutes; it grows by 240MiB per hour.",
        "runbook_url": "https://github.com/mlx-otel/mlx-otel/blob/main/docs/runbooks.md"
        "#mlxmemoryleaksuspected",
    },
    "startsAt": "2026-11-05T10:00:00.000Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prometheus:9090/graph?g0.expr=instance%3Amlx_memory_active_bytes",
    "fingerprint": "4c8e1a9f2b3d5e60",
}
LOSS_RESOLVED = {
    "status": "resolved",
    "labels": {
        "alertname": "MLXTrainingLossNotFinite",
        "instance": "trainer:9464",
        "job": "mlx_otel",
        "run_id": "grpo-1",
        "severity": "critical",
    },
    "annotations": {
        "summary": "Training loss is NaN or infinite.",
        "description": "The loss of run grpo-1 on trainer:9464 has been NaN for more than a "
        "minute; the weights are probably no longer finite.",
    },
    "startsAt": "2026-11-05T09:00:00.000Z",
    "endsAt": "2026-11-05T09:30:00.000Z",
    "generatorURL": "http://prometheus:9090/graph?g0.expr=mlx_train_loss",
    "fingerprint": "9d0f7e6a5b4c3d21",
}
PAYLOAD = {
    "receiver": "ticket",
    "status": "firing",
    "alerts": [LEAK, LOSS_RESOLVED],
    "groupLabels": {"run_id": "grpo-1"},
    "commonLabels": {"instance": "trainer:9464", "job": "mlx_otel", "run_id": "grpo-1"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}/{severity="warning"}:{run_id="grpo-1"}',
    "truncatedAlerts": 0,
}


def post(
    url: str, body: bytes | str | Any, timeout: float = 10.0, *, authorization: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` (raw bytes, or anything else as JSON); the status and JSON reply."""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, data = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read()
    # Alertmanager's API answers a POST with an empty body.
    return status, json.loads(data) if data.strip() else {}


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def sink() -> Iterator[AlertSink]:
    with AlertSink(port=0, out=io.StringIO()) as s:
        yield s


def printed(sink: AlertSink) -> str:
    assert isinstance(sink.out, io.StringIO)
    return sink.out.getvalue()


# ---------------------------------------------------------------- receiving


def test_a_notification_is_accepted_recorded_and_printed_one_block_per_alert(sink) -> None:
    before = receipt_time()
    status, reply = post(sink.url, PAYLOAD)
    after = receipt_time()

    assert (status, reply) == (200, {"status": "ok", "alerts": 2})
    assert sink.notifications == [PAYLOAD]
    assert [(a["labels"]["alertname"], a["status"]) for a in sink.alerts] == [
        ("MLXMemoryLeakSuspected", "firing"),
        ("MLXTrainingLossNotFinite", "resolved"),
    ]
    # Each block ends with the time the sink received it, in UTC to the second.
    received = re.findall(r"  received:    (\S+)\n", printed(sink))
    assert len(received) == 2 and received[0] == received[1]
    assert before <= received[0] <= after
    assert printed(sink) == (
        "FIRING MLXMemoryLeakSuspected\n"
        "  severity:    warning\n"
        "  run_id:      grpo-1\n"
        "  summary:     MLX active memory keeps growing; a memory leak is suspected.\n"
        "  description: MLX active memory of run grpo-1 on trainer:9464 has kept growing "
        "for more than 30 minutes; it grows by 240MiB per hour.\n"
        "  startsAt:    2026-11-05T10:00:00.000Z\n"
        f"  received:    {received[0]}\n"
        "\n"
        "RESOLVED MLXTrainingLossNotFinite\n"
        "  severity:    critical\n"
        "  run_id:      grpo-1\n"
        "  summary:     Training loss is NaN or infinite.\n"
        "  description: The loss of run grpo-1 on trainer:9464 has been NaN for more than a "
        "minute; the weights are probably no longer finite.\n"
        "  startsAt:    2026-11-05T09:00:00.000Z\n"
        "  endsAt:      2026-11-05T09:30:00.000Z\n"
        f"  received:    {received[0]}\n"
        "\n"
    )


def test_the_root_path_accepts_notifications_too(sink) -> None:
    root = sink.url.removesuffix("alerts")
    assert post(root, PAYLOAD)[0] == 200
    assert len(sink.notifications) == 1


def test_an_alert_without_annotations_is_printed_with_dashes() -> None:
    text = format_alert({"labels": {"alertname": "MLXExporterDown"}}, {"status": "firing"})
    assert text.splitlines() == [
        "FIRING MLXExporterDown",
        "  severity:    -",
        "  run_id:      -",
        "  summary:     -",
        "  description: -",
        "  startsAt:    -",
    ]


MALFORMED = {
    "not JSON": (b"alerts: [", "not JSON"),
    "not UTF-8": (b"\xff\xfe{", "not JSON"),
    "empty body": (b"", "not JSON"),
    "a JSON array": ([PAYLOAD], "must be a JSON object, not list"),
    "no alerts": ({"version": "4", "status": "firing"}, "no 'alerts' list"),
    "alerts not a list": ({"alerts": {"labels": {}}}, "'alerts' must be a list, not dict"),
    "an alert not an object": ({"alerts": ["MLXTrainingStalled"]}, "alerts[0] must be an object"),
    "an alert without labels": ({"alerts": [{"status": "firing"}]}, "alerts[0] has no 'labels'"),
    "a label that is a number": (
        {"alerts": [{"labels": {"alertname": "X", "rank": 0}}]},
        "alerts[0].labels.rank must be a string, not int",
    ),
    "annotations not an object": (
        {"alerts": [{"labels": {}, "annotations": ["summary"]}]},
        "alerts[0].annotations must be an object, not list",
    ),
    "status not a string": ({"status": 1, "alerts": []}, "'status' must be a string"),
}


@pytest.mark.parametrize("body,message", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_body_gets_400_saying_what_is_wrong(sink, body, message) -> None:
    status, reply = post(sink.url, body)

    assert status == 400
    assert message in reply["error"]
    assert sink.notifications == []
    assert printed(sink) == ""


def test_the_sink_keeps_serving_after_malformed_bodies(sink) -> None:
    for body, _ in MALFORMED.values():
        assert post(sink.url, body)[0] == 400

    assert post(sink.url, PAYLOAD)[0] == 200
    assert get_status(f"http://127.0.0.1:{sink.port}/healthz") == 200
    assert sink.notifications == [PAYLOAD]


def test_healthz_answers_200_and_unknown_paths_404(sink) -> None:
    base = f"http://127.0.0.1:{sink.port}"
    assert get_status(f"{base}/healthz") == 200
    assert get_status(f"{base}/metrics") == 404
    assert post(f"{base}/elsewhere", PAYLOAD)[0] == 404


def test_port_zero_binds_a_free_port_and_stop_releases_it() -> None:
    sink = AlertSink(port=0, out=io.StringIO()).start()
    port = sink.port
    assert port != 0
    assert sink.url == f"http://127.0.0.1:{port}/alerts"
    sink.stop()
    sink.stop()  # a second stop is harmless
    # The port is free again: a new sink can take it.
    with AlertSink(port=port, out=io.StringIO()) as again:
        assert post(again.url, PAYLOAD)[0] == 200


def test_concurrent_posts_are_all_recorded(sink) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> int:
        alert = copy.deepcopy(LEAK)
        alert["labels"]["run_id"] = f"run-{i}"
        return post(sink.url, {**PAYLOAD, "alerts": [alert]})[0]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(40))) == {200}
    assert sorted(a["labels"]["run_id"] for a in sink.alerts) == sorted(
        f"run-{i}" for i in range(40)
    )
    # Blocks printed by concurrent requests do not interleave.
    assert printed(sink).count("FIRING MLXMemoryLeakSuspected\n  severity:") == 40


def test_wait_for_returns_a_matching_alert_or_none_after_the_timeout(sink) -> None:
    assert sink.wait_for(lambda a: True, timeout=0.2) is None
    post(sink.url, PAYLOAD)
    found = sink.wait_for(lambda a: a["status"] == "resolved", timeout=5)
    assert found is not None and found["labels"]["alertname"] == "MLXTrainingLossNotFinite"



# ---------------------------------------------------------------- authentication

TOKEN = "a-token-only-alertmanager-has"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def guarded() -> Iterator[AlertSink]:
    with AlertSink(
        port=0, out=io.StringIO(), bearer_token=TOKEN, basic_auth=("alertmanager", "pw")
    ) as s:
        yield s


def test_a_post_without_the_credential_is_refused_and_never_reaches_the_sink(guarded) -> None:
    for authorization in (None, "Bearer wrong", f"Bearer {TOKEN}x", basic("alertmanager", "no"),
                          f"bearer{TOKEN}", TOKEN):  # fmt: skip
        request = urllib.request.Request(
            guarded.url, data=json.dumps(PAYLOAD).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     **({"Authorization": authorization} if authorization else {})},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 401, authorization
        assert "Bearer" in info.value.headers.get_all("WWW-Authenticate")[0]
        assert "needs credentials" in json.loads(info.value.read())["error"]
    assert guarded.notifications == []
    assert printed(guarded) == ""
    # Liveness probes need no credential.
    assert get_status(f"http://127.0.0.1:{guarded.port}/healthz") == 200


def test_a_post_with_the_token_or_basic_auth_is_delivered(guarded) -> None:
    assert post(guarded.url, PAYLOAD, authorization=f"Bearer {TOKEN}")[0] == 200
    assert post(guarded.url, PAYLOAD, authorization=basic("alertmanager", "pw"))[0] == 200
    assert len(guarded.notifications) == 2
    assert printed(guarded).count("FIRING MLXMemoryLeakSuspected") == 2


def test_the_sink_serves_https_with_a_certificate(tmp_path: Path) -> None:
    from tests.test_endpoint_security import make_certificate

    cert, key = make_certificate(tmp_path)
    with AlertSink(port=0, out=io.StringIO(), bearer_token=TOKEN, certfile=cert, keyfile=key) as s:
        assert s.url.startswith("https://127.0.0.1:")
        request = urllib.request.Request(
            s.url, data=json.dumps(PAYLOAD).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )  # fmt: skip
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            assert response.status == 200
        assert len(s.notifications) == 1


def test_credentials_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        AlertSink(port=0, bearer_token="  ")
    with pytest.raises(ValueError, match="username and a password"):
        AlertSink(port=0, basic_auth=("alertmanager", ""))
    with pytest.raises(ValueError, match="certfile"):
        AlertSink(port=0, keyfile=Path("key.pem"))


# ---------------------------------------------------------------- WandB


def test_severities_map_to_wandb_levels() -> None:
    assert [wandb_level(s) for s in ("critical", "warning", "info", None, "CRITICAL")] == [
        "ERROR",
        "WARN",
        "INFO",
        "INFO",
        "ERROR",
    ]


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Offline wandb writing under tmp_path, with no way to reach a server."""
    wandb = pytest.importorskip("wandb")
    wandb.teardown()  # wandb reads its environment once per session
    home = tmp_path / "wandb_home"
    for var in ("WANDB_API_KEY", "WANDB_DISABLED", "WANDB_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    for key, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # the discard port: fails at once
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
        "NETRC": str(home / "no-netrc"),
    }.items():
        monkeypatch.setenv(key, value)
    yield tmp_path / "runs"
    wandb.teardown()


def test_firing_alerts_become_wandb_alerts_in_an_offline_run(offline_wandb: Path) -> None:
    from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger

    try:
        from tests.wandb_records import read_run
    except ImportError:
        from wandb_records import read_run  # type: ignore[no-redef]

    critical = copy.deepcopy(LEAK)
    critical["labels"].update(alertname="MLXMemoryFillingUp", severity="critical")
    critical["annotations"] = {"summary": "MLX active memory is predicted to reach the limit."}
    logger = EnhancedWandBLogger(
        project="alerts", name="alert-sink", mode="offline", dir=offline_wandb
    )
    try:
        with AlertSink(port=0, wandb_logger=logger, out=io.StringIO()) as sink:
            assert post(sink.url, PAYLOAD)[0] == 200
            assert post(sink.url, {**PAYLOAD, "alerts": [critical]})[0] == 200
    finally:
        logger.finish()

    records = read_run(offline_wandb)
    # The resolved MLXTrainingLossNotFinite of PAYLOAD is printed, not forwarded.
    assert [(a["title"], a["level"]) for a in records.alerts] == [
        ("MLXMemoryLeakSuspected (grpo-1)", "WARN"),
        ("MLXMemoryFillingUp (grpo-1)", "ERROR"),
    ]
    assert records.alerts[0]["text"] == (
        f"{LEAK['annotations']['summary']}\n"
        f"{LEAK['annotations']['description']}\n"
        "severity: warning, since 2026-11-05T10:00:00.000Z\n"
        f"{LEAK['annotations']['runbook_url']}"
    )
    assert logger.error_counts == {}


def test_a_failing_wandb_logger_costs_no_notification(caplog) -> None:
    class Broken:
        def alert(self, title: str, text: str, level: str = "WARN") -> bool:
            raise RuntimeError("wandb is down")

    with AlertSink(port=0, wandb_logger=Broken(), out=io.StringIO()) as sink:
        assert post(sink.url, PAYLOAD)[0] == 200
        assert post(sink.url, PAYLOAD)[0] == 200
        assert len(sink.notifications) == 2
    assert (
        "could not forward MLXMemoryLeakSuspected (grpo-1) to WandB: wandb is down" in caplog.text
    )


# ---------------------------------------------------------------- command line


def command_env() -> dict[str, str]:
    """Environment in which ``python -m mlx_otel`` finds this checkout from any folder."""
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return {**os.environ, "PYTHONPATH": path}


def test_the_subcommand_registers_its_options_and_defaults() -> None:
    parser = argparse.ArgumentParser(prog="mlx-otel")
    add_parser(parser.add_subparsers(dest="command"))

    args = parser.parse_args(["alert-sink"])
    assert (args.host, args.port, args.wandb) == ("127.0.0.1", 9095, "disabled")
    assert callable(args.func)
    args = parser.parse_args(
        ["alert-sink", "--host", "0.0.0.0", "--port", "0", "--wandb", "offline",
         "--wandb-project", "p", "--run-name", "r"]
    )  # fmt: skip
    assert (args.host, args.port, args.wandb, args.wandb_project, args.run_name) == (
        "0.0.0.0", 0, "offline", "p", "r"
    )  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["alert-sink", "--wandb", "sometimes"])


def test_mlx_otel_alert_sink_prints_notifications_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "sink.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            python_command("alert-sink", "--port", str(port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**command_env(), "PYTHONUNBUFFERED": "1"},
        )
    try:
        wait_for(
            lambda: get_status(f"http://127.0.0.1:{port}/healthz") == 200,
            timeout=30,
            what="the alert-sink command to serve",
        )
        assert post(f"http://127.0.0.1:{port}/alerts", PAYLOAD)[0] == 200
        assert post(f"http://127.0.0.1:{port}/alerts", b"{")[0] == 400
        wait_for(lambda: "RESOLVED" in log_path.read_text(), timeout=10, what="printed alerts")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log_path.read_text()
    assert f"receiving Alertmanager webhooks at http://127.0.0.1:{port}/alerts" in output
    assert "FIRING MLXMemoryLeakSuspected\n  severity:    warning\n  run_id:      grpo-1" in output
    assert output.rstrip().endswith("mlx-otel alert-sink: stopped")


def test_mlx_otel_alert_sink_reports_a_taken_port(sink) -> None:
    result = subprocess.run(
        python_command("alert-sink", "--port", str(sink.port)),
        capture_output=True,
        text=True,
        timeout=60,
        env=command_env(),
    )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{sink.port}" in result.stderr


def run_sink(argv: list[str], log_path: Path, env: dict[str, str] | None = None):
    with open(log_path, "w") as log:
        return subprocess.Popen(
            python_command("alert-sink", *argv), stdout=log, stderr=subprocess.STDOUT,
            env={**command_env(), "PYTHONUNBUFFERED": "1", **(env or {})},
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_mlx_otel_alert_sink_takes_its_token_from_a_file_or_the_environment(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "secrets" / "token"
    for argv, env in (
        (["--bearer-token-file", str(token_file), "--create-token"], {}),
        ([], {"MLX_OTEL_ALERT_SINK_TOKEN": "from-the-environment"}),
    ):
        port = free_port()
        log_path = tmp_path / f"sink-{port}.log"
        process = run_sink(["--host", "127.0.0.1", "--port", str(port), *argv], log_path, env)
        try:
            health = f"http://127.0.0.1:{port}/healthz"
            wait_for(lambda health=health: get_status(health) == 200,
                     timeout=30, what="the alert-sink command to serve")  # fmt: skip
            token = token_file.read_text().strip() if argv else "from-the-environment"
            url = f"http://127.0.0.1:{port}/alerts"
            assert post(url, PAYLOAD)[0] == 401
            assert post(url, PAYLOAD, authorization=f"Bearer {token}")[0] == 200
            wait_for(lambda log=log_path: "RESOLVED" in log.read_text(), timeout=10, what="alerts")
        finally:
            stop(process)
        output = log_path.read_text()
        assert "(credentials required)" in output and token not in output
    # --create-token wrote a fresh random token, readable by owner and group only.
    assert len(token_file.read_text().strip()) >= 40
    assert token_file.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--bearer-token-file", "missing-token"], {}, "cannot read the bearer token file"),
        (["--create-token"], {}, "--create-token needs --bearer-token-file"),
        (["--basic-auth-user", "am"], {}, "--basic-auth-user needs a password"),
        (["--keyfile", "k.pem"], {}, "--keyfile needs --certfile"),
    ],
)
def test_mlx_otel_alert_sink_names_a_credential_it_cannot_use(
    argv: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        python_command("alert-sink", "--port", "0", *argv), cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={**command_env(), **env},
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- real Alertmanager


def alertmanager_config_for(
    sink_url: str, *, interval: str = "1s", credentials_file: Path | None = None
) -> dict[str, Any]:
    """prometheus/alertmanager.yml with every webhook posting to ``sink_url``, quickly.

    group_wait, group_interval and repeat_interval become ``interval`` on
    every route so a test sees notifications within seconds. The webhooks
    present the bearer token of ``credentials_file`` as the shipped file does
    (its ``http_config``); without one, they post without a credential.
    """
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = sink_url
            if credentials_file is None:
                del webhook["http_config"]
            else:
                webhook["http_config"]["authorization"]["credentials_file"] = str(credentials_file)

    def hurry(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route or route is config["route"]:
                route[key] = interval
        for child in route.get("routes", []):
            hurry(child)

    hurry(config["route"])
    return config


def _am_alert(alertname: str, severity: str, run_id: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "labels": {
            "alertname": alertname,
            "severity": severity,
            "run_id": run_id,
            "job": "mlx_otel",
            "instance": "trainer:9464",
        },
        "annotations": {"summary": f"{alertname} ({severity})."},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "alert_sink_token"
    ensure_token_file(path)
    return path


@pytest.mark.integration
def test_alertmanager_routes_by_severity_and_a_critical_inhibits_its_warning(
    token_file: Path, tmp_path: Path
) -> None:
    # The sink asks for the token; the shipped http_config presents it.
    sink = AlertSink(port=0, out=io.StringIO(), bearer_token=token_file.read_text()).start()
    config = alertmanager_config_for(sink.url, credentials_file=token_file)
    with sink, AlertmanagerServer(tmp_path / "am", config=config) as am:
        status, _ = post(
            f"{am.url}/api/v2/alerts",
            [
                _am_alert("MLXMemoryFillingUp", "critical", "run-a"),
                _am_alert("MLXMemoryFillingUp", "warning", "run-a"),
                _am_alert("MLXMemoryFillingUp", "warning", "run-b"),
            ],
        )
        assert status == 200

        def delivered() -> list[tuple[str, str, str]]:
            return sorted(
                (p["receiver"], a["labels"]["run_id"], a["labels"]["severity"])
                for p in sink.notifications
                for a in p["alerts"]
            )

        wait_for(lambda: len(delivered()) >= 2, timeout=20, what="two notifications")

        def warning_inhibited() -> bool:
            return any(
                a["labels"]["run_id"] == "run-a"
                and a["labels"]["severity"] == "warning"
                and a["status"]["inhibitedBy"]
                for a in am.alerts()
            )

        # Alertmanager itself says the warning is muted by its critical.
        wait_for(warning_inhibited, timeout=20, what="run-a's warning to be inhibited")
        assert set(delivered()) == {
            ("page", "run-a", "critical"),
            ("ticket", "run-b", "warning"),
        }
        payload = sink.notifications[0]
        assert payload["version"] == "4"
        assert set(payload["groupLabels"]) == {"run_id", "alertname"}


@pytest.mark.integration
def test_alertmanager_without_the_token_is_refused_by_the_sink(
    token_file: Path, tmp_path: Path
) -> None:
    with AlertSink(port=0, out=io.StringIO(), bearer_token=token_file.read_text()) as sink:
        wrong = tmp_path / "wrong_token"
        wrong.write_text("not-the-token\n")
        config = alertmanager_config_for(sink.url, credentials_file=wrong)
        with AlertmanagerServer(tmp_path / "am", config=config) as am:
            status, _ = post(f"{am.url}/api/v2/alerts", [_am_alert("MLXTrainingStalled", "warning", "r")])
            assert status == 200
            # Alertmanager tries, is told 401, and logs it; nothing reaches the sink.
            wait_for(lambda: "401" in am.log(), timeout=30, what="Alertmanager to log the 401")
        assert sink.notifications == []
