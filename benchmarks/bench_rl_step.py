"""Cost of logging one GRPO step with every RL list, against raw prometheus-client.

The step: 64 completions in groups of 8, with ``rewards=``,
``completion_lengths=``, ``truncated=``, ``correct=``, per-completion
``thinking_tokens=`` and ``answer_tokens=``, ``group_size=``, and the
scalars loss, reward, grad_norm, learning_rate, entropy and kl.

The alternative is what a loop would do with prometheus-client directly:
set the six gauges and the group size, and observe the 64 rewards and the
64 lengths into two histograms (and still know nothing of groups without
signal). ``log_training_step`` copies the lists and queues them; the group
arithmetic runs on the monitor's worker, which is running during the
measurement as in a real run. The two are measured interleaved, in rounds,
in one process, so both see the same machine load.

Prints median µs per step of each and their ratio (target <= 0.1).

    python benchmarks/bench_rl_step.py [--rounds 20] [--calls 500]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

COMPLETIONS = 64
GROUP = 8


def batch_us(fn: Callable[[int], None], calls: int, start: int, batch: int = 50) -> list[float]:
    """Microseconds of one call, averaged over each batch of ``batch`` calls.

    As in bench_hot_path.py: the median over batches leaves out the batches
    in which the interpreter switched to another thread (the monitor's
    worker, which carries the group arithmetic on its own time).
    """
    timings = []
    i = start
    for _ in range(max(1, calls // batch)):
        begin = time.perf_counter_ns()
        for _ in range(batch):
            fn(i)
            i += 1
        timings.append((time.perf_counter_ns() - begin) / batch / 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=500, help="steps per round and side")
    args = parser.parse_args()

    from prometheus_client import CollectorRegistry, Gauge, Histogram

    from mlx_otel import TrainingMonitor
    from mlx_otel.catalog import by_key

    rng = np.random.default_rng(0)
    rewards = [float(v) for v in rng.choice([0.0, 0.5, 1.0], size=COMPLETIONS)]
    lengths = [int(v) for v in rng.integers(16, 4096, size=COMPLETIONS)]
    truncated = [length > 4000 for length in lengths]
    correct = [r == 1.0 for r in rewards]
    thinking = [int(v) for v in rng.integers(0, 1024, size=COMPLETIONS)]
    answer = [int(v) for v in rng.integers(0, 256, size=COMPLETIONS)]
    scalars = {"loss": 0.5, "reward": 0.6, "grad_norm": 1.2, "learning_rate": 2e-6,
               "entropy": 0.8, "kl": 0.01}  # fmt: skip

    registry = CollectorRegistry()
    gauges = [Gauge(f"g_{name}", "x", registry=registry) for name in (*scalars, "group_size")]
    numbers = [*scalars.values(), float(GROUP)]
    reward_histogram = Histogram("rewards", "x", registry=registry,
                                 buckets=by_key("reward").buckets)  # fmt: skip
    length_histogram = Histogram("lengths", "x", registry=registry,
                                 buckets=by_key("completion_length").buckets)  # fmt: skip

    def prometheus_step(i: int) -> None:
        for gauge, value in zip(gauges, numbers, strict=True):
            gauge.set(value)
        for r in rewards:
            reward_histogram.observe(r)
        for n in lengths:
            length_histogram.observe(n)

    with tempfile.TemporaryDirectory() as workdir:
        config = {"exporter": {"port": 0},
                  "monitoring": {"output_dir": workdir, "generate_charts_every": 0}}  # fmt: skip
        monitor = TrainingMonitor(config, run_id="bench_rl")
        try:
            log = monitor.log_training_step

            def monitor_step(i: int) -> None:
                log(i, rewards=rewards, group_size=GROUP, completion_lengths=lengths,
                    truncated=truncated, correct=correct, thinking_tokens=thinking,
                    answer_tokens=answer, **scalars)  # fmt: skip

            ours: list[float] = []
            theirs: list[float] = []
            step = 0
            for _ in range(args.rounds):
                theirs += batch_us(prometheus_step, args.calls, step)
                ours += batch_us(monitor_step, args.calls, step)
                step += args.calls
                monitor.flush()  # the worker's share is not billed to the next round
            errors = monitor.error_counts()
            served = monitor.telemetry.exposition()
        finally:
            monitor.cleanup()
    ours_us, theirs_us = statistics.median(ours), statistics.median(theirs)
    print(f"One GRPO step: {COMPLETIONS} completions in groups of {GROUP}, every RL list "
          f"(median over batches of 50, {args.rounds} interleaved rounds of {args.calls} "
          "steps)")  # fmt: skip
    print(f"  raw prometheus-client (7 gauges, 2 x {COMPLETIONS} observations): "
          f"{theirs_us:8.2f} µs/step")  # fmt: skip
    print(f"  mlx_otel log_training_step:                           {ours_us:8.2f} µs/step")
    print(f"RL step ratio log_training_step / prometheus-client = {ours_us / theirs_us:.3f}"
          " (<= 0.1)")  # fmt: skip
    if errors or "mlx_train_zero_std_groups_ratio" not in served:
        raise SystemExit(f"the monitor did not serve the RL step cleanly: {errors}")


if __name__ == "__main__":
    main()
