"""Run every benchmark in this folder, one after another, printing their ratios.

    python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK_ARGS = {
    "bench_flood.py": ["--steps", "20000"],
    "bench_hot_path.py": ["--quick"],
    "bench_phases.py": ["--quick"],
    "bench_rl_step.py": ["--rounds", "5"],
    "bench_scale.py": ["--quick"],
    "bench_training_overhead.py": ["--steps", "200", "--repeats", "1"],
    "bench_startup.py": ["--repeats", "2"],
    "bench_trainer_end.py": ["--iters", "100", "--repeats", "1"],
}


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n=== {script.name} ===", flush=True)
        args = QUICK_ARGS.get(script.name, []) if quick else []
        if subprocess.run([sys.executable, str(script), *args]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
