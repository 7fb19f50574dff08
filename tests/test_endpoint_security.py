"""The endpoint can serve TLS with basic auth, and a real Prometheus scrapes it."""

from __future__ import annotations

import base64
import shutil
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlx_otel import TrainingMonitor
from mlx_otel.errors import ConfigError
from tests import processes
from tests.servers import PrometheusServer, wait_for


def make_certificate(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (make test installs it)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    processes.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def get(url: str, cafile: Path, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.integration
def test_tls_and_basic_auth_are_enforced_and_prometheus_scrapes(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    config = {
        "exporter": {
            "port": 0, "certfile": str(cert), "keyfile": str(key),
            "basic_auth_username": "prom", "basic_auth_password": "s3cret",
        },
        "monitoring": {"generate_charts_every": 0, "output_dir": str(tmp_path / "out")},
    }  # fmt: skip
    with TrainingMonitor(config, run_id="secure") as monitor:
        monitor.log_training_step(step=0, loss=0.5)
        assert monitor.endpoint and monitor.endpoint.startswith("https://127.0.0.1:")
        assert get(monitor.endpoint, cert) == 401
        assert get(monitor.endpoint, cert, ("prom", "wrong")) == 401
        assert get(monitor.endpoint, cert, ("prom", "s3cret")) == 200
        options = {
            "scheme": "https",
            "basic_auth": {"username": "prom", "password": "s3cret"},
            "tls_config": {"ca_file": str(cert)},
        }
        target = monitor.endpoint.split("//")[1].split("/")[0]
        with PrometheusServer(tmp_path / "prom", targets=[target], scrape_options=options) as prom:
            wait_for(lambda: prom.query_values('mlx_train_loss{run_id="secure"}'), timeout=30,
                     what="an authenticated TLS scrape")  # fmt: skip
            assert list(prom.query_values('up{job="mlx_otel"}').values()) == [1.0]


def test_incomplete_credentials_are_a_config_error_that_hides_the_password() -> None:
    with pytest.raises(ConfigError, match="basic_auth_username and basic_auth_password") as info:
        TrainingMonitor({"exporter": {"port": 0, "basic_auth_password": "hunter2"}})
    assert "hunter2" not in str(info.value)
