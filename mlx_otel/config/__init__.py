"""Configuration: pydantic models read from YAML, mappings and the environment.

    from mlx_otel.config import load_config
    config = load_config("monitoring.yaml")   # MLX_OTEL_EXPORTER__PORT=9500 overrides
"""

from __future__ import annotations

from mlx_otel.config.settings import (
    ALERT_SINK_PASSWORD_VARIABLE,
    ALERT_SINK_TOKEN_VARIABLE,
    ENV_PREFIX,
    ChartStyle,
    ConfigWarning,
    ExporterConfig,
    MonitorConfig,
    MonitoringSection,
    RLSection,
    TrainerSection,
    load_config,
)
from mlx_otel.errors import ConfigError

__all__ = [
    "ALERT_SINK_PASSWORD_VARIABLE",
    "ALERT_SINK_TOKEN_VARIABLE",
    "ENV_PREFIX",
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
