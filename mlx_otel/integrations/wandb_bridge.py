"""Forward training metrics, samples, charts, alerts and checkpoints to WandB.

``EnhancedWandBLogger`` is the WandB logger of ``seed/monitoring-spec.md``.
It groups keys into WandB sections (``train/``, ``memory/``, ``rl/``,
``gradients/``, ``custom/``), plots every metric against ``train/step``,
rate-limits alerts and never lets a WandB failure reach the training loop.

Usage::

    from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger

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
holding the process's exit.
"""

from __future__ import annotations

import logging
import math
import netrc
import numbers
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from mlx_otel.catalog import METRICS, RECORD_FIELDS, Source, wandb_group_by_name
from mlx_otel.records import to_number, to_numbers

__all__ = [
    "DEFAULT_KEY_GROUPS",
    "STEP_KEY",
    "EnhancedWandBLogger",
    "group_key",
    "has_wandb_credentials",
]

logger = logging.getLogger(__name__)

STEP_KEY = "train/step"
"""The x-axis of every chart: the training step, logged as a metric of its own."""

DEFAULT_KEY_GROUPS: dict[str, str] = {
    # Trainer metrics reach WandB under their full key (rl/kl), so a user's own
    # "kl" stays a custom metric.
    **{m.key: f"{m.wandb_group}/" for m in METRICS if m.source is not Source.TRAINER},
    **{key: f"{group}/" for key, (group, _unit) in RECORD_FIELDS.items()},
}
"""Metric short name -> WandB section, from the catalogue. Other names go
where :func:`mlx_otel.catalog.wandb_group` puts them (``memory/`` when they
mention memory or end in ``_mb``/``_bytes``, otherwise ``custom/``); names
that already contain ``/`` are kept as they are."""

SAMPLES_KEY = "rl/samples"
CHART_GROUP = "charts/"
GRADIENT_GROUP = "gradients/"
_HISTOGRAM_BINS = 64
_ALERT_TITLE_MAX = 63  # wandb rejects titles of 64 characters or more
_LEVELS = {"INFO": "INFO", "WARN": "WARN", "WARNING": "WARN", "ERROR": "ERROR", "CRITICAL": "ERROR"}
_INSTALL_HINT = "pip install 'mlx-otel[wandb]'"

# Process-wide "say it once" flags: a training script may build several
# loggers (one per run or rank) and the advice is the same for all of them.
_notice_lock = threading.Lock()
_notices_given: set[str] = set()


def _notice_once(key: str, level: int, message: str, *args: Any) -> None:
    with _notice_lock:
        if key in _notices_given:
            return
        _notices_given.add(key)
    logger.log(level, message, *args)


def _import_wandb() -> ModuleType | None:
    """Import wandb lazily, so the package stays an optional extra."""
    try:
        import wandb
    except ImportError:
        _notice_once(
            "missing",
            logging.WARNING,
            "The 'wandb' package is not installed, so WandB logging is off. Install it with: %s",
            _INSTALL_HINT,
        )
        return None
    return wandb


def has_wandb_credentials() -> bool:
    """Whether wandb would find credentials without prompting.

    Looks at ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE`` and a netrc
    entry (``$NETRC`` or ``~/.netrc``) for the host of ``WANDB_BASE_URL``
    (default ``api.wandb.ai``), as wandb itself does.

    >>> has_wandb_credentials()  # doctest: +SKIP
    False
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        entry = netrc.netrc(str(path)).authenticators(host or "api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def _resolve_mode(mode: str | None) -> str:
    """Explicit mode, else WANDB_MODE / WANDB_DISABLED, else online iff credentials."""
    if mode is None:
        if os.environ.get("WANDB_DISABLED", "").lower() in {"1", "true", "yes"}:
            return "disabled"
        env_mode = os.environ.get("WANDB_MODE", "").lower()
        mode = {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode) or None
    if mode is None:
        return "online" if has_wandb_credentials() else "offline"
    if mode not in {"online", "offline", "disabled"}:
        raise ValueError(f"mode must be 'online', 'offline' or 'disabled', not {mode!r}")
    return mode


def group_key(name: str, key_groups: Mapping[str, str] | None = None) -> str:
    """The WandB key of a metric: its section prefix plus its short name.

    >>> group_key("loss")
    'train/loss'
    >>> group_key("memory_allocated_mb"), group_key("my_metric"), group_key("eval/acc")
    ('memory/memory_allocated_mb', 'custom/my_metric', 'eval/acc')
    """
    if "/" in name:
        return name
    groups = DEFAULT_KEY_GROUPS if key_groups is None else key_groups
    prefix = groups.get(name)
    if prefix is None:
        prefix = wandb_group_by_name(name)
    prefix = prefix.rstrip("/")
    return f"{prefix}/{name}" if prefix else name


def _as_number(value: Any) -> float | int | None:
    """A plain number for numbers and size-1 arrays (numpy, MLX); else None.

    Integers stay integers (WandB shows them without a decimal point).
    """
    if isinstance(value, numbers.Integral):
        return int(value)
    return to_number(value)


def _as_values(value: Any) -> list[float] | None:
    """A flat list of floats for sequences and arrays; None if not numeric."""
    array = to_numbers(value)
    return None if array is None else array.tolist()


def _sanitize_artifact_name(name: str) -> str:
    # Artifact names may hold only letters, digits, '-', '_' and '.'.
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


class EnhancedWandBLogger:
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

        self._wandb = _import_wandb()
        if self._wandb is None:
            return
        resolved = _resolve_mode(mode)
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
            self._announce_offline(no_credentials=not asked and not has_wandb_credentials())

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

        def get(key: str, default: Any = None) -> Any:
            if isinstance(monitoring, Mapping):
                return monitoring.get(key, default)
            return getattr(monitoring, key, default)

        kwargs: dict[str, Any] = {
            "project": get("wandb_project") or "mlx-rl-trainer",
            "name": get("wandb_run_name"),
            "entity": get("wandb_entity"),
            "mode": get("wandb_mode") if get("use_wandb", True) else "disabled",
            "dir": get("wandb_dir"),
            "log_samples_every": get("log_samples_every", 5),
            "max_logged_samples": get("max_logged_samples", 20),
        }
        kwargs.update(overrides)
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

    def _announce_offline(self, *, no_credentials: bool) -> None:
        where = self.sync_dir
        if not no_credentials:
            logger.info(
                "WandB is logging offline to %s; upload it with: wandb sync %s", where, where
            )
            return
        _notice_once(
            "offline",
            logging.WARNING,
            "No WandB credentials found (run `wandb login` or set WANDB_API_KEY), "
            "so WandB is logging offline to %s. Upload it later with: wandb sync %s",
            where,
            where,
        )

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
        number = _as_number(step)
        if number is None or (isinstance(number, float) and not number.is_integer()):
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
        """A histogram plus mean/std/min/max of the finite values."""
        numbers_ = _as_values(values)
        if numbers_ is None:
            self._invalid(f"{key}: expected a sequence of numbers, got {type(values).__name__}")
            return {}
        finite = [v for v in numbers_ if math.isfinite(v)]
        row: dict[str, Any] = {}
        # NaN/inf cannot be binned; they are left out and counted so they stay visible.
        if len(finite) != len(numbers_):
            row[f"{key}/nonfinite"] = len(numbers_) - len(finite)
        if not finite:
            return row
        assert self._wandb is not None
        with self._guard("histogram"):
            row[key] = self._wandb.Histogram(finite, num_bins=_HISTOGRAM_BINS)
        mean = math.fsum(finite) / len(finite)
        row[f"{key}/mean"] = mean
        row[f"{key}/std"] = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / len(finite))
        row[f"{key}/min"] = min(finite)
        row[f"{key}/max"] = max(finite)
        return row

    def _row(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        from wandb.sdk.data_types.base_types.wb_value import WBValue

        row: dict[str, Any] = {}
        for name, value in metrics.items():
            if value is None:
                continue
            key = group_key(str(name), self.key_groups)
            if isinstance(value, WBValue):  # Image, Table, Histogram: as given
                row[key] = value
                continue
            number = _as_number(value)
            if number is not None:
                row[key] = number  # NaN/inf pass through: a NaN loss is a signal
                continue
            if _as_values(value) is not None:
                row.update(self._distribution(key, value))
                continue
            self._invalid(f"{key}: not a number: {value!r}")
        return row

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
            self._emit(self._row(metrics), step)

    def log_distribution(self, name: str, values: Any, step: int | None = None) -> None:
        """Log a histogram of ``values`` with ``<key>/mean``, ``/std``, ``/min``, ``/max``.

        >>> wb.log_distribution("rewards", [0.6, 0.7, 0.8], step=100)  # doctest: +SKIP
        """
        if not self.enabled:
            return
        with self._lock:
            self._emit(self._distribution(group_key(name, self.key_groups), values), step)

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
            n = len(prompts)
            columns = [generations, references, rewards]
            if any(col is not None and len(col) != n for col in columns):
                self._invalid(
                    "log_sample_table: prompts, generations, references and "
                    "rewards differ in length; extra rows dropped"
                )
                n = min([n, *(len(col) for col in columns if col is not None)])
            n = min(n, max(self.max_logged_samples, 0))
            if n == 0:
                return False
            data = []
            for i in range(n):
                reward = _as_number(rewards[i]) if rewards is not None else None
                data.append(
                    [
                        at,
                        str(prompts[i]),
                        str(generations[i]),
                        None if references is None else str(references[i]),
                        None if reward is None else float(reward),
                    ]
                )
            assert self._wandb is not None
            with self._guard("table"):
                table = self._wandb.Table(
                    columns=["step", "prompt", "generation", "reference", "reward"], data=data
                )
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

    def log_gradients(self, layer_norms: Mapping[str, Any], step: int | None = None) -> None:
        """Log layer-wise gradient norms under ``gradients/<layer>``.

        >>> wb.log_gradients({"layers.0.attn": 0.12, "layers.0.mlp": 0.3}, step=5)  # doctest: +SKIP
        """
        if not self.enabled:
            return
        row: dict[str, Any] = {}
        for layer, norm in layer_norms.items():
            key = layer if str(layer).startswith(GRADIENT_GROUP) else GRADIENT_GROUP + str(layer)
            number = _as_number(norm)
            if number is None:
                self._invalid(f"{key}: not a number: {norm!r}")
                continue
            row[key] = float(number)
        with self._lock:
            self._emit(row, step)

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
                    _sanitize_artifact_name(name or f"model-{self.run.id}"),
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
