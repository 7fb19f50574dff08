"""The exceptions mlx_otel raises, and the ledger of what it refused or failed at.

Every error class derives from :class:`MlxOtelError`. Inside a training run
mlx_otel raises none of them: parts report problems to one
:class:`ErrorLedger`, which counts them by kind (served as
``mlx_otel_errors_total{kind}``) and logs each (kind, culprit) once.

    ledger = ErrorLedger()
    ledger.report("invalid_value", "loss", "loss=None is not recorded: expected a number")
    ledger.counts()   # {"invalid_value": 1}
"""

from __future__ import annotations

import logging
import threading

__all__ = ["ConfigError", "ErrorLedger", "MlxOtelError", "PortInUseError"]

log = logging.getLogger("mlx_otel")


class MlxOtelError(Exception):
    """Base class of every error mlx_otel raises on purpose."""


class ConfigError(MlxOtelError, ValueError):
    """A configuration file, mapping or environment variable is invalid."""


class PortInUseError(MlxOtelError, OSError):
    """The metrics endpoint's port is taken by another process."""


class ErrorLedger:
    """Counts errors by kind and dropped work by task; logs each culprit once.

    Thread-safe: the training thread, the worker and the scrape thread all
    report into one ledger. ``kinds`` are pre-registered so that their series
    exist (at zero) before the first error.
    """

    def __init__(self, kinds: tuple[str, ...] = ()) -> None:
        self._errors: dict[str, int] = dict.fromkeys(kinds, 0)
        self._dropped: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def count(self, kind: str, amount: int = 1) -> None:
        """Count ``amount`` errors of ``kind`` without logging."""
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + amount

    def report(self, kind: str, culprit: str, message: str) -> None:
        """Count one error; log ``message`` the first time (kind, culprit) is seen."""
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1
            first = (kind, culprit) not in self._warned
            if first:
                self._warned.add((kind, culprit))
        if first:
            log.warning("mlx_otel: %s (further occurrences are only counted)", message)

    def report_exception(self, kind: str, what: str, exc: BaseException) -> None:
        """Report that ``what`` failed with ``exc``."""
        self.report(kind, what, f"{what} failed: {exc!r}")

    def drop(self, task: str, amount: int = 1) -> None:
        """Count work that was dropped (a full queue or buffer)."""
        with self._lock:
            self._dropped[task] = self._dropped.get(task, 0) + amount

    def counts(self) -> dict[str, int]:
        """Errors by kind, including kinds still at zero."""
        with self._lock:
            return dict(self._errors)

    def dropped(self) -> dict[str, int]:
        """Dropped work by task."""
        with self._lock:
            return dict(self._dropped)
