"""In-process metric history: statistics, moving averages, summaries.

:class:`ComprehensiveStatsCollector` keeps, per metric, the most recent
``max_history`` values with their step and timestamp in numpy ring buffers
(:mod:`mlx_otel.numbers.history`), so memory stays bounded however long the
run. Its exports (the seed's ``export_to_csv``, ``export_to_json``,
``export_summary``) hand the numbers to the writers of :mod:`mlx_otel.tables`. NaN and inf are signals, not
data: they stay in the history (a CSV shows the step where the loss went
NaN), are counted per metric, and are left out of every statistic.

Example::

    from pathlib import Path
    from mlx_otel import ComprehensiveStatsCollector

    stats = ComprehensiveStatsCollector(output_dir=Path("./stats"), max_history=10000)
    stats.record_step(100, {"loss": 0.5, "reward": 0.8})
    stats.get_metric_stats("loss")["mean"]      # 0.5
    stats.export_to_csv()                       # ./stats/metrics_history.csv
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlx_otel.numbers.columns import Columns
from mlx_otel.numbers.describe import describe, moving_averages, validate_window
from mlx_otel.numbers.history import MetricBuffer, MetricHistory, histories_frame
from mlx_otel.tables import json_safe, write_json, write_metrics_csv

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ComprehensiveStatsCollector", "MetricHistory", "histories_frame"]

logger = logging.getLogger(__name__)


class ComprehensiveStatsCollector:
    """Bounded per-metric history with statistics and exports.

    Use it for end-of-run summaries, CSV/JSON exports and the data behind
    snapshot charts; live dashboards read Prometheus instead. Each metric
    keeps its latest ``max_history`` values (numpy ring buffers), so
    memory is bounded by ``max_metrics * max_history * 24`` bytes.

    Thread safety: every method may be called from any thread. Writers hold
    one lock only while copying numbers into the buffers; readers hold it
    only while copying the buffers out, and compute outside it. A
    :meth:`record_step` call is applied as a whole, so a reader never sees
    half a step.

    Example::

        stats = ComprehensiveStatsCollector(output_dir="./stats", max_history=10000)
        stats.record_metric("loss", 0.5, step=100)
        stats.record_step(101, {"loss": 0.45, "reward": 0.8})
        stats.get_metric_stats("loss")["p50"]
        stats.export_to_json()   # ./stats/stats_export_20260101_120000.json
    """

    def __init__(
        self,
        output_dir: Path | str = "./stats",
        max_history: int = 10000,
        *,
        run_id: str | None = None,
        max_metrics: int = 1000,
    ) -> None:
        try:
            max_history = operator.index(max_history)
            max_metrics = operator.index(max_metrics)
        except TypeError:
            raise TypeError("max_history and max_metrics must be integers") from None
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {max_history}")
        if max_metrics < 1:
            raise ValueError(f"max_metrics must be >= 1, got {max_metrics}")
        self.output_dir = Path(output_dir)
        self.max_history = max_history
        self.max_metrics = max_metrics
        self.run_id = run_id
        self._lock = threading.Lock()
        self._metrics: dict[str, MetricBuffer] = {}
        self._max_step: int | None = None
        self._distinct_steps = 0
        self._first_timestamp: float | None = None
        self._last_timestamp: float | None = None

    # ------------------------------------------------------------------ record

    def record_metric(
        self,
        name: str,
        value: float,
        step: int | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Record one value of metric ``name``.

        ``step=None`` means one past this metric's previous step (0 for its
        first value). ``timestamp`` is seconds since the epoch (default: now).
        NaN/inf are kept in the history but counted
        (:meth:`non_finite_count`) and left out of statistics.
        Raises ``TypeError`` for a value that is not a number and
        ``ValueError`` for a bad name or when ``max_metrics`` is reached.

        Example::

            stats.record_metric("custom/my_metric", 0.25, step=100)
        """
        number = self._coerce_value(name, value)
        step_value = None if step is None else self._coerce_step(step)
        stamp = time.time() if timestamp is None else float(timestamp)
        with self._lock:
            self._record_locked(name, number, step_value, stamp)

    def record_step(
        self,
        step: int,
        values: Mapping[str, float],
        timestamp: float | None = None,
    ) -> list[str]:
        """Record many metrics of one step at once; return the rejected names.

        Meant for a background worker: values that are not numbers (None,
        strings) or new names beyond ``max_metrics`` are skipped and logged
        rather than raised, and their names returned so the caller can count
        them. The step is applied atomically with respect to readers.

        Example::

            rejected = stats.record_step(100, {"loss": 0.5, "reward": 0.8})
        """
        step_value = self._coerce_step(step)
        stamp = time.time() if timestamp is None else float(timestamp)
        accepted: list[tuple[str, float]] = []
        rejected: list[str] = []
        for name, value in values.items():
            try:
                accepted.append((name, self._coerce_value(name, value)))
            except (TypeError, ValueError) as error:
                logger.warning("stats: skipping %r at step %d: %s", name, step_value, error)
                rejected.append(str(name))
        with self._lock:
            for name, number in accepted:
                try:
                    self._record_locked(name, number, step_value, stamp)
                except ValueError as error:
                    logger.warning("stats: skipping %r at step %d: %s", name, step_value, error)
                    rejected.append(name)
        return rejected

    def record_steps(self, rows: Sequence[tuple[int, Mapping[str, float], float]]) -> list[str]:
        """:meth:`record_step` for each ``(step, values, timestamp)`` row, in order.

        The worker's path: when every value is a plain ``float``/``int``
        (what the monitor hands over) the batch is copied into the buffers a
        metric at a time (:mod:`mlx_otel.numbers.columns`), about ten times
        cheaper than value by value; otherwise the rows go one by one.
        """
        columns = Columns([row[0] for row in rows], [row[2] for row in rows])
        if not rows or not columns.add([row[1] for row in rows]):
            return [name for row in rows for name in self.record_step(*row)]
        return self.record_columns(columns)

    def record_columns(self, columns: Columns) -> list[str]:
        """A batch of steps gathered a metric at a time (:class:`~mlx_otel.numbers.columns.Columns`,
        every value a number); returns the names refused (beyond ``max_metrics``).

        Its rows count as steps as :meth:`record_step` counts them, in order.
        """
        rejected: list[str] = []
        gathered = columns.result()
        with self._lock:
            self._count_steps_locked(columns.steps, columns.timestamps)
            for name, column in gathered.items():
                buffer = self._metrics.get(name)
                if buffer is None:
                    if not name or len(self._metrics) >= self.max_metrics:
                        logger.warning("stats: skipping %r: max_metrics=%d reached or no name",
                                       name, self.max_metrics)  # fmt: skip
                        rejected.append(name)
                        continue
                    buffer = self._metrics[name] = MetricBuffer(self.max_history)
                buffer.last_step = int(column.steps[-1])
                buffer.non_finite += int(column.values.size - np.isfinite(column.values).sum())
                buffer.extend(column.values, column.steps, column.timestamps)
        return rejected

    @staticmethod
    def _coerce_value(name: str, value: Any) -> float:
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty string, got {name!r}")
        # float("0.5") would succeed; a string is a caller bug, not a number.
        if value is None or isinstance(value, (str, bytes)):
            raise TypeError(f"metric {name!r}: value must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"metric {name!r}: value must be a number, got {type(value).__name__}"
            ) from None

    @staticmethod
    def _coerce_step(step: Any) -> int:
        try:
            return operator.index(step)
        except TypeError:
            raise TypeError(f"step must be an integer, got {step!r}") from None

    def _record_locked(self, name: str, value: float, step: int | None, stamp: float) -> None:
        buffer = self._metrics.get(name)
        if buffer is None:
            if len(self._metrics) >= self.max_metrics:
                raise ValueError(
                    f"metric {name!r} not recorded: max_metrics={self.max_metrics} reached"
                )
            buffer = self._metrics[name] = MetricBuffer(self.max_history)
        if step is None:
            step = 0 if buffer.last_step is None else buffer.last_step + 1
        buffer.last_step = step
        self._count_step_locked(step, stamp)
        if not math.isfinite(value):
            buffer.non_finite += 1
        buffer.append(value, step, stamp)

    def _count_step_locked(self, step: int, stamp: float) -> None:
        # Count distinct steps as they rise: bounded memory (no set of all
        # steps), exact for the usual monotonic training loop.
        if self._max_step is None or step > self._max_step:
            self._max_step = step
            self._distinct_steps += 1
        if self._first_timestamp is None or stamp < self._first_timestamp:
            self._first_timestamp = stamp
        if self._last_timestamp is None or stamp > self._last_timestamp:
            self._last_timestamp = stamp

    def _count_steps_locked(self, steps: np.ndarray, stamps: np.ndarray) -> None:
        """:meth:`_count_step_locked` of each row in turn, with NumPy."""
        if not steps.size:
            return
        # A row counts when its step exceeds every step before it (the
        # history's highest included): a new running maximum.
        highest = np.maximum.accumulate(steps)
        before = np.empty_like(highest)
        before[1:] = highest[:-1]
        if self._max_step is None:
            rising = int(np.count_nonzero(steps[1:] > before[1:])) + 1
        else:
            before[0] = self._max_step
            rising = int(np.count_nonzero(steps > np.maximum(before, self._max_step)))
        self._distinct_steps += rising
        top = int(highest[-1])
        self._max_step = top if self._max_step is None else max(self._max_step, top)
        first, last = float(stamps.min()), float(stamps.max())
        if self._first_timestamp is None or first < self._first_timestamp:
            self._first_timestamp = first
        if self._last_timestamp is None or last > self._last_timestamp:
            self._last_timestamp = last

    # ------------------------------------------------------------------- reads

    @property
    def metric_names(self) -> list[str]:
        """Names of all metrics recorded so far, in first-seen order."""
        with self._lock:
            return list(self._metrics)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._metrics

    def __len__(self) -> int:
        """Number of metrics tracked."""
        with self._lock:
            return len(self._metrics)

    @property
    def nbytes(self) -> int:
        """Bytes held by the history buffers (bounded by max_history)."""
        with self._lock:
            return sum(buffer.nbytes for buffer in self._metrics.values())

    @property
    def non_finite_total(self) -> int:
        """NaN/inf values recorded, all metrics together."""
        with self._lock:
            return sum(buffer.non_finite for buffer in self._metrics.values())

    @property
    def total_steps(self) -> int:
        """Distinct steps recorded (counted as steps rise, never truncated)."""
        with self._lock:
            return self._distinct_steps

    def _unknown(self, name: str) -> KeyError:
        known = ", ".join(sorted(self._metrics)) or "(none recorded yet)"
        return KeyError(f"unknown metric {name!r}; known metrics: {known}")

    def get_history(self, name: str) -> MetricHistory:
        """Copy of the retained values, steps and timestamps of ``name``."""
        with self._lock:
            buffer = self._metrics.get(name)
            if buffer is None:
                raise self._unknown(name)
            return buffer.snapshot(name)

    def _snapshot_all(self) -> list[MetricHistory]:
        with self._lock:
            return [buffer.snapshot(name) for name, buffer in self._metrics.items()]

    def non_finite_count(self, name: str) -> int:
        """How many NaN/inf values of ``name`` were recorded (left out of statistics)."""
        with self._lock:
            buffer = self._metrics.get(name)
            if buffer is None:
                raise self._unknown(name)
            return buffer.non_finite

    def get_metric_stats(self, name: str) -> dict[str, float | int]:
        """Statistics over the retained finite values of ``name``.

        Keys: mean, std (population, ddof=0), min, max, p5, p25, p50, p75,
        p95, p99, count (finite values in the window), last and final (the
        latest finite value) and non_finite (NaN/inf ever recorded). With no
        finite value yet, count is 0 and the others are NaN. Unknown names raise a
        ``KeyError`` that lists the known ones.

        Example::

            print(f"Loss mean: {stats.get_metric_stats('loss')['mean']:.4f}")
        """
        history = self.get_history(name)
        return describe(history.values, history.non_finite)

    def get_all_stats(self) -> dict[str, dict[str, float | int]]:
        """:meth:`get_metric_stats` for every metric, from one consistent snapshot."""
        return {h.name: describe(h.values, h.non_finite) for h in self._snapshot_all()}

    def get_moving_averages(self, window: int = 10) -> dict[str, float]:
        """Mean of the last ``window`` finite values of each metric.

        Metrics without any finite value are left out.

        Example::

            stats.get_moving_averages(window=10)["loss"]
        """
        window = validate_window(window)
        return moving_averages(self._snapshot_all(), window)

    def get_moving_average_series(self, name: str, window: int = 10) -> pd.Series:
        """Trailing moving average of ``name`` indexed by step.

        The first ``window - 1`` points average what is available so far
        (``rolling(window, min_periods=1)``), so the series has one value per
        retained point, ready to plot as a smoothed curve. NaN/inf points are
        dropped first, so a window always averages ``window`` finite values.

        Example::

            smooth = stats.get_moving_average_series("loss", window=20)
        """
        window = validate_window(window)
        series = self.get_series(name)
        series = series[np.isfinite(series.to_numpy())]
        return series.rolling(window, min_periods=1).mean()

    def get_series(self, name: str) -> pd.Series:
        """Retained values of ``name`` (NaN/inf included) as a Series indexed by step."""
        import pandas as pd

        history = self.get_history(name)
        return pd.Series(history.values, index=pd.Index(history.steps, name="step"), name=name)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per step, one column per metric, plus step and timestamp.

        Columns: ``step``, ``run_id`` (when the collector has one),
        ``timestamp`` (latest record of that step), then the metrics in
        first-seen order. A metric absent at a step is NaN there; recorded
        NaN/inf values appear as they are; a metric recorded twice at one
        step keeps its last value.

        Example::

            frame = stats.to_dataframe()
            frame[["step", "loss"]].tail()
        """
        return self._frame(self._snapshot_all())

    def histories(self) -> list[MetricHistory]:
        """A consistent snapshot of every metric's history, in first-seen order."""
        return self._snapshot_all()

    def _frame(self, histories: list[MetricHistory]) -> pd.DataFrame:
        return histories_frame(histories, run_id=self.run_id)

    def get_correlation_matrix(self, *, method: str = "pearson") -> pd.DataFrame:
        """Pairwise correlation of the metrics, aligned by step.

        Uses :meth:`pandas.DataFrame.corr` on :meth:`to_dataframe`, so each
        pair uses the steps where both are present; a constant metric gives
        NaN.

        Example::

            stats.get_correlation_matrix().loc["loss", "reward"]
        """
        histories = self._snapshot_all()
        frame = self._frame(histories)[[h.name for h in histories]]
        # inf would poison every coefficient it touches; treat it as missing.
        return frame.where(np.isfinite(frame)).corr(method=method)

    # ----------------------------------------------------------------- exports

    def export_to_csv(self, path: Path | str | None = None) -> Path:
        """Write :meth:`to_dataframe` as CSV, atomically; return the path.

        Default: ``<output_dir>/metrics_history.csv``. Floats are written
        with full precision, so reading back with pandas gives equal values.

        Example::

            pd.read_csv(stats.export_to_csv())
        """
        target = Path(path) if path is not None else self.output_dir / "metrics_history.csv"
        return write_metrics_csv(self._snapshot_all(), target, run_id=self.run_id)

    def export_to_json(
        self,
        path: Path | str | None = None,
        *,
        moving_average_window: int = 10,
        include_history: bool = True,
    ) -> Path:
        """Write statistics, moving averages and history as JSON; return the path.

        Default: ``<output_dir>/stats_export_<YYYYmmdd_HHMMSS>.json`` (with a
        ``_2``, ``_3``... suffix if that second already has an export).
        NaN/inf (statistics of empty metrics, non-finite history values) are
        written as ``null``, so any strict JSON parser reads the file. The file is written
        atomically from one consistent snapshot.

        Example::

            data = json.loads(stats.export_to_json().read_text())
            data["stats"]["loss"]["mean"]
        """
        window = validate_window(moving_average_window)
        histories = self._snapshot_all()
        payload: dict[str, Any] = {
            "exported_at": datetime.now(timezone.utc).isoformat(),
            "run_id": self.run_id,
            "max_history": self.max_history,
            "total_steps": self.total_steps,
            "stats": {h.name: describe(h.values, h.non_finite) for h in histories},
            "moving_average_window": window,
            "moving_averages": moving_averages(histories, window),
            "non_finite_counts": {h.name: h.non_finite for h in histories},
        }
        if include_history:
            payload["history"] = {
                h.name: {
                    "steps": h.steps.tolist(),
                    "values": h.values.tolist(),
                    "timestamps": h.timestamps.tolist(),
                }
                for h in histories
            }
        target = Path(path) if path is not None else self._timestamped_json_path()
        return write_json(target, payload)

    def _timestamped_json_path(self) -> Path:
        stem = f"stats_export_{datetime.now():%Y%m%d_%H%M%S}"
        candidate = self.output_dir / f"{stem}.json"
        counter = 2
        while candidate.exists():
            candidate = self.output_dir / f"{stem}_{counter}.json"
            counter += 1
        return candidate

    def summary(
        self,
        run_id: str | None = None,
        start_time: float | datetime | None = None,
        avg_step_time: float | None = None,
        rank: int | None = None,
    ) -> dict[str, Any]:
        """End-of-run summary in the seed's "JSON Summary Format".

        ``{"session": {duration_hours, total_steps, avg_step_time,
        metrics_tracked[, run_id]}, "metrics": {name: {mean, std, min, max,
        final}}}``. ``duration_hours`` runs from ``start_time`` (epoch
        seconds or datetime) to now, or else from the first to the last
        record. ``avg_step_time`` defaults to the recorded wall time divided
        by the steps between first and last record (None if unknown). NaN is
        replaced by None, so the result is ready for ``json.dumps``.

        Example::

            json.dumps(stats.summary(run_id="run_001", start_time=t0), indent=2)
        """
        histories = self._snapshot_all()
        with self._lock:
            first, last = self._first_timestamp, self._last_timestamp
            total_steps = self._distinct_steps
        if isinstance(start_time, datetime):
            start_time = start_time.timestamp()
        if start_time is not None:
            duration = max(time.time() - float(start_time), 0.0)
        elif first is not None and last is not None:
            duration = last - first
        else:
            duration = 0.0
        if avg_step_time is None and first is not None and last is not None and total_steps > 1:
            avg_step_time = (last - first) / (total_steps - 1)
        session: dict[str, Any] = {
            "duration_hours": duration / 3600.0,
            "total_steps": total_steps,
            "avg_step_time": avg_step_time,
            "metrics_tracked": len(histories),
        }
        run = run_id if run_id is not None else self.run_id
        if run is not None:
            session["run_id"] = run
        if rank is not None:  # a multi-rank run: which rank this summary describes
            session["rank"] = rank
        metrics = {}
        for history in histories:
            described = describe(history.values, history.non_finite)
            metrics[history.name] = {
                key: described[key] for key in ("mean", "std", "min", "max", "final")
            }
        summary: dict[str, Any] = json_safe({"session": session, "metrics": metrics})
        return summary

    def export_summary(
        self,
        path: Path | str,
        *,
        run_id: str | None = None,
        start_time: float | datetime | None = None,
        avg_step_time: float | None = None,
        rank: int | None = None,
    ) -> Path:
        """Write :meth:`summary` as indented JSON to ``path``, atomically.

        Example::

            stats.export_summary("outputs/monitoring_summary.json", run_id="run_001")
        """
        payload = self.summary(
            run_id=run_id, start_time=start_time, avg_step_time=avg_step_time, rank=rank
        )
        return write_json(Path(path), payload)

    def clear(self) -> None:
        """Forget all history and counters (for example between runs)."""
        with self._lock:
            self._metrics.clear()
            self._max_step = None
            self._distinct_steps = 0
            self._first_timestamp = None
            self._last_timestamp = None
