"""OpenTelemetry instruments served on a Prometheus scrape endpoint.

One :class:`Telemetry` owns one ``MeterProvider`` with a
``PrometheusMetricReader`` on a private registry, and an HTTP endpoint that
serves it. Instruments are created from the catalogue, so their Prometheus
names are the catalogue's.

Observable series (gauges and counters read from stored values) are served
to Prometheus straight from their readers by a prometheus-client collector:
with 10,000 layer series the SDK's per-collection aggregation cost several
times what formatting the same series costs. The SDK still aggregates them
for OTLP readers (:meth:`Telemetry.add_reader`), and aggregates the
histograms, which it serves on both paths. Two more things are done here:

* Non-finite gauge values. The SDK drops NaN and inf from every instrument,
  but a NaN loss is the signal a run most needs to send. The endpoint serves
  them as they are; OTLP, going through the SDK, carries finite values only.
* Work before a collection. Hooks run at the start of every collection
  (scrape or OTLP export), so samples buffered by the training thread are
  folded into histograms before the histograms are read, and a scrape always
  shows every sample logged before it.

    telemetry = Telemetry(run_id="run_001", port=0)
    telemetry.observe(by_key("loss"), lambda: [(0.5, {})])
    print(telemetry.serve())       # http://127.0.0.1:<port>/metrics
"""

from __future__ import annotations

import errno
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter, ObservableGauge
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app, push_to_gateway
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from mlx_otel.catalog import RESOURCE_LABELS, Kind, Metric
from mlx_otel.errors import PortInUseError
from mlx_otel.exporter.endpoint import make_endpoint_server
from mlx_otel.exporter.histograms import BulkHistogram, HistogramCollector
from mlx_otel.records import to_number

__all__ = ["Reading", "Telemetry"]

log = logging.getLogger(__name__)

#: What a reader returns: (value, attributes) pairs, one per series.
Reading = Iterable[tuple[float, Mapping[str, str]]]

#: The SDK instrument types mlx_otel creates (each gets the deliberate cardinality
#: limit). Histograms are :class:`BulkHistogram`, outside the SDK.
_INSTRUMENT_TYPES = (ObservableCounter, ObservableGauge)


class _ServingCollector(Collector):
    """Serves observable series straight from their readers (no SDK collection on a scrape)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterator[Any]:
        return self._telemetry.collect_families()


def _family(metric: Metric, read: Callable[[], Reading], resource: Mapping[str, str]) -> Any:
    """One metric family built from a reader, as the OpenTelemetry exporter would name it."""
    name = metric.prometheus_name
    if metric.kind is Kind.COUNTER:
        family: Any = CounterMetricFamily(name, metric.description)
        sample_name = family.name + "_total"
    else:
        family = GaugeMetricFamily(name, metric.description)
        sample_name = name
    samples = family.samples
    try:
        readings = read()
        for value, attributes in readings:
            number = to_number(value)
            if number is None:
                # Not a float (a huge int): skip the series, keep the family.
                log.debug("mlx_otel: %s: unreadable value %r skipped", name, value)
                continue
            samples.append(Sample(sample_name, {**attributes, **resource}, number, None, None))
    except Exception:  # one failing reader must not break the scrape
        log.exception("mlx_otel: reading %s failed", name)
    return family


def _finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (False for NaN, inf and what is no number)."""
    number = to_number(value)
    return number is not None and math.isfinite(number)


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
        self.cardinality_limits: dict[Any, int] = {
            kind: cardinality_limit for kind in _INSTRUMENT_TYPES
        }
        self._reader = PrometheusMetricReader(
            disable_target_info=True,
            scope_info_enabled=False,
            resource_attribute_filter=lambda key: key in RESOURCE_LABELS,
            registry=self._otel_registry,
            cardinality_limits=self.cardinality_limits,
        )
        self._metrics: dict[str, Metric] = {}
        self._observed: list[tuple[Metric, Callable[[], Reading]]] = []
        self._extra_readers: list[MetricReader] = []
        # Observable callbacks feed the SDK only while an extra (OTLP) reader
        # collects; the endpoint reads the same values directly.
        self._sdk_reads = False
        self._provider: MeterProvider | None = None
        self._collect_lock = threading.Lock()
        self._before_collect: list[Callable[[], None]] = []
        self._scrapes = 0
        self._scrape_times: deque[float] = deque(maxlen=2)  # when the last two began
        self._scraped = threading.Condition()
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ServingCollector(self))
        self._pending: list[tuple[Metric, Callable[[], Reading]]] = []
        #: Histograms folded in bulk (see mlx_otel.exporter.histograms): served
        #: by their own collector and added to every OTLP export.
        self.bulk_histograms: list[BulkHistogram] = []
        self._attributes = attributes

    # -- building ---------------------------------------------------------
    def observe(self, metric: Metric, read: Callable[[], Reading]) -> None:
        """Serve ``metric`` from ``read``, called at every collection (gauges, counters)."""
        if metric.kind is Kind.HISTOGRAM:
            raise ValueError(f"{metric.prometheus_name} is a histogram; use add_histogram()")
        self._register(metric)
        self._observed.append((metric, read))
        self._pending.append((metric, read))

    @property
    def resource(self) -> Resource:
        """The OpenTelemetry resource (service.name, run_id, rank) of every export."""
        return Resource.create(self._attributes)

    def serve_histograms(self, histograms: Sequence[BulkHistogram]) -> None:
        """Serve bulk histograms on the endpoint and hand them to OTLP readers too."""
        for histogram in histograms:
            self._register(histogram.metric)
        self.bulk_histograms.extend(histograms)
        self.registry.register(HistogramCollector(histograms, self._resource_labels))

    def before_collect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` at the start of every collection (it must be quick and safe)."""
        self._before_collect.append(hook)

    def add_reader(self, reader: MetricReader) -> None:
        """Add an OpenTelemetry reader (OTLP) to the provider, before :meth:`start`.

        Its collections run the pre-collection hooks under the same lock as
        scrapes when they go through :meth:`sdk_collection`.
        """
        if self._provider is not None:
            raise RuntimeError("readers must be added before the telemetry is started")
        self._extra_readers.append(reader)

    @contextmanager
    def sdk_collection(self) -> Iterator[None]:
        """Hold the collection lock, run the hooks and let observables feed the SDK."""
        with self._collect_lock:
            self._run_hooks()
            self._sdk_reads = True
            try:
                yield
            finally:
                self._sdk_reads = False

    def _run_hooks(self) -> None:
        for hook in list(self._before_collect):
            try:
                hook()
            except Exception:  # a hook must not break the collection
                log.exception("mlx_otel: pre-collection hook failed")

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
            metric_readers=[self._reader, *self._extra_readers],
            resource=self.resource,
        )
        meter = self._provider.get_meter("mlx_otel")
        for metric, read in self._pending:
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
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            if not self._sdk_reads:  # the endpoint serves these itself
                return ()
            # The SDK would drop non-finite values with a warning each time; a
            # value that is no float at all (a huge int) is skipped, not raised.
            return [Observation(v, a) for v, a in read() if _finite(v)]

        return callback

    # -- collecting -------------------------------------------------------
    def collect_families(self) -> Iterator[Any]:
        """One collection: run the hooks, build the observable families, read the histograms."""
        with self._collect_lock:
            self._run_hooks()
            families = [_family(metric, read, self._resource_labels) for metric, read in self._observed]
            # A metric with nothing to report is absent, as from the SDK's exporter.
            families = [family for family in families if family.samples]
            families.extend(self._otel_registry.collect())
        yield from families

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
                self._counting(make_wsgi_app(self.registry)),
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
        # A short poll: shutdown() waits for the serving loop to look up, and the
        # end of a run should not wait half a second (the default) for it.
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="mlx-otel-metrics", daemon=True,
        )  # fmt: skip
        self._server_thread.start()
        self.port = int(self._server.server_address[1])
        return self.endpoint or ""

    def _counting(self, app: Any) -> Any:
        """Wrap the WSGI app so scrapes of /metrics are counted and timed."""

        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            began = time.monotonic()
            body = app(environ, start_response)
            return _Counted(body, lambda: self._count_scrape(began))

        return counted

    def _count_scrape(self, began: float) -> None:
        with self._scraped:
            self._scrapes += 1
            self._scrape_times.append(began)
            self._scraped.notify_all()

    @property
    def scrapes(self) -> int:
        """How many times the endpoint was scraped."""
        return self._scrapes

    def scrape_interval(self) -> float | None:
        """Seconds between the last two scrapes, or ``None`` before the second."""
        times = list(self._scrape_times)
        return times[1] - times[0] if len(times) == 2 else None

    def wait_for_scrape(self, since: float, timeout: float) -> bool:
        """Wait until a scrape that began at or after ``since`` (monotonic) was served."""

        def served() -> bool:
            return bool(self._scrape_times) and self._scrape_times[-1] >= since

        with self._scraped:
            return self._scraped.wait_for(served, timeout)

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
                # Bounded: an unreachable OTLP collector must not hold up the end.
                self._provider.shutdown(timeout_millis=5_000)
            except Exception:  # shutting down must not raise at the end of a run
                log.debug("mlx_otel: meter provider shutdown failed", exc_info=True)
            self._provider = None


class _Counted:
    """A WSGI response that reports itself once the server has sent it (on close)."""

    def __init__(self, body: Iterable[bytes], on_sent: Callable[[], None]) -> None:
        self._body = body
        self._on_sent = on_sent

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        self._on_sent()
