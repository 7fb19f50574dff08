"""Configuration: pydantic models loaded from YAML and environment variables.

The seed's YAML (``monitoring:`` and ``trainer:`` sections) loads unchanged;
``exporter:`` adds where and how metrics are served, ``charts:`` how the
snapshot charts look (their cadence stays ``monitoring.generate_charts_every``). Environment variables
``MLX_OTEL_<SECTION>__<KEY>`` override the file, e.g.
``MLX_OTEL_EXPORTER__PORT=9500``.

    >>> from mlx_otel.config import MonitorConfig
    >>> MonitorConfig.model_validate({"exporter": {"port": 0}}).exporter.port
    0

Unknown keys and wrong types raise :class:`ConfigError`, which names the key,
where it was found and what is allowed.
"""

from __future__ import annotations

import contextvars
import difflib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mlx_otel.catalog import METRICS, Kind, Source
from mlx_otel.config.identity import RUN_ID_VARIABLE
from mlx_otel.config.visualization import ChartStyle
from mlx_otel.errors import ConfigError

__all__ = [
    "ALERT_SINK_PASSWORD_VARIABLE",
    "ALERT_SINK_TOKEN_VARIABLE",
    "ENV_PREFIX",
    "OTHER_VARIABLES",
    "ChartStyle",
    "ConfigError",
    "ConfigWarning",
    "ExporterConfig",
    "MonitorConfig",
    "MonitoringSection",
    "RLSection",
    "TrainerSection",
    "load_config",
]

ENV_PREFIX = "MLX_OTEL_"
#: The alert sink's credentials (``mlx-otel alert-sink``), kept off its command line.
ALERT_SINK_TOKEN_VARIABLE = "MLX_OTEL_ALERT_SINK_TOKEN"
ALERT_SINK_PASSWORD_VARIABLE = "MLX_OTEL_ALERT_SINK_PASSWORD"
#: ``MLX_OTEL_*`` variables that are not configuration keys.
OTHER_VARIABLES = frozenset(
    {RUN_ID_VARIABLE, ALERT_SINK_TOKEN_VARIABLE, ALERT_SINK_PASSWORD_VARIABLE}
)


class _Section(BaseModel):
    # Unknown keys are errors: a typo must not silently switch a feature off.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MonitoringSection(_Section):
    """The seed's ``monitoring:`` section: WandB, samples, charts and outputs."""

    use_wandb: bool = False
    wandb_project: str = "mlx-rl-trainer"
    wandb_entity: str | None = None
    wandb_run_name: str | None = None
    #: ``None`` picks online with credentials, offline without.
    wandb_mode: Literal["online", "offline", "disabled"] | None = None
    log_samples_every: int = Field(5, ge=1)
    #: log_gradients computes layer norms every this many steps (1 = every step).
    log_gradients_every: int = Field(1, ge=1)
    max_logged_samples: int = Field(20, ge=1)
    #: cleanup() waits at most this long (seconds) for WandB to finish; what is
    #: not uploaded by then stays in the local run folder for ``wandb sync``.
    wandb_finish_timeout: float = Field(10.0, gt=0)
    #: The one chart cadence: charts every this many steps (0 turns periodic
    #: charts off). How they look is the ``charts:`` section.
    generate_charts_every: int = Field(100, ge=0)
    generate_at_checkpoints: bool = True
    #: Render charts in a separate process so they never compete with training.
    charts_in_subprocess: bool = True
    #: export_all() waits at most this long (seconds) for the chart process;
    #: charts not done by then are finished by that process on its own.
    charts_timeout: float = Field(10.0, gt=0)
    #: Rewrite training_metrics.csv and monitoring_summary.json this often
    #: (seconds; 0 = only at the end), so a run killed with SIGKILL or by the
    #: OOM killer keeps its history up to the last write.
    export_every_seconds: float = Field(60.0, ge=0)
    output_dir: Path = Path("./outputs")
    max_history: int = Field(10000, ge=10)
    #: Pending background tasks (WandB, charts, exports); beyond it the oldest is dropped.
    queue_size: int = Field(1024, ge=8)


class TrainerSection(_Section):
    """The seed's ``trainer:`` section: memory safety and statistics."""

    memory_safety_threshold_mb: float = Field(8000.0, gt=0)
    log_memory_usage: bool = True
    reward_smoothing_window: int = Field(10, ge=1)
    leak_detection_window: int = Field(50, ge=10)
    #: Reset MLX's peak counter after each step so the peak gauge is per step.
    #: False: mlx_otel never resets it (MemoryMonitor blocks neither), and the
    #: peak gauge is the run's; the trainer integrations set this.
    reset_peak_each_step: bool = True


class ExporterConfig(_Section):
    """Where and how the Prometheus endpoint is served."""

    enabled: bool = True
    #: Loopback by default; set 0.0.0.0 to let another host scrape.
    host: str = "127.0.0.1"
    #: 0 picks a free port; ranks add their local rank to it.
    port: int = Field(9464, ge=0, le=65535)
    #: TLS: serve https with this certificate (PEM) and key.
    certfile: Path | None = None
    keyfile: Path | None = None
    #: Basic auth for scrapes; set both (the password is never logged).
    basic_auth_username: str | None = None
    basic_auth_password: SecretStr | None = None
    #: Push the last values here when the run ends (short jobs may end
    #: between two scrapes), e.g. http://127.0.0.1:9091.
    pushgateway_url: str | None = None
    #: Register this rank's target in this folder (a JSON file per rank that
    #: Prometheus' file_sd_configs reads); removed again at a clean end.
    file_sd_dir: Path | None = None
    #: After the run ends, keep serving until Prometheus has scraped the final
    #: state (mlx_otel_run_finished 1) once, but at most this long.
    finish_grace_seconds: float = Field(30.0, ge=0)
    #: OTLP export towards an OpenTelemetry Collector, alongside the endpoint.
    #: Unset, the standard OTEL_METRICS_EXPORTER=otlp and OTEL_EXPORTER_OTLP_*
    #: variables decide, as in other OpenTelemetry programs.
    otlp_endpoint: str | None = None
    otlp_protocol: Literal["http/protobuf", "grpc"] | None = None
    otlp_headers: dict[str, str] | None = None
    otlp_interval_seconds: float | None = Field(None, gt=0)
    max_custom_metrics: int = Field(32, ge=0)
    max_layer_series: int = Field(64, ge=1, le=100_000)
    max_memory_blocks: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _pairs_are_complete(self) -> ExporterConfig:
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError(
                "set both basic_auth_username and basic_auth_password, or neither"
            )
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("keyfile is set but certfile is not: TLS needs the certificate")
        return self


#: Step values the anomaly scores may watch: the unlabelled gauges a step or
#: a trainer report stores.
ANOMALY_METRICS: frozenset[str] = frozenset(
    m.key for m in METRICS
    if m.source in (Source.STEP, Source.TRAINER) and m.kind is Kind.GAUGE and not m.labels
    and m.read_from == m.key and m.key != "step"
)  # fmt: skip


class RLSection(_Section):
    """RL health: how groups of completions are judged and which values are watched for spikes.

    ``group_size`` is the completions per prompt when ``log_training_step``
    is not given ``group_size=`` (``None``: unknown, no zero-spread ratios).
    A group whose rewards are all equal is *solved* when every reward is at
    or above ``solved_reward``, *unsolved* when every one is at or below
    ``unsolved_reward`` (``correct=`` decides instead when given), else
    *tied*. Each of ``anomaly_metrics`` gets a robust z-score against its
    previous ``anomaly_window`` steps; a score whose magnitude exceeds
    ``anomaly_threshold`` counts one anomaly.
    """

    group_size: int | None = Field(None, ge=1)
    solved_reward: float = 1.0
    unsolved_reward: float = 0.0
    anomaly_window: int = Field(100, ge=10, le=100_000)
    anomaly_threshold: float = Field(6.0, gt=0)
    anomaly_metrics: tuple[str, ...] = ("grad_norm", "kl", "entropy", "reward_mean", "loss")

    @field_validator("anomaly_metrics")
    @classmethod
    def _step_values(cls, metrics: tuple[str, ...]) -> tuple[str, ...]:
        for name in metrics:
            if name not in ANOMALY_METRICS:
                hint = _suggestion(name, sorted(ANOMALY_METRICS))
                raise ValueError(
                    f"{name!r} is no step value;{hint} choose among "
                    f"{', '.join(sorted(ANOMALY_METRICS))}"
                )
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"{list(metrics)} names a metric twice")
        return metrics

    @model_validator(mode="after")
    def _consistent(self) -> RLSection:
        if not self.unsolved_reward < self.solved_reward:
            raise ValueError(
                f"unsolved_reward ({self.unsolved_reward}) must be below solved_reward "
                f"({self.solved_reward}): a group cannot be both solved and unsolved"
            )
        return self


class MonitorConfig(_Section):
    """Everything :class:`mlx_otel.TrainingMonitor` reads."""

    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)
    trainer: TrainerSection = Field(default_factory=TrainerSection)
    exporter: ExporterConfig = Field(default_factory=ExporterConfig)
    #: How snapshot charts look (style, palette, dpi, figsize ...).
    charts: ChartStyle = Field(default_factory=ChartStyle)
    #: RL health: group size, what counts as solved, anomaly scores.
    rl: RLSection = Field(default_factory=RLSection)

    @classmethod
    def from_yaml(cls, path: str | Path, *, env: Mapping[str, str] | None = None) -> MonitorConfig:
        """Load a YAML file, then apply ``MLX_OTEL_*`` environment overrides."""
        return load_config(path, env=env)

    @classmethod
    def load_from_yaml(
        cls, path: str | Path, *, env: Mapping[str, str] | None = None
    ) -> MonitorConfig:
        """The seed's spelling (``ExperimentConfig.load_from_yaml``) of :meth:`from_yaml`."""
        return load_config(path, env=env)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at ``loc`` (the parent of an unknown key)."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return sorted(getattr(current, "model_fields", {}))


def _suggestion(given: str, allowed: list[str]) -> str:
    """`` did you mean 'x'?`` for the allowed name closest to a misspelt one, else ``""``."""
    close = difflib.get_close_matches(given, allowed, n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""


def _describe(error: Any, source: str) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(MonitorConfig, loc[:-1])
        hint = _suggestion(str(loc[-1]), allowed)
        return f"unknown key '{key}' in {source};{hint} allowed here: {', '.join(allowed)}"
    value = error.get("input")
    if isinstance(value, Mapping) or "password" in key:
        # A whole section (it may hold a password) or a secret: not echoed.
        return f"'{key}' in {source}: {error['msg']}"
    return f"'{key}' in {source}: {error['msg']} (got {value!r})"


def _validate(data: Any, source: str) -> MonitorConfig:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping with sections monitoring/trainer/exporter/charts/rl, "
            f"got {type(data).__name__}"
        )
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_all(exc, source)) from None


def _describe_all(exc: ValidationError, source: str) -> str:
    lines = [_describe(e, source) for e in exc.errors()]
    return "invalid configuration:\n  " + "\n  ".join(lines)


#: The environment load_config reads (os.environ unless a mapping is given).
_ENVIRONMENT: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("environment")


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, reading the mapping load_config was given."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENVIRONMENT.get(os.environ)
        return {
            name if self.case_sensitive else name.lower(): (
                None if value == self.env_parse_none_str else value
            )
            for name, value in env.items()
        }


class _MonitorSettings(BaseSettings, MonitorConfig):
    """MonitorConfig with ``MLX_OTEL_<SECTION>__<KEY>`` variables applied over the given data."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        validate_assignment=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, as a deployment expects.
        return _Environment(settings_cls), init_settings


class ConfigWarning(UserWarning):
    """An ``MLX_OTEL_*`` variable that looks like a misspelt configuration key."""


def _variable_names() -> dict[str, str]:
    """{``MLX_OTEL_<SECTION>__<KEY>``: ``section.key``} of every configuration key."""
    names = {}
    for section, field in MonitorConfig.model_fields.items():
        for key in getattr(field.annotation, "model_fields", {}):
            names[f"{ENV_PREFIX}{section}__{key}".upper()] = f"{section}.{key}"
    return names


def _check_variable_names(env: Mapping[str, str]) -> None:
    """Refuse an ``MLX_OTEL_<SECTION>__...`` variable of no section; warn of near misses.

    pydantic-settings reads only the sections it knows, so a misspelt section
    (``MLX_OTEL_EXPORTR__PORT``) would be ignored without a word. A variable
    without ``__`` may belong to another program, so it is only warned about
    when it is close to a key (``MLX_OTEL_EXPORTER_PORT``).
    """
    known = _variable_names()
    sections = {f"{ENV_PREFIX}{s}".upper() for s in MonitorConfig.model_fields}
    for raw in sorted(env):
        name = raw.upper()
        if not name.startswith(ENV_PREFIX) or name in known or name in OTHER_VARIABLES:
            continue
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.85)
        hint = f"; did you mean {close[0]}?" if close else ""
        if "__" in name:
            if name.split("__", 1)[0] not in sections:
                raise ConfigError(
                    f"environment variable {raw} names no configuration section "
                    f"(MLX_OTEL_<SECTION>__<KEY>, SECTION one of "
                    f"{', '.join(sorted(MonitorConfig.model_fields))}){hint}"
                )
        elif close:
            warnings.warn(
                f"environment variable {raw} is not a configuration key and is ignored{hint}",
                ConfigWarning,
                stacklevel=3,
            )


def load_config(
    source: str | Path | Mapping[str, Any] | MonitorConfig | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> MonitorConfig:
    """Build a :class:`MonitorConfig` from a YAML path, a mapping or nothing.

    Environment overrides (``MLX_OTEL_<SECTION>__<KEY>``) apply on top; pass
    ``env={}`` to ignore the process environment.
    """
    env = os.environ if env is None else env
    if isinstance(source, MonitorConfig):
        data: Any = source.model_dump()
        where = "the given MonitorConfig"
    elif source is None:
        data, where = {}, "defaults"
    elif isinstance(source, Mapping):
        data, where = dict(source), "the given mapping"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        where = str(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    else:
        # The seed passes its ExperimentConfig: anything with these sections works.
        data = {
            name: _as_dict(getattr(source, name))
            for name in ("monitoring", "trainer", "exporter", "charts", "rl")
            if getattr(source, name, None) is not None
        }
        where = type(source).__name__
    _check_variable_names(env)
    names = sorted(n for n in env if n.upper().startswith(ENV_PREFIX) and "__" in n)
    if not names or not isinstance(data, Mapping):
        return _validate(data, where)
    where = f"{where} with environment overrides {', '.join(names)}"
    token = _ENVIRONMENT.set(env)
    try:
        settings = _MonitorSettings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe_all(exc, where)) from None
    finally:
        _ENVIRONMENT.reset(token)
    # Sections are validated already: a plain MonitorConfig holding them.
    return MonitorConfig.model_validate(dict(settings))


def _as_dict(section: Any) -> Any:
    if isinstance(section, Mapping):
        return dict(section)
    if isinstance(section, BaseModel):
        return section.model_dump(exclude_unset=True)
    if hasattr(section, "__dict__"):
        return {k: v for k, v in vars(section).items() if not k.startswith("_")}
    return section
