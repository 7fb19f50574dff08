"""Start-up cost of a monitored process, beside a bare prometheus-client endpoint.

Each case runs in a fresh interpreter and is measured from before its first
import to its first served scrape (the parent scrapes until it answers), and
by the resident memory of the child then:

* ``bare``: ``prometheus_client.start_http_server`` with one gauge;
* ``mlx_otel``: ``import mlx_otel`` + ``TrainingMonitor()`` with charts and
  statistics on (the default), one step logged.

Both import MLX first, so MLX's own import (which every training script
pays) is not counted as the monitor's.

    python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

import psutil

CASES = {
    "bare": """
        from prometheus_client import Gauge, start_http_server
        Gauge("mlx_train_loss", "loss").set(0.5)
        start_http_server(PORT, addr="127.0.0.1")
    """,
    "mlx_otel": """
        from mlx_otel import TrainingMonitor
        monitor = TrainingMonitor({"exporter": {"port": PORT},
                                   "monitoring": {"output_dir": OUT}})
        monitor.log_training_step(0, loss=0.5, reward=0.1)
    """,
}

PRELUDE = """
import sys, time
import mlx.core as mx
mx.eval(mx.zeros(1))
sys.stdout.write(f"{time.perf_counter()}\\n"); sys.stdout.flush()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(case: str, out: str) -> tuple[float, float, float]:
    """(seconds to the first scrape, RSS in MB then, RSS of MLX alone in MB)."""
    port = _free_port()
    body = textwrap.dedent(CASES[case]).replace("PORT", str(port)).replace("OUT", repr(out))
    code = PRELUDE + body + "\nimport time\ntime.sleep(600)\n"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert child.stdout is not None
        started = float(child.stdout.readline())  # the child's clock: after MLX is loaded
        base_rss = psutil.Process(child.pid).memory_info().rss / 2**20
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    if b"mlx_train_loss" in r.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError(f"{case}: no scrape answered within 120 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        rss = psutil.Process(child.pid).memory_info().rss / 2**20
        return elapsed, rss, base_rss
    finally:
        child.kill()
        child.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):  # interleaved, so machine load hits both alike
            for case in CASES:
                results[case].append(measure(case, out))
    medians = {
        case: tuple(statistics.median(r[i] for r in runs) for i in range(3))
        for case, runs in results.items()
    }
    for case, (seconds, rss, base) in medians.items():
        print(f"{case:>9}: first scrape after {seconds * 1000:7.1f} ms, RSS {rss:6.1f} MB "
              f"(+{rss - base:5.1f} MB over MLX alone)")  # fmt: skip
    bare, monitored = medians["bare"], medians["mlx_otel"]
    extra_s = monitored[0] - bare[0]
    extra_mb = monitored[1] - bare[1]
    print(f"extra over the bare endpoint: +{extra_s:.2f} s, +{extra_mb:.0f} MB RSS")
    print(f"start-up ratio mlx_otel / bare = {monitored[0] / bare[0]:.2f}, "
          f"RSS ratio = {monitored[1] / bare[1]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
