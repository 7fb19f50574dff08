"""A real, small MLX reinforcement-learning run used by ``mlx-otel demo``."""
