"""Knobs of the demo run, checked when they are set.

Plain Python (no MLX), so the command line can validate them before MLX loads.

Example:
    >>> round(DemoSettings(steps=120).learning_rate_at(0), 10)
    0.00015
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DemoSettings"]


@dataclass(frozen=True)
class DemoSettings:
    """Knobs of the demo run; the defaults learn the task in about ten seconds.

    Example:
        >>> DemoSettings(steps=50, seed=3).group_size
        8
    """

    steps: int = 200
    seed: int = 0
    group_size: int = 8
    prompts_per_step: int = 8
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    max_new_tokens: int = 10
    leak_mb_per_step: float = 0.0
    hidden_size: int = 32
    num_layers: int = 2
    max_target: int = 18
    min_learning_rate_ratio: float = 0.1  # cosine decays to this fraction of the peak
    entropy_coef: float = 0.01
    max_grad_norm: float = 1.0
    advantage_eps: float = 1e-4
    samples_to_show: int = 8  # completions of the first prompt copied into StepResult
    validation_every: int = 10  # steps between validations (0: never)

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "group_size",
            "prompts_per_step",
            "max_new_tokens",
            "hidden_size",
            "num_layers",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.validation_every < 0:
            raise ValueError(
                f"validation_every must not be negative, got {self.validation_every!r}"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must not be negative, got {self.warmup_steps!r}")
        if not self.leak_mb_per_step >= 0:
            raise ValueError(
                f"leak_mb_per_step must not be negative, got {self.leak_mb_per_step!r}"
            )
        if not 0 <= self.max_target <= 99:
            raise ValueError(f"max_target must be in 0..99, got {self.max_target!r}")
        if not 0 <= self.min_learning_rate_ratio <= 1:
            raise ValueError(
                f"min_learning_rate_ratio must be in [0, 1], got {self.min_learning_rate_ratio!r}"
            )

    def learning_rate_at(self, step: int) -> float:
        """Linear warmup to ``learning_rate``, then cosine decay over the rest.

        Steps count from 0; steps past the end stay at the final rate.

        Example:
            >>> s = DemoSettings(steps=100, learning_rate=1e-3, warmup_steps=10)
            >>> s.learning_rate_at(4), s.learning_rate_at(10), s.learning_rate_at(99) < 2e-4
            (0.0005, 0.001, True)
        """
        peak = self.learning_rate
        if step < self.warmup_steps:
            return peak * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.steps - 1 - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        floor = peak * self.min_learning_rate_ratio
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
