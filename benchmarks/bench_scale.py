"""What a scrape costs as series multiply, against raw prometheus-client, in one run.

Series sets, each served by mlx_otel and by raw prometheus-client holding
exactly the same series (built from mlx_otel's own exposition: same names,
labels, buckets):

  1, 8 and 64 ranks' worth: that many ``TrainingMonitor`` s of one run, each
      with a demo-like step logged (7 named values, 13 custom metrics, 64
      rewards) and 64 layer series (the default cap); a scrape of each;
  10,000 layer series: one monitor with ``exporter.max_layer_series: 10000``
      and ``log_gradients`` of a 10,000-layer gradient tree.

Prints the median scrape time (``generate_latest`` of the registry, what the
endpoint sends) and the exporter's Python memory (tracemalloc, built and
scraped once) for both, and their ratios.

    python benchmarks/bench_scale.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

CUSTOM = 13
REWARDS = 64
LAYERS = 10_000


def config(max_layer_series: int = 64) -> dict[str, Any]:
    return {
        "exporter": {"port": 0, "max_layer_series": max_layer_series},
        "monitoring": {"generate_charts_every": 0, "use_wandb": False},
    }


def build_monitors(ranks: int, layers: int) -> list[Any]:
    import mlx.core as mx

    from mlx_otel import TrainingMonitor

    monitors = []
    rng = np.random.default_rng(0)
    grads = {"layers": [{"weight": mx.ones((4,)) * (i + 1)} for i in range(layers)]}
    for rank in range(ranks if ranks > 1 else 1):
        monitor = TrainingMonitor(
            config(max(64, layers)), run_id="bench", rank=rank if ranks > 1 else None, serve=False
        )
        custom = {f"custom_{i}": float(v) for i, v in enumerate(rng.uniform(size=CUSTOM))}
        monitor.log_training_step(
            0, loss=0.5, reward=0.4, grad_norm=1.0, learning_rate=1e-4, thinking_tokens=30,
            answer_tokens=5, memory_allocated_mb=100.0,
            rewards=rng.uniform(size=REWARDS).tolist(), **custom,
        )  # fmt: skip
        monitor.log_gradients(0, grads)
        monitor.flush()
        monitors.append(monitor)
    return monitors


def raw_registry(exposition: str) -> CollectorRegistry:
    """A prometheus-client registry serving exactly the series of ``exposition``."""
    registry = CollectorRegistry(auto_describe=False)
    for family in text_string_to_metric_families(exposition):
        labelnames = sorted({k for s in family.samples for k in s.labels if k != "le"})
        if family.type == "gauge":
            metric: Any = Gauge(family.name, family.documentation, labelnames, registry=registry)
            for s in family.samples:
                (metric.labels(**s.labels) if labelnames else metric).set(s.value)
        elif family.type == "counter":
            metric = Counter(family.name, family.documentation, labelnames, registry=registry)
            for s in family.samples:
                if s.name.endswith("_total"):
                    (metric.labels(**s.labels) if labelnames else metric).inc(s.value)
        elif family.type == "histogram":
            bounds = sorted(
                {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
                - {float("inf")}
            )
            if not bounds:  # a labelled histogram with no series yet (no phase timed)
                continue
            metric = Histogram(family.name, family.documentation, labelnames,
                               registry=registry, buckets=bounds)  # fmt: skip
            for s in family.samples:
                if s.name.endswith("_sum"):
                    labels = dict(s.labels)
                    (metric.labels(**labels) if labelnames else metric).observe(s.value)
    return registry


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def traced_mb(build: Callable[[], Any]) -> tuple[Any, float]:
    """Build (and scrape once) under tracemalloc; returns the result and MB still held."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = build()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return result, held / 2**20


def measure(label: str, ranks: int, layers: int, repeats: int) -> dict[str, Any]:
    def build_ours() -> list[Any]:
        monitors = build_monitors(ranks, layers)
        for m in monitors:
            m.telemetry.exposition()
        return monitors

    monitors, ours_mb = traced_mb(build_ours)
    expositions = [m.telemetry.exposition() for m in monitors]

    def build_raw() -> list[CollectorRegistry]:
        registries = [raw_registry(text) for text in expositions]
        for r in registries:
            generate_latest(r)
        return registries

    registries, raw_mb = traced_mb(build_raw)
    series = sum(
        1 for text in expositions for line in text.splitlines() if line and line[0] != "#"
    )
    raw_series = sum(
        1 for r in registries for line in generate_latest(r).decode().splitlines()
        if line and line[0] != "#"
    )  # fmt: skip
    ours = median_seconds(lambda: [m.telemetry.exposition() for m in monitors], repeats)
    raw = median_seconds(lambda: [generate_latest(r) for r in registries], repeats)
    for m in monitors:
        m.cleanup()
    return {
        "label": label, "series": series, "raw_series": raw_series, "ours_ms": ours * 1000,
        "raw_ms": raw * 1000, "ours_mb": ours_mb, "raw_mb": raw_mb,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for the tests)")
    args = parser.parse_args()
    logging.getLogger("mlx_otel").setLevel(logging.ERROR)
    # mlx_otel serves no *_created samples; the baseline must not format them either.
    disable_created_metrics()
    cases = [("1 rank", 1, 64), ("8 ranks", 8, 64), ("64 ranks", 64, 64),
             ("10,000 layer series", 1, LAYERS)]  # fmt: skip
    # Imports and first-use allocations are not the exporter's memory.
    for m in build_monitors(1, 64):
        m.telemetry.exposition()
        m.cleanup()
    rows = []
    for label, ranks, layers in cases:
        repeats = 3 if args.quick else (7 if layers == LAYERS or ranks == 64 else 21)
        rows.append(measure(label, ranks, layers, repeats))
    print("| series of | series | mlx_otel scrape ms | prometheus-client ms | ratio "
          "| mlx_otel MB | prometheus-client MB | ratio |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['label']} | {r['series']:,} | {r['ours_ms']:.2f} | {r['raw_ms']:.2f} "
            f"| {r['ours_ms'] / r['raw_ms']:.2f} | {r['ours_mb']:.1f} | {r['raw_mb']:.1f} "
            f"| {r['ours_mb'] / r['raw_mb']:.2f} |"
        )
        if r["series"] != r["raw_series"]:
            print(f"  (warning: {r['label']}: {r['raw_series']} raw series)")
    last = rows[-1]
    print(f"10,000 layer series: scrape mlx_otel / prometheus-client = "
          f"{last['ours_ms'] / last['raw_ms']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
