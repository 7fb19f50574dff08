"""Bridges to other programs: WandB, seaborn charts (in a child process),
the Alertmanager webhook sink and the mlx-lm / mlx-lm-lora trainer callbacks.

Each module imports its third-party library lazily or only when used, so
``import mlx_otel`` stays light.
"""
