"""mlx_otel: OpenTelemetry, Prometheus, Grafana and WandB observability for MLX training.

    from mlx_otel import TrainingMonitor
    with TrainingMonitor(run_id="run_001") as monitor:   # http://127.0.0.1:9464/metrics
        monitor.log_training_step(step=0, loss=0.5, reward=0.8)
"""

from __future__ import annotations

from mlx_otel.config import MonitorConfig, load_config
from mlx_otel.errors import ConfigError, MlxOtelError, PortInUseError
from mlx_otel.monitor import MonitoringManager, TrainingMonitor

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "MlxOtelError",
    "MonitorConfig",
    "MonitoringManager",
    "PortInUseError",
    "TrainingMonitor",
    "load_config",
]
