"""A WandB server that accepts connections and never answers does not hold training.

The real ``wandb`` client, online mode, a dummy 40-character API key and
``WANDB_BASE_URL`` pointing at a local TCP server that accepts every
connection and never replies: ``wandb.init`` waits for its own timeout
(90 s by default). The training script must not notice: the monitor is
built in well under a second, steps are served, ``cleanup()`` returns
within ``wandb_finish_timeout`` plus a margin, and the process ends.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import processes

pytestmark = pytest.mark.integration  # each test runs a training script in a child process

REPO = Path(__file__).resolve().parent.parent
DUMMY_KEY = "0123456789abcdef0123456789abcdef01234567"
FINISH_TIMEOUT = 3.0

SCRIPT = textwrap.dedent("""
    import json, sys, time
    from mlx_otel import TrainingMonitor

    config = {
        "exporter": {"port": 0},
        "monitoring": {"use_wandb": True, "wandb_mode": "online", "output_dir": sys.argv[1],
                       "generate_charts_every": 0, "wandb_finish_timeout": %(finish)s},
    }
    began = time.monotonic()
    monitor = TrainingMonitor(config, run_id="outage")
    built = time.monotonic() - began
    worst = 0.0
    for step in range(300):
        t = time.monotonic()
        monitor.log_training_step(step, loss=1.0 / (step + 1), rewards=[0.5, 1.0])
        worst = max(worst, time.monotonic() - t)
        time.sleep(0.002)
    text = monitor.telemetry.exposition()
    served = [l for l in text.splitlines() if l.startswith("mlx_train_steps_total")]
    began = time.monotonic()
    monitor.export_all()
    monitor.cleanup()
    cleaned = time.monotonic() - began
    print(json.dumps({"built": built, "cleanup": cleaned, "worst_step": worst,
                      "served": served, "errors": monitor.error_counts()}), flush=True)
""") % {"finish": FINISH_TIMEOUT}


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never replies."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            held.append(connection)  # never read, never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        server.close()


def test_training_starts_and_ends_in_bounded_time_when_wandb_never_answers(
    silent_server: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update({
        "PYTHONPATH": str(REPO), "WANDB_BASE_URL": silent_server, "WANDB_API_KEY": DUMMY_KEY,
        "WANDB_SILENT": "true", "HOME": str(tmp_path),  # no netrc or settings of the user
    })  # fmt: skip
    began = time.monotonic()
    result = processes.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    exited = time.monotonic() - began
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\nWandB never answering: TrainingMonitor() {figures['built']:.2f} s, worst step "
          f"{figures['worst_step'] * 1e3:.1f} ms, export+cleanup {figures['cleanup']:.1f} s "
          f"(finish timeout {FINISH_TIMEOUT} s), process exit after {exited:.1f} s; "
          f"errors {figures['errors']}")  # fmt: skip
    assert figures["built"] < 5.0  # typically well under a second; generous for a busy machine
    assert figures["served"] and figures["served"][0].endswith(" 300.0"), figures["served"]
    assert figures["cleanup"] < FINISH_TIMEOUT + 20
    # wandb's own exit hook would wait for its service for 90 s and more.
    assert exited < 60
    assert figures["errors"].get("wandb", 0) >= 1  # the outage is counted
    assert DUMMY_KEY not in result.stdout + result.stderr  # the key is never echoed
    assert (tmp_path / "out" / "training_metrics.csv").is_file()


SECRETS_SCRIPT = textwrap.dedent("""
    import base64, logging, os, sys, urllib.request
    logging.basicConfig(level=logging.DEBUG)  # every log line mlx_otel and wandb write
    from mlx_otel import TrainingMonitor

    # The password comes from the environment, as a deployment would pass it.
    out, password = sys.argv[1], os.environ["MLX_OTEL_EXPORTER__BASIC_AUTH_PASSWORD"]
    config = {
        "exporter": {"port": 0, "basic_auth_username": "prometheus"},
        "monitoring": {"use_wandb": True, "wandb_mode": "offline", "output_dir": out,
                       "generate_charts_every": 0, "log_samples_every": 5},
    }
    with TrainingMonitor(config, run_id="secrets") as monitor:
        for step in range(12):
            monitor.log_training_step(step, loss=0.5, rewards=[0.1, 0.9], kl=0.01)
            monitor.log_samples(step, ["#12?"], ["..7=93$"], ["12"], [0.9])
        token = base64.b64encode(f"prometheus:{password}".encode()).decode()
        request = urllib.request.Request(monitor.endpoint, headers={"Authorization": "Basic " + token})
        with urllib.request.urlopen(request, timeout=30) as response:
            print(response.read().decode())
        monitor.log_training_step(12, loss=float("nan"), bad=None)  # errors are logged too
""")


def test_no_secret_reaches_logs_labels_or_output_files(tmp_path: Path) -> None:
    password = "pa55-Wd-never-printed-7f3a"
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env.update({"PYTHONPATH": str(REPO), "WANDB_API_KEY": DUMMY_KEY, "HOME": str(tmp_path),
                "MLX_OTEL_EXPORTER__BASIC_AUTH_PASSWORD": password})  # fmt: skip
    result = processes.run(
        [sys.executable, "-c", SECRETS_SCRIPT, str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mlx_train_steps_total" in result.stdout  # the scrape with credentials worked
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.suffix == ".csv" for p in files)
    leaks = []
    for secret in (password, DUMMY_KEY):
        raw = secret.encode()
        if secret in result.stdout or secret in result.stderr:
            leaks.append(f"{secret[:6]}... in the process output")
        leaks += [f"{secret[:6]}... in {p}" for p in files
                  if p.name != "train.py" and raw in p.read_bytes()]  # fmt: skip
    print(f"\nchecked {len(files)} files, stdout and stderr for the password and the WandB key")
    assert leaks == []
