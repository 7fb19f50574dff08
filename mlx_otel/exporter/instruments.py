"""Every instrument of the catalogue, built from the catalogue alone.

Each :class:`~mlx_otel.catalog.Metric` names the part that holds its value
(``source``) and the value's name there (``read_from``, times ``scale``).
:func:`build_instruments` serves one observable instrument per gauge and
counter from those parts (a :class:`Store` each) and one bulk histogram per
histogram, so adding a metric is one catalogue entry plus the code that
produces its value; nothing here names a metric.

    stores = {Source.STEP: recorder, Source.TRAINER: recorder, Source.GRADIENTS: recorder,
              Source.MEMORY: memory_readings, Source.EXPORTER: LedgerStore(ledger)}
    histograms = build_instruments(telemetry, stores)   # {"reward": BulkHistogram, ...}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from mlx_otel.catalog import METRICS, Kind, Metric, Source
from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.histograms import BulkHistogram, LabelledBulkHistogram
from mlx_otel.exporter.telemetry import Reading, Telemetry

__all__ = ["LedgerStore", "Store", "build_instruments", "observed_metrics", "reader"]


class Store(Protocol):
    """A part that holds values the instruments read, by ``read_from`` name."""

    def value(self, key: str) -> float | None:
        """The value under ``key``, or None when there is none (yet)."""
        ...

    def series(self, key: str) -> Mapping[str, float]:
        """The labelled values under ``key``: label value -> number."""
        ...


class LedgerStore:
    """The error ledger's counts as a store: errors by kind, dropped work by task."""

    def __init__(self, ledger: ErrorLedger) -> None:
        self._ledger = ledger

    def value(self, key: str) -> float | None:
        return None

    def series(self, key: str) -> Mapping[str, float]:
        if key == "errors":
            return self._ledger.counts()
        if key == "dropped_tasks":
            return self._ledger.dropped()
        raise KeyError(f"the error ledger holds no {key!r}")


def observed_metrics() -> tuple[Metric, ...]:
    """The catalogue's gauges and counters read from a store (``read_from`` set)."""
    return tuple(m for m in METRICS if m.kind is not Kind.HISTOGRAM and m.read_from is not None)


def reader(metric: Metric, store: Store) -> Callable[[], Reading]:
    """What a collection calls to read ``metric`` from ``store``."""
    key, scale = metric.read_from, metric.scale
    if key is None:
        raise ValueError(f"{metric.prometheus_name} is not read from a store")
    if metric.labels:
        label = metric.labels[0]
        if scale == 1.0:
            return lambda: [(v, {label: k}) for k, v in store.series(key).items()]
        return lambda: [(v * scale, {label: k}) for k, v in store.series(key).items()]

    def read() -> Reading:
        value = store.value(key)
        if value is None:
            return ()
        # A value is scaled only when the catalogue says so: a huge int stays as it is.
        return ((value if scale == 1.0 else value * scale, {}),)

    return read


def build_instruments(
    telemetry: Telemetry, stores: Mapping[Source, Store]
) -> dict[str, BulkHistogram]:
    """Serve every observed metric of the catalogue and its histograms; return
    the histograms by catalogue key (the recorder folds samples into them)."""
    for metric in observed_metrics():
        telemetry.observe(metric, reader(metric, stores[metric.source]))
    histograms = {
        m.key: LabelledBulkHistogram(m) if m.labels else BulkHistogram(m)
        for m in METRICS
        if m.kind is Kind.HISTOGRAM
    }
    telemetry.serve_histograms(list(histograms.values()))
    return histograms
