"""mlx_otel: OpenTelemetry, Prometheus, Grafana and WandB observability for MLX training."""
