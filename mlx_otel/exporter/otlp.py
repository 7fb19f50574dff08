"""OTLP export of the same instruments towards an OpenTelemetry Collector.

Turned on by ``exporter.otlp_endpoint`` or, as in every OpenTelemetry
program, by ``OTEL_METRICS_EXPORTER=otlp``; the endpoint, protocol, headers
and interval come from the config or else from the standard variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_PROTOCOL``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_METRIC_EXPORT_INTERVAL``, and their
``_METRICS_`` forms). The resource carries ``service.name``, ``run_id`` and
``rank``. Temporality is cumulative, as Prometheus remote write expects.

Traces (:mod:`mlx_otel.exporter.tracing`) follow the same variables:
``OTEL_TRACES_EXPORTER=otlp`` turns them on, ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``
or ``OTEL_EXPORTER_OTLP_PROTOCOL`` picks the protocol, and the SDK's span
exporter reads the endpoint, headers and timeout from the ``_TRACES_`` or
general forms itself (:func:`traces_settings`).

Exports run on the SDK's own thread, never on the training thread. A
collector that is down costs nothing but a failed export: the SDK's exporter
retries with backoff within its timeout, then the failure is counted in
``mlx_otel_errors_total{kind="otlp"}`` and the next interval tries again.

    reader = otlp_reader(config.exporter, telemetry, on_failure=print)
    if reader is not None:
        telemetry.add_reader(reader)     # before telemetry.start()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from mlx_otel.errors import ConfigError
from mlx_otel.exporter.telemetry import Telemetry

__all__ = ["OtlpSettings", "otlp_reader", "otlp_settings", "traces_settings"]

PROTOCOLS = ("http/protobuf", "grpc")


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how to export; ``None`` fields are left to the SDK's environment."""

    protocol: str
    endpoint: str | None
    headers: Mapping[str, str] | None
    interval_seconds: float | None


def _protocol(env: Mapping[str, str], signal: str) -> str:
    """The OTLP protocol of ``signal`` (METRICS, TRACES) from the standard variables."""
    name = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    if name not in env:
        name = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = env.get(name, "http/protobuf").strip()
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"{name}={protocol!r} is not supported: use one of {', '.join(PROTOCOLS)}"
            + (" (or set exporter.otlp_protocol)" if signal == "METRICS" else "")
        )
    return protocol


def traces_settings(environ: Mapping[str, str] | None = None) -> OtlpSettings | None:
    """Trace export settings, or ``None`` unless ``OTEL_TRACES_EXPORTER`` names ``otlp``.

    The endpoint and headers are left to the SDK's span exporter, which reads
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (adding ``/v1/traces`` over HTTP) and their ``_HEADERS`` forms.
    Raises :class:`ConfigError` naming the variable for an unknown protocol.
    """
    env = os.environ if environ is None else environ
    wanted = [p.strip() for p in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    if "otlp" not in wanted:
        return None
    return OtlpSettings(
        protocol=_protocol(env, "TRACES"), endpoint=None, headers=None, interval_seconds=None
    )


def otlp_settings(exporter: Any, environ: Mapping[str, str] | None = None) -> OtlpSettings | None:
    """The OTLP settings of an ``exporter`` config section, or ``None`` when off.

    Raises :class:`ConfigError` naming the variable for an unknown protocol.
    """
    env = os.environ if environ is None else environ
    wanted = [p.strip() for p in env.get("OTEL_METRICS_EXPORTER", "").split(",")]
    if exporter.otlp_endpoint is None and "otlp" not in wanted:
        return None
    protocol = exporter.otlp_protocol
    if protocol is None:
        protocol = _protocol(env, "METRICS")
    endpoint = exporter.otlp_endpoint
    if endpoint is not None and protocol == "http/protobuf" and urlparse(endpoint).path in ("", "/"):
        # As OTEL_EXPORTER_OTLP_ENDPOINT: a base URL gets the signal's path.
        endpoint = endpoint.rstrip("/") + "/v1/metrics"
    return OtlpSettings(
        protocol=protocol,
        endpoint=endpoint,
        headers=exporter.otlp_headers,
        interval_seconds=exporter.otlp_interval_seconds,
    )


class _CountingExporter(MetricExporter):
    """Delegates to the SDK's OTLP exporter and reports exports that failed."""

    def __init__(self, inner: MetricExporter, on_failure: Callable[[str], None]) -> None:
        # The reader asks this exporter for temporality: cumulative for every
        # instrument (what Prometheus remote write and most backends expect).
        super().__init__()
        self._inner = inner
        self._on_failure = on_failure

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:  # an exporter bug must not end the export thread
            self._on_failure(f"OTLP export raised {exc!r}")
            return MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self._on_failure("the OTLP collector did not accept an export (after the SDK's retries)")
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class _HookedReader(PeriodicExportingMetricReader):
    """A periodic reader whose collections fold buffered samples first.

    The collection (not the network export) runs under the telemetry's
    collection lock, like a scrape, so histograms are folded and observable
    callbacks feed the SDK; a slow collector never holds up a scrape.
    """

    def __init__(self, exporter: MetricExporter, telemetry: Telemetry, **kwargs: Any) -> None:
        self._telemetry = telemetry
        super().__init__(exporter, cardinality_limits=telemetry.cardinality_limits, **kwargs)

    # The SDK marks collect() final; this reader must wrap the collection
    # itself (not the export) in the telemetry's lock, which no public hook allows.
    def collect(self, timeout_millis: float = 10_000) -> None:  # type: ignore[misc]
        if self._collect is None:  # not registered on a provider yet
            return
        with self._telemetry.sdk_collection():
            metrics = self._collect(self, timeout_millis=timeout_millis)  # type: ignore[call-arg]
            histograms = [h.otlp_metric() for h in self._telemetry.bulk_histograms]
        # A labelled histogram with no label value yet has no point to send.
        histograms = [h for h in histograms if h.data.data_points]
        metrics = _with_histograms(metrics, histograms, self._telemetry.resource)
        if metrics is not None:
            self._receive_metrics(metrics, timeout_millis=timeout_millis)  # type: ignore[arg-type]


def _with_histograms(metrics: Any, histograms: list[Any], resource: Any) -> Any:
    """``metrics`` with the bulk histograms added to the first scope (they bypass the SDK)."""
    if not histograms:
        return metrics
    scope = InstrumentationScope("mlx_otel")
    if metrics is None or not metrics.resource_metrics:
        return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, histograms, "")], "")])
    first, *rest = metrics.resource_metrics
    if first.scope_metrics:
        head, *tail = first.scope_metrics
        scopes = [ScopeMetrics(head.scope, [*head.metrics, *histograms], head.schema_url), *tail]
    else:
        scopes = [ScopeMetrics(scope, histograms, "")]
    return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


def _sdk_exporter(settings: OtlpSettings) -> MetricExporter:
    headers = dict(settings.headers) if settings.headers is not None else None
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
    return OTLPMetricExporter(endpoint=settings.endpoint, headers=headers)


def otlp_reader(
    exporter: Any,
    telemetry: Telemetry,
    *,
    on_failure: Callable[[str], None],
    environ: Mapping[str, str] | None = None,
) -> PeriodicExportingMetricReader | None:
    """A periodic OTLP reader for ``telemetry``, or ``None`` when OTLP is off.

    Raises :class:`ConfigError` when OTLP is asked for but its package is
    missing (``pip install 'mlx-otel[otlp]'``) or a setting is invalid.
    """
    settings = otlp_settings(exporter, environ)
    if settings is None:
        return None
    try:
        inner = _sdk_exporter(settings)
    except ImportError as exc:
        raise ConfigError(
            f"OTLP export ({settings.protocol}) needs {exc.name}: pip install 'mlx-otel[otlp]'"
        ) from None
    interval = None if settings.interval_seconds is None else settings.interval_seconds * 1000
    return _HookedReader(
        _CountingExporter(inner, on_failure), telemetry, export_interval_millis=interval
    )
