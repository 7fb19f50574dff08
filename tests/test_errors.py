"""ErrorLedger: what mlx_otel refused or failed at, counted and logged once.

Inside a training run nothing is raised; every part reports into one ledger,
whose counts are served as ``mlx_otel_errors_total{kind}`` and whose log
lines a user reads. These tests check the numbers and the log a user sees.
"""

from __future__ import annotations

import logging
import threading

import pytest

from mlx_otel.errors import ConfigError, ErrorLedger, MlxOtelError, PortInUseError


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mlx_otel" and r.levelno == logging.WARNING]


def test_registered_kinds_start_at_zero_and_unknown_kinds_are_counted_too() -> None:
    ledger = ErrorLedger(kinds=("invalid_value", "non_finite"))
    assert ledger.counts() == {"invalid_value": 0, "non_finite": 0}
    ledger.count("never_seen_before")
    assert ledger.counts() == {"invalid_value": 0, "non_finite": 0, "never_seen_before": 1}
    assert ledger.dropped() == {}


def test_errors_are_counted_by_kind() -> None:
    ledger = ErrorLedger(kinds=("invalid_value",))
    ledger.count("non_finite", 3)
    ledger.count("non_finite")
    ledger.report("invalid_value", "loss", "loss=None is not recorded")
    ledger.report("invalid_value", "reward", "reward='x' is not recorded")
    ledger.report_exception("export", "csv", OSError("disk full"))
    assert ledger.counts() == {"invalid_value": 2, "non_finite": 4, "export": 1}


def test_a_report_logs_once_per_kind_and_culprit(caplog: pytest.LogCaptureFixture) -> None:
    ledger = ErrorLedger()
    with caplog.at_level(logging.WARNING, logger="mlx_otel"):
        for _ in range(5):
            ledger.report("invalid_value", "loss", "loss=None is not recorded")
        ledger.report("invalid_value", "reward", "reward=None is not recorded")
        ledger.report("non_finite", "loss", "loss=nan is not recorded")
    assert warnings_logged(caplog) == [
        "mlx_otel: loss=None is not recorded (further occurrences are only counted)",
        "mlx_otel: reward=None is not recorded (further occurrences are only counted)",
        "mlx_otel: loss=nan is not recorded (further occurrences are only counted)",
    ]
    assert ledger.counts() == {"invalid_value": 6, "non_finite": 1}


def test_count_alone_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    ledger = ErrorLedger()
    with caplog.at_level(logging.DEBUG, logger="mlx_otel"):
        ledger.count("non_finite", 10)
        ledger.drop("records", 4)
    assert warnings_logged(caplog) == []


def test_a_failure_is_logged_with_what_failed_and_the_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = ErrorLedger()
    with caplog.at_level(logging.WARNING, logger="mlx_otel"):
        ledger.report_exception("export", "charts", RuntimeError("no display"))
        ledger.report_exception("export", "charts", RuntimeError("still no display"))
    assert warnings_logged(caplog) == [
        "mlx_otel: charts failed: RuntimeError('no display') "
        "(further occurrences are only counted)"
    ]
    assert ledger.counts() == {"export": 2}


def test_dropped_work_is_counted_by_task_apart_from_errors() -> None:
    ledger = ErrorLedger(kinds=("invalid_value",))
    ledger.drop("records")
    ledger.drop("records", 127)
    ledger.drop("rewards", 16)
    assert ledger.dropped() == {"records": 128, "rewards": 16}
    assert ledger.counts() == {"invalid_value": 0}


def test_the_returned_counts_are_copies() -> None:
    ledger = ErrorLedger()
    ledger.count("export")
    ledger.drop("records")
    ledger.counts()["export"] = 99
    ledger.dropped()["records"] = 99
    assert ledger.counts() == {"export": 1}
    assert ledger.dropped() == {"records": 1}


def test_reports_from_many_threads_are_all_counted(caplog: pytest.LogCaptureFixture) -> None:
    ledger = ErrorLedger()

    def work() -> None:
        for _ in range(2000):
            ledger.report("invalid_value", "loss", "loss=None is not recorded")
            ledger.count("non_finite")
            ledger.drop("records")

    with caplog.at_level(logging.WARNING, logger="mlx_otel"):
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert ledger.counts() == {"invalid_value": 8000, "non_finite": 8000}
    assert ledger.dropped() == {"records": 8000}
    assert len(warnings_logged(caplog)) == 1


def test_every_error_class_is_an_mlx_otel_error_and_keeps_its_builtin_base() -> None:
    with pytest.raises(MlxOtelError):
        raise ConfigError("bad key")
    with pytest.raises(ValueError):
        raise ConfigError("bad key")
    with pytest.raises(OSError):
        raise PortInUseError("port 9100 is taken")
    assert issubclass(PortInUseError, MlxOtelError)
