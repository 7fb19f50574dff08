"""docker-compose.yml agrees with the files it mounts and the services they name.

There is no Docker engine in CI, so the stack is checked statically: every
mounted file exists, images are pinned, and the addresses written in
prometheus/prometheus.yml, prometheus/alertmanager.yml and Grafana's
provisioning are services and ports of this compose file.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.servers import REPO

COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS_YML = REPO / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = REPO / "prometheus" / "alertmanager.yml"
DATASOURCE_YML = REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER_YML = REPO / "grafana" / "provisioning" / "dashboards" / "provider.yml"
DASHBOARDS = REPO / "grafana" / "dashboards"

SERVICES = {"trainer", "prometheus", "alertmanager", "alert-sink", "grafana"}
# The port each service listens on inside the compose network.
PORTS = {
    "trainer": 9464,
    "prometheus": 9090,
    "alertmanager": 9093,
    "alert-sink": 9095,
    "grafana": 3000,
}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def bind_mounts(service: str) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of the service's bind mounts (named volumes left out)."""
    mounts = []
    for volume in services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((REPO / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(service: str, container_path: PurePosixPath) -> Path | None:
    """The host file behind ``container_path`` in ``service``, through its bind mounts."""
    for source, target in bind_mounts(service):
        if container_path == target:
            return source
        if target in container_path.parents:
            return source / container_path.relative_to(target)
    return None


def command_flag(service: str, flag: str) -> str | None:
    """Value of ``--flag VALUE`` or ``--flag=VALUE`` in the service's command."""
    command = [str(c) for c in services()[service].get("command", [])]
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


def require(path: Path) -> dict[str, Any]:
    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO)} does not exist yet")
    return dict(yaml.safe_load(path.read_text()))


def host_port(address: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
    assert parsed.hostname and parsed.port, f"{address!r} names no host:port"
    return parsed.hostname, parsed.port


def test_the_stack_has_its_five_services() -> None:
    assert set(services()) == SERVICES


def test_every_mounted_host_path_exists() -> None:
    for name in services():
        for source, target in bind_mounts(name):
            assert source.exists(), f"{name} mounts {source} at {target}, which does not exist"


def test_images_are_pinned_to_a_version() -> None:
    for name, service in services().items():
        if "build" in service:
            dockerfile = (
                REPO / service["build"] / "Dockerfile"
                if isinstance(service["build"], str)
                else (
                    REPO
                    / service["build"].get("context", ".")
                    / service["build"].get("dockerfile", "Dockerfile")
                )
            )
            assert dockerfile.exists(), f"{name} builds from a missing {dockerfile}"
            images = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
        else:
            images = [service["image"]]
        for image in images:
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest", f"{name}: image {image} is not pinned"
            assert re.search(r"\d+\.\d+", tag), f"{name}: tag of {image} is not a version"


def test_every_service_has_a_health_check_and_localhost_ports() -> None:
    for name, service in services().items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for port in service.get("ports", []):
            # Safe by default: nothing is published beyond this machine.
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
            assert str(port).endswith(f":{PORTS[name]}"), f"{name} publishes {port}"


def test_trainer_serves_metrics_on_all_interfaces_of_its_port() -> None:
    command = services()["trainer"]["command"]
    assert command[0] == "demo"
    assert command_flag("trainer", "--host") == "0.0.0.0"
    assert command_flag("trainer", "--port") == str(PORTS["trainer"])


def test_alert_sink_listens_where_the_compose_file_says() -> None:
    assert services()["alert-sink"]["command"][0] == "alert-sink"
    assert command_flag("alert-sink", "--host") == "0.0.0.0"
    assert command_flag("alert-sink", "--port") == str(PORTS["alert-sink"])


def named_volume_path(service: str, container_path: PurePosixPath) -> tuple[str, str] | None:
    """(named volume, path inside it) behind ``container_path`` in ``service``."""
    for volume in services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            continue
        target_path = PurePosixPath(target)
        if target_path == container_path or target_path in container_path.parents:
            return source, container_path.relative_to(target_path).as_posix()
    return None


def test_alertmanager_presents_the_token_the_alert_sink_asks_for() -> None:
    # On 0.0.0.0 the sink takes only posts with its token, which it writes on
    # first start into a volume Alertmanager reads it from.
    token = PurePosixPath(command_flag("alert-sink", "--bearer-token-file") or "")
    assert "--create-token" in services()["alert-sink"]["command"]
    written = named_volume_path("alert-sink", token)
    assert written is not None, f"{token} is not on a volume of alert-sink"
    assert written[0] in compose()["volumes"]
    config = require(ALERTMANAGER_YML)
    files = {
        hook["http_config"]["authorization"]["credentials_file"]
        for receiver in config["receivers"]
        for hook in receiver.get("webhook_configs", [])
        if host_port(hook["url"])[0] == "alert-sink"
    }
    assert len(files) == 1
    assert named_volume_path("alertmanager", PurePosixPath(files.pop())) == written
    # The token is group-readable (0640): Alertmanager runs in the image user's group.
    assert "10001" in [str(g) for g in services()["alertmanager"].get("group_add", [])]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--gid 10001" in dockerfile and "/secrets" in dockerfile


def test_prometheus_scrapes_the_trainer() -> None:
    config = require(PROMETHEUS_YML)
    targets = []
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            targets += [(job["job_name"], t) for t in static.get("targets", [])]
        for file_sd in job.get("file_sd_configs", []):
            for pattern in file_sd.get("files", []):
                path = host_path("prometheus", PurePosixPath("/etc/prometheus") / pattern)
                assert path is not None, f"file_sd {pattern} is not mounted into prometheus"
                for found in path.parent.glob(path.name):
                    for group in (
                        json.loads(found.read_text())
                        if found.suffix == ".json"
                        else yaml.safe_load(found.read_text())
                    ):
                        targets += [(job["job_name"], t) for t in group.get("targets", [])]
    assert ("mlx_otel", f"trainer:{PORTS['trainer']}") in targets, targets
    for _, target in targets:
        host, port = host_port(target)
        if host in SERVICES:
            assert PORTS[host] == port, f"prometheus.yml scrapes {target}"


def test_prometheus_config_and_rules_are_mounted_where_it_reads_them() -> None:
    config = require(PROMETHEUS_YML)
    config_file = PurePosixPath(command_flag("prometheus", "--config.file") or "")
    assert host_path("prometheus", config_file) == PROMETHEUS_YML.resolve()
    patterns = config.get("rule_files", [])
    assert patterns, "prometheus.yml loads no rule files"
    for pattern in patterns:
        # Relative rule paths are resolved against the config file's folder.
        in_container = config_file.parent / pattern
        path = host_path("prometheus", in_container)
        assert path is not None, f"rule files {in_container} are not mounted into prometheus"
        assert list(path.parent.glob(path.name)), f"{in_container} matches no file in {path.parent}"


def test_prometheus_sends_alerts_to_alertmanager() -> None:
    config = require(PROMETHEUS_YML)
    targets = [
        t
        for am in config.get("alerting", {}).get("alertmanagers", [])
        for static in am.get("static_configs", [])
        for t in static.get("targets", [])
    ]
    assert f"alertmanager:{PORTS['alertmanager']}" in targets
    assert (
        command_flag("alertmanager", "--web.listen-address") == f"0.0.0.0:{PORTS['alertmanager']}"
    )


def test_alertmanager_config_is_mounted_and_its_webhooks_are_services() -> None:
    config = require(ALERTMANAGER_YML)
    config_file = PurePosixPath(command_flag("alertmanager", "--config.file") or "")
    assert host_path("alertmanager", config_file) == ALERTMANAGER_YML.resolve()
    urls = [
        hook["url"]
        for receiver in config.get("receivers", [])
        for hook in receiver.get("webhook_configs", [])
        if "url" in hook
    ]
    for url in urls:
        host, port = host_port(url)
        if host in SERVICES:
            assert PORTS[host] == port, f"alertmanager.yml posts to {url}"
    assert any(host_port(u)[0] == "alert-sink" for u in urls), "no webhook reaches alert-sink"


def test_grafana_datasource_is_the_compose_prometheus_with_the_dashboards_uid() -> None:
    (source,) = yaml.safe_load(DATASOURCE_YML.read_text())["datasources"]
    host, port = host_port(source["url"])
    assert (host, port) == ("prometheus", PORTS["prometheus"])
    assert command_flag("prometheus", "--web.listen-address") == f"0.0.0.0:{PORTS['prometheus']}"
    assert source["type"] == "prometheus"

    # The dashboards' datasource variable starts on the provisioned uid.
    for path in DASHBOARDS.glob("*.json"):
        variables = {v["name"]: v for v in json.loads(path.read_text())["templating"]["list"]}
        assert variables["datasource"]["current"]["value"] == source["uid"], path.name


def test_datasource_time_interval_matches_the_scrape_interval() -> None:
    config = require(PROMETHEUS_YML)
    (source,) = yaml.safe_load(DATASOURCE_YML.read_text())["datasources"]
    scrape = config.get("global", {}).get("scrape_interval", "1m")
    jobs = [j for j in config.get("scrape_configs", []) if j.get("job_name") == "mlx_otel"]
    if jobs and "scrape_interval" in jobs[0]:
        scrape = jobs[0]["scrape_interval"]
    # Grafana's $__rate_interval is four of these: it must be the real interval.
    assert source["jsonData"]["timeInterval"] == scrape


def test_grafana_loads_the_generated_dashboards_from_their_mount() -> None:
    (provider,) = yaml.safe_load(PROVIDER_YML.read_text())["providers"]
    path = PurePosixPath(provider["options"]["path"])
    assert host_path("grafana", path) == DASHBOARDS.resolve()
    assert list(DASHBOARDS.glob("*.json")), "no generated dashboards to provision"
    assert (
        host_path("grafana", PurePosixPath("/etc/grafana/provisioning"))
        == (REPO / "grafana" / "provisioning").resolve()
    )
    home = services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_file = host_path("grafana", PurePosixPath(home))
    assert home_file is not None and home_file.exists(), home


def test_the_trainer_writes_target_files_where_prometheus_reads_them() -> None:
    # exporter.file_sd_dir=/targets in the trainer lands in the folder the
    # job's file_sd_configs read (targets/*.json beside prometheus.yml).
    config = require(PROMETHEUS_YML)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "mlx_otel"]
    patterns = [p for sd in job.get("file_sd_configs", []) for p in sd["files"]]
    assert patterns == ["targets/*.json"]
    read = host_path("prometheus", PurePosixPath("/etc/prometheus/targets"))
    assert read is not None and read.is_dir()
    assert host_path("trainer", PurePosixPath("/targets")) == read
