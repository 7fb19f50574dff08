"""Two MLX ranks (mlx.launch, ring backend on loopback), one endpoint each,
found by a real Prometheus through the target files the ranks write
themselves (``--file-sd-dir``), and forgotten when the run ends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import processes
from tests.servers import PrometheusServer, free_port, wait_for

pytestmark = pytest.mark.integration

RUN_ID = "two_ranks"
STEPS = 15


def two_free_ports() -> int:
    """A base port whose next port is free too (ranks serve on base + rank)."""
    for _ in range(50):
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise AssertionError("no two consecutive free ports")


def file_sd_prometheus(workdir: Path, targets_dir: Path) -> PrometheusServer:
    """Prometheus with no target but the files in ``targets_dir`` (as the shipped config)."""
    return PrometheusServer(
        workdir,
        scrape_options={
            "honor_labels": True,
            "file_sd_configs": [{"files": [str(targets_dir / "*.json")], "refresh_interval": "1s"}],
        },
    )


def test_ranks_register_themselves_and_are_forgotten_after_the_run(tmp_path: Path) -> None:
    launcher = Path(sys.executable).parent / "mlx.launch"
    if not launcher.exists():
        pytest.skip("mlx.launch is not installed beside this interpreter")
    base = two_free_ports()
    targets_dir = tmp_path / "targets"
    out = tmp_path / "out"
    with file_sd_prometheus(tmp_path / "prom", targets_dir) as prom:
        log_path = tmp_path / "ranks.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed below
        ranks = processes.popen(
            [str(launcher), "-n", "2", "--", sys.executable, "-m", "mlx_otel", "demo",
             "--steps", str(STEPS), "--port", str(base), "--run-id", RUN_ID,
             "--output-dir", str(out), "--file-sd-dir", str(targets_dir),
             "--linger", "120"],
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # the ranks are stopped with their launcher
        )  # fmt: skip
        try:
            query = f'mlx_train_steps_total{{run_id="{RUN_ID}"}}'
            wait_for(
                lambda: sorted(prom.query_values(query).values()) == [STEPS, STEPS],
                timeout=150,
                what=f"both ranks' {STEPS} steps in Prometheus (log: {log_path})",
            )
            # Each rank wrote its own target file, with its labels.
            files = sorted(targets_dir.glob("*.json"))
            assert [f.name for f in files] == [f"{RUN_ID}-rank0.json", f"{RUN_ID}-rank1.json"]
            groups = [json.loads(f.read_text())[0] for f in files]
            assert [g["targets"] for g in groups] == [[f"127.0.0.1:{base}"], [f"127.0.0.1:{base + 1}"]]
            assert [g["labels"]["rank"] for g in groups] == ["0", "1"]
            assert {g["labels"]["run_id"] for g in groups} == {RUN_ID}
            assert {g["labels"]["hostname"] for g in groups} == {socket.gethostname()}
            # Prometheus found them through the files alone, labelled by rank.
            up = {r["metric"]["rank"]: r["metric"]["instance"]
                  for r in prom.query(f'up{{run_id="{RUN_ID}"}} == 1')}  # fmt: skip
            assert up == {"0": f"127.0.0.1:{base}", "1": f"127.0.0.1:{base + 1}"}
            active = prom.query_values(f'mlx_memory_active_bytes{{run_id="{RUN_ID}"}}')
            assert len(active) == 2 and min(active.values()) > 0
            # Host memory comes from local rank 0 only: a host is counted once.
            system = prom.query(f'mlx_system_memory_total_bytes{{run_id="{RUN_ID}"}}')
            assert [r["metric"]["rank"] for r in system] == ["0"]
            # Training is over (lingering): both ranks say they finished.
            finished = f'mlx_otel_run_finished{{run_id="{RUN_ID}"}}'
            wait_for(
                lambda: sorted(prom.query_values(finished).values()) == [1.0, 1.0],
                # The end of training follows export_all (charts): generous on a busy machine.
                timeout=240, what="both ranks to report the end of training",
            )  # fmt: skip
        finally:
            os.killpg(ranks.pid, signal.SIGTERM)
            ranks.wait(timeout=60)
            wait_for(lambda: not _ranks_alive(), timeout=30, what="the ranks to stop")
            log.close()
        # A clean end removes the files, and Prometheus forgets both targets.
        assert list(targets_dir.glob("*.json")) == []
        wait_for(
            lambda: prom.api("targets")["activeTargets"] == [], timeout=30,
            what="Prometheus to drop the finished ranks' targets",
        )  # fmt: skip

    # Each rank wrote its own files, and its summary says which rank it is.
    for rank in (0, 1):
        summary = json.loads((out / f"rank_{rank}" / "monitoring_summary.json").read_text())
        assert summary["session"]["run_id"] == RUN_ID
        assert summary["session"]["rank"] == rank
        assert (out / f"rank_{rank}" / "training_metrics.csv").exists()
    assert not (out / "monitoring_summary.json").exists()
    # One rank tells the task and shows progress; the other says one line.
    text = log_path.read_text(errors="replace")
    assert text.count("task: ") == 1, text[-3000:]
    assert text.count(f"run {RUN_ID} rank 1: metrics at") == 1, text[-3000:]
    assert text.count("mean reward: first") == 1, text[-3000:]


def _ranks_alive() -> bool:
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if RUN_ID in " ".join(process.info["cmdline"] or ()):
            return True
    return False
