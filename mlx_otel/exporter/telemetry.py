"""OpenTelemetry instruments served on a Prometheus scrape endpoint.

One :class:`Telemetry` owns one ``MeterProvider`` with a
``PrometheusMetricReader`` on a private registry, and an HTTP endpoint that
serves it. Instruments are created from the catalogue, so their Prometheus
names are the catalogue's.

Two things the OpenTelemetry SDK does not do are added here:

* Non-finite gauge values. The SDK drops NaN and inf from every instrument,
  but a NaN loss is the signal a run most needs to send. Gauge readers
  yield them anyway; they are kept aside during a collection and written
  into the exposition as they are.
* Work before a collection. Hooks run at the start of every scrape, so
  samples buffered by the training thread are folded into histograms before
  the histograms are read, and a scrape always shows every sample logged
  before it.

    telemetry = Telemetry(run_id="run_001", port=0)
    telemetry.observe(by_key("loss"), lambda: [(0.5, {})])
    print(telemetry.serve())       # http://127.0.0.1:<port>/metrics
"""

from __future__ import annotations

import errno
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Histogram, MeterProvider, ObservableCounter, ObservableGauge
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app, push_to_gateway
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mlx_otel.catalog import RESOURCE_LABELS, Kind, Metric
from mlx_otel.errors import PortInUseError
from mlx_otel.exporter.endpoint import make_endpoint_server

__all__ = ["Reading", "Telemetry"]

log = logging.getLogger(__name__)

#: What a reader returns: (value, attributes) pairs, one per series.
Reading = Iterable[tuple[float, Mapping[str, str]]]

#: The instrument types mlx_otel creates (each gets the deliberate cardinality limit).
_INSTRUMENT_TYPES = (Histogram, ObservableCounter, ObservableGauge)


class _ServingCollector(Collector):
    """Serves the OpenTelemetry registry, with pre-collection hooks and NaN gauges."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterator[Any]:
        return self._telemetry.collect_families()


class Telemetry:
    """A MeterProvider, its instruments and the endpoint that serves them.

    ``run_id`` and ``rank`` become resource attributes, which the exporter
    turns into labels on every series. ``cardinality_limit`` is set on every
    instrument deliberately (the SDK's silent default folds series beyond
    2,000 into an overflow series); callers cap their label values below it.
    """

    def __init__(
        self,
        *,
        run_id: str,
        rank: int | None = None,
        host: str = "127.0.0.1",
        port: int = 9464,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        basic_auth: tuple[str, str] | None = None,
        cardinality_limit: int = 2000,
        service_name: str = "mlx_otel",
    ) -> None:
        attributes: dict[str, str] = {"service.name": service_name, "run_id": run_id}
        if rank is not None:
            attributes["rank"] = str(rank)
        self.run_id = run_id
        self.rank = rank
        self.host = host
        self.port = port
        self.certfile = certfile
        self.keyfile = keyfile
        self.basic_auth = basic_auth
        self._resource_labels = {k: v for k, v in attributes.items() if k in RESOURCE_LABELS}
        self._otel_registry = CollectorRegistry(auto_describe=False)
        self._reader = PrometheusMetricReader(
            disable_target_info=True,
            scope_info_enabled=False,
            resource_attribute_filter=lambda key: key in RESOURCE_LABELS,
            registry=self._otel_registry,
            cardinality_limits={kind: cardinality_limit for kind in _INSTRUMENT_TYPES},
        )
        self._views: list[View] = []
        self._metrics: dict[str, Metric] = {}
        self._histogram_metrics: list[Metric] = []
        self._provider: MeterProvider | None = None
        self._collect_lock = threading.Lock()
        self._before_collect: list[Callable[[], None]] = []
        self._non_finite: dict[str, list[tuple[dict[str, str], float]]] = {}
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ServingCollector(self))
        self._pending: list[tuple[Metric, Callable[[], Reading] | None]] = []
        self._instruments: dict[str, Any] = {}
        self._attributes = attributes

    # -- building ---------------------------------------------------------
    def observe(self, metric: Metric, read: Callable[[], Reading]) -> None:
        """Serve ``metric`` from ``read``, called at every collection (gauges, counters)."""
        if metric.kind is Kind.HISTOGRAM:
            raise ValueError(f"{metric.prometheus_name} is a histogram; use add_histogram()")
        self._register(metric)
        self._pending.append((metric, read))

    def add_histogram(self, metric: Metric) -> None:
        """Serve ``metric`` as a histogram with the catalogue's buckets (see :meth:`record`)."""
        if metric.kind is not Kind.HISTOGRAM:
            raise ValueError(f"{metric.prometheus_name} is a {metric.kind.value}, not a histogram")
        self._register(metric)
        if metric.buckets is not None:
            self._views.append(
                View(
                    instrument_name=metric.otel_name,
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=metric.buckets),
                )
            )
        self._pending.append((metric, None))

    def histogram(self, metric: Metric) -> Any:
        """The histogram instrument of ``metric``, once :meth:`start` has run."""
        self._start_provider()
        return self._instruments[metric.otel_name]

    def before_collect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` at the start of every collection (it must be quick and safe)."""
        self._before_collect.append(hook)

    def _register(self, metric: Metric) -> None:
        if self._provider is not None:
            raise RuntimeError("instruments must be added before the telemetry is started")
        if metric.prometheus_name in self._metrics:
            raise ValueError(f"{metric.prometheus_name} is already registered")
        self._metrics[metric.prometheus_name] = metric

    def _start_provider(self) -> None:
        if self._provider is not None:
            return
        self._provider = MeterProvider(
            metric_readers=[self._reader],
            resource=Resource.create(self._attributes),
            views=self._views,
        )
        meter = self._provider.get_meter("mlx_otel")
        for metric, read in self._pending:
            if metric.kind is Kind.HISTOGRAM:
                self._instruments[metric.otel_name] = meter.create_histogram(
                    metric.otel_name, unit=metric.unit, description=metric.description
                )
            else:
                assert read is not None
                create = (
                    meter.create_observable_counter
                    if metric.kind is Kind.COUNTER
                    else meter.create_observable_gauge
                )
                create(
                    metric.otel_name,
                    callbacks=[self._callback(metric, read)],
                    unit=metric.unit,
                    description=metric.description,
                )
        self._pending = []

    def _callback(
        self, metric: Metric, read: Callable[[], Reading]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        name = metric.prometheus_name
        resource_labels = self._resource_labels

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            observations = []
            for value, attributes in read():
                try:
                    finite = math.isfinite(value)
                except (TypeError, OverflowError):
                    # Not a float (a huge int): skip the series, keep the family.
                    log.debug("mlx_otel: %s: unreadable value %r skipped", name, value)
                    continue
                if finite:
                    observations.append(Observation(value, attributes))
                else:
                    # The SDK would drop it; keep it for the exposition.
                    labels = {**attributes, **resource_labels}
                    self._non_finite.setdefault(name, []).append((labels, float(value)))
            return observations

        return callback

    # -- collecting -------------------------------------------------------
    def collect_families(self) -> Iterator[Any]:
        """One collection: run the hooks, read the SDK, add the non-finite gauge values."""
        with self._collect_lock:
            for hook in list(self._before_collect):
                try:
                    hook()
                except Exception:  # a hook must not break the scrape
                    log.exception("mlx_otel: pre-collection hook failed")
            self._non_finite = {}
            families = list(self._otel_registry.collect())
            pending = self._non_finite
            self._non_finite = {}
        for family in families:
            for labels, value in pending.pop(family.name, ()):
                family.add_sample(family.name, labels, value)
            yield family
        # Gauges whose only series is non-finite are absent from the SDK's output.
        for name, samples in pending.items():
            metric = self._metrics[name]
            family = GaugeMetricFamily(name, metric.description)
            for labels, value in samples:
                family.add_sample(name, labels, value)
            yield family

    # -- serving ----------------------------------------------------------
    def start(self) -> None:
        """Create the instruments (no endpoint); :meth:`serve` does both."""
        self._start_provider()

    def serve(self) -> str:
        """Start serving ``/metrics``; return the scrape URL.

        Raises :class:`PortInUseError` naming the port and how to change it.
        """
        self._start_provider()
        if self._server is not None:
            return self.endpoint or ""
        try:
            self._server = make_endpoint_server(
                self.host,
                self.port,
                make_wsgi_app(self.registry),
                certfile=self.certfile,
                keyfile=self.keyfile,
                basic_auth=self.basic_auth,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"port {self.port} on {self.host} is already in use, so metrics cannot be "
                    "served there. Choose another port with exporter.port in the config file, "
                    "--port on the command line or MLX_OTEL_EXPORTER__PORT in the environment "
                    "(0 picks a free port)."
                ) from None
            raise
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, name="mlx-otel-metrics", daemon=True
        )
        self._server_thread.start()
        self.port = int(self._server.server_address[1])
        return self.endpoint or ""

    @property
    def endpoint(self) -> str | None:
        """The scrape URL, or ``None`` when not serving."""
        if self._server is None:
            return None
        scheme = "https" if self.certfile else "http"
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}/metrics"

    def exposition(self) -> str:
        """The text a scrape would return now (also folds buffered samples)."""
        self._start_provider()
        return generate_latest(self.registry).decode()

    def push(self, url: str, *, job: str = "mlx_otel", timeout: float = 5.0) -> None:
        """Push the current values to a Pushgateway, grouped by run_id (and rank).

        A gateway that does not answer within ``timeout`` seconds fails the
        push (the end of a run must not hang on it).
        """
        self._start_provider()
        push_to_gateway(
            url, job=job, registry=self.registry, grouping_key=self._resource_labels,
            timeout=timeout,
        )  # fmt: skip

    def shutdown(self) -> None:
        """Stop the endpoint and the provider; safe to call twice."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._provider is not None:
            try:
                self._provider.shutdown()
            except Exception:  # shutting down must not raise at the end of a run
                log.debug("mlx_otel: meter provider shutdown failed", exc_info=True)
            self._provider = None
