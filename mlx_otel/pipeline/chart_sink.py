"""The chart sink: the seed's snapshot charts, rendered in a child process.

Charts render every ``generate_charts_every`` steps from the statistics
history. Matplotlib and seaborn are never imported by the training process:
a :class:`~mlx_otel.integrations.chart_process.ChartProcess` renders them
(unless ``in_subprocess`` is false). Charts can wait, training cannot: when
the run ends, a periodic chart in flight is left to the chart process, and
when the run's owner does not wait (:class:`~mlx_otel.pipeline.sink.RunEnding`
``leave``) even the end-of-run charts are: the child writes them after the
training process has gone.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mlx_otel.config.visualization import ChartStyle, VisualizationConfig
from mlx_otel.errors import ErrorLedger
from mlx_otel.integrations.chart_process import (
    ChartProcess,
    ChartsCutShort,
    render_checkpoint_charts,
)
from mlx_otel.pipeline.sink import Record, RunEnding, seconds_left
from mlx_otel.pipeline.statistics_sink import StatisticsSink
from mlx_otel.records import StepRecord

__all__ = ["ChartSink", "charts_available"]

log = logging.getLogger("mlx_otel")

#: A periodic chart not rendered by then is left to the chart process.
_PERIODIC_CHART_TIMEOUT_S = 120.0


def charts_available() -> bool:
    """Whether the charts extra (matplotlib, seaborn) is installed, without importing it."""
    return all(importlib.util.find_spec(name) is not None for name in ("matplotlib", "seaborn"))


class ChartSink:
    """Renders the snapshot charts every ``every`` steps from the statistics.

    Charts render in a child process (matplotlib and seaborn are never
    imported by the training process) unless ``in_subprocess`` is false.
    ``while_waiting`` runs about every 0.1 s while a chart is awaited (the
    monitor keeps its histograms folded there).
    """

    name = "charts"
    error_kind = "worker"
    whole_drain = True  # a worker that fell behind renders the latest chart step only

    def __init__(
        self,
        statistics: StatisticsSink,
        *,
        output_dir: Path,
        every: int,
        threshold_mb: float,
        ledger: ErrorLedger,
        ending: RunEnding | None = None,
        in_subprocess: bool = True,
        on_charts: Callable[[Mapping[str, Path], int | None], None] | None = None,
        while_waiting: Callable[[], None] | None = None,
        style: ChartStyle | None = None,
    ) -> None:
        self._statistics = statistics
        # The monitor's one cadence (generate_charts_every) and its charts: style.
        self.config = VisualizationConfig.from_style(
            style or ChartStyle(), output_dir / "charts", every
        )
        self._every = every
        self._threshold_mb = threshold_mb
        self._ledger = ledger
        self._ending = ending or RunEnding()
        self._in_subprocess = in_subprocess
        self._on_charts = on_charts
        self._while_waiting = while_waiting
        self._process: ChartProcess | None = None
        self._closed = False
        if every and not charts_available():
            log.warning("mlx_otel: charts need matplotlib and seaborn: pip install 'mlx-otel[charts]'")
            self._every = every = 0
        if every and in_subprocess:
            # Its imports take seconds of CPU: start it now, at low priority.
            self._process = ChartProcess(on_restart=self._chart_process_died)
            self._process.start()

    def handle(self, batch: Sequence[Record]) -> None:
        every = self._every
        if not every or self._ending.begun.is_set():
            return
        chart_step = None
        for record in batch:
            if isinstance(record, StepRecord) and record.step > 0 and record.step % every == 0:
                chart_step = record.step
        if chart_step is not None:
            self.render(chart_step)

    def _chart_process_died(self, code: int) -> None:
        self._ledger.report(
            "worker", "chart process",
            f"the chart process exited with code {code} (killed or crashed); a new one is started",
        )

    def _waiting(self, process: ChartProcess, periodic: bool) -> Callable[[], None]:
        """Run while a reply is awaited: fold, and stop awaiting what the end leaves."""

        def waiting() -> None:
            if self._while_waiting is not None:
                self._while_waiting()
            if self._ending.leave.is_set():
                process.cut_short()  # the request is sent: the child finishes alone
            elif periodic and self._ending.begun.is_set():
                process.stop_waiting()

        return waiting

    def render(self, step: int | None = None, *, timeout: float | None = None) -> dict[str, Path]:
        """Render every chart the data allows; returns {chart kind: path}.

        In the chart process, waits at most ``timeout`` seconds (a periodic
        chart, without one, until the run ends); charts not done by then are
        finished by that process and left out of the result.
        """
        if self._closed or not charts_available():
            return {}
        data, arguments = self._statistics.chart_arguments(step, self._threshold_mb)
        if data is None:
            return {}
        if self._in_subprocess:
            if self._process is None:
                self._process = ChartProcess(on_restart=self._chart_process_died)
            periodic = timeout is None
            self._process.while_waiting = self._waiting(self._process, periodic)
            try:
                paths, errors = self._process.render(
                    self.config, data, arguments,
                    timeout=_PERIODIC_CHART_TIMEOUT_S if periodic else timeout,
                    interruptible=periodic,
                )  # fmt: skip
            except ChartsCutShort as note:
                # Left on purpose at the end of a run; otherwise worth a word.
                level = logging.INFO if self._ending.begun.is_set() else logging.WARNING
                log.log(level, "mlx_otel: %s", note)
                return {}
        else:
            paths, errors = render_checkpoint_charts(self.config, data, arguments)
        for kind, error in errors.items():
            self._ledger.report("worker", f"chart {kind}", f"chart {kind} failed: {error}")
        if self._on_charts is not None:
            self._on_charts(paths, arguments["step"])
        return paths

    def stop_waiting(self) -> None:
        """Leave the periodic chart in flight to the chart process (an export
        must not wait for it)."""
        if self._process is not None:
            self._process.stop_waiting()

    def close(self, deadline: float) -> None:
        """Start no new chart; an idle chart process exits, a busy one finishes alone."""
        self._closed = True
        if self._process is not None:
            self._process.cut_short()
            self._process.close(timeout=min(2.0, seconds_left(deadline)))
            self._process = None
