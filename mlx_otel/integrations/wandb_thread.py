"""WandB on a thread of its own: no caller ever waits for the WandB server.

``wandb.init`` waits for the server (90 s by default, longer when told), and
any call may wait for a WandB service that stopped answering. So
``TrainingMonitor`` never calls WandB itself: it hands calls to a
:class:`BackgroundWandB`, which queues them for one daemon thread that
starts the run, then makes the calls in order. Finishing waits a bounded
time; what is not uploaded by then stays in the run's local folder for
``wandb sync``, and :mod:`mlx_otel.integrations.wandb_exit` keeps WandB's
service from holding the process's exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlx_otel.config import MonitorConfig
from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger
from mlx_otel.integrations.wandb_exit import stop_service_at_exit

__all__ = ["MAX_PENDING_CALLS", "SLOW_START_S", "BackgroundWandB", "start_background_wandb"]

logger = logging.getLogger("mlx_otel.integrations.wandb_bridge")


#: Calls kept while WandB starts (or while a call hangs); beyond it the oldest is dropped.
MAX_PENDING_CALLS = 10_000
#: A WandB that has not started after this many seconds gets one warning.
SLOW_START_S = 10.0


class BackgroundWandB:
    """An :class:`EnhancedWandBLogger` started and called on a thread of its own.

    ``wandb.init`` waits for the server (90 s by default, longer when told),
    and any call may wait for a WandB service that stopped answering. So
    ``TrainingMonitor`` never calls WandB itself: it hands calls to this
    object, which returns at once and queues them (at most
    :data:`MAX_PENDING_CALLS`; the oldest are dropped and counted) for one
    daemon thread that starts the run, then makes the calls in order.
    A run that never starts costs nothing but a warning and a count.
    :meth:`finish` waits at most ``finish_timeout`` seconds; what is not
    uploaded by then stays in the run's local folder for ``wandb sync``.

        wb = BackgroundWandB(lambda: EnhancedWandBLogger(mode="offline"))
        wb.log_metrics({"loss": 0.5}, step=1)   # returns at once
        wb.finish()                             # at most finish_timeout seconds
    """

    def __init__(
        self,
        start: Callable[[], EnhancedWandBLogger],
        *,
        finish_timeout: float = 10.0,
        max_pending: int = MAX_PENDING_CALLS,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.finish_timeout = float(finish_timeout)
        self._start = start
        self._max_pending = max_pending
        self._on_error = on_error or (lambda kind: None)
        self._calls: deque[tuple[str, tuple[Any, ...], dict[str, Any]]] = deque()
        self._cond = threading.Condition()
        self._logger: EnhancedWandBLogger | None = None
        self._state = "starting"  # -> running -> finished, or failed
        self._finishing = False
        self._started_at = time.monotonic()
        self._warned_slow = False
        self.dropped_calls = 0
        self._thread = threading.Thread(target=self._run, name="mlx-otel-wandb", daemon=True)
        self._thread.start()

    # -- state ---------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True while calls may still reach a run (starting or running)."""
        return self._state in ("starting", "running") and not self._finishing

    @property
    def started(self) -> bool:
        return self._state in ("running", "finished") and self._logger is not None

    @property
    def logger(self) -> EnhancedWandBLogger | None:
        """The started logger, once WandB is up."""
        return self._logger

    @property
    def sync_dir(self) -> Path | None:
        return None if self._logger is None else self._logger.sync_dir

    def wait_started(self, timeout: float | None = None) -> bool:
        """Wait until WandB started (True) or failed/timed out (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self._state != "starting", timeout)
            return self.started

    # -- calls (any thread, never blocking) ------------------------------------
    def _submit(self, name: str, *args: Any, **kwargs: Any) -> None:
        with self._cond:
            if self._state in ("failed", "finished") or self._finishing:
                return
            if len(self._calls) >= self._max_pending:
                self._calls.popleft()
                self.dropped_calls += 1
                if self.dropped_calls == 1:
                    logger.warning(
                        "WandB is not keeping up (not started or not answering): the oldest "
                        "of %d pending calls are dropped and counted in "
                        "mlx_otel_errors_total{kind=\"wandb\"}", self._max_pending,
                    )
                self._on_error("wandb")
            self._calls.append((name, args, kwargs))
            self._cond.notify()
            slow = (
                self._state == "starting"
                and not self._warned_slow
                and time.monotonic() - self._started_at > SLOW_START_S
            )
            if slow:
                self._warned_slow = True
        if slow:
            logger.warning(
                "WandB has not started after %.0f s (is the server reachable?); training goes "
                "on and WandB calls are kept (up to %d) until it does", SLOW_START_S,
                self._max_pending,
            )
            self._on_error("wandb")

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._submit("log_metrics", dict(metrics), step=step)

    def log_training_metrics(self, **kwargs: Any) -> None:
        self._submit("log_training_metrics", **kwargs)

    def log_distribution(self, name: str, values: Any, step: int | None = None) -> None:
        self._submit("log_distribution", name, values, step=step)

    def log_gradients(self, layer_norms: Mapping[str, Any], step: int | None = None) -> None:
        self._submit("log_gradients", dict(layer_norms), step=step)

    def log_sample_table(self, *args: Any, **kwargs: Any) -> None:
        self._submit("log_sample_table", *args, **kwargs)

    def log_chart(self, name: str, chart_path: Any, step: int | None = None) -> None:
        self._submit("log_chart", name, chart_path, step=step)

    def alert(self, title: str, text: str, level: str = "WARN", **kwargs: Any) -> bool:
        self._submit("alert", title, text, level, **kwargs)
        return self.enabled

    def log_checkpoint(self, path: Any, **kwargs: Any) -> bool:
        self._submit("log_checkpoint", path, **kwargs)
        return self.enabled

    def finish(self, exit_code: int | None = None, timeout: float | None = None) -> bool:
        """Finish the run after the queued calls; wait at most ``timeout`` seconds.

        Returns whether WandB finished in time. Later calls are no-ops.
        """
        timeout = self.finish_timeout if timeout is None else timeout
        with self._cond:
            if self._finishing or self._state in ("failed", "finished"):
                return self._state != "starting"
            self._calls.append(("finish", (), {"exit_code": exit_code}))
            self._finishing = True
            self._cond.notify()
            done = self._cond.wait_for(lambda: self._state in ("failed", "finished"), timeout)
        if not done:
            where = self.sync_dir
            logger.warning(
                "WandB did not finish within %.0f s; the process goes on without it%s",
                timeout, f" (upload later with: wandb sync {where})" if where else "",
            )
            self._on_error("wandb")
            stop_service_at_exit()
        return done

    # -- the WandB thread -------------------------------------------------------
    def _run(self) -> None:
        try:
            started = self._start()
        except Exception as exc:  # the factory must not kill the thread silently
            logger.warning("WandB could not start: %r; training goes on without it", exc)
            self._on_error("wandb")
            started = None
        with self._cond:
            if started is None or not started.enabled:
                self._state = "failed"
                self._calls.clear()
                self._cond.notify_all()
                return
            self._logger = started
            self._state = "running"
            self._cond.notify_all()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._calls))
                name, args, kwargs = self._calls.popleft()
            try:
                getattr(started, name)(*args, **kwargs)
            except Exception as exc:  # EnhancedWandBLogger guards; this is the last net
                logger.debug("WandB call %s failed: %r", name, exc)
                self._on_error("wandb")
            if name == "finish":
                with self._cond:
                    self._state = "finished"
                    self._calls.clear()
                    self._cond.notify_all()
                return


def start_background_wandb(
    config: MonitorConfig,
    run_id: str,
    output_dir: str | Path,
    on_error: Callable[[str], None],
) -> BackgroundWandB | None:
    """The monitor's WandB: a run named after ``run_id``, started on its own thread.

    ``None`` when ``monitoring.use_wandb`` is off or ``wandb_mode`` is
    ``disabled``. The run's config holds the run id and the whole monitor
    configuration; its files go under ``output_dir``. ``wandb.init`` waits
    for the server, so it runs on WandB's own thread, and so does every later
    call: neither the caller nor the background worker waits for WandB.
    ``on_error`` is called with ``"wandb"`` for each failure.
    """
    monitoring = config.monitoring
    if not monitoring.use_wandb or monitoring.wandb_mode == "disabled":
        return None

    def start() -> EnhancedWandBLogger:
        return EnhancedWandBLogger.from_config(
            monitoring,
            name=monitoring.wandb_run_name or run_id,
            config={"run_id": run_id, **config.model_dump(mode="json")},
            dir=str(output_dir),
            on_error=lambda kind: on_error("wandb"),
        )

    return BackgroundWandB(
        start,
        finish_timeout=monitoring.wandb_finish_timeout,
        on_error=lambda kind: on_error("wandb"),
    )
