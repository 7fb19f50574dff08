"""The test suite's own child processes: Ctrl-C reaches them, none is left behind.

A suite started from a non-interactive shell (CI, ``nohup``, ``cmd &``) runs
with SIGINT ignored, which its children inherit; and a test that times out
must not leave its child, or the child's children, running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from tests import processes

pytestmark = pytest.mark.integration  # each test starts Python children

WAITS_FOR_CTRL_C = """
import sys, time
try:
    print("ready", flush=True)  # inside the try: a Ctrl-C right after it is still caught
    time.sleep(60)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
"""

STARTS_A_GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(grandchild.pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def sigint_ignored() -> Iterator[None]:
    """This process as a non-interactive shell would have started it."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_child_gets_ctrl_c_even_when_the_suite_ignores_it(sigint_ignored: None) -> None:
    child = processes.popen([sys.executable, "-c", WAITS_FOR_CTRL_C], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=20)
    assert (child.returncode, out.strip()) == (3, "KeyboardInterrupt")


def test_stop_ends_the_child_and_the_childs_children() -> None:
    child = processes.popen([sys.executable, "-c", STARTS_A_GRANDCHILD], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    processes.stop(child)
    assert child.returncode == -signal.SIGKILL
    assert gone(grandchild), f"grandchild {grandchild} still runs"


def test_a_run_that_times_out_leaves_nothing_running() -> None:
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        processes.run([sys.executable, "-c", STARTS_A_GRANDCHILD], capture_output=True,
                      text=True, timeout=5)  # fmt: skip
    grandchild = int(str(timed_out.value.stdout).split()[0])
    assert gone(grandchild), f"grandchild {grandchild} still runs"
    assert not [p for p in psutil.Process().children() if "grandchild" in " ".join(p.cmdline())]
