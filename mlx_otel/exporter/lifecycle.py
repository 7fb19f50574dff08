"""How a run tells Prometheus that it ended on purpose.

When a training process goes away, Prometheus only sees its target stop
answering, which looks the same for a finished run and a crashed one. So a
run that ends cleanly (``cleanup()``, the end of a ``with`` block, the end
of training) says so first:

* ``mlx_otel_run_finished`` turns from 0 to 1, and the endpoint keeps serving
  until Prometheus has scraped that once (at most
  ``exporter.finish_grace_seconds``; not at all when nothing scrapes it);
* its file_sd target file (``exporter.file_sd_dir``) is removed, so
  Prometheus drops the target instead of marking it down.

The shipped ``MLXExporterDown`` stays silent for a target whose last word
was "finished"; a killed or hung process never says it and still fires.

    lifecycle = RunLifecycle(telemetry, file_sd_dir=Path("targets"))
    telemetry.serve(); lifecycle.started()
    ...
    lifecycle.close(time.monotonic() + 30)   # finished = 1, last scrape, target
                                             # file removed, endpoint stopped

It is the last thing the end of a run closes (``ends_serving``): a run that
lingers for Prometheus closes it after the linger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from mlx_otel.catalog import by_key
from mlx_otel.exporter.file_sd import TargetFile
from mlx_otel.exporter.telemetry import Telemetry

__all__ = ["RunLifecycle"]

log = logging.getLogger(__name__)


class RunLifecycle:
    """The finished gauge, the file_sd registration and the final scrape of a run."""

    name = "the endpoint"
    error_kind = "export"
    ends_serving = True

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        file_sd_dir: Path | None = None,
        grace_seconds: float = 30.0,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self._telemetry = telemetry
        self._file_sd_dir = file_sd_dir
        self._grace = grace_seconds
        self._on_error = on_error
        self._finished_at: float | None = None
        self._target: TargetFile | None = None
        telemetry.observe(
            by_key("run_finished"), lambda: ((0.0 if self._finished_at is None else 1.0, {}),)
        )

    @property
    def finished(self) -> bool:
        return self._finished_at is not None

    def started(self) -> None:
        """Register the serving endpoint in ``file_sd_dir`` (if set)."""
        t = self._telemetry
        if self._file_sd_dir is None or t.endpoint is None:
            return
        target = TargetFile(self._file_sd_dir, run_id=t.run_id, rank=t.rank, host=t.host, port=t.port)
        try:
            target.write()
        except OSError as exc:
            self._error(f"registering the target in {self._file_sd_dir}", exc)
            return
        self._target = target
        log.info("mlx_otel: registered %s in %s", target.address, target.path)

    def mark_finished(self) -> None:
        """Serve ``mlx_otel_run_finished 1`` from now on (training is over)."""
        if self._finished_at is None:
            self._finished_at = time.monotonic()

    def close(self, deadline: float | None = None) -> None:
        """Mark the run finished, let Prometheus scrape that once, deregister, stop serving.

        Waits for the scrape at most ``exporter.finish_grace_seconds`` and
        never past ``deadline`` (a :func:`time.monotonic` value).
        """
        self.mark_finished()
        t = self._telemetry
        interval = t.scrape_interval()
        left = float("inf") if deadline is None else deadline - time.monotonic()
        if t.endpoint is not None and interval is not None and self._grace > 0 and left > 0:
            # Something scrapes this endpoint regularly: wait for its next scrape.
            assert self._finished_at is not None
            timeout = min(self._grace, 2 * interval + 1.0, left)
            if not t.wait_for_scrape(self._finished_at, timeout):
                log.info("mlx_otel: no scrape within %.0f s after the end of the run", timeout)
        if self._target is not None:
            try:
                self._target.remove()
            except OSError as exc:
                self._error(f"removing the target file {self._target.path}", exc)
            self._target = None
        t.shutdown()

    def _error(self, what: str, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(what, exc)
        else:
            log.warning("mlx_otel: %s failed: %r", what, exc)
