"""Self-registration for file_sd: one target file per rank, gone after a clean end.

The Prometheus side (discovery of two real ranks through the files alone)
is tests/test_ranks.py; here the file itself and its life.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from mlx_otel.exporter.file_sd import TargetFile, target_address
from mlx_otel.monitor import TrainingMonitor


def test_the_env_variable_registers_the_serving_endpoint_until_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = tmp_path / "targets"
    monkeypatch.setenv("MLX_OTEL_EXPORTER__FILE_SD_DIR", str(targets))
    monitor = TrainingMonitor({"exporter": {"port": 0}}, run_id="grpo/7b run", rank=3)
    try:
        (path,) = targets.glob("*.json")
        assert path.name == "grpo_7b_run-rank3.json"  # a safe file name
        group = json.loads(path.read_text())
        assert group == [{
            "targets": [f"127.0.0.1:{monitor.telemetry.port}"],
            "labels": {"run_id": "grpo/7b run", "rank": "3", "hostname": socket.gethostname()},
        }]  # fmt: skip
        assert not list(targets.glob(".*"))  # no half-written temporary left
    finally:
        monitor.cleanup()
    assert list(targets.iterdir()) == []


def test_a_single_process_run_has_no_rank_label(tmp_path: Path) -> None:
    target = TargetFile(tmp_path, run_id="solo", rank=None, host="127.0.0.1", port=9464)
    target.write()
    assert target.path.name == "solo.json"
    assert "rank" not in json.loads(target.path.read_text())[0]["labels"]
    target.remove()
    target.remove()  # already gone is fine


def test_a_wildcard_bind_registers_the_machine_name() -> None:
    assert target_address("0.0.0.0", 9464) == f"{socket.getfqdn()}:9464"
    assert target_address("::1", 9464) == "[::1]:9464"
    assert target_address("node-a", 9465) == "node-a:9465"


def test_a_monitor_that_does_not_serve_registers_nothing(tmp_path: Path) -> None:
    config = {"exporter": {"port": 0, "file_sd_dir": str(tmp_path / "t")}}
    monitor = TrainingMonitor(config, run_id="quiet", serve=False)
    monitor.cleanup()
    assert not (tmp_path / "t").exists()


def test_an_unwritable_folder_is_counted_and_training_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the folder should be")
    config = {"exporter": {"port": 0, "file_sd_dir": str(blocker / "targets")}}
    monitor = TrainingMonitor(config, run_id="blocked")
    try:
        monitor.log_training_step(0, loss=1.0)
        assert monitor.error_counts() == {"export": 1}
        assert monitor.steps_logged == 1
    finally:
        monitor.cleanup()
