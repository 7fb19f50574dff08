"""Wall time of the demo's training loop with full monitoring against none.

With monitoring: the Prometheus endpoint, statistics, gradient norms,
sample tables and the WandB bridge in offline mode, with seaborn charts
every 50 steps. Without: the same loop, nothing else. Runs alternate, and
the ratio of the medians is printed (target: under 1.05).

    python benchmarks/bench_training_overhead.py [--steps 600] [--repeats 3]
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


def run_monitored(
    steps: int, seed: int, workdir: Path, *, wandb: bool = True, charts_every: int = 50
) -> tuple[float, float, float]:
    """Seconds of (setting the monitor up, the training loop, exports after the loop)."""
    config = {
        "exporter": {"port": 0},
        "monitoring": {
            "output_dir": str(workdir),
            "use_wandb": wandb,
            "wandb_mode": "offline",
            "generate_charts_every": charts_every,
        },
    }
    start = time.perf_counter()
    monitor = TrainingMonitor(config, run_id=f"bench_{seed}")
    setup = time.perf_counter() - start
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
    return setup, loop, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Long enough that one-time start-up (WandB's service, the chart process's
    # imports) does not dominate, as in a real run.
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", action="store_true", help="also WandB alone and charts alone")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    plain, monitored, setups, finish = [], [], [], []
    parts: dict[str, list[float]] = {"WandB only": [], "charts only": []}
    with tempfile.TemporaryDirectory() as tmp:
        run_plain(10, seed=99)  # warm up MLX kernels
        for i in range(args.repeats):
            plain.append(run_plain(args.steps, seed=i))
            setup, loop, end = run_monitored(args.steps, seed=i, workdir=Path(tmp) / f"run{i}")
            setups.append(setup)
            monitored.append(loop)
            finish.append(end)
            if args.parts:
                parts["WandB only"].append(
                    run_monitored(args.steps, i, Path(tmp) / f"w{i}", charts_every=0)[1]
                )
                parts["charts only"].append(
                    run_monitored(args.steps, i, Path(tmp) / f"c{i}", wandb=False)[1]
                )
    p, m = statistics.median(plain), statistics.median(monitored)
    print(f"demo training loop, {args.steps} steps, median of {args.repeats} alternating runs")
    print(f"  monitoring off:                          {p:7.2f} s")
    print(f"  monitoring on (WandB offline, charts/50): {m:7.2f} s")
    print(f"  ratio on/off: {m / p:.3f} (target < 1.05)")
    for name, times in parts.items():
        if times:
            print(f"  {name + ':':40} {statistics.median(times):7.2f} s  "
                  f"ratio {statistics.median(times) / p:.3f}")
    print(f"  TrainingMonitor(...) before the loop:    {statistics.median(setups):7.2f} s")
    print(f"  export_all + cleanup after the loop:     {statistics.median(finish):7.2f} s")


if __name__ == "__main__":
    main()
