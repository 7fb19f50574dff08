"""Whether a GRPO step can teach the policy anything: group spread, lengths, truncation.

GRPO-style training normalises each completion's reward within its group
(the completions of one prompt). A group whose rewards are all equal has
zero advantage and contributes no gradient; when most groups are like that
the run burns compute and stands still (TRL's ``frac_reward_zero_std``;
slime splits it into all-correct "too easy" and all-wrong "too hard").
:func:`rl_health` measures that and the length signals around it from the
per-completion lists of one step, exactly, with NumPy:

* the share of groups without spread, by outcome: *solved* (every
  completion right, or every reward at or above ``solved_reward``),
  *unsolved* (every one wrong, or every reward at or below
  ``unsolved_reward``) and *tied* (any other group without spread); the
  three add up to the share of groups without learning signal;
* the mean completion length of right and of wrong answers (Dr. GRPO: a
  length-normalised loss makes wrong answers grow longer);
* the share of completions cut at the maximum length (DAPO's overlong
  shaping, TRL's ``completions/clipped_ratio``);
* the share of completions that thought and never answered (thinking
  tokens and no answer tokens: a ``</think>`` never emitted).

Inputs are checked here too: :func:`rl_health` returns the problems it
found (argument, message) beside the numbers it could still compute, so the
caller decides whether to count, log or raise them.

    >>> health = rl_health([1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 1.0, 0.0], group_size=2)
    >>> health.zero_std
    {'solved': 0.25, 'unsolved': 0.25, 'tied': 0.25}
    >>> rl_health([1.0, 0.0], group_size=3).problems[0][0]
    'group_size'
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlx_otel.records import to_number

__all__ = ["OUTCOMES", "RLHealth", "rl_health"]

#: The outcomes of a group without reward spread.
OUTCOMES: tuple[str, ...] = ("solved", "unsolved", "tied")


@dataclass(frozen=True)
class RLHealth:
    """The RL health of one step; ``None`` (or empty) where the inputs do not tell."""

    #: Completions per prompt used (None: unknown or invalid).
    group_size: int | None = None
    #: Share of groups without reward spread, by outcome (:data:`OUTCOMES`).
    zero_std: dict[str, float] | None = None
    #: Mean completion length by correctness ("true", "false"), where there are any.
    length_mean: dict[str, float] = field(default_factory=dict)
    #: Share of completions cut at the maximum length.
    truncated_ratio: float | None = None
    #: Share of completions with thinking tokens and no answer tokens.
    unclosed_thinking_ratio: float | None = None
    #: (argument, message) of each input left out, the message naming the fix.
    problems: tuple[tuple[str, str], ...] = ()


def rl_health(
    rewards: Sequence[Any] | np.ndarray | None,
    *,
    group_size: Any = None,
    lengths: Sequence[Any] | np.ndarray | None = None,
    truncated: Sequence[Any] | np.ndarray | None = None,
    correct: Sequence[Any] | np.ndarray | None = None,
    thinking_tokens: Sequence[Any] | np.ndarray | None = None,
    answer_tokens: Sequence[Any] | np.ndarray | None = None,
    solved_reward: float = 1.0,
    unsolved_reward: float = 0.0,
) -> RLHealth:
    """The step's group spread and length signals; see the module docstring.

    Every list has one entry per completion, the completions of one prompt
    side by side. ``rewards`` that are not numbers are skipped without a
    problem (the reward histogram counts them). Groups holding a reward that
    is not finite have no defined spread and count as groups with signal.

        >>> h = rl_health([0.5, 0.5], group_size=2, correct=[True, False], lengths=[10, 30])
        >>> h.zero_std, h.length_mean
        ({'solved': 0.0, 'unsolved': 0.0, 'tied': 1.0}, {'true': 10.0, 'false': 30.0})
    """
    problems: list[tuple[str, str]] = []
    values = _numbers(rewards)
    # Every list has as many entries as the first valid one (rewards first).
    checked = {
        "completion_lengths": _counts("completion_lengths", lengths, problems),
        "truncated": _flags("truncated", truncated, problems),
        "correct": _flags("correct", correct, problems),
        "thinking_tokens": _counts("thinking_tokens", thinking_tokens, problems),
        "answer_tokens": _counts("answer_tokens", answer_tokens, problems),
    }
    count = None if values is None else values.size
    for name, array in checked.items():
        if array is None:
            continue
        if count is None:
            count = array.size
        elif array.size != count:
            problems.append((name, f"{name} has {array.size} entries, not {count}: give one "
                                   "entry per completion, in the order of rewards="))
            checked[name] = None
    length_values, truncated_flags, correct_flags, thinking, answer = checked.values()
    size = _group_size(group_size, count, problems)

    zero_std = None
    if values is not None and size is not None and values.size:
        zero_std = _zero_std(
            values.reshape(-1, size),
            None if correct_flags is None else correct_flags.reshape(-1, size),
            solved_reward,
            unsolved_reward,
        )
    length_mean: dict[str, float] = {}
    if length_values is not None and correct_flags is not None:
        for label, chosen in (("true", correct_flags), ("false", ~correct_flags)):
            if chosen.any():
                length_mean[label] = float(length_values[chosen].mean())
    truncated_ratio = None
    if truncated_flags is not None and truncated_flags.size:
        truncated_ratio = float(np.count_nonzero(truncated_flags)) / truncated_flags.size
    unclosed = None
    if thinking is not None and answer is not None and thinking.size:
        unclosed = float(np.count_nonzero((thinking > 0) & (answer == 0))) / thinking.size
    return RLHealth(
        group_size=size,
        zero_std=zero_std,
        length_mean=length_mean,
        truncated_ratio=truncated_ratio,
        unclosed_thinking_ratio=unclosed,
        problems=tuple(problems),
    )


def _zero_std(
    rewards: np.ndarray, correct: np.ndarray | None, solved: float, unsolved: float
) -> dict[str, float]:
    """Share of groups (rows) without spread, by outcome."""
    low, high = rewards.min(axis=1), rewards.max(axis=1)
    flat = low == high  # False for a group holding NaN (its min and max are NaN)
    if correct is not None:
        is_solved = flat & correct.all(axis=1)
        is_unsolved = flat & ~correct.any(axis=1)
    else:
        is_solved = flat & (low >= solved)
        is_unsolved = flat & (high <= unsolved)
    is_tied = flat & ~is_solved & ~is_unsolved
    groups = rewards.shape[0]
    return {
        "solved": int(np.count_nonzero(is_solved)) / groups,
        "unsolved": int(np.count_nonzero(is_unsolved)) / groups,
        "tied": int(np.count_nonzero(is_tied)) / groups,
    }


def _numbers(values: Any) -> np.ndarray | None:
    """A flat float64 array of numbers (bools count as numbers), or None."""
    if values is None:
        return None
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError):
        return None
    if array.dtype.kind == "O" and array.ndim <= 1:
        # Ints beyond int64 (10**30 tokens is a number, if an odd one): one by one.
        numbers = [to_number(value) for value in array.ravel()]
        return None if None in numbers else np.array(numbers, dtype=np.float64)
    if array.dtype.kind not in "biuf":
        return None
    return array.astype(np.float64, copy=False).ravel()


def _counts(name: str, values: Any, problems: list[tuple[str, str]]) -> np.ndarray | None:
    """Token counts: finite numbers at or above zero, else a problem."""
    if values is None:
        return None
    array = _numbers(values)
    if array is None:
        problems.append((name, f"{name}={_short(values)} is not recorded: expected token "
                               "counts, one number per completion"))
        return None
    if not np.isfinite(array).all() or (array < 0).any():
        problems.append((name, f"{name}={_short(values)} is not recorded: token counts "
                               "are finite and not negative"))
        return None
    return array


def _flags(name: str, values: Any, problems: list[tuple[str, str]]) -> np.ndarray | None:
    """Booleans (Python or NumPy), one per completion, else a problem."""
    if values is None:
        return None
    try:
        array: np.ndarray | None = np.asarray(values)
    except (TypeError, ValueError):
        array = None
    if array is None or (array.dtype.kind != "b" and array.size):
        problems.append((name, f"{name}={_short(values)} is not recorded: expected booleans "
                               "(True/False), one per completion"))
        return None
    return array.astype(bool, copy=False).ravel()


def _group_size(value: Any, count: int | None, problems: list[tuple[str, str]]) -> int | None:
    if value is None:
        return None
    try:
        size = operator.index(value)
    except TypeError:
        size = None
    if size is None or isinstance(value, bool) or size < 1:
        problems.append(("group_size", f"group_size={value!r} is not recorded: expected a "
                                       "positive integer (completions per prompt)"))
        return None
    if count is not None and count % size:
        problems.append(("group_size", f"group_size={size} does not divide the {count} "
                                       "completions of the step: groups must be whole "
                                       "(completions of one prompt side by side)"))
        return None
    return size


def _short(values: Any) -> str:
    """A bounded repr for messages (a list may hold thousands of entries)."""
    text = repr(values)
    return text if len(text) <= 60 else text[:57] + "..."
