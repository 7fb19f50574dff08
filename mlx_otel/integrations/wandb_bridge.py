"""Forward training metrics, samples, charts, alerts and checkpoints to WandB.

``EnhancedWandBLogger`` is the WandB logger of ``seed/monitoring-spec.md``.
It groups keys into WandB sections (``train/``, ``memory/``, ``rl/``,
``gradients/``, ``custom/``), plots every metric against ``train/step``,
rate-limits alerts and never lets a WandB failure reach the training loop.

Usage::

    from mlx_otel import EnhancedWandBLogger

    with EnhancedWandBLogger(project="my-project", name="experiment-001") as wb:
        wb.log_training_metrics(loss=0.5, reward=0.8, step=100)
        wb.alert(title="High Memory Usage", text="Memory exceeds 8GB", level="WARN")

Without credentials (``WANDB_API_KEY`` or a netrc entry for the WandB host)
the run is written offline under ``wandb/offline-run-*`` and can be uploaded
later with ``wandb sync``; without the ``wandb`` package every method is a
no-op. Each call does socket and file I/O (0.1-0.5 ms for a row of 20
scalars, ~1 ms with a 64-value histogram, ~10 ms for a sample table), so
``TrainingMonitor`` calls it from its background worker, never from the
training thread. Calls are serialised by an internal lock, because wandb's
own step counter is not thread-safe.

The monitor calls it through :class:`~mlx_otel.integrations.wandb_thread.BackgroundWandB`
(its own thread, so a WandB server that does not answer never holds the
worker); :mod:`mlx_otel.integrations.wandb_exit` keeps WandB's service from
holding the process's exit. How a run starts (mode, credentials, notices)
is :mod:`~mlx_otel.integrations.wandb_start`, what a row holds
:mod:`~mlx_otel.integrations.wandb_rows`, and tables, charts, alerts and
checkpoints :mod:`~mlx_otel.integrations.wandb_media`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from mlx_otel.integrations.wandb_media import RunMedia
from mlx_otel.integrations.wandb_rows import (
    CHART_GROUP,
    DEFAULT_KEY_GROUPS,
    GRADIENT_GROUP,
    STEP_KEY,
    distribution,
    group_key,
    metric_row,
)
from mlx_otel.integrations.wandb_start import (
    announce_offline,
    has_wandb_credentials,
    import_wandb,
    logger_settings,
    resolve_mode,
)
from mlx_otel.records import to_number

__all__ = [
    "DEFAULT_KEY_GROUPS",
    "STEP_KEY",
    "EnhancedWandBLogger",
    "group_key",
    "has_wandb_credentials",
]

logger = logging.getLogger(__name__)

class EnhancedWandBLogger(RunMedia):
    """Log a training run to WandB: grouped metrics, samples, charts, alerts.

    Use it when you want the run in the WandB UI next to the Prometheus
    metrics; ``TrainingMonitor`` builds one when ``use_wandb`` is on.

    Every value is plotted against ``train/step``
    (``define_metric("*", step_metric="train/step")``) and ``wandb.log`` is
    called without ``step=``: wandb's own ``_step`` only counts rows, so a
    step that goes backwards (a resumed run, a second epoch counter) is
    still recorded instead of being dropped with a warning.

    No WandB failure (init, log, disk, upload) is raised: it is logged once
    per kind and counted in ``error_counts``; ``strict=True`` raises instead.

    >>> wb = EnhancedWandBLogger(project="my-project", mode="offline")  # doctest: +SKIP
    >>> wb.log_metrics({"loss": 0.5, "custom/metric1": 1.0}, step=3)       # doctest: +SKIP
    >>> wb.finish()                                                        # doctest: +SKIP
    """

    def __init__(
        self,
        project: str = "mlx-rl-trainer",
        name: str | None = None,
        *,
        entity: str | None = None,
        config: Mapping[str, Any] | None = None,
        mode: str | None = None,
        dir: str | os.PathLike[str] | None = None,  # noqa: A002 - wandb.init's name
        log_samples_every: int = 5,
        max_logged_samples: int = 20,
        alert_min_interval_s: float = 300.0,
        key_groups: Mapping[str, str] | None = None,
        run: Any = None,
        init_kwargs: Mapping[str, Any] | None = None,
        on_error: Callable[[str], None] | None = None,
        strict: bool = False,
    ) -> None:
        """Start (or attach to) a WandB run.

        Args:
            project, name, entity, config, dir: passed to ``wandb.init``.
            mode: ``"online"``, ``"offline"`` or ``"disabled"``; None means
                ``WANDB_MODE`` if set, else online when credentials exist
                and offline otherwise.
            log_samples_every: sample tables are logged only at steps
                divisible by this (0 turns them off).
            max_logged_samples: rows kept per sample table.
            alert_min_interval_s: the same alert title is not sent again
                within this many seconds.
            key_groups: metric short name -> section prefix; defaults to
                ``DEFAULT_KEY_GROUPS`` (pass ``{**DEFAULT_KEY_GROUPS, ...}``
                to extend it).
            run: an existing wandb run to log into; it is left to its owner
                to finish. An already active ``wandb.run`` is used the same way.
            init_kwargs: further ``wandb.init`` arguments (tags, group, ...).
            on_error: called with the error kind on each failure, e.g. to
                count ``mlx_otel_errors_total{kind}``.
            strict: raise failures and invalid values instead of counting them.
        """
        self.project = project
        self.name = name
        self.log_samples_every = int(log_samples_every)
        self.max_logged_samples = int(max_logged_samples)
        self.alert_min_interval_s = float(alert_min_interval_s)
        self.key_groups: Mapping[str, str] = (
            dict(DEFAULT_KEY_GROUPS) if key_groups is None else dict(key_groups)
        )
        self.strict = strict
        self.error_counts: dict[str, int] = {}
        self.suppressed_alerts: dict[str, int] = {}
        self.run: Any = None
        self.mode = "disabled"

        self._on_error = on_error
        self._lock = threading.RLock()
        self._wandb: ModuleType | None = None
        self._owns_run = False
        self._finished = False
        self._last_step: int | None = None
        self._alert_last_sent: dict[str, float] = {}

        self._wandb = import_wandb()
        if self._wandb is None:
            return
        resolved = resolve_mode(mode)
        if run is None and resolved != "disabled":
            # wandb.init would hand back an active run anyway ("return_previous");
            # taking it explicitly keeps us from finishing a run we do not own.
            run = getattr(self._wandb, "run", None)
        if run is not None:
            self.run = run
            self.mode = "offline" if getattr(run, "offline", False) else "online"
            self._define_step_metric(globs=[*self._groups(), CHART_GROUP])
            return

        self.mode = resolved
        if self.mode == "disabled":
            return
        kwargs: dict[str, Any] = {
            "project": project,
            "name": name,
            "entity": entity,
            "config": dict(config) if config else None,
            "mode": self.mode,
        }
        if dir is not None:
            kwargs["dir"] = str(dir)
        kwargs.update(init_kwargs or {})
        with self._guard("init"):
            if dir is not None:
                Path(dir).mkdir(parents=True, exist_ok=True)  # wandb.init wants it to exist
            self.run = self._wandb.init(**kwargs)
        if self.run is None and self.mode == "online":
            # Bad credentials or no route to the server: an offline copy that
            # `wandb sync` can upload later beats losing the run.
            logger.warning("WandB could not start online; logging offline instead.")
            self.mode = kwargs["mode"] = "offline"
            with self._guard("init"):
                self.run = self._wandb.init(**kwargs)
        if self.run is None:
            self.mode = "disabled"
            return
        self._owns_run = True
        self._define_step_metric(globs=["*"])
        if self.mode == "offline":
            asked = mode == "offline" or os.environ.get("WANDB_MODE") in ("offline", "dryrun")
            announce_offline(self.sync_dir, asked=asked)

    @classmethod
    def from_config(cls, monitoring: Any, **overrides: Any) -> EnhancedWandBLogger:
        """Build a logger from the seed's ``monitoring:`` settings.

        ``monitoring`` is a mapping or an object with the YAML keys
        ``use_wandb``, ``wandb_project``, ``wandb_entity``,
        ``wandb_run_name``, ``log_samples_every``, ``max_logged_samples``
        (and optionally ``wandb_mode``, ``wandb_dir``).

        >>> EnhancedWandBLogger.from_config({"use_wandb": False}).enabled
        False
        """

        kwargs = {**logger_settings(monitoring), **overrides}
        return cls(**kwargs)

    # ------------------------------------------------------------------ state

    @property
    def enabled(self) -> bool:
        """True while calls reach a live wandb run."""
        return self.run is not None and not self._finished

    @property
    def sync_dir(self) -> Path | None:
        """The run's local directory (``.../wandb/offline-run-*``), if any."""
        if self.run is None:
            return None
        try:
            return Path(self.run.settings.sync_dir)
        except Exception:  # a foreign or mocked run: fall back to files dir
            run_dir = getattr(self.run, "dir", None)
            return Path(run_dir).parent if run_dir else None

    def _groups(self) -> list[str]:
        prefixes = {"train/", "memory/", "rl/", GRADIENT_GROUP, "custom/"}
        prefixes.update(p if p.endswith("/") else p + "/" for p in self.key_groups.values())
        return sorted(prefixes)

    def _define_step_metric(self, *, globs: Sequence[str]) -> None:
        # With a run of our own every key uses train/step; with a run the
        # user handed in only our sections do, so their own charts keep
        # whatever x-axis they chose.
        with self._guard("init"):
            self.run.define_metric(STEP_KEY)
            for glob in globs:
                self.run.define_metric(glob if glob == "*" else glob + "*", step_metric=STEP_KEY)

    @contextmanager
    def _guard(self, kind: str) -> Iterator[None]:
        """Turn any failure inside into a counted, once-logged error."""
        try:
            yield
        except Exception as exc:
            self._record_error(kind, exc)
            if self.strict:
                raise

    def _record_error(self, kind: str, exc: BaseException | str) -> None:
        with self._lock:
            count = self.error_counts.get(kind, 0) + 1
            self.error_counts[kind] = count
        if count == 1:
            logger.warning(
                "WandB %s failed: %s. Training goes on; further %s errors are only counted.",
                kind,
                exc,
                kind,
            )
        if self._on_error is not None:
            try:
                self._on_error(kind)
            except Exception:  # a broken counter must not break logging
                logger.debug("on_error callback failed", exc_info=True)

    def _invalid(self, what: str) -> None:
        if self.strict:
            raise ValueError(what)
        self._record_error("invalid_value", what)

    # ------------------------------------------------------------- row building

    def _set_step(self, step: Any) -> None:
        if step is None:
            return
        number = to_number(step)
        if number is None or not number.is_integer():
            self._invalid(f"step must be an integer, got {step!r}")
            return
        number = int(number)
        if self._last_step is not None and number < self._last_step:
            logger.debug(
                "step went back from %s to %s; recorded at train/step=%s",
                self._last_step,
                number,
                number,
            )
        self._last_step = number

    def _distribution(self, key: str, values: Any) -> dict[str, Any]:
        assert self._wandb is not None
        return distribution(self._wandb, key, values, self._invalid, self._guard)

    def _emit(self, row: dict[str, Any], step: Any) -> bool:
        """Log one row at ``step`` (or the last known step)."""
        self._set_step(step)
        if not row:
            return False
        if self._last_step is not None:
            row[STEP_KEY] = self._last_step
        with self._guard("log"):
            self.run.log(row)
            return True
        return False

    # ------------------------------------------------------------- public API

    def log_training_metrics(
        self,
        loss: Any = None,
        reward: Any = None,
        grad_norm: Any = None,
        learning_rate: Any = None,
        step: int | None = None,
        **extra: Any,
    ) -> None:
        """Log one training step; ``extra`` values are grouped by name.

        Sequences (e.g. ``rewards=[...]``) become histograms with summary stats.

        >>> wb.log_training_metrics(loss=0.5, reward=0.8, step=100,
        ...                         memory_allocated_mb=812.0)  # doctest: +SKIP
        """
        metrics = {
            "loss": loss,
            "reward": reward,
            "grad_norm": grad_norm,
            "learning_rate": learning_rate,
            **extra,
        }
        self.log_metrics(metrics, step=step)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log a dict of metrics; keys without ``/`` get their section prefix.

        >>> wb.log_metrics({"custom/metric1": 1.0, "kl": 0.02}, step=7)  # doctest: +SKIP
        """
        if not self.enabled:
            return
        with self._lock:
            assert self._wandb is not None
            row = metric_row(self._wandb, metrics, self.key_groups, self._invalid, self._guard)
            self._emit(row, step)

    def log_distribution(self, name: str, values: Any, step: int | None = None) -> None:
        """Log a histogram of ``values`` with ``<key>/mean``, ``/std``, ``/min``, ``/max``.

        >>> wb.log_distribution("rewards", [0.6, 0.7, 0.8], step=100)  # doctest: +SKIP
        """
        if not self.enabled:
            return
        with self._lock:
            self._emit(self._distribution(group_key(name, self.key_groups), values), step)

    def log_gradients(self, layer_norms: Mapping[str, Any], step: int | None = None) -> None:
        """Log layer-wise gradient norms under ``gradients/<layer>``.

        >>> wb.log_gradients({"layers.0.attn": 0.12, "layers.0.mlp": 0.3}, step=5)  # doctest: +SKIP
        """
        if not self.enabled:
            return
        row: dict[str, Any] = {}
        for layer, norm in layer_norms.items():
            key = layer if str(layer).startswith(GRADIENT_GROUP) else GRADIENT_GROUP + str(layer)
            number = to_number(norm)
            if number is None:
                self._invalid(f"{key}: not a number: {norm!r}")
                continue
            row[key] = number
        with self._lock:
            self._emit(row, step)

    def finish(self, exit_code: int | None = None) -> None:
        """Close the run (if this logger started it); later calls are no-ops."""
        with self._lock:
            if self._finished or self.run is None:
                self._finished = True
                return
            self._finished = True
            if self._owns_run:
                with self._guard("finish"):
                    self.run.finish(exit_code=exit_code)

    def __enter__(self) -> EnhancedWandBLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A run that ends in an exception is marked failed in WandB.
        self.finish(exit_code=1 if exc_type is not None else None)
