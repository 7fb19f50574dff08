"""The keywords of ``log_training_step``, declared once.

The monitor's signature and docstring, the recorder's unrolled checks and
the error messages all come from :data:`STEP_ARGUMENTS` (a test holds the
recorder's checks to it), so a keyword is added here and where it is stored.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "STEP_ARGUMENTS", "StepArgument", "documented_doc", "documented_signature"]


class _Missing:
    """Marks an argument that was not passed (``None`` passed is an invalid value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not given>"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class StepArgument:
    """One keyword of ``log_training_step``: its name, where it is stored, its type."""

    name: str
    #: The key among a step's values (statistics name, CSV column).
    stored: str
    #: The type shown in the documented signature.
    annotation: Any
    doc: str


#: The keywords of ``log_training_step`` besides ``step`` and custom metrics, in order.
STEP_ARGUMENTS: tuple[StepArgument, ...] = (
    StepArgument("loss", "loss", float, "training loss (NaN and inf are exported as they are)"),
    StepArgument("reward", "reward_mean", float, "mean reward of the step"),
    StepArgument("grad_norm", "grad_norm", float, "global gradient norm"),
    StepArgument("learning_rate", "learning_rate", float, "learning rate"),
    StepArgument("thinking_tokens", "thinking_tokens", int | Sequence[int],
                 "thinking tokens generated (a count, or one count per completion)"),
    StepArgument("answer_tokens", "answer_tokens", int | Sequence[int],
                 "answer tokens generated (a count, or one count per completion)"),
    StepArgument("memory_allocated_mb", "memory_allocated_mb", float,
                 "memory the loop measured, in MiB"),  # fmt: skip
    StepArgument("rewards", "rewards", Sequence[float], "per-sample rewards (a histogram)"),
    StepArgument("step_time", "step_time", float,
                 "the step's duration in seconds (else the interval between calls)"),
    # RL health: per-completion lists have one entry per completion, in the
    # order of ``rewards=`` (the completions of one prompt side by side).
    StepArgument("group_size", "group_size", int,
                 "completions per prompt (else the config's rl.group_size)"),
    StepArgument("completion_lengths", "completion_lengths", Sequence[int],
                 "tokens of each completion (a histogram)"),
    StepArgument("truncated", "truncated", Sequence[bool],
                 "whether each completion was cut at the maximum length"),
    StepArgument("correct", "correct", Sequence[bool], "whether each completion was right"),
    StepArgument("entropy", "entropy", float,
                 "mean token entropy of the policy on the sampled completions"),
    StepArgument("kl", "kl", float, "KL divergence of the policy from the reference policy"),
    StepArgument("validation_reward", "validation_reward", float,
                 "mean reward on held-out prompts"),
)  # fmt: skip


def documented_signature() -> inspect.Signature:
    """``log_training_step(self, step, *, loss=None, ..., **custom)`` from :data:`STEP_ARGUMENTS`."""
    P = inspect.Parameter
    return inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("step", P.POSITIONAL_OR_KEYWORD)]
        + [
            P(a.name, P.KEYWORD_ONLY, default=None, annotation=a.annotation)
            for a in STEP_ARGUMENTS
        ]
        + [P("custom", P.VAR_KEYWORD, annotation=float)]
    )


def documented_doc() -> str:
    """The docstring of ``log_training_step``, listing :data:`STEP_ARGUMENTS`."""
    keywords = ", ".join(f"{a.name}=" for a in STEP_ARGUMENTS)
    items = "\n".join(f"        * ``{a.name}``: {a.doc}" for a in STEP_ARGUMENTS)
    return f"""Record one training step; costs microseconds and never blocks.

        ``log_training_step(step, {keywords}, **custom)``. Scalars may be
        Python, NumPy or MLX numbers (0-d arrays too). Values that are not
        numbers are counted in ``mlx_otel_errors_total`` and logged once per
        key; NaN and inf are recorded as they are. Extra keywords become
        custom metrics (``mlx_train_custom{{name=...}}``), except the keys of
        the metrics trainers report (``reward_std=``, ``validation_loss=``,
        ``iterations_per_second=``; labelled ones as a mapping,
        ``reward_function_mean={{"format": 0.3}}``), stored as those metrics.

{items}
        """
