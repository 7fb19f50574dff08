"""mlx_otel: OpenTelemetry, Prometheus, Grafana and WandB observability for MLX training.

    from mlx_otel import TrainingMonitor
    with TrainingMonitor(run_id="run_001") as monitor:   # http://127.0.0.1:9464/metrics
        monitor.log_training_step(step=0, loss=0.5, reward=0.8)
"""


from mlx_otel.config import MonitorConfig, load_config
from mlx_otel.errors import ConfigError, MlxOtelError, PortInUseError
from mlx_otel.monitor import MonitoringManager, TrainingMonitor

__version__ = "0.1.0"

# The seed's classes; charts and WandB pull in optional extras, so they are
# imported when first used.
_LAZY = {
    "ComprehensiveStatsCollector": "mlx_otel.numbers.stats",
    "ChartGenerator": "mlx_otel.integrations.charts",
    "VisualizationConfig": "mlx_otel.config.visualization",
    "MemoryProfiler": "mlx_otel.exporter.mlx_memory",
    "MemoryMonitor": "mlx_otel.exporter.mlx_memory",
    "MemorySnapshot": "mlx_otel.exporter.mlx_memory",
    "LeakReport": "mlx_otel.exporter.mlx_memory",
    "EnhancedWandBLogger": "mlx_otel.integrations.wandb_bridge",
    "AlertSink": "mlx_otel.integrations.alert_sink",
    "GradientNorms": "mlx_otel.numbers.gradients",
    "layer_grad_norms": "mlx_otel.numbers.gradients",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlx_otel' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)

__all__ = [
    "AlertSink",
    "ChartGenerator",
    "ComprehensiveStatsCollector",
    "ConfigError",
    "EnhancedWandBLogger",
    "GradientNorms",
    "LeakReport",
    "MemoryMonitor",
    "MemoryProfiler",
    "MemorySnapshot",
    "MlxOtelError",
    "MonitorConfig",
    "MonitoringManager",
    "PortInUseError",
    "TrainingMonitor",
    "VisualizationConfig",
    "layer_grad_norms",
    "load_config",
]
