"""Cost of one training-step log call, against its alternatives, in one run.

A step logs 20 scalar values and 64 per-sample rewards. Compared side by side:

  (a) the floor: ``dict.update`` of the same values
  (b) raw prometheus-client: 20 ``Gauge.set`` + 64 ``Histogram.observe``
  (c) raw OpenTelemetry synchronous instruments: 20 gauge ``set`` + 64
      histogram ``record`` (and with two attributes per record)
  (d) ``wandb.log`` in offline mode, the rewards as a ``wandb.Histogram``
      (and, for reference, the 20 scalars alone)
  (e) ``TrainingMonitor.log_training_step``

Prints median microseconds per step and ratios; also the cost of a scrape
with the default configuration and with 10,000 layer series.

    python benchmarks/bench_hot_path.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable

import numpy as np

SCALARS = 20
SAMPLES = 64


def per_call_us(fn: Callable[[int], None], *, calls: int, batch: int = 50) -> float:
    """Median microseconds of one call, over batches of ``batch`` calls."""
    timings = []
    i = 0
    for _ in range(max(1, calls // batch)):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn(i)
            i += 1
        timings.append((time.perf_counter_ns() - start) / batch / 1000)
    return statistics.median(timings)


def step_values(rng: np.random.Generator) -> tuple[dict[str, float], list[float]]:
    values = {f"metric_{i}": float(v) for i, v in enumerate(rng.uniform(size=SCALARS))}
    rewards = [float(v) for v in rng.uniform(size=SAMPLES)]
    return values, rewards


def bench_dict(values: dict[str, float], rewards: list[float], calls: int) -> float:
    store: dict[str, float] = {}
    buffer: list[float] = []

    def step(i: int) -> None:
        store.update(values)
        buffer.extend(rewards)
        if len(buffer) > 100_000:
            buffer.clear()

    return per_call_us(step, calls=calls)


def bench_prometheus_client(values: dict[str, float], rewards: list[float], calls: int) -> float:
    from prometheus_client import CollectorRegistry, Gauge, Histogram

    registry = CollectorRegistry()
    gauges = [Gauge(name, "x", registry=registry) for name in values]
    histogram = Histogram("rewards", "x", registry=registry, buckets=(0, 0.25, 0.5, 0.75, 1))
    numbers = list(values.values())

    def step(i: int) -> None:
        for gauge, value in zip(gauges, numbers, strict=True):
            gauge.set(value)
        for r in rewards:
            histogram.observe(r)

    return per_call_us(step, calls=calls)


def bench_otel(
    values: dict[str, float], rewards: list[float], calls: int, attributes: bool
) -> float:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    meter = provider.get_meter("bench")
    gauges = [meter.create_gauge(name) for name in values]
    histogram = meter.create_histogram("rewards")
    numbers = list(values.values())
    attrs = {"run_id": "bench", "rank": "0"} if attributes else None

    def step(i: int) -> None:
        for gauge, value in zip(gauges, numbers, strict=True):
            gauge.set(value, attrs)
        for r in rewards:
            histogram.record(r, attrs)

    try:
        return per_call_us(step, calls=calls)
    finally:
        provider.shutdown()


def bench_wandb(
    values: dict[str, float], rewards: list[float], calls: int, workdir: str, histogram: bool
) -> float:
    try:
        import wandb
    except ImportError:
        return float("nan")
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project="bench",
        mode="offline",
        dir=workdir,
        settings=wandb.Settings(console="off", x_disable_stats=True),
    )
    row: dict[str, object] = dict(values)

    def step(i: int) -> None:
        if histogram:  # the same information as the others: rewards as a distribution
            row["rewards"] = wandb.Histogram(rewards)
        run.log(row, step=i)

    try:
        return per_call_us(step, calls=calls)
    finally:
        run.finish()


def bench_monitor(
    values: dict[str, float], rewards: list[float], calls: int, workdir: str
) -> float:
    from mlx_otel import TrainingMonitor

    config = {"exporter": {"port": 0}, "monitoring": {"output_dir": workdir}}
    custom = {name: v for name, v in list(values.items())[7:]}  # 13 custom + 7 named = 20
    with TrainingMonitor(config, run_id="bench") as monitor:
        log = monitor.log_training_step

        def step(i: int) -> None:
            log(
                step=i, loss=0.5, reward=0.7, grad_norm=1.2, learning_rate=2e-6,
                thinking_tokens=120, answer_tokens=30, memory_allocated_mb=512.0,
                rewards=rewards, **custom,
            )  # fmt: skip

        result = per_call_us(step, calls=calls)
        monitor.flush()
        return result


def bench_blocks(
    values: dict[str, float], rewards: list[float], workdir: str, rounds: int, block: int = 2_000
) -> tuple[float, float, float]:
    """Blocks of ``block`` steps, monitor and prometheus-client in turn: (ours µs, theirs µs,
    the monitor's worker CPU µs per step).

    Unlike the batches of 50 above, a block of 2,000 steps lasts long enough
    to take in the monitor's background worker, which shares the
    interpreter with the training loop: what a loop that logs as fast as it
    can feels.
    """
    from prometheus_client import CollectorRegistry, Gauge, Histogram

    from mlx_otel import TrainingMonitor

    registry = CollectorRegistry()
    gauges = [Gauge(name, "x", registry=registry) for name in values]
    histogram = Histogram("rewards", "x", registry=registry, buckets=(0, 0.25, 0.5, 0.75, 1))
    numbers = list(values.values())
    custom = {name: v for name, v in list(values.items())[7:]}
    config = {"exporter": {"port": 0}, "monitoring": {"output_dir": workdir}}
    ours, theirs = [], []
    with TrainingMonitor(config, run_id="bench") as monitor:
        log = monitor.log_training_step
        worker_clock = time.pthread_getcpuclockid(monitor.worker._thread.ident)
        worker_start = time.clock_gettime(worker_clock)
        step = 0
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for _ in range(block):
                log(
                    step=step, loss=0.5, reward=0.7, grad_norm=1.2, learning_rate=2e-6,
                    thinking_tokens=120, answer_tokens=30, memory_allocated_mb=512.0,
                    rewards=rewards, **custom,
                )  # fmt: skip
                step += 1
            ours.append((time.perf_counter_ns() - start) / block / 1000)
            start = time.perf_counter_ns()
            for _ in range(block):
                for gauge, value in zip(gauges, numbers, strict=True):
                    gauge.set(value)
                for r in rewards:
                    histogram.observe(r)
            theirs.append((time.perf_counter_ns() - start) / block / 1000)
        monitor.flush()
        worker = (time.clock_gettime(worker_clock) - worker_start) / step * 1e6
    return statistics.median(ours), statistics.median(theirs), worker


def bench_scrape(layer_series: int, repeats: int) -> float:
    from mlx_otel import TrainingMonitor

    config = {"exporter": {"port": 0, "max_layer_series": max(layer_series, 1)}}
    with TrainingMonitor(config, run_id="bench") as monitor:
        monitor.log_training_step(step=0, loss=0.5, rewards=[0.5] * SAMPLES)
        if layer_series:
            layers = {f"layers.{i}.weight": 1.0 for i in range(layer_series)}
            monitor.recorder.set_series("layer_grad_norm", layers)
        url = monitor.endpoint
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            with urllib.request.urlopen(url) as response:
                response.read()
            timings.append((time.perf_counter() - start) * 1000)
        return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    calls = 2_000 if args.quick else 20_000
    rng = np.random.default_rng(0)
    values, rewards = step_values(rng)
    with tempfile.TemporaryDirectory() as workdir:
        results = {
            "(a) dict.update (floor)": bench_dict(values, rewards, calls * 5),
            "(b) prometheus-client": bench_prometheus_client(values, rewards, calls),
            "(c) OpenTelemetry sync": bench_otel(values, rewards, calls // 4, False),
            "(c') OpenTelemetry sync, 2 attrs": bench_otel(values, rewards, calls // 4, True),
            "(d) wandb.log offline": bench_wandb(values, rewards, calls // 10, workdir, True),
            "(d') wandb.log, scalars only": bench_wandb(
                values, rewards, calls // 10, workdir, False
            ),
            "(e) mlx_otel log_training_step": bench_monitor(values, rewards, calls * 2, workdir),
        }
        blocks = bench_blocks(values, rewards, workdir, 6 if args.quick else 30)
        scrape_default = bench_scrape(0, 20 if args.quick else 50)
        scrape_10k = bench_scrape(10_000, 5 if args.quick else 10)
    ours = results["(e) mlx_otel log_training_step"]
    print(f"One training step: {SCALARS} scalars + {SAMPLES} per-sample rewards (median)")
    print(f"{'':34} {'µs/step':>10} {'log_training_step / this':>26}")
    for name, us in results.items():
        print(f"{name:34} {us:10.2f} {ours / us:26.4f}")
    print()
    prom = results["(b) prometheus-client"]
    wb = results["(d) wandb.log offline"]
    print(f"targets: log_training_step / prometheus-client = {ours / prom:.3f} (<= 0.1)")
    print(f"         log_training_step / wandb.log         = {ours / wb:.4f} (<= 0.01)")
    print(
        f"blocks of 2,000 steps, interleaved: {blocks[0]:.2f} vs {blocks[1]:.2f} µs/step, "
        f"log_training_step / prometheus-client = {blocks[0] / blocks[1]:.3f} (<= 0.1); "
        f"the monitor's worker: {blocks[2]:.2f} µs of CPU per step"
    )
    print()
    print(f"scrape /metrics, default configuration: {scrape_default:8.2f} ms")
    print(f"scrape /metrics, 10,000 layer series:   {scrape_10k:8.2f} ms")


if __name__ == "__main__":
    main()
