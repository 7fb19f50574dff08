"""Two MLX ranks (mlx.launch, ring backend on loopback), one endpoint each,
discovered by a real Prometheus through file_sd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_each_rank_serves_its_own_series(tmp_path: Path) -> None:
    launcher = Path(sys.executable).parent / "mlx.launch"
    if not launcher.exists():
        pytest.skip("mlx.launch is not installed beside this interpreter")
    base = two_free_ports()
    targets = [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]
    with PrometheusServer(tmp_path / "prom", targets=targets, file_sd=True) as prom:
        log = open(tmp_path / "ranks.log", "w")  # noqa: SIM115 - closed below
        ranks = subprocess.Popen(
            [str(launcher), "-n", "2", "--", sys.executable, "-m", "mlx_otel", "demo",
             "--steps", str(STEPS), "--port", str(base), "--run-id", RUN_ID,
             "--output-dir", str(tmp_path / "out"), "--linger", "60", "--no-progress"],
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # the ranks are stopped with their launcher
        )  # fmt: skip
        try:
            query = f'mlx_train_steps_total{{run_id="{RUN_ID}"}}'
            wait_for(
                lambda: sorted(prom.query_values(query).values()) == [STEPS, STEPS],
                timeout=150,
                what=f"both ranks' {STEPS} steps in Prometheus (log: {tmp_path / 'ranks.log'})",
            )
            by_rank = {r["metric"]["rank"]: r["metric"]["instance"] for r in prom.query(query)}
            assert by_rank == {"0": targets[0], "1": targets[1]}
            active = prom.query_values(f'mlx_memory_active_bytes{{run_id="{RUN_ID}"}}')
            assert len(active) == 2 and min(active.values()) > 0
        finally:
            os.killpg(ranks.pid, signal.SIGTERM)
            ranks.wait(timeout=60)
            wait_for(lambda: not _ranks_alive(), timeout=30, what="the ranks to stop")
            log.close()


def _ranks_alive() -> bool:
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if RUN_ID in " ".join(process.info["cmdline"] or ()):
            return True
    return False
