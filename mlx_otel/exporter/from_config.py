"""A :class:`~mlx_otel.exporter.telemetry.Telemetry` as the ``exporter:`` section says.

The section's keys map onto the endpoint one by one, with two rules of the
house: each rank of a host serves on ``port + local rank`` (one endpoint per
rank, found by file_sd), and every instrument's cardinality limit sits above
the largest series cap, so the caps (layers, custom metrics, memory blocks)
fold series, not the SDK's silent overflow. OTLP export is added when the
standard ``OTEL_*`` variables or the section ask for it.

    telemetry = telemetry_from_config(config.exporter, run_id="run_001", rank=None,
                                      local_rank=None, on_otlp_failure=print)
"""

from __future__ import annotations

from collections.abc import Callable

from mlx_otel.config import ExporterConfig
from mlx_otel.exporter.otlp import otlp_reader
from mlx_otel.exporter.telemetry import Telemetry

__all__ = ["telemetry_from_config"]

#: Series an instrument holds beyond the largest cap (its own labels, a margin).
_CARDINALITY_MARGIN = 8


def telemetry_from_config(
    exporter: ExporterConfig,
    *,
    run_id: str,
    rank: int | None,
    local_rank: int | None,
    on_otlp_failure: Callable[[str], None],
) -> Telemetry:
    """The run's telemetry, not started and not serving yet."""
    port = exporter.port
    if port and local_rank is not None:
        port += local_rank
    caps = (exporter.max_layer_series, exporter.max_custom_metrics, exporter.max_memory_blocks)
    password = exporter.basic_auth_password
    telemetry = Telemetry(
        run_id=run_id,
        rank=rank,
        host=exporter.host,
        port=port,
        certfile=exporter.certfile,
        keyfile=exporter.keyfile,
        basic_auth=(
            (exporter.basic_auth_username, password.get_secret_value())
            if exporter.basic_auth_username and password
            else None
        ),
        cardinality_limit=max(*caps, 64) + _CARDINALITY_MARGIN,
    )
    otlp = otlp_reader(exporter, telemetry, on_failure=on_otlp_failure)
    if otlp is not None:
        telemetry.add_reader(otlp)
    return telemetry
