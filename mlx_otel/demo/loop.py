"""The demo's monitored training loop: what ``mlx-otel demo`` reports each step.

:class:`~mlx_otel.demo.rl.DemoTrainer` knows nothing of monitoring; this
loop hands its numbers to a :class:`~mlx_otel.monitor.TrainingMonitor` the
way a user's GRPO loop would, so the demo fills every RL panel of the
dashboards: one ``log_training_step`` per step with the per-completion lists
(lengths, truncation, correctness, thinking and answer tokens), entropy and
KL, the phases of the step timed by ``monitor.phase``, and a validation on
held-out prompts every ``validation_every`` steps. It also passes, by their
catalogue keys, the numbers mlx-lm-lora's GRPO trainer reports (reward
spread within groups, rewards per reward function, completion length
statistics, throughput), so one dashboard reads the demo and the trainers alike.

    >>> from mlx_otel import TrainingMonitor                       # doctest: +SKIP
    >>> trainer = DemoTrainer(DemoSettings(steps=50))               # doctest: +SKIP
    >>> with TrainingMonitor() as monitor:                          # doctest: +SKIP
    ...     means = train(trainer, monitor)
"""

from __future__ import annotations

import threading
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_otel.demo.rl import DemoTrainer, StepResult, ValidationResult

__all__ = ["step_keywords", "train", "validation_keywords"]

_MB = 2**20


def step_keywords(result: StepResult, *, trained_tokens: int = 0) -> dict[str, Any]:
    """The keywords of ``log_training_step`` for one demo step (``step`` apart).

    Per-completion values are lists, one entry per completion, the
    completions of one prompt side by side (the trainer's group layout).
    ``trained_tokens`` is the run's total so far, this step included.

    Example:
        >>> from mlx_otel.demo.rl import DemoSettings, DemoTrainer
        >>> keywords = step_keywords(DemoTrainer(DemoSettings()).train_step(0))
        >>> keywords["group_size"], len(keywords["completion_lengths"])
        (8, 64)
        >>> sorted(keywords["reward_function_mean"])
        ['answer', 'format']
    """
    rewards = np.asarray(result.rewards)
    grouped = rewards.reshape(-1, result.group_size)
    lengths = result.completion_lengths
    functions = result.reward_functions
    return {
        "loss": result.loss,
        "reward": result.reward_mean,
        "grad_norm": result.grad_norm,
        "learning_rate": result.learning_rate,
        "thinking_tokens": result.thinking_per_completion.tolist(),
        "answer_tokens": result.answer_per_completion.tolist(),
        "memory_allocated_mb": mx.get_active_memory() / _MB,
        "rewards": result.rewards,
        "step_time": result.step_time,
        "group_size": result.group_size,
        "completion_lengths": result.completion_lengths.tolist(),
        "truncated": result.truncated.tolist(),
        "correct": result.correct.tolist(),
        "entropy": result.entropy,
        "kl": result.kl,
        # What mlx-lm-lora's GRPO trainer reports, by catalogue key.
        "reward_std": float(rewards.std()),
        "grouped_reward_mean": float(grouped.mean(axis=1).mean()),
        "grouped_reward_std": float(grouped.std(axis=1).mean()),
        "reward_function_mean": {name: float(v.mean()) for name, v in functions.items()},
        "reward_function_std": {name: float(v.std()) for name, v in functions.items()},
        "reward_function_coverage": dict.fromkeys(functions, 1.0),  # every one scores all
        "generated_tokens": {
            "mean": float(lengths.mean()),
            "max": float(lengths.max()),
            "min": float(lengths.min()),
        },  # fmt: skip
        "iterations_per_second": 1.0 / result.step_time,
        "tokens_per_second": result.generated_tokens / result.step_time,
        "trained_tokens": trained_tokens,
        "steps_per_report": 1,  # the demo reports every iteration
        "trainer_peak_memory": mx.get_peak_memory(),
        # Custom metrics: the share of exact answers.
        "solved_fraction": float(np.mean(rewards >= 0.999)),
    }


def validation_keywords(step: int, result: ValidationResult) -> dict[str, Any]:
    """The keywords of ``log_training_step`` that carry a validation's result."""
    return {
        "validation_reward": result.reward_mean,
        "validation_loss": result.loss,
        "validation_step": step + 1,  # iterations completed when it ran
        "validation_duration": result.duration,
    }


def train(
    trainer: DemoTrainer,
    monitor: Any,
    *,
    stop: threading.Event | None = None,
    progress: bool = False,
    leak_steps: int | None = None,
    step_delay: float = 0.0,
) -> list[float]:
    """Train ``trainer.settings.steps`` steps, reporting each to ``monitor``.

    Returns the mean reward of every step. ``stop`` ends the run early (after
    the step in progress); ``leak_steps`` stops the simulated leak after that
    many steps; ``step_delay`` sleeps after each step (to watch it live).
    """
    from tqdm import tqdm

    from mlx_otel.exporter.mlx_memory import MemoryMonitor

    stop = stop or threading.Event()
    steps = trainer.settings.steps
    bar = tqdm(total=steps, unit="step", disable=not progress, dynamic_ncols=True)
    means: list[float] = []
    trained_tokens = 0
    try:
        for step in range(steps):
            if stop.is_set():
                break
            if leak_steps is not None and step == leak_steps:
                trainer.release_leak()
            with MemoryMonitor(monitor.memory_profiler, "train_step"):
                result = trainer.train_step(step, phase=monitor.phase)
            trained_tokens += result.generated_tokens
            keywords = step_keywords(result, trained_tokens=trained_tokens)
            if trainer.validation_due(step):
                with monitor.phase("validation"):
                    validation = trainer.validate()
                keywords.update(validation_keywords(step, validation))
                # The step's wall time includes its validation, as its phases do.
                keywords["step_time"] = result.step_time + validation.duration
            monitor.log_training_step(step, **keywords)
            monitor.log_gradients(step, result.grads)
            monitor.log_samples(
                step, result.prompts, result.generations, result.references, result.sample_rewards
            )
            means.append(result.reward_mean)
            bar.set_postfix(
                loss=f"{result.loss:.3f}",
                reward=f"{result.reward_mean:.3f}",
                mlx_mb=f"{mx.get_active_memory() / _MB:.1f}",
                refresh=False,
            )
            bar.update(1)
            if step_delay > 0:
                stop.wait(step_delay)
    finally:
        bar.close()
    return means
