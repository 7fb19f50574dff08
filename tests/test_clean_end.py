"""A clean end is not a crash: real demo runs, a real Prometheus, the shipped rules.

Three demo processes are scraped every second by one Prometheus that loads
the project's rule files with every range and ``for:`` divided by 60 (as in
tests/test_alerts_e2e.py: ``for: 5m`` becomes 5 s):

- one trains, lingers (still serving, no more steps) and ends normally;
- one is killed with SIGKILL in the middle of training;
- one is stopped with SIGSTOP: it hangs and answers no scrape.

The killed and the hung ones raise ``MLXExporterDown``; the one that ended
cleanly raises neither ``MLXExporterDown`` nor, while it lingered,
``MLXTrainingStalled``, although its target has stopped answering for longer
than the others'.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests import processes as children
from tests.servers import REPO, PrometheusServer, free_port, python_command, wait_for
from tests.test_alerts_e2e import compress_rules

pytestmark = pytest.mark.integration

RULES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
NAMES = ("finished", "killed", "hung")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, dict]]:
    work = tmp_path_factory.mktemp("clean_end")
    ports = {name: free_port() for name in NAMES}
    targets = [f"127.0.0.1:{port}" for port in ports.values()]
    with PrometheusServer(
        work / "prometheus", targets=targets, rule_files=RULES, rule_transform=compress_rules
    ) as prometheus:
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, port in ports.items():
                # The finished run trains a few seconds, then lingers long
                # enough for a stalled-looking pause to have fired; the others
                # would train for much longer than the test.
                steps, linger = ("40", "30") if name == "finished" else ("100000", "0")
                with open(work / f"{name}.log", "wb") as log:
                    processes[name] = children.popen(
                        python_command(
                            "demo", "--steps", steps, "--port", str(port),
                            "--run-id", f"clean-end-{name}", "--linger", linger,
                            "--output-dir", str(work / name), "--no-progress",
                            "--step-delay", "0.1",
                        ),
                        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                    )  # fmt: skip
            for name in NAMES:
                wait_for(
                    lambda name=name: prometheus.query(
                        f'mlx_train_steps_total{{run_id="clean-end-{name}"}} > 5'
                    ),
                    timeout=120, what=f"steps of the {name} run in Prometheus",
                )  # fmt: skip
            info = {
                "instances": {name: f"127.0.0.1:{port}" for name, port in ports.items()},
                "processes": processes,
                "start": time.time(),  # every run is up and training
                "work": work,
            }
            yield prometheus, info
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.kill()  # also ends a stopped process
                    process.wait(timeout=30)


def alerts_for(prometheus: PrometheusServer, instance: str, state: str = "") -> set[str]:
    return {
        a["labels"]["alertname"]
        for a in prometheus.alerts()
        if a["labels"].get("instance") == instance and (not state or a["state"] == state)
    }


def test_killed_and_hung_runs_fire_and_a_finished_run_does_not(runs) -> None:
    prometheus, info = runs
    instances, processes = info["instances"], info["processes"]
    processes["killed"].send_signal(signal.SIGKILL)
    os.kill(processes["hung"].pid, signal.SIGSTOP)

    for name in ("killed", "hung"):
        wait_for(
            lambda name=name: "MLXExporterDown" in alerts_for(prometheus, instances[name], "firing"),
            timeout=90, what=f"MLXExporterDown firing for the {name} run",
        )  # fmt: skip
    alert = next(
        a for a in prometheus.alerts()
        if a["labels"]["alertname"] == "MLXExporterDown"
        and a["labels"]["instance"] == instances["killed"]
    )  # fmt: skip
    assert alert["labels"]["run_id"] == "clean-end-killed"

    finished = processes["finished"]
    log = info["work"] / "finished.log"
    assert finished.wait(timeout=300) == 0, log.read_text(errors="replace")[-3000:]
    # It said so before going: its last scraped value is 1.
    last = prometheus.query(
        'last_over_time(mlx_otel_run_finished{run_id="clean-end-finished"}[5m])'
    )
    assert [float(r["value"][1]) for r in last] == [1.0]
    # Down for longer than MLXExporterDown's (shortened) for: and then some.
    instance = instances["finished"]
    wait_for(
        lambda: prometheus.query(f'max_over_time(up{{instance="{instance}"}}[20s]) == 0'),
        timeout=60, what="the finished run's target to have been down for 20 s",
    )  # fmt: skip
    assert alerts_for(prometheus, instance) == set()
    # Never pending or firing since every run served (before that, each target
    # was down while its process started), neither down nor stalled while lingering.
    ever = prometheus.query_range(
        f'ALERTS{{instance="{instance}", alertname=~"MLXExporterDown|MLXTrainingStalled"}}',
        info["start"] + 3, time.time(),
    )
    assert ever == [], ever
    # The killed and hung runs still fire.
    for name in ("killed", "hung"):
        assert "MLXExporterDown" in alerts_for(prometheus, instances[name], "firing")
