"""A flood of training steps: the distribution of single-call times, and RSS.

Logs steps as fast as the interpreter allows (20 scalars and 64 per-sample
rewards each, statistics and charts on, the endpoint served and scraped by
a client thread) and times every single ``log_training_step`` call. The
tail is what a training loop feels: a call that waits for the worker, a
garbage collection of a large structure or a lock held across a long
operation shows up as the worst call, however small the median is.

As a baseline measured in the same run, the same loop times a call that
only stores the values in a dict (what any Python loop pays, including the
interpreter's thread switches: the worst of that call is the floor).

Prints p50, p99, p99.9 and the worst call (µs), the worst call's step and
what happened around it (garbage collections), RSS over time, and the exact
step count served.

    python benchmarks/bench_flood.py [--steps 200000] [--scrape-threads 1]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import threading
import time
import urllib.request

import numpy as np
import psutil

SCALARS = 20
SAMPLES = 64


def percentiles(ns: np.ndarray) -> dict[str, float]:
    us = ns / 1000.0
    return {
        "p50": float(np.percentile(us, 50)),
        "p99": float(np.percentile(us, 99)),
        "p99.9": float(np.percentile(us, 99.9)),
        "worst": float(us.max()),
    }


def baseline(steps: int, values: dict[str, float], rewards: list[float]) -> np.ndarray:
    store: dict[str, float] = {}
    buffer: list[list[float]] = []
    times = np.empty(steps, dtype=np.int64)
    clock = time.perf_counter_ns
    for step in range(steps):
        start = clock()
        store.update(values)
        buffer.append(rewards[:])
        if len(buffer) > 4096:
            buffer.clear()
        times[step] = clock() - start
    return times


def flood(steps: int, scrape_threads: int, output_dir: str, freeze: bool) -> dict[str, object]:
    from mlx_otel import TrainingMonitor

    config = {
        "exporter": {"port": 0},
        "monitoring": {"output_dir": output_dir, "generate_charts_every": 100},
    }
    rng = np.random.default_rng(0)
    monitor = TrainingMonitor(config, run_id="flood")
    if freeze:
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's generations
    stop = threading.Event()
    scrapes = [0] * scrape_threads

    def scraper(index: int) -> None:
        while not stop.is_set():
            with urllib.request.urlopen(monitor.endpoint, timeout=30) as response:
                response.read()
            scrapes[index] += 1

    threads = [threading.Thread(target=scraper, args=(i,), daemon=True) for i in range(scrape_threads)]
    for thread in threads:
        thread.start()
    collections: list[tuple[int, int, float]] = []  # (generation, step, ms)
    gc_start = [0.0]
    current = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            ms = (time.perf_counter() - gc_start[0]) * 1000
            if ms > 1.0:
                collections.append((info["generation"], current[0], ms))

    gc.callbacks.append(on_gc)
    process = psutil.Process()
    rss: list[tuple[int, float]] = []
    names = [f"metric_{i}" for i in range(SCALARS)]
    values = dict(zip(names, rng.uniform(size=SCALARS).tolist(), strict=True))
    rewards = rng.uniform(-1, 2, size=SAMPLES).tolist()
    times = np.empty(steps, dtype=np.int64)
    clock = time.perf_counter_ns
    log = monitor.log_training_step
    every = max(1, steps // 10)
    started = time.perf_counter()
    for step in range(steps):
        current[0] = step
        start = clock()
        log(step, loss=0.5, reward=0.7, rewards=rewards, **values)
        times[step] = clock() - start
        if step % every == 0:
            rss.append((step, process.memory_info().rss / 2**20))
    elapsed = time.perf_counter() - started
    rss.append((steps, process.memory_info().rss / 2**20))
    gc.callbacks.remove(on_gc)
    stop.set()
    for thread in threads:
        thread.join(30)
    monitor.flush(120)
    text = monitor.telemetry.exposition()
    served = next(
        float(line.split()[-1]) for line in text.splitlines()
        if line.startswith("mlx_train_steps_total")
    )  # fmt: skip
    reward_count = next(
        float(line.split()[-1]) for line in text.splitlines()
        if line.startswith("mlx_train_reward_count")
    )  # fmt: skip
    dropped = monitor.errors.dropped()
    errors = monitor.error_counts()
    ended = time.perf_counter()
    monitor.cleanup()
    return {
        "times": times,
        "elapsed": elapsed,
        "rss": rss,
        "collections": collections,
        "served_steps": served,
        "served_rewards": reward_count,
        "dropped": dropped,
        "errors": errors,
        "scrapes": sum(scrapes),
        "cleanup_s": time.perf_counter() - ended,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--scrape-threads", type=int, default=1)
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after start-up, as a long run may do")  # fmt: skip
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    values = {f"metric_{i}": float(v) for i, v in enumerate(rng.uniform(size=SCALARS))}
    rewards = rng.uniform(size=SAMPLES).tolist()
    base = percentiles(baseline(args.steps, values, rewards))
    with tempfile.TemporaryDirectory() as tmp:
        result = flood(args.steps, args.scrape_threads, os.path.join(tmp, "outputs"),
                       args.gc_freeze)  # fmt: skip
    times = result["times"]
    assert isinstance(times, np.ndarray)
    stats = percentiles(times)
    worst_step = int(times.argmax())
    print(f"{args.steps} steps in {result['elapsed']:.1f} s "
          f"({args.steps / result['elapsed']:.0f} steps/s), {result['scrapes']} scrapes")  # fmt: skip
    print("single call (µs):   " + "  ".join(f"{k} {v:8.1f}" for k, v in stats.items()))
    print("baseline dict (µs): " + "  ".join(f"{k} {v:8.1f}" for k, v in base.items()))
    print(f"worst call at step {worst_step}; p99 ratio monitor/baseline = "
          f"{stats['p99'] / max(base['p99'], 1e-9):.1f}")  # fmt: skip
    slow = [c for c in result["collections"] if c[2] > 5]  # type: ignore[union-attr]
    print(f"garbage collections over 5 ms: {len(slow)}" + "".join(
        f"; gen {g} at step {s}: {ms:.1f} ms" for g, s, ms in slow[:5]))  # fmt: skip
    print("RSS over time (MiB): " + ", ".join(f"{s}: {m:.0f}" for s, m in result["rss"]))  # type: ignore[union-attr]
    print(f"served mlx_train_steps_total = {result['served_steps']:.0f} (logged {args.steps}); "
          f"mlx_train_reward_count = {result['served_rewards']:.0f} "
          f"(logged {args.steps * SAMPLES})")  # fmt: skip
    print(f"dropped: {result['dropped'] or 'none'}; errors: {result['errors'] or 'none'}; "
          f"cleanup {result['cleanup_s']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
