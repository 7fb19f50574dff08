"""The one end of a run: files first, every closer closed once, by one deadline."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mlx_otel import TrainingMonitor
from mlx_otel.pipeline.run_end import RunEnd
from mlx_otel.pipeline.worker import BackgroundWorker


class Closer:
    """A part the end closes, recording when (and how often) it was closed."""

    error_kind = "worker"

    def __init__(self, name: str, log: list[str], *, hang: float = 0.0, fail: bool = False,
                 ends_serving: bool = False) -> None:  # fmt: skip
        self.name, self.log, self.hang, self.fail = name, log, hang, fail
        self.ends_serving = ends_serving
        self.deadlines: list[float] = []

    def close(self, deadline: float) -> None:
        self.deadlines.append(deadline)
        self.log.append(self.name)
        if self.hang:
            time.sleep(self.hang)
        if self.fail:
            raise OSError(f"{self.name} broke")


def make_end(tmp_path: Path, closers: list[Closer], log: list[str], errors: list) -> RunEnd:
    def export(deadline: float) -> None:
        (tmp_path / "record.csv").write_text("step\n1\n")
        log.append("files")

    return RunEnd(
        worker=BackgroundWorker(), closers=closers, export=export,
        on_error=lambda kind, what, exc: errors.append((kind, what, str(exc))),
        begin=lambda: log.append("begin"),
    )  # fmt: skip


def test_files_first_then_every_closer_once_in_order(tmp_path: Path) -> None:
    log: list[str] = []
    closers = [Closer(n, log) for n in ("statistics", "charts", "wandb", "serving")]
    end = make_end(tmp_path, closers, log, [])
    assert end.finish(export=True, timeout=10) is True
    assert end.finish(export=True, timeout=10) is True  # idempotent
    threads = [threading.Thread(target=end.finish, kwargs={"export": True, "timeout": 5})
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log == ["begin", "files", "statistics", "charts", "wandb", "serving"]


def test_a_hung_closer_does_not_hold_the_end_past_its_deadline(tmp_path: Path) -> None:
    log: list[str] = []
    closers = [Closer("statistics", log), Closer("wandb", log, hang=30), Closer("serving", log)]
    end = make_end(tmp_path, closers, log, [])
    began = time.monotonic()
    assert end.finish(export=True, timeout=1.0) is False
    took = time.monotonic() - began
    assert 0.9 < took < 5, took
    # The files were written before the slow part, which got the one deadline.
    assert (tmp_path / "record.csv").read_text() == "step\n1\n"
    assert log == ["begin", "files", "statistics", "wandb"]
    assert closers[1].deadlines == [pytest.approx(began + 1.0, abs=0.5)]


def test_a_failing_closer_is_reported_under_its_kind_and_the_next_closes(tmp_path: Path) -> None:
    log: list[str] = []
    errors: list = []
    broken = Closer("wandb", log, fail=True)
    broken.error_kind = "wandb"
    end = make_end(tmp_path, [broken, Closer("serving", log)], log, errors)
    assert end.finish(export=False, timeout=5) is True
    assert log == ["begin", "wandb", "serving"]  # no files were asked for
    assert errors == [("wandb", "closing wandb", "wandb broke")]


def test_keep_serving_leaves_the_endpoint_for_a_later_call(tmp_path: Path) -> None:
    log: list[str] = []
    closers = [Closer("statistics", log), Closer("serving", log, ends_serving=True)]
    end = make_end(tmp_path, closers, log, [])
    end.finish(export=True, timeout=5, keep_serving=True)
    assert log == ["begin", "files", "statistics"]
    assert not end.done
    assert end.finish(export=True, timeout=5) is True
    assert log == ["begin", "files", "statistics", "serving"]


def test_an_end_not_waited_for_returns_at_once_and_a_later_call_waits(tmp_path: Path) -> None:
    log: list[str] = []
    end = make_end(tmp_path, [Closer("slow", log, hang=0.5)], log, [])
    began = time.monotonic()
    assert end.finish(export=True, timeout=10, wait=False) is False
    assert time.monotonic() - began < 0.2
    assert end.finish(export=True, timeout=10) is True
    assert log == ["begin", "files", "slow"]


def _monitor(tmp_path: Path, run_id: str) -> TrainingMonitor:
    return TrainingMonitor({
        "exporter": {"port": 0},
        "monitoring": {"output_dir": str(tmp_path / run_id), "generate_charts_every": 0,
                       "charts_in_subprocess": False},
    }, run_id=run_id)  # fmt: skip


def test_a_monitor_ended_without_waiting_writes_its_record_and_stops_serving(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, "background_end")
    for step in range(30):
        monitor.log_training_step(step, loss=1.0 / (step + 1), reward=0.5)
    began = time.monotonic()
    monitor.finish_run(wait=False)
    assert time.monotonic() - began < 0.5  # a trainer's last report returns at once
    assert monitor.finish_run() is True
    out = tmp_path / "background_end"
    summary = json.loads((out / "monitoring_summary.json").read_text())
    assert summary["session"]["total_steps"] == 30
    rows = (out / "training_metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,run_id,timestamp,loss") and len(rows) == 31
    history = (out / "stats" / "metrics_history.csv").read_text().splitlines()
    assert len(history) == 31  # the same table, one writer
    monitor.cleanup()  # after the end: nothing left to do, nothing raised
    assert monitor.error_counts() == {}


def test_cleanup_ends_the_run_without_files(tmp_path: Path) -> None:
    monitor = _monitor(tmp_path, "cleanup_only")
    monitor.log_training_step(1, loss=0.5)
    monitor.cleanup()
    assert not (tmp_path / "cleanup_only" / "training_metrics.csv").exists()
    monitor.finish_run()  # the run is over: no files after the fact either
    assert not (tmp_path / "cleanup_only" / "training_metrics.csv").exists()
