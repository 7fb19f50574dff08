"""Wall time of the demo's training loop with full monitoring against none.

With monitoring: the Prometheus endpoint, statistics, gradient norms,
sample tables and the WandB bridge in offline mode, with seaborn charts
every 50 steps. Without: the same loop, nothing else. Runs alternate, and
the ratio of the medians is printed (target: under 1.05).

    python benchmarks/bench_training_overhead.py [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import mlx.core as mx

from mlx_otel import TrainingMonitor
from mlx_otel.demo.rl import DemoSettings, DemoTrainer


def run_plain(steps: int, seed: int) -> float:
    trainer = DemoTrainer(DemoSettings(steps=steps, seed=seed))
    start = time.perf_counter()
    for step in range(steps):
        trainer.train_step(step)
    return time.perf_counter() - start


def run_monitored(steps: int, seed: int, workdir: Path) -> tuple[float, float]:
    """Returns (training loop seconds, seconds to finish exports after the loop)."""
    config = {
        "exporter": {"port": 0},
        "monitoring": {
            "output_dir": str(workdir),
            "use_wandb": True,
            "wandb_mode": "offline",
            "generate_charts_every": 50,
        },
    }
    monitor = TrainingMonitor(config, run_id=f"bench_{seed}")
    trainer = DemoTrainer(DemoSettings(steps=steps, seed=seed))
    start = time.perf_counter()
    for step in range(steps):
        r = trainer.train_step(step)
        monitor.log_training_step(
            step=step, loss=r.loss, reward=r.reward_mean, grad_norm=r.grad_norm,
            learning_rate=r.learning_rate, thinking_tokens=r.thinking_tokens,
            answer_tokens=r.answer_tokens, memory_allocated_mb=mx.get_active_memory() / 2**20,
            rewards=r.rewards, step_time=r.step_time,
        )  # fmt: skip
        monitor.log_gradients(step, r.grads)
        monitor.log_samples(step, r.prompts, r.generations, r.references, r.sample_rewards)
    loop = time.perf_counter() - start
    start = time.perf_counter()
    monitor.export_all()
    monitor.cleanup()
    return loop, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    plain, monitored, finish = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        run_plain(10, seed=99)  # warm up MLX kernels
        for i in range(args.repeats):
            plain.append(run_plain(args.steps, seed=i))
            loop, end = run_monitored(args.steps, seed=i, workdir=Path(tmp) / f"run{i}")
            monitored.append(loop)
            finish.append(end)
    p, m = statistics.median(plain), statistics.median(monitored)
    print(f"demo training loop, {args.steps} steps, median of {args.repeats} alternating runs")
    print(f"  monitoring off:                          {p:7.2f} s")
    print(f"  monitoring on (WandB offline, charts/50): {m:7.2f} s")
    print(f"  ratio on/off: {m / p:.3f} (target < 1.05)")
    print(f"  export_all + cleanup after the loop:     {statistics.median(finish):7.2f} s")


if __name__ == "__main__":
    main()
