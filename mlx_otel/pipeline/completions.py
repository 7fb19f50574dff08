"""A GRPO step's completions: copied on the training thread, judged off it.

``log_training_step(..., group_size=8, completion_lengths=[...],
truncated=[...], correct=[...])`` (or a report's
:class:`~mlx_otel.records.Completions`) hands over one entry per completion.
The training thread only copies the lists into one small list per step
(:meth:`CompletionLog.new`), queued with the step's record; the group
arithmetic (:func:`~mlx_otel.numbers.rl_health.rl_health`) runs when the
step is first served: by a scrape, or by the worker draining it
(:meth:`CompletionLog.derive`), once, with its problems counted then. The
step-indexed spike scores (:class:`~mlx_otel.numbers.anomaly.AnomalyDetector`)
run on the worker alone, once per step.

A step's completions, as queued: ``[group_size, lengths, truncated, correct,
thinking_tokens, answer_tokens, derived]`` (``None`` where not given;
``derived`` is what they gave once computed, ``False`` for nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from mlx_otel.config.settings import RLSection
from mlx_otel.errors import ErrorLedger
from mlx_otel.numbers.anomaly import AnomalyDetector
from mlx_otel.numbers.rl_health import RLHealth, rl_health
from mlx_otel.pipeline.step_arguments import MISSING
from mlx_otel.records import to_numbers

__all__ = ["CompletionLog", "Derived", "copy"]

#: Largest token count recorded (floats hold integers exactly up to it).
_MAX_INT = 2**53

#: What a step's completions give, by catalogue key: (unlabelled, labelled).
Derived = tuple[dict[str, float], dict[str, dict[str, float]]]
#: Refuse a value: (keyword, value, error kind, reason); raises when strict.
Reject = Callable[[str, Any, str, "str | None"], None]


class CompletionLog:
    """The RL side of a run's steps: completions copied, judged once, spikes scored.

    ``reject`` is how a refused value is counted and logged (or raised when
    the monitor is strict), as for every other keyword.
    """

    def __init__(self, rl: RLSection, *, ledger: ErrorLedger, reject: Reject) -> None:
        self.config = rl
        #: Completions per prompt when a step does not say (None: unknown).
        self.group_size = rl.group_size
        #: Tokens of per-completion lists, counted as steps are judged.
        self.tokens = {"thinking": 0, "answer": 0}
        #: Spike scores of the watched step values.
        self.anomalies = AnomalyDetector(
            rl.anomaly_metrics, window=rl.anomaly_window, threshold=rl.anomaly_threshold
        )
        self._ledger = ledger
        self._reject = reject

    # -- on the training thread: copies only --------------------------------------
    def new(
        self, group_size: Any = MISSING, lengths: Any = MISSING, truncated: Any = MISSING,
        correct: Any = MISSING,
    ) -> list[Any]:  # fmt: skip
        """A step's completions from the keywords given (:data:`MISSING`: not given)."""
        if group_size is None:  # None given is not "not given"
            self._reject("group_size", None, "invalid_value", "expected completions per prompt")
            group_size = MISSING
        return [
            None if group_size is MISSING else group_size,
            None if lengths is MISSING else copy(lengths),
            None if truncated is MISSING else copy(truncated),
            None if correct is MISSING else copy(correct),
            None,
            None,
            None,
        ]

    def check(self, chunk: Any, completions: list[Any]) -> None:
        """``strict``: raise the first problem of a step's completions (on the call)."""
        for index, key in ((4, "thinking_tokens"), (5, "answer_tokens")):
            if completions[index] is not None:
                self.total(key, completions[index])  # raises (strict) on a count that is none
        health = self._health(chunk, completions)
        if health.problems:
            raise ValueError(health.problems[0][1])

    # -- off the training thread ------------------------------------------------------
    def derive(self, chunk: Any, completions: list[Any]) -> Derived | None:
        """What a queued step's completions give (``chunk``: its rewards' copy), by key.

        Computed once per step (the caller holds the lock that makes it so):
        per-completion token counts are counted, and the problems found are
        counted and logged, the first time; later calls return the result.
        """
        done = completions[6]
        if done is not None:
            return done or None  # type: ignore[no-any-return]
        values: dict[str, float] = {}
        for index, kind in ((4, "thinking"), (5, "answer")):
            if completions[index] is not None:
                total = self.total(f"{kind}_tokens", completions[index])
                if total is None:
                    completions[index] = None  # counted: not checked again
                else:
                    self.tokens[kind] += total
                    values[f"{kind}_tokens"] = total
        try:
            health = self._health(chunk, completions)
        except Exception as exc:  # monitoring never kills training
            self._ledger.report_exception("invalid_value", "completions", exc)
            completions[6] = False
            return None
        for argument, message in health.problems:
            self._ledger.report("invalid_value", argument, message)
        if health.group_size is not None:
            values["group_size"] = health.group_size
        if health.truncated_ratio is not None:
            values["hit_max_tokens_ratio"] = health.truncated_ratio
        if health.unclosed_thinking_ratio is not None:
            values["unclosed_thinking_ratio"] = health.unclosed_thinking_ratio
        labelled: dict[str, dict[str, float]] = {}
        if health.zero_std is not None:
            labelled["zero_std_groups_ratio"] = health.zero_std
        if health.length_mean:
            labelled["completion_length_mean"] = health.length_mean
        completions[6] = (values, labelled) if values or labelled else False
        return completions[6] or None  # type: ignore[no-any-return]

    def total(self, key: str, counts: Any) -> int | None:
        """The sum of per-completion token counts, or None (refused) if one is no count."""
        if counts.__class__ is tuple:
            total: Any = None
            low: Any = 0
            # Plain ints: Python's sum and min beat NumPy's conversion, and are exact.
            with contextlib.suppress(TypeError):
                total, low = sum(counts), min(counts, default=0)
            if total.__class__ is int:  # every count an int (or a bool)
                if low < 0:
                    self._reject(key, counts, "negative_count", None)
                    return None
                if total > _MAX_INT:
                    self._reject(key, counts, "invalid_value", "the counts add up beyond 2**53")
                    return None
                return int(total)
        array = to_numbers(counts)
        if array is None or not np.isfinite(array).all() or (array != np.round(array)).any():
            self._reject(key, counts, "invalid_value", "expected token counts, one per completion")
            return None
        if (array < 0).any():
            self._reject(key, counts, "negative_count", None)
            return None
        summed = int(array.sum())
        if summed > _MAX_INT:
            self._reject(key, counts, "invalid_value", "the counts add up beyond 2**53")
            return None
        return summed

    def _health(self, chunk: Any, completions: list[Any]) -> RLHealth:
        config = self.config
        return rl_health(
            None if chunk is None else to_numbers(chunk),
            group_size=self.group_size if completions[0] is None else completions[0],
            lengths=completions[1], truncated=completions[2], correct=completions[3],
            thinking_tokens=completions[4], answer_tokens=completions[5],
            solved_reward=config.solved_reward, unsolved_reward=config.unsolved_reward,
        )  # fmt: skip


def copy(values: Any) -> Any:
    """A copy of a per-completion list the caller may reuse: a tuple or an array.

    A tuple, not a list: the garbage collector stops tracking a tuple of
    numbers, so thousands of queued steps do not lengthen its collections.
    """
    if values.__class__ is list:
        return tuple(values)
    if values.__class__ is tuple:
        return values
    if isinstance(values, np.ndarray):
        return values.ravel().copy()
    try:
        # MLX arrays: convert on this thread, where the array was made.
        return np.array(values).ravel()
    except Exception:  # checked (and counted) with the step's completions
        return (values,)
