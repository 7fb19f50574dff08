"""Soak: a minute of steps as fast as Python allows, scraped as fast as possible.

The training thread logs 100 metrics and 16 per-sample rewards per step in a
tight loop while two client processes scrape the endpoint back to back
(loopback only). Checked, as a user running for days would check:

- the counts are exact: ``mlx_train_steps_total``, the reward histogram's
  and the step-duration histogram's ``_count`` equal what was logged;
- RSS is flat after warm-up. Every structure that grows with the run is
  bounded (the queue of step records, the sample buffers, the statistics
  history of ``max_history`` values per metric) and all of them are full
  within the warm-up; after it, RSS may only move by allocator noise, so the
  bound is 32 MiB, well below what the queue alone would add if it were
  unbounded (a 100-metric step record is ~7 KB: 32 MiB is ~5,000 steps,
  a tenth of a second of this loop);
- no ``log_training_step`` call stalls. The stall it guards against held
  the interpreter for 244 ms in one piece at every fold (ten folds a second):
  folding, statistics and garbage collection of queued steps must stay in
  small pieces. But on a busy 2-core machine any Python loop here waits that
  long now and then, with no fault of the monitor: the OS deschedules the
  training thread, or a thread of this process (the worker, the scrape
  server) while it holds the interpreter. So each call is followed, in the
  same loop, by a floor: plain ``dict.update`` calls of the same values,
  about as long as a call, that allocate nothing (so trigger no garbage
  collection) and touch no monitor. The machine's stalls hit the floor as
  often as the calls, per second spent in each; a stall a call causes (a
  garbage collection or a fold its allocations trigger) hits the calls only.
  Calls over 200 ms may number at most two plus twice the floor's (scaled to
  the time spent in calls): a stall at every fold gives hundreds a minute,
  the machine's noise a handful on either side. A worker that held the
  interpreter that long at every fold would stall the floor too, several
  times a second: the floor may stall at most once per 5 s of the run (on a
  2-core machine at a load average of 10 it stalled never in 30 s). No call,
  ever, takes a second.

The figures are printed (run with ``-s`` to see them). ``MLX_OTEL_SOAK_SECONDS``
sets the duration (default 60).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from mlx_otel.monitor import TrainingMonitor
from tests import processes
from tests.conftest import parse_exposition, sample, scrape

SECONDS = float(os.environ.get("MLX_OTEL_SOAK_SECONDS", "60"))
WARM_UP = 0.3  # share of the run before RSS must be flat
RSS_BOUND_MIB = 32
STALL_S = 0.200
#: Calls over STALL_S allowed beyond twice what the floor saw in as much time:
#: chance alone (a handful of events on either side). A worker or a call that
#: holds the interpreter in one long piece does so at every fold or export.
STALLS_ALLOWED = 2
STALLS_PER_FLOOR_STALL = 2
MAX_CALL_S = 1.0  # and no call, ever, waits a second
FLOOR_STALL_EVERY_S = 5.0  # the floor stalls at most once per this many seconds
#: dict.update calls of the floor after each call: about a call's duration.
FLOOR_UPDATES = 5
CUSTOM = 95  # + loss, reward, grad_norm, learning_rate, tokens = 100 metrics
SAMPLES = 16
MAX_STEPS = 6_000_000

SCRAPER = textwrap.dedent("""
    import sys, time, urllib.request
    url, stop_file = sys.argv[1], sys.argv[2]
    import os
    scrapes = failures = 0
    while not os.path.exists(stop_file):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read()
            scrapes += 1
            if b"mlx_train_steps_total" not in body:
                failures += 1
        except Exception:
            failures += 1
    print(scrapes, failures)
""")


@pytest.mark.integration
def test_soak_counts_exact_rss_flat_no_stall(tmp_path: Path) -> None:
    config = {
        "exporter": {"port": 0, "max_custom_metrics": CUSTOM},
        # A short history fills within the warm-up (100 metrics x 2,000 values).
        "monitoring": {"output_dir": str(tmp_path / "outputs"), "generate_charts_every": 0,
                       "max_history": 2000},  # fmt: skip
    }
    monitor = TrainingMonitor(config, run_id="soak")
    stop_file = tmp_path / "stop"
    scrapers = [
        processes.popen([sys.executable, "-c", SCRAPER, str(monitor.endpoint), str(stop_file)],
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
        for _ in range(2)
    ]
    rng = np.random.default_rng(0)
    custom_names = [f"soak_metric_{i}" for i in range(CUSTOM)]
    times = np.full(MAX_STEPS, -1, dtype=np.int64)  # touched now: not RSS growth later
    floor_ns = 0
    floor_slow: list[int] = []  # floors over 10 ms (a few hundred a minute at most)
    store: dict[str, float] = {}
    process = psutil.Process()
    rss: list[tuple[float, float]] = []
    finite_rewards = 0
    clock = time.perf_counter_ns
    log = monitor.log_training_step
    try:
        started = time.monotonic()
        next_sample = started
        step = 0
        while step < MAX_STEPS:
            now = time.monotonic()
            if now >= next_sample:
                rss.append((now - started, process.memory_info().rss / 2**20))
                next_sample = now + 1.0
                if now - started >= SECONDS:
                    break
                # Fresh values each second (building them per step would be the loop's cost).
                custom = dict(zip(custom_names, rng.uniform(size=CUSTOM).tolist(), strict=True))
                rewards = rng.uniform(-1, 2, size=SAMPLES).tolist()
                rewards[step % SAMPLES] = float("nan")  # one non-finite sample per step
                floor_work = (custom,) * FLOOR_UPDATES
            for _ in range(200):
                start = clock()
                log(step, loss=0.5, reward=0.25, grad_norm=1.0, learning_rate=1e-4,
                    answer_tokens=8, rewards=rewards, **custom)  # fmt: skip
                mid = clock()
                for values in floor_work:  # the floor: same loop, same machine, no monitor
                    store.update(values)
                end = clock()
                times[step] = mid - start
                floor = end - mid
                floor_ns += floor
                if floor > 10_000_000:
                    floor_slow.append(floor)
                step += 1
            finite_rewards += 200 * (SAMPLES - 1)
        stop_file.write_text("stop")
        scrapes = [tuple(map(int, s.communicate(timeout=120)[0].split())) for s in scrapers]
        assert monitor.flush(120)
        s = parse_exposition(scrape(str(monitor.endpoint)))
        served_steps = sample(s, "mlx_train_steps_total")
        served_rewards = sample(s, "mlx_train_reward_count")
        served_durations = sample(s, "mlx_train_step_duration_seconds_count")
        dropped = monitor.errors.dropped()
    finally:
        stop_file.write_text("stop")
        for scraper in scrapers:
            if scraper.poll() is None:
                scraper.kill()
        monitor.cleanup()

    took = times[:step] / 1e9
    floors = np.array(floor_slow, dtype=np.float64) / 1e9
    floor_over = int((floors > STALL_S).sum())
    # The stalls the machine gave the floor, scaled to the time spent in calls.
    floor_stalls = floor_over * float(took.sum()) / (floor_ns / 1e9)
    stalls = took[took > STALL_S]
    worst, p99, p50 = float(took.max()), float(np.percentile(took, 99)), float(np.median(took))
    warm = [m for t, m in rss if t >= WARM_UP * SECONDS]
    growth = max(warm) - warm[0]
    print(f"\nsoak: {step} steps in {SECONDS:.0f} s ({step / SECONDS:.0f} steps/s), "
          f"scrapes {[n for n, _ in scrapes]} (failures {[f for _, f in scrapes]})")
    print(f"soak: log_training_step p50 {p50 * 1e6:.1f} µs, p99 {p99 * 1e6:.1f} µs, "
          f"worst {worst * 1e3:.1f} ms; calls over 10/50/200 ms: "
          f"{[int((took > t).sum()) for t in (0.01, 0.05, 0.2)]}")
    print(f"soak: floor {floor_ns / 1e9:.1f} s (calls {took.sum():.1f} s), worst "
          f"{floors.max(initial=0) * 1e3:.1f} ms; floors over 10/50/200 ms: "
          f"{[int((floors > t).sum()) for t in (0.01, 0.05, 0.2)]}, scaled to the calls' time "
          f"{floor_stalls:.1f}; calls over 200 ms: {stalls.size}")
    print("soak: RSS MiB over time: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in rss))
    print(f"soak: RSS growth after warm-up {growth:.1f} MiB (bound {RSS_BOUND_MIB})")
    print(f"soak: served steps {served_steps:.0f} / {step}, rewards {served_rewards:.0f} / "
          f"{finite_rewards}, durations {served_durations:.0f} / {step - 1}; dropped {dropped}")

    assert all(n > 0 and f == 0 for n, f in scrapes), scrapes
    assert served_steps == step
    assert "rewards" not in dropped and "step_duration" not in dropped, dropped
    assert served_rewards == finite_rewards
    assert served_durations == step - 1  # the first step has no interval
    assert growth <= RSS_BOUND_MIB, rss
    allowed = STALLS_ALLOWED + STALLS_PER_FLOOR_STALL * floor_stalls
    assert stalls.size <= allowed and worst <= MAX_CALL_S, (
        f"{stalls.size} calls over {STALL_S} s, allowed {allowed:.1f} (the floor saw "
        f"{floor_over}): {np.sort(stalls)[::-1][:10].tolist()}"
    )
    assert floor_over <= SECONDS / FLOOR_STALL_EVERY_S, (
        f"the loop stalled {floor_over} times over {STALL_S} s outside the calls: "
        f"{np.sort(floors)[::-1][:10].tolist()}"
    )
