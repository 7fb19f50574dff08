"""Configuration: pydantic models read from YAML, mappings and the environment.

    from mlx_otel.config import load_config
    config = load_config("monitoring.yaml")   # MLX_OTEL_EXPORTER__PORT=9500 overrides
"""

from __future__ import annotations

from mlx_otel.config.settings import (
    ENV_PREFIX,
    ChartStyle,
    ExporterConfig,
    MonitorConfig,
    MonitoringSection,
    TrainerSection,
    load_config,
)
from mlx_otel.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "ChartStyle",
    "ConfigError",
    "ExporterConfig",
    "MonitorConfig",
    "MonitoringSection",
    "TrainerSection",
    "load_config",
]
