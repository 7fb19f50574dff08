"""The last values of a run, pushed to a Pushgateway when the run ends.

A short job may end between two scrapes; with ``exporter.pushgateway_url``
set, its final values are pushed once at the end (grouped by run_id and
rank), bounded by the run's deadline so a gateway that does not answer
never holds the end up.

    push = FinalPush(telemetry, "http://pushgateway:9091")
    push.close(time.monotonic() + 5)
"""

from __future__ import annotations

import logging
import time

from mlx_otel.exporter.telemetry import Telemetry

__all__ = ["FinalPush"]

log = logging.getLogger("mlx_otel")

#: The longest a push may take.
_PUSH_TIMEOUT_S = 5.0


class FinalPush:
    """Pushes the run's values once, at its end."""

    name = "the Pushgateway push"
    error_kind = "export"

    def __init__(self, telemetry: Telemetry, url: str) -> None:
        self._telemetry = telemetry
        self.url = url

    def close(self, deadline: float) -> None:
        timeout = max(0.5, min(_PUSH_TIMEOUT_S, deadline - time.monotonic()))
        self._telemetry.push(self.url, timeout=timeout)
        log.info("mlx_otel: pushed the final values of run %s to %s", self._telemetry.run_id,
                 self.url)  # fmt: skip
