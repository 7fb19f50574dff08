"""The chart process leaves the CPU to training from its first instruction.

It renders seconds of matplotlib at each checkpoint, beside a training
process on a machine of few cores. It lowers its priority to the lowest
(niceness 19) before it imports anything of ours: importing the package
loads MLX and OpenTelemetry, half a second of CPU that would otherwise
compete with training at full priority.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from mlx_otel.integrations.chart_process import ChartProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def _niceness(pid: int) -> int:
    # /proc/<pid>/stat: the 19th field is the niceness (the name may hold spaces).
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def test_the_chart_process_is_niced_before_it_loads_mlx() -> None:
    charts = ChartProcess()
    charts.start()
    process = charts._process
    assert process is not None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            maps = Path(f"/proc/{process.pid}/maps").read_text()
            if "libmlx" in maps:  # MLX is being imported: the package is loading
                assert _niceness(process.pid) == 19
                break
            assert process.poll() is None, "the chart process exited"
            time.sleep(0.002)
        else:
            pytest.fail("the chart process never loaded MLX")
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == 19
    finally:
        charts.close()
        process.wait(timeout=60)
