"""Bridges to other programs: WandB, seaborn charts (in a child process), the
Alertmanager webhook sink, and the trainers' own functions observed for a
run (:mod:`~mlx_otel.integrations.trainer_hooks`). (The mlx-lm /
mlx-lm-lora callbacks make their own monitor, so they live above it:
:mod:`mlx_otel.trainers`.)

Each module imports its third-party library lazily or only when used, so
``import mlx_otel`` stays light.
"""
