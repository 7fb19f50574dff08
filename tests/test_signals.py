"""A run killed with SIGTERM or ended without cleanup() still leaves its record.

Each test runs a real training script in a child process, as a user would
(no ``with`` block, no ``cleanup()``), stops it the way a scheduler does and
checks what the user would look for: the exit status the signal implies and
the run's files on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from mlx_otel.shutdown import FINISH_TIMEOUT_S
from tests import processes

pytestmark = pytest.mark.integration  # each test runs a training script in a child process

REPO = Path(__file__).resolve().parent.parent

PRELUDE = """
import os, signal, sys, threading, time, logging
logging.basicConfig(format="%(asctime)s %(threadName)s %(message)s")
from mlx_otel import TrainingMonitor

def monitor(name):
    config = {
        "exporter": {"port": 0},
        "monitoring": {"output_dir": os.path.join(sys.argv[1], name),
                       "generate_charts_every": 0, "charts_in_subprocess": False},
    }
    return TrainingMonitor(config, run_id=name)

def train(monitors, steps, then_wait):
    for step in range(steps):
        for m in monitors:
            m.log_training_step(step, loss=1.0 / (step + 1), reward=0.5, rewards=[0.1, 0.9])
    for m in monitors:
        m.flush()
    print("ready", flush=True)
    while then_wait:
        time.sleep(0.05)
"""


def start(tmp_path: Path, body: str) -> subprocess.Popen[str]:
    script = tmp_path / "train.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLX_OTEL_MONITORING__USE_WANDB": "false"}
    # stderr to a file: a chart process left to finish its charts inherits it,
    # and would hold a pipe open after the training process has ended.
    stderr = open(tmp_path / "stderr.log", "w")  # noqa: SIM115 - closed by the child's end
    process = processes.popen(
        [sys.executable, str(script), str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
    )  # fmt: skip
    stderr.close()
    process.stderr_path = tmp_path / "stderr.log"  # type: ignore[attr-defined]
    return process


def wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the script has logged its steps
    assert line.strip() == "ready", finish(process)[1][-3000:]


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for the training process to end; its exit code and stderr.

    What is left of its stdout is read (which closes the pipe) into ``process.rest``.
    """
    process.rest, _ = process.communicate(timeout=120)  # type: ignore[attr-defined]
    return process.returncode, process.stderr_path.read_text()  # type: ignore[attr-defined]


def assert_run_recorded(folder: Path, steps: int) -> None:
    csv = folder / "training_metrics.csv"
    assert csv.is_file(), f"no {csv}; present: {sorted(p.name for p in folder.glob('*'))}"
    frame = pd.read_csv(csv)
    assert frame["step"].tolist() == list(range(steps))
    summary = json.loads((folder / "monitoring_summary.json").read_text())
    assert summary["session"]["total_steps"] == steps


def test_sigterm_without_with_block_writes_the_files_and_dies_of_sigterm(tmp_path: Path) -> None:
    process = start(tmp_path, 'm = monitor("run_a")\ntrain([m], 25, then_wait=True)\n')
    wait_ready(process)
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)
    assert code == -signal.SIGTERM, stderr[-3000:]
    assert_run_recorded(tmp_path / "out" / "run_a", 25)


def test_a_script_that_ends_without_cleanup_writes_the_files_at_exit(tmp_path: Path) -> None:
    process = start(tmp_path, 'm = monitor("run_b")\ntrain([m], 12, then_wait=False)\n')
    code, stderr = finish(process)
    assert code == 0, stderr[-3000:]
    assert_run_recorded(tmp_path / "out" / "run_b", 12)


def test_a_users_sigterm_handler_is_chained_after_the_runs_finish(tmp_path: Path) -> None:
    body = """
    def on_term(signum, frame):
        # The run's files are already written when the user's handler runs.
        done = os.path.exists(os.path.join(sys.argv[1], "run_c", "training_metrics.csv"))
        print("user handler, files written:", done, flush=True)
        sys.exit(7)
    signal.signal(signal.SIGTERM, on_term)
    m = monitor("run_c")
    train([m], 9, then_wait=True)
    """
    process = start(tmp_path, body)
    wait_ready(process)
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)
    stdout = process.rest  # type: ignore[attr-defined]
    assert code == 7, stderr[-3000:]
    assert "user handler, files written: True" in stdout
    assert_run_recorded(tmp_path / "out" / "run_c", 9)


def test_two_monitors_in_one_process_both_finish_on_sigterm(tmp_path: Path) -> None:
    body = """
    first, second = monitor("run_d1"), monitor("run_d2")
    train([first, second], 15, then_wait=True)
    """
    process = start(tmp_path, body)
    wait_ready(process)
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)
    assert code == -signal.SIGTERM, stderr[-3000:]
    assert_run_recorded(tmp_path / "out" / "run_d1", 15)
    assert_run_recorded(tmp_path / "out" / "run_d2", 15)


def test_ctrl_c_outside_a_with_block_raises_keyboardinterrupt_and_keeps_the_run(
    tmp_path: Path,
) -> None:
    process = start(tmp_path, 'm = monitor("run_e")\ntrain([m], 6, then_wait=True)\n')
    wait_ready(process)
    process.send_signal(signal.SIGINT)
    code, stderr = finish(process)
    assert "KeyboardInterrupt" in stderr
    assert code != 0
    assert_run_recorded(tmp_path / "out" / "run_e", 6)


def test_a_monitor_made_in_another_thread_is_finished_at_exit(tmp_path: Path) -> None:
    body = """
    made = []
    thread = threading.Thread(target=lambda: made.append(monitor("run_f")))
    thread.start(); thread.join()
    train(made, 8, then_wait=False)
    """
    process = start(tmp_path, body)
    code, stderr = finish(process)
    assert code == 0, stderr[-3000:]
    assert_run_recorded(tmp_path / "out" / "run_f", 8)


def test_a_cleaned_up_monitor_is_not_finished_twice(tmp_path: Path) -> None:
    body = """
    m = monitor("run_g")
    train([m], 4, then_wait=False)
    m.cleanup()   # no exports asked for: none written at exit either
    """
    process = start(tmp_path, body)
    code, stderr = finish(process)
    assert code == 0, stderr[-3000:]
    assert not (tmp_path / "out" / "run_g" / "training_metrics.csv").exists()
    assert "finishing" not in stderr


def test_sigterm_ends_the_process_in_bounded_time_when_finishing_hangs(tmp_path: Path) -> None:
    body = """
    m = monitor("run_h")
    # An export that never returns (a hung network file system, say).
    m._export = lambda deadline: time.sleep(3600)
    train([m], 3, then_wait=True)
    """
    process = start(tmp_path, body)
    wait_ready(process)
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)
    took = time.monotonic() - began
    print(f"SIGTERM with a hung export: exit after {took:.1f} s (bound {FINISH_TIMEOUT_S} s)")
    assert code == -signal.SIGTERM, stderr[-3000:]
    assert "did not finish" in stderr
    assert took < FINISH_TIMEOUT_S + 30  # generous: the machine may be busy


def test_sigterm_under_load_ends_within_the_bound_and_keeps_the_record(tmp_path: Path) -> None:
    """Charts on, a step flood and two CPU burners: the end is still bounded."""
    body = """
    config = {
        "exporter": {"port": 0},
        "monitoring": {"output_dir": os.path.join(sys.argv[1], "run_load"),
                       "generate_charts_every": 50},
    }
    m = TrainingMonitor(config, run_id="run_load")
    custom = {f"metric_{i}": float(i) for i in range(50)}
    step = 0
    while True:
        m.log_training_step(step, loss=1.0, reward=0.5, rewards=[0.1, 0.9, 0.5], **custom)
        step += 1
        if step == 2000:
            print("ready", flush=True)
        if step % 500 == 0:
            time.sleep(0.01)
    """
    burn = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end: pass\n"
    burners = [processes.popen([sys.executable, "-c", burn]) for _ in range(2)]
    try:
        process = start(tmp_path, body)
        wait_ready(process)
        time.sleep(3)  # periodic charts are rendering by now
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code, stderr = finish(process)
        took = time.monotonic() - began
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    print(f"SIGTERM under load: exit after {took:.1f} s (bound {FINISH_TIMEOUT_S} s)")
    assert code == -signal.SIGTERM, stderr[-3000:]
    assert took < FINISH_TIMEOUT_S + 25, stderr[-3000:]  # generous: two burners, two cores
    folder = tmp_path / "out" / "run_load"
    assert (folder / "training_metrics.csv").is_file()
    assert json.loads((folder / "monitoring_summary.json").read_text())["session"]["total_steps"]


def test_sigkill_keeps_the_history_up_to_the_last_periodic_write(tmp_path: Path) -> None:
    body = """
    config = {
        "exporter": {"port": 0},
        "monitoring": {"output_dir": os.path.join(sys.argv[1], "run_k"),
                       "generate_charts_every": 0, "export_every_seconds": 0.5},
    }
    m = TrainingMonitor(config, run_id="run_k")
    train([m], 40, then_wait=True)
    """
    process = start(tmp_path, body)
    wait_ready(process)
    csv = tmp_path / "out" / "run_k" / "training_metrics.csv"
    deadline = time.monotonic() + 60
    while not csv.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.kill()  # SIGKILL: no handler, no exit hook runs
    code, _ = finish(process)
    assert code == -signal.SIGKILL
    frame = pd.read_csv(csv)  # written atomically: whole, never half
    assert frame["step"].tolist() == list(range(40))
    assert (csv.parent / "monitoring_summary.json").is_file()


@pytest.mark.integration
def test_sigterm_makes_the_final_push_to_the_pushgateway(tmp_path: Path) -> None:
    from tests.conftest import parse_exposition, sample, scrape
    from tests.servers import PushgatewayServer

    with PushgatewayServer(tmp_path / "pushgateway") as gateway:
        body = f"""
        config = {{
            "exporter": {{"port": 0, "pushgateway_url": "{gateway.url}"}},
            "monitoring": {{"output_dir": os.path.join(sys.argv[1], "run_p"),
                           "generate_charts_every": 0}},
        }}
        m = TrainingMonitor(config, run_id="run_p")
        train([m], 7, then_wait=True)
        """
        process = start(tmp_path, body)
        wait_ready(process)
        process.send_signal(signal.SIGTERM)
        code, stderr = finish(process)
        samples = parse_exposition(scrape(f"{gateway.url}/metrics"))
    assert code == -signal.SIGTERM, stderr[-3000:]
    assert sample(samples, "mlx_train_steps_total", job="mlx_otel", run_id="run_p") == 7
