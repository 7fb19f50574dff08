"""The run's files by a deadline: the record first when the worker is behind.

``export_all()``, the end of a run and the periodic record of a long run all
write the run's files (:func:`~mlx_otel.pipeline.run_files.write_run_files`)
from the statistics the worker keeps, so they first wait for the worker to
drain. A worker far behind (a flood of steps, a starved CPU) must not cost
the run its record: after :data:`RECORD_FIRST_AFTER_S` the summary and the
CSV of the history so far are written, then the full export follows within
what is left of the deadline. Charts come last, on their own, so a failing
renderer cannot lose the files. Failures are reported and counted
(``mlx_otel_errors_total{kind="export"}``), raised only when ``strict``.

    export = RunExport(worker=worker, stats=stats, charts=charts, files=files,
                       charts_timeout=60.0, ledger=ledger)
    written = export.export(time.monotonic() + 30.0)   # {name: path}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from mlx_otel.errors import ErrorLedger
from mlx_otel.numbers.stats import ComprehensiveStatsCollector
from mlx_otel.pipeline.chart_sink import ChartSink
from mlx_otel.pipeline.run_files import RECORD_FILES, write_run_files
from mlx_otel.pipeline.worker import BackgroundWorker

__all__ = ["RECORD_FIRST_AFTER_S", "RunExport", "RunFiles"]

log = logging.getLogger("mlx_otel")

#: How long an export waits for the worker before it writes the record so far
#: (then it waits the rest of ``charts_timeout`` for the full export).
RECORD_FIRST_AFTER_S = 2.0


class RunFiles(NamedTuple):
    """Where the run's files go and what they say about the run."""

    output_dir: Path
    run_id: str
    start_time: float
    rank: int | None = None


class RunExport:
    """Writes the run's files (and end-of-run charts) by a deadline."""

    def __init__(
        self,
        *,
        worker: BackgroundWorker,
        stats: ComprehensiveStatsCollector,
        charts: ChartSink,
        files: RunFiles,
        charts_timeout: float,
        ledger: ErrorLedger,
        strict: bool = False,
    ) -> None:
        self.files = files
        self._worker = worker
        self._stats = stats
        self._charts = charts
        self._charts_timeout = charts_timeout
        self._ledger = ledger
        self._strict = strict

    def export(self, deadline: float) -> dict[str, Path]:
        """The run's files by ``deadline``: worker drained, record first, then charts."""
        timeout = min(self._charts_timeout, max(0.0, deadline - time.monotonic()))
        first = min(RECORD_FIRST_AFTER_S, timeout)
        if not self._worker.flush(first):
            # The worker is far behind: the record so far goes on disk first, in
            # case the process is ended (the bound of a SIGTERM) before the
            # full export below.
            try:
                self.write_record()
            except Exception as exc:
                self._ledger.report_exception("export", "export_all", exc)
            if not self._worker.flush(timeout - first):
                self._charts.stop_waiting()
                self._worker.flush()
        try:
            written = self._write()
        except Exception as exc:
            self._ledger.report_exception("export", "export_all", exc)
            if self._strict:
                raise
            return {}
        try:  # charts on their own: a failing renderer must not lose the files above
            timeout = min(self._charts_timeout, max(0.5, deadline - time.monotonic()))
            for kind, path in self._charts.render(timeout=timeout).items():
                written[f"chart_{kind}"] = path
        except Exception as exc:
            self._ledger.report_exception("worker", "end-of-run charts", exc)
            if self._strict:
                raise
        log.info("mlx_otel: wrote %d files under %s", len(written), self.files.output_dir)
        return written

    def write_record(self) -> None:
        """The summary and the CSV of the history so far (no waiting for the worker)."""
        self._write(only=RECORD_FILES)

    def periodic(self, every_seconds: float, *, due: Callable[[], bool]) -> Callable[[], None]:
        """A worker job that writes the record every ``every_seconds`` while ``due()``.

        For a run that may be killed without warning: the history so far is
        on disk at most ``every_seconds`` old.
        """
        last = [time.monotonic()]

        def job() -> None:
            if time.monotonic() - last[0] < every_seconds:
                return
            last[0] = time.monotonic()
            if due():
                self.write_record()

        return job

    def _write(self, only: tuple[str, ...] | None = None) -> dict[str, Path]:
        files = self.files
        return write_run_files(
            self._stats, files.output_dir, run_id=files.run_id, start_time=files.start_time,
            rank=files.rank, on_error=self._failed, only=only,
        )  # fmt: skip

    def _failed(self, name: str, exc: Exception) -> None:
        if self._strict:
            raise exc
        where = f"writing {name} under {self.files.output_dir}"
        self._ledger.report_exception("export", where, exc)
