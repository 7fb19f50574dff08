"""Keep WandB's service process from holding the process's exit.

wandb's own exit hook tells its service process to shut down and waits for
it; a service that waits for a server that never answers keeps the process
alive for 90 s and more. After a WandB finish that timed out,
:func:`stop_service_at_exit` registers an exit hook that runs before wandb's
and ends the service after :data:`SERVICE_GRACE_S`, so wandb's wait returns.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time

__all__ = ["SERVICE_GRACE_S", "stop_service_at_exit"]

logger = logging.getLogger("mlx_otel.integrations.wandb_bridge")

_stop_registered = False


def stop_service_at_exit() -> None:
    """At exit, give WandB's service a moment, then stop it if it still runs.

    wandb's own exit hook tells its service process to shut down and waits
    for it; a service that waits for a server that never answers keeps the
    process alive for 90 s and more. Registered after wandb's hook, this one
    runs first (exit hooks run last-in, first-out) and starts a watchdog that
    ends the service after :data:`SERVICE_GRACE_S`, so wandb's wait returns.
    """
    global _stop_registered
    if not _stop_registered:
        _stop_registered = True
        atexit.register(_start_service_watchdog)


#: Seconds WandB's service gets at exit, after a finish that timed out.
SERVICE_GRACE_S = 2.0


def _start_service_watchdog() -> None:
    threading.Thread(target=_stop_service, name="mlx-otel-wandb-stop", daemon=True).start()


def _stop_service() -> None:
    import psutil

    time.sleep(SERVICE_GRACE_S)
    try:
        children = [
            child for child in psutil.Process().children(recursive=True)
            if "wandb" in " ".join(child.cmdline() or [child.name()])
        ]  # fmt: skip
    except psutil.Error:
        return
    if not children:
        return
    logger.warning(
        "Stopping WandB's service process, which did not finish; the local run folder may "
        "miss the last values"
    )
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=3)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
