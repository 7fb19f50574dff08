"""Faults a long run meets: the training loop never sees them, what can be written is.

Each test makes one fault happen for real (a path that is a file, a full
disk through ``RLIMIT_FSIZE`` in a child process, a chart process killed, a
flooded queue, scrapes racing the shutdown, four threads logging at once)
and checks what a user would: training went on, the fault is counted in
``mlx_otel_errors_total`` or ``mlx_otel_worker_dropped_total``, and the files
that could be written are there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlx_otel.monitor import TrainingMonitor
from tests.conftest import parse_exposition, sample, scrape

REPO = Path(__file__).resolve().parent.parent


def config(out: Path, **monitoring: Any) -> dict[str, Any]:
    return {
        "exporter": {"port": 0},
        "monitoring": {"output_dir": str(out), "generate_charts_every": 0,
                       "charts_in_subprocess": False, **monitoring},
    }  # fmt: skip


def log_steps(monitor: TrainingMonitor, steps: int, start: int = 0) -> None:
    for step in range(start, start + steps):
        monitor.log_training_step(step, loss=1.0 / (step + 1), reward=0.5, rewards=[0.2, 0.8])


def test_a_missing_output_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "not" / "there" / "yet"
    with TrainingMonitor(config(out), run_id="missing") as monitor:
        log_steps(monitor, 5)
    assert pd.read_csv(out / "training_metrics.csv")["step"].tolist() == list(range(5))
    assert monitor.error_counts() == {}


def test_an_output_path_that_is_a_file_is_reported_and_training_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "outputs"
    out.write_text("I am a file, not a folder")
    with caplog.at_level("WARNING", logger="mlx_otel"):
        monitor = TrainingMonitor(config(out), run_id="notadir")
        log_steps(monitor, 5)
        written = monitor.export_all()  # must not raise
        log_steps(monitor, 5, start=5)  # and training goes on
        monitor.cleanup()
    assert written == {} or all(not str(p).startswith(str(out)) for p in written.values())
    assert monitor.error_counts().get("export", 0) >= 1
    assert monitor.steps_logged == 10
    assert any(str(out) in r.getMessage() for r in caplog.records), caplog.text
    assert out.read_text() == "I am a file, not a folder"


FULL_DISK = textwrap.dedent("""
    import json, resource, signal, sys
    from mlx_otel import TrainingMonitor

    out = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    # Room for the summary (a few KB), not for a history of 400 steps x 40 metrics.
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    config = {"exporter": {"port": 0},
              "monitoring": {"output_dir": out, "generate_charts_every": 0,
                             "charts_in_subprocess": False}}
    monitor = TrainingMonitor(config, run_id="full_disk")
    for step in range(400):
        monitor.log_training_step(step, loss=0.5, **{f"m{i}": float(i) for i in range(40)})
    monitor.export_all()
    for step in range(400, 410):  # training goes on after the failed exports
        monitor.log_training_step(step, loss=0.5)
    monitor.cleanup()
    print(json.dumps({"errors": monitor.error_counts(), "steps": monitor.steps_logged}))
""")


def test_a_full_disk_fails_the_big_files_and_still_writes_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(out)],
                            capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["steps"] == 410
    assert report["errors"].get("export", 0) >= 1, report
    assert "File too large" in result.stderr or "EFBIG" in result.stderr or "27" in result.stderr
    summary = json.loads((out / "monitoring_summary.json").read_text())
    assert summary["session"]["total_steps"] == 400
    # No half-written file is left under a final name.
    assert not (out / "training_metrics.csv").exists()
    assert not list(out.glob("*.tmp*")) and not list(out.glob(".*.tmp*"))


@pytest.mark.integration
def test_a_killed_chart_process_is_counted_and_replaced(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    cfg = config(out, generate_charts_every=0, charts_in_subprocess=True)
    with TrainingMonitor(cfg, run_id="charts_killed") as monitor:
        log_steps(monitor, 30)
        first = monitor.generate_charts(29).result(timeout=300)
        assert first, "the first charts render"
        process = monitor.charts._process
        assert process is not None and process._process is not None
        os.kill(process._process.pid, signal.SIGKILL)  # the renderer dies
        process._process.wait(timeout=30)
        log_steps(monitor, 5, start=30)  # training does not notice
        again = monitor.generate_charts(34).result(timeout=300)  # a fresh renderer
        assert again and all(Path(p).is_file() for p in again.values())
    assert monitor.error_counts().get("worker", 0) >= 1
    assert monitor.steps_logged == 35


def test_a_chart_that_fails_to_render_is_counted_and_the_others_are_written(
    tmp_path: Path,
) -> None:
    import mlx.core as mx

    out = tmp_path / "outputs"
    # Gradients reach the charts only when charts are on (none periodic before step 1000).
    with TrainingMonitor(config(out, generate_charts_every=1000), run_id="chart_fails") as monitor:
        monitor.log_training_step(0, loss=1.0)
        monitor.log_training_step(1, loss=0.5, rewards=[0.1, 0.9])
        # All-zero gradients: no norm can sit on the gradient-flow chart's log axis.
        monitor.log_gradients(1, {"layers.0": mx.zeros((2, 2))})
        paths = monitor.generate_charts(1).result(timeout=300)
    assert paths, "charts that can render are written"
    assert "gradient_flow" not in paths and "dashboard" in paths
    assert monitor.error_counts().get("worker", 0) >= 1


def test_a_flooded_queue_drops_the_oldest_tasks_and_counts_them(tmp_path: Path) -> None:
    cfg = config(tmp_path / "outputs", queue_size=8)
    with TrainingMonitor(cfg, run_id="flood") as monitor:
        gate, held = threading.Event(), threading.Event()

        def blocker() -> None:
            held.set()
            gate.wait()

        monitor.submit("blocker", blocker)
        # Flood only once the worker is held: a blocker still queued would be dropped too.
        assert held.wait(60), "the worker never started the blocking task"
        futures = [monitor.submit("task", lambda i=i: i) for i in range(500)]
        log_steps(monitor, 20)  # the training thread is not held by the queue
        gate.set()
        done = [f.result(timeout=60) for f in futures if not f.cancelled()]
        s = parse_exposition(monitor.telemetry.exposition())
    cancelled = sum(f.cancelled() for f in futures)
    assert done == list(range(500 - len(done), 500))  # the newest survive, in order
    assert cancelled >= 500 - 8
    assert sample(s, "mlx_otel_worker_dropped_total", task="task") == cancelled
    assert sample(s, "mlx_train_steps_total") == 20


def test_scrapes_racing_the_shutdown_never_break_it(tmp_path: Path) -> None:
    monitor = TrainingMonitor(config(tmp_path / "outputs"), run_id="shutdown")
    url = str(monitor.endpoint)
    stop = threading.Event()
    outcomes: list[str] = []

    def scraper() -> None:
        while not stop.is_set():
            try:
                body = scrape(url)
                parse_exposition(body)  # whatever is served is valid
                outcomes.append("ok")
            except (urllib.error.URLError, ConnectionError, OSError):
                outcomes.append("refused")  # the endpoint is gone: fine
            except Exception as exc:  # anything else is a broken exposition
                outcomes.append(f"broken: {exc!r}")

    threads = [threading.Thread(target=scraper) for _ in range(4)]
    for thread in threads:
        thread.start()
    log_steps(monitor, 200)
    began = time.monotonic()
    monitor.export_all()
    monitor.cleanup()
    took = time.monotonic() - began
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    print(f"\nshutdown under 4 scrapers: {took:.2f} s; outcomes {sorted(set(outcomes))}")
    assert "ok" in outcomes
    assert not [o for o in outcomes if o.startswith("broken")], outcomes[:5]
    assert not any(t.is_alive() for t in threads)


def test_four_threads_logging_at_once_keep_exact_counts(tmp_path: Path) -> None:
    steps, samples = 5000, 4
    with TrainingMonitor(config(tmp_path / "outputs"), run_id="threads") as monitor:
        errors: list[BaseException] = []

        def train(offset: int) -> None:
            rng = np.random.default_rng(offset)
            try:
                for step in range(steps):
                    monitor.log_training_step(
                        offset * steps + step, loss=float(rng.uniform()), thinking_tokens=3,
                        answer_tokens=1, rewards=rng.uniform(size=samples).tolist(),
                        **{f"thread_{offset}": 1.0},
                    )  # fmt: skip
            except BaseException as exc:  # the loop must never see one
                errors.append(exc)

        threads = [threading.Thread(target=train, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert monitor.flush(60)
        s = parse_exposition(monitor.telemetry.exposition())
        dropped = monitor.errors.dropped()
    assert errors == []
    total = 4 * steps
    assert sample(s, "mlx_train_steps_total") == total
    # Every sample is served, or counted as dropped if four flooding threads
    # outran the worker (the buffers are bounded).
    served = sample(s, "mlx_train_reward_count")
    assert served + samples * dropped.get("rewards", 0) == total * samples, dropped
    print(f"\nfour threads: {total} steps, rewards served {served:.0f}, dropped {dropped}")
    assert sample(s, "mlx_train_tokens_total", kind="thinking") == 3 * total
    assert sample(s, "mlx_train_tokens_total", kind="answer") == total
    # Durations are intervals between calls: only the first call of the run has
    # none, though threads starting at the same instant may each be "first".
    durations = sample(s, "mlx_train_step_duration_seconds_count")
    durations += dropped.get("step_duration", 0)
    assert total - 4 <= durations <= total - 1
    for offset in range(4):
        assert sample(s, "mlx_train_custom", name=f"thread_{offset}") == 1.0
