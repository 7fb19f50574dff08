"""A trainer's wall time, monitored beside plain: the end of training is not held up.

Runs ``mlx_lm.lora`` and ``mlx-otel lora`` (then ``mlx_lm_lora.train`` and
``mlx-otel lora-train``) with the same arguments on a tiny model built in
code (no download), interleaved, each in a fresh process, and times each
from start to exit. The monitored runs have charts on (every 100 steps and
at the end) and must leave the summary, the CSV and the final adapters on
disk when they exit; the end-of-run charts, left to the chart process, are
waited for afterwards and reported.

    python benchmarks/bench_trainer_end.py [--iters 300] [--grpo-iters 100] [--repeats 3]

``mlx_lm_lora.train`` runs GRPO (its SFT mode needs Metal).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.tiny_model import REWARD_FUNCTIONS, build_model, write_sum_data  # noqa: E402


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WANDB_SERVICE", None)
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")  # fmt: skip
    return env


def _trainer_args(name: str, root: Path, adapters: Path, iters: int) -> list[str]:
    common = [
        "--model", str(root / "model"), "--train", "--iters", str(iters), "--num-layers", "2",
        "--steps-per-report", "10", "--steps-per-eval", str(iters * 10), "--val-batches", "1",
        "--adapter-path", str(adapters),
    ]  # fmt: skip
    if name == "lora":
        return [*common, "--data", str(root / "sft"), "--batch-size", "2"]
    # mlx-lm-lora's SFT mode needs Metal (mx.set_wired_limit): GRPO runs everywhere.
    return [
        *common, "--data", str(root / "grpo"), "--train-mode", "grpo", "--batch-size", "1",
        "--group-size", "2", "--max-completion-length", "6",
        "--reward-functions-file", str(root / "rewards.py"),
        "--reward-functions", ",".join(REWARD_FUNCTIONS),
    ]  # fmt: skip


def _timed(command: list[str], log: Path) -> float:
    began = time.perf_counter()
    # Output to a file: a chart process left to finish its charts holds no pipe of ours.
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=_env()).returncode
    took = time.perf_counter() - began
    if code != 0:
        raise SystemExit(f"{' '.join(command[:4])}... exited {code}:\n{log.read_text()[-3000:]}")
    return took


def _check_monitored(out: Path, adapters: Path, iters: int) -> None:
    """What must be on disk when the monitored trainer has exited."""
    missing = [p for p in (out / "monitoring_summary.json", out / "training_metrics.csv",
                           adapters / "adapters.safetensors") if not p.is_file()]  # fmt: skip
    if missing:
        raise SystemExit(f"missing after the monitored run: {[str(p) for p in missing]}")
    rows = (out / "training_metrics.csv").read_text().splitlines()
    if not rows[-1].startswith(f"{iters},"):
        raise SystemExit(f"training_metrics.csv does not end at iteration {iters}: {rows[-1]!r}")


def _charts_after(out: Path, timeout: float = 120.0) -> float | None:
    """Seconds until the end-of-run charts are on disk (written by the chart process)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if (out / "charts" / "correlation_matrix.png").is_file():
            return time.perf_counter() - began
        time.sleep(0.2)
    return None


def compare(name: str, plain: list[str], monitored: list[str], root: Path, work: Path,
            iters: int, repeats: int) -> float:  # fmt: skip
    times: dict[str, list[float]] = {"plain": [], "monitored": []}
    # Not counted: the first MLX run of a machine compiles its CPU kernels.
    _timed([*plain, *_trainer_args(name, root, work / f"{name}_warm_adapters", 10)],
           work / f"{name}_warm.log")  # fmt: skip
    for repeat in range(repeats):
        for case in ("plain", "monitored"):  # interleaved: a busy moment hits both
            adapters = work / f"{name}_{case}_{repeat}_adapters"
            out = work / f"{name}_{repeat}_outputs"
            config = work / f"{name}_{repeat}.yml"
            config.write_text(f"monitoring:\n  output_dir: {out}\n  generate_charts_every: 100\n")
            base = plain if case == "plain" else [*monitored, "--metrics-port", "0",
                                                  "--monitor-config", str(config)]  # fmt: skip
            took = _timed([*base, *_trainer_args(name, root, adapters, iters)],
                          work / f"{name}_{case}_{repeat}.log")  # fmt: skip
            times[case].append(took)
            if case == "monitored":
                _check_monitored(out, adapters, iters)
                charts = _charts_after(out)
                print(f"  {name} monitored run {repeat}: {took:.1f} s; end-of-run charts on disk "
                      + ("never" if charts is None else f"{charts:.1f} s after exit"), flush=True)
            else:
                print(f"  {name} plain run {repeat}: {took:.1f} s", flush=True)
    plain_s, monitored_s = statistics.median(times["plain"]), statistics.median(times["monitored"])
    ratio = monitored_s / plain_s
    print(f"{name}: monitored {monitored_s:.1f} s / plain {plain_s:.1f} s = {ratio:.2f}x "
          f"(median of {repeats}; target <= 1.1x)", flush=True)  # fmt: skip
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300, help="mlx_lm.lora iterations")
    parser.add_argument("--grpo-iters", type=int, default=100,
                        help="mlx_lm_lora.train (GRPO) iterations")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("lora", "lora-train"), default=None)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_trainer_end_") as tmp:
        root = Path(tmp)
        build_model(root / "model")
        write_sum_data(root)
        cases = {
            "lora": ([python, "-m", "mlx_lm.lora"],
                     [python, "-m", "mlx_otel.cli.main", "lora"]),
            "lora-train": ([python, "-m", "mlx_lm_lora.train"],
                           [python, "-m", "mlx_otel.cli.main", "lora-train"]),
        }  # fmt: skip
        ratios = {}
        for name, (plain, monitored) in cases.items():
            iters = args.iters if name == "lora" else args.grpo_iters
            if args.only in (None, name):
                ratios[name] = compare(name, plain, monitored, root, root, iters, args.repeats)
        for name, ratio in ratios.items():
            print(f"trainer end ratio mlx-otel {name} / plain = {ratio:.2f}x")


if __name__ == "__main__":
    main()
