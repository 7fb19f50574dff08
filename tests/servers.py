"""Real Prometheus, Alertmanager and promtool for the tests.

Each server runs the real binary on 127.0.0.1 and an ephemeral port, in a
temporary folder, and is stopped at the end. When a binary is missing the
test is skipped on a developer machine and fails under CI (``CI=true``), so a
missing install step cannot hide behind a green run.

    with PrometheusServer(tmp_path, targets=["127.0.0.1:9464"]) as prom:
        prom.wait_for(lambda: prom.query("up") != [])
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import processes

REPO = Path(__file__).resolve().parent.parent

# Debian names Alertmanager's binary prometheus-alertmanager; upstream and
# Homebrew call it alertmanager.
BINARY_NAMES = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
    "pushgateway": ("pushgateway", "prometheus-pushgateway"),
}


def find_binary(name: str) -> str:
    """Path of a required binary; skip locally, fail under CI when it is missing."""
    for candidate in BINARY_NAMES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    message = (
        f"{name} is not installed; run `make test` (it installs Prometheus, promtool, "
        "Alertmanager and the Pushgateway) or install them with your package manager"
    )
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerDied(AssertionError):
    """A server process exited while a test waited on it: fail now, with its log."""


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` on timeout.

    A :class:`ServerDied` raised by the condition fails at once.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except ServerDied:
            raise
        except Exception as exc:  # the server may not be up yet
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or condition}{detail}")


def http_get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def http_get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


class _Server:
    """A real binary run in the background; a context manager that stops it."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"
        self._log_file: Any = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return http_get_text(f"{self.url}/-/ready").strip() != ""

    def start(self) -> _Server:
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = processes.popen(
            self.command(), cwd=self.workdir, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        try:
            wait_for(self._ready_or_dead, timeout=30, what=f"{self.name} to be ready")
        except ServerDied:
            self.stop()
            raise
        except AssertionError:
            self.stop()
            raise AssertionError(f"{self.name} did not start:\n{self.log()}") from None
        return self

    def get_json(self, url: str) -> Any:
        """GET JSON from the server; a dead server raises :class:`ServerDied` at once."""
        try:
            return http_get_json(url)
        except OSError:
            self.check_alive()
            raise

    def check_alive(self) -> None:
        """Raise :class:`ServerDied` with the server's log if its process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise ServerDied(
                f"{self.name} exited with status {self.process.returncode}:\n{self.log()}"
            )

    def _ready_or_dead(self) -> bool:
        self.check_alive()
        return self.ready()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrometheusServer(_Server):
    """The real Prometheus, scraping ``targets`` every second.

    ``rule_files`` are copied into the working folder; ``rule_transform`` may
    rewrite their parsed YAML first (tests shorten ``for:`` this way instead
    of editing the project's rule files).
    """

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        *,
        targets: Sequence[str] = (),
        file_sd: bool = False,
        rule_files: Iterable[Path] = (),
        rule_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        alertmanager_port: int | None = None,
        interval: str = "1s",
        job_name: str = "mlx_otel",
        extra_args: Sequence[str] = (),
        scrape_options: dict[str, Any] | None = None,
        agent: bool = False,
        remote_write_url: str | None = None,
        remote_write_receiver: bool = False,
    ) -> None:
        super().__init__(workdir)
        self.binary = find_binary("prometheus")
        self.targets = list(targets)
        self.file_sd = file_sd
        self.job_name = job_name
        self.agent = agent
        self.extra_args = list(extra_args)
        if agent:
            self.extra_args.append("--enable-feature=agent")
        if remote_write_receiver:
            self.extra_args.append("--web.enable-remote-write-receiver")
        rules = []
        for i, path in enumerate(rule_files):
            data = yaml.safe_load(Path(path).read_text())
            if rule_transform is not None:
                data = rule_transform(data)
            target = self.workdir / f"rules_{i}_{Path(path).name}"
            target.write_text(yaml.safe_dump(data, sort_keys=False))
            rules.append(str(target))
        scrape: dict[str, Any] = {
            "job_name": job_name,
            "scrape_interval": interval,
            **(scrape_options or {}),
        }
        if file_sd:
            scrape["file_sd_configs"] = [
                {"files": [str(self.workdir / "targets.json")], "refresh_interval": "1s"}
            ]
            self.set_targets(self.targets)
        else:
            scrape["static_configs"] = [{"targets": self.targets}]
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval},
            "scrape_configs": [scrape],
        }
        if not agent:  # an agent neither evaluates rules nor stores series locally
            config["global"]["evaluation_interval"] = interval
            config["rule_files"] = rules
        if remote_write_url is not None:
            config["remote_write"] = [{"url": remote_write_url}]
        if alertmanager_port is not None:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
            }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def set_targets(self, targets: Sequence[str], labels: dict[str, str] | None = None) -> None:
        """Rewrite the file_sd target list (Prometheus picks it up within a second)."""
        entry = [{"targets": list(targets), "labels": labels or {}}]
        tmp = self.workdir / "targets.json.tmp"
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self.workdir / "targets.json")

    def command(self) -> list[str]:
        storage = "--storage.agent.path" if self.agent else "--storage.tsdb.path"
        return [
            self.binary,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"{storage}={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            *self.extra_args,
        ]

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        data = self.get_json(f"{self.url}/api/v1/{path}?{query}")
        if data.get("status") != "success":
            raise AssertionError(f"Prometheus API {path} failed: {data}")
        return data["data"]

    def query(self, expr: str, **params: Any) -> list[dict[str, Any]]:
        """Instant query; returns the result vector (list of {metric, value})."""
        data = self.api("query", query=expr, **params)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def query_values(self, expr: str) -> dict[str, float]:
        """Instant query as {label-string: value}, handy for assertions."""
        out = {}
        for item in self.query(expr):
            labels = ",".join(f"{k}={v}" for k, v in sorted(item["metric"].items()))
            out[labels] = float(item["value"][1])
        return out

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> Any:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])


class AlertmanagerServer(_Server):
    """The real Alertmanager with ``config`` (a dict or a path to YAML)."""

    name = "alertmanager"

    def __init__(self, workdir: Path, *, config: dict[str, Any] | Path) -> None:
        super().__init__(workdir)
        self.binary = find_binary("alertmanager")
        self.cluster_port = free_port()
        if isinstance(config, dict):
            text = yaml.safe_dump(config, sort_keys=False)
        else:
            text = Path(config).read_text()
        (self.workdir / "alertmanager.yml").write_text(text)

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.workdir / 'alertmanager.yml'}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # A lone test instance: no gossip with peers.
            "--cluster.listen-address=",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get_json(f"{self.url}/api/v2/alerts"))


class PushgatewayServer(_Server):
    """The real Pushgateway, in memory only."""

    name = "pushgateway"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = find_binary("pushgateway")

    def command(self) -> list[str]:
        return [self.binary, f"--web.listen-address=127.0.0.1:{self.port}"]


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real promtool and return the completed process (never raises on failure)."""
    return processes.run(
        [find_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def python_command(*args: str) -> list[str]:
    """The current interpreter running ``python -m mlx_otel ...``."""
    return [sys.executable, "-m", "mlx_otel", *args]
