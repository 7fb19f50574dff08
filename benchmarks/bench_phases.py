"""Cost of timing a phase and of tracing a step on the training thread, in one run.

Compared side by side, interleaved batch by batch in one process:

  (a) ``with monitor.phase("generate"): pass``
  (b) prometheus-client's ``with Histogram.labels("generate").time(): pass``
  (c) ``log_training_step`` after one phase, tracing off and tracing on
      (``OTEL_TRACES_EXPORTER=otlp``): what tracing adds on the training
      thread, against the cost of the phase timer itself
  (d) ``log_training_step`` with tracing off against its recorder alone
      (the body it had before phases and traces): what tracing off adds
  (e) for scale, a flood of steps without pauses, tracing off and on: the
      worker builds spans meanwhile and competes for the interpreter

Between batches the background worker builds the spans and the SDK's batch
processor exports them (to a port where no collector listens, so the export
fails after its retries and is counted), outside the timed batches: the
figures are the training thread's own cost. Prints median microseconds and
ratios; the targets are (a)/(b) <= 0.5 and (c) on - off <= 2x (a).

    python benchmarks/bench_phases.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

BATCH = 50


def timed_batch(fn: Callable[[int], None], start: int) -> float:
    """Microseconds per call of one batch of ``BATCH`` calls."""
    began = time.perf_counter_ns()
    for i in range(start, start + BATCH):
        fn(i)
    return (time.perf_counter_ns() - began) / BATCH / 1000


def interleaved(cases: dict[str, Callable[[int], None]], rounds: int,
                between: Callable[[], None] = lambda: None) -> dict[str, float]:  # fmt: skip
    """Median µs per call of each case, their batches alternating round by round."""
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, fn in cases.items():
            timings[name].append(timed_batch(fn, r * BATCH))
        between()
    return {name: statistics.median(values) for name, values in timings.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_monitor(workdir: str, run_id: str) -> Any:
    from mlx_otel import TrainingMonitor

    config = {"exporter": {"port": 0},
              "monitoring": {"output_dir": os.path.join(workdir, run_id),
                             "generate_charts_every": 0}}  # fmt: skip
    return TrainingMonitor(config, run_id=run_id, serve=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    rounds = 100 if args.quick else 1000
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)  # the dead collector
    logging.getLogger("mlx_otel").setLevel(logging.ERROR)

    from prometheus_client import CollectorRegistry, Histogram

    workdir = tempfile.mkdtemp(prefix="bench_phases_")
    plain = make_monitor(workdir, "plain")
    os.environ.update({
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1",
    })  # fmt: skip
    traced = make_monitor(workdir, "traced")
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        del os.environ[name]
    assert plain.tracer is None and traced.tracer is not None

    registry = CollectorRegistry()
    histogram = Histogram("phase_seconds", "x", ["phase"], registry=registry,
                          buckets=(0.001, 0.01, 0.1, 1.0, 10.0, 600.0))  # fmt: skip
    phase = plain.phase

    def mlx_otel_phase(i: int) -> None:
        with phase("generate"):
            pass

    def prometheus_client_phase(i: int) -> None:
        with histogram.labels("generate").time():
            pass

    def settle() -> None:  # outside the timings: the step's phases handed over
        plain.log_training_step(0)

    phases = interleaved(
        {"mlx_otel": mlx_otel_phase, "prometheus_client": prometheus_client_phase},
        rounds, settle,
    )  # fmt: skip

    def stepper(monitor: Any) -> Callable[[int], None]:
        timer = monitor.phase("generate")  # one phase per step, made outside the timing

        def step(i: int) -> None:
            with timer:
                pass
            monitor.log_training_step(i)

        return step

    record = plain.recorder.record

    def recorder_alone(i: int) -> None:
        record(i, {})

    def log_plain(i: int) -> None:
        plain.log_training_step(i)

    def drain() -> None:  # the worker's turn: spans built and queued for export
        plain.flush(5)
        traced.flush(5)

    steps = interleaved(
        {"off": stepper(plain), "on": stepper(traced),
         "log": log_plain, "recorder": recorder_alone},
        rounds, drain,
    )  # fmt: skip
    # A flood without pauses: the worker builds spans while steps are logged,
    # competing for the interpreter (what a loop of microsecond steps would see).
    # Chunks of 2,000 steps, alternating, so both see the same machine.
    floods: dict[str, list[float]] = {"off": [], "on": []}
    flooders = {"off": stepper(plain), "on": stepper(traced)}
    for r in range(max(2, rounds // 40)):
        for name, step in flooders.items():
            began = time.perf_counter()
            for i in range(2_000):
                step(r * 2_000 + i)
            floods[name].append((time.perf_counter() - began) / 2_000 * 1e6)
    flood = {name: statistics.median(values) for name, values in floods.items()}
    drain()
    began = time.perf_counter()
    traced.tracer.export_pending()
    built = traced.steps_logged
    span_us = (time.perf_counter() - began) * 1e6  # what was left, for scale only
    for monitor in (plain, traced):
        monitor.cleanup()

    phase_us = phases["mlx_otel"]
    added = steps["on"] - steps["off"]
    print(f"rounds of {BATCH} calls: {rounds}")
    print(f"phase timer (µs): mlx_otel {phase_us:.3f}, "
          f"prometheus-client {phases['prometheus_client']:.3f}")  # fmt: skip
    print(f"phase / prometheus-client = {phase_us / phases['prometheus_client']:.2f} "
          "(target <= 0.5)")  # fmt: skip
    print(f"step with one phase (µs): tracing off {steps['off']:.3f}, on {steps['on']:.3f}")
    print(f"tracing on adds {added:.3f} µs a step = {added / phase_us:.2f}x the phase timer "
          "(target <= 2)")  # fmt: skip
    print(f"tracing off: log_training_step / its recorder alone = "
          f"{steps['log'] / steps['recorder']:.2f} ({steps['log']:.3f} vs "
          f"{steps['recorder']:.3f} µs)")  # fmt: skip
    print(f"flood without pauses (µs a step, median of 2,000-step chunks, worker running): "
          f"tracing off {flood['off']:.3f}, "
          f"on {flood['on']:.3f}")  # fmt: skip
    print(f"spans built on the worker, not timed above: {built} steps logged traced, "
          f"last {span_us:.0f} µs of building at the end")  # fmt: skip
    print(f"errors counted (the dead collector): {traced.error_counts()}")


if __name__ == "__main__":
    main()
