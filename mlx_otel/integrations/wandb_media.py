"""What a WandB run holds besides metrics: sample tables, charts, alerts, checkpoints.

These are the calls of ``seed/monitoring-spec.md``'s logger that send a
WandB object rather than a row of numbers: each has its own cadence or
throttle (tables every ``log_samples_every`` steps, the same alert title at
most once per interval) and its own failure kind. :class:`RunMedia` is the
part of :class:`~mlx_otel.EnhancedWandBLogger` that makes them; the logger
supplies the run, the lock and the error guard.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlx_otel.integrations.wandb_rows import (
    CHART_GROUP,
    SAMPLE_COLUMNS,
    SAMPLES_KEY,
    sample_rows,
    sanitize_artifact_name,
)

__all__ = ["RunMedia"]

_ALERT_TITLE_MAX = 63  # wandb rejects titles of 64 characters or more
_LEVELS = {"INFO": "INFO", "WARN": "WARN", "WARNING": "WARN", "ERROR": "ERROR", "CRITICAL": "ERROR"}


class RunMedia:
    """Sample tables, chart images, alerts and checkpoint artifacts of a WandB run."""

    run: Any
    log_samples_every: int
    max_logged_samples: int
    alert_min_interval_s: float
    suppressed_alerts: dict[str, int]
    _lock: threading.RLock
    _wandb: ModuleType | None
    _last_step: int | None
    _alert_last_sent: dict[str, float]

    if TYPE_CHECKING:

        @property
        def enabled(self) -> bool: ...

        def _guard(self, kind: str) -> AbstractContextManager[None]: ...

        def _invalid(self, what: str) -> None: ...

        def _set_step(self, step: Any) -> None: ...

        def _emit(self, row: dict[str, Any], step: Any) -> bool: ...

    def log_sample_table(
        self,
        prompts: Sequence[Any],
        generations: Sequence[Any],
        references: Sequence[Any] | None = None,
        rewards: Sequence[Any] | None = None,
        step: int | None = None,
    ) -> bool:
        """Log a table (step, prompt, generation, reference, reward) under ``rl/samples``.

        Only at steps divisible by ``log_samples_every``, at most
        ``max_logged_samples`` rows. Returns whether a table was logged.

        >>> wb.log_sample_table(["2+2?"], ["4"], ["4"], [1.0], step=10)  # doctest: +SKIP
        True
        """
        if not self.enabled or self.log_samples_every <= 0:
            return False
        with self._lock:
            self._set_step(step)
            at = self._last_step
            if at is not None and at % self.log_samples_every != 0:
                return False
            data = sample_rows(
                at, prompts, generations, references, rewards,
                self.max_logged_samples, self._invalid,
            )  # fmt: skip
            if not data:
                return False
            assert self._wandb is not None
            with self._guard("table"):
                table = self._wandb.Table(columns=SAMPLE_COLUMNS, data=data)
                return self._emit({SAMPLES_KEY: table}, None)
            return False

    def log_chart(
        self, name: str, chart_path: str | os.PathLike[str], step: int | None = None
    ) -> bool:
        """Log a PNG (e.g. a seaborn snapshot) as an image under ``charts/<name>``.

        >>> wb.log_chart("training_curves", "charts/training_curves_step_100.png")  # doctest: +SKIP
        True
        """
        if not self.enabled:
            return False
        key = name if "/" in name else CHART_GROUP + name
        with self._lock:
            assert self._wandb is not None
            with self._guard("chart"):
                path = Path(chart_path)
                if not path.is_file():
                    raise FileNotFoundError(f"chart {name!r}: no file at {path}")
                return self._emit({key: self._wandb.Image(str(path), caption=name)}, step)
            return False

    def alert(
        self,
        title: str,
        text: str,
        level: str = "WARN",
        wait_duration: float | None = None,
    ) -> bool:
        """Send a WandB alert unless the same title was sent in the last interval.

        ``level`` is ``"INFO"``, ``"WARN"`` or ``"ERROR"``. ``wait_duration``
        (seconds) is WandB's own server-side throttle for the title; it
        defaults to ``alert_min_interval_s``. In offline mode the alert is
        an ``alert`` record in the run file and is delivered on ``wandb sync``.
        Returns whether the alert was sent.

        >>> wb.alert(title="High Memory Usage", text="Memory exceeds 8GB", level="WARN")  # doctest: +SKIP
        True
        """
        if not self.enabled:
            return False
        with self._lock:
            now = time.monotonic()
            last = self._alert_last_sent.get(title)
            if last is not None and now - last < self.alert_min_interval_s:
                self.suppressed_alerts[title] = self.suppressed_alerts.get(title, 0) + 1
                return False
            level_name = _LEVELS.get(str(getattr(level, "value", level)).upper())
            if level_name is None:
                self._invalid(f"alert level must be INFO, WARN or ERROR, not {level!r}")
                level_name = "WARN"
            if wait_duration is None:
                wait_duration = self.alert_min_interval_s
            assert self._wandb is not None
            with self._guard("alert"):
                self.run.alert(
                    title=title[:_ALERT_TITLE_MAX],
                    text=text,
                    level=self._wandb.AlertLevel(level_name),
                    wait_duration=wait_duration if wait_duration > 0 else None,
                )
                self._alert_last_sent[title] = now
                return True
            return False

    def log_checkpoint(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        aliases: Sequence[str] | None = None,
    ) -> bool:
        """Log a checkpoint file or directory as a ``model`` artifact.

        The name defaults to ``model-<run id>``; the metadata gets the last
        step. Returns whether the artifact was logged.

        >>> wb.log_checkpoint("checkpoints/step_100", aliases=["latest"])  # doctest: +SKIP
        True
        """
        if not self.enabled:
            return False
        with self._lock:
            assert self._wandb is not None
            with self._guard("artifact"):
                source = Path(path)
                if not source.exists():
                    raise FileNotFoundError(f"checkpoint: no file or directory at {source}")
                meta: dict[str, Any] = {}
                if self._last_step is not None:
                    meta["step"] = self._last_step
                meta.update(metadata or {})
                artifact = self._wandb.Artifact(
                    sanitize_artifact_name(name or f"model-{self.run.id}"),
                    type="model",
                    metadata=meta,
                )
                if source.is_dir():
                    artifact.add_dir(str(source))
                else:
                    artifact.add_file(str(source))
                self.run.log_artifact(artifact, aliases=list(aliases) if aliases else None)
                return True
            return False
