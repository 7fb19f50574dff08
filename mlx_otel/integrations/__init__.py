"""Bridges to other programs: WandB, seaborn charts (in a child process) and
the Alertmanager webhook sink. (The mlx-lm / mlx-lm-lora callbacks make
their own monitor, so they live above it: :mod:`mlx_otel.trainers`.)

Each module imports its third-party library lazily or only when used, so
``import mlx_otel`` stays light.
"""
