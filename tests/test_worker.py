"""The background worker on its own: order, a bounded queue, flush, close, failures."""

from __future__ import annotations

import threading
import time

import pytest

from mlx_otel.pipeline.worker import BackgroundWorker


@pytest.fixture
def worker():
    made: list[BackgroundWorker] = []

    def make(**kwargs) -> BackgroundWorker:
        made.append(BackgroundWorker(**kwargs))
        return made[-1]

    yield make
    for w in made:
        w.close(timeout=5)


def test_tasks_run_in_the_order_they_were_submitted(worker) -> None:
    w = worker()
    seen: list[int] = []
    futures = [w.submit(f"task{i}", lambda i=i: seen.append(i) or i * i) for i in range(200)]
    assert w.flush(timeout=30)
    assert seen == list(range(200))
    assert [f.result() for f in futures] == [i * i for i in range(200)]


def test_a_full_queue_drops_the_oldest_task_and_counts_it(worker) -> None:
    dropped: list[str] = []
    w = worker(maxlen=3, on_drop=dropped.append)
    release = threading.Event()
    started = threading.Event()
    w.submit("blocker", lambda: (started.set(), release.wait(10)))
    assert started.wait(10)
    futures = {name: w.submit(name, lambda name=name: name) for name in "abcde"}
    assert dropped == ["a", "b"]  # the two oldest made room for d and e
    assert futures["a"].cancelled() and futures["b"].cancelled()
    release.set()
    assert w.flush(timeout=30)
    assert [futures[n].result() for n in "cde"] == ["c", "d", "e"]


def test_flush_waits_for_the_work_so_far_and_gives_up_at_its_timeout(worker) -> None:
    w = worker()
    release = threading.Event()
    w.submit("slow", lambda: release.wait(10))
    began = time.monotonic()
    assert w.flush(timeout=0.3) is False
    assert 0.25 < time.monotonic() - began < 5
    release.set()
    assert w.flush(timeout=30) is True


def test_periodic_jobs_run_every_cycle_and_before_flush_returns(worker) -> None:
    w = worker(interval=0.05)
    cycles: list[float] = []
    w.add_periodic("tick", lambda: cycles.append(time.monotonic()))
    time.sleep(0.5)
    assert len(cycles) >= 3
    before = len(cycles)
    assert w.flush(timeout=30)
    assert len(cycles) > before


def test_a_failing_task_is_reported_and_the_worker_goes_on(worker) -> None:
    errors: list[tuple[str, str]] = []
    w = worker(on_error=lambda name, exc: errors.append((name, str(exc))))
    failed = w.submit("broken", lambda: 1 / 0)
    after = w.submit("after", lambda: "still running")
    w.add_periodic("broken_job", lambda: [][1])
    assert after.result(timeout=30) == "still running"
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=1)
    assert w.flush(timeout=30)
    assert ("broken", "division by zero") in errors
    assert any(name == "broken_job" for name, _ in errors)


def test_close_runs_what_is_queued_then_refuses_new_work(worker) -> None:
    w = worker()
    seen: list[int] = []
    for i in range(50):
        w.submit("task", lambda i=i: seen.append(i))
    w.close(timeout=30)
    assert seen == list(range(50))
    late = w.submit("late", lambda: None)
    with pytest.raises(RuntimeError, match="closed"):
        late.result(timeout=1)
    w.close(timeout=1)  # twice is fine
