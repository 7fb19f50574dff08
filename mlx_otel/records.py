"""Plain records passed between the parts, and the one way numbers are read.

The training thread builds a :class:`StepRecord` per ``log_training_step``
call; the background worker hands batches of them to the sinks (statistics,
files, WandB, charts). A trainer integration hands the monitor a
:class:`TrainerReport` of catalogue keys instead of keywords, so a labelled
value travels as a mapping, never inside a name. A :class:`MemoryReading` is
MLX's counters at a step boundary. Nothing here imports another part of
mlx_otel.

    >>> to_number(0.5), to_number("0.5"), to_number(None)
    (0.5, None, None)
    >>> to_numbers([[0.1, 0.2], [0.3]]).tolist()
    [0.1, 0.2, 0.3]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Completions",
    "GradientRecord",
    "MemoryReading",
    "StepRecord",
    "TrainerReport",
    "to_number",
    "to_numbers",
]

#: NumPy kinds that are numbers: bool, signed and unsigned int, float.
_NUMERIC_KINDS = frozenset("biuf")


class MemoryReading(NamedTuple):
    """MLX's memory counters at a step boundary, in bytes."""

    active_bytes: int
    cache_bytes: int
    #: Peak active memory of the step (or since the last reset of MLX's counter).
    peak_bytes: int


class StepRecord(NamedTuple):
    """What one ``log_training_step`` call hands to the background worker."""

    step: int
    timestamp: float
    #: Catalogued values by key (``loss``, ``reward_mean``, ``thinking_tokens``...).
    values: dict[str, float]
    #: Custom metrics by sanitised name (``mlx_train_custom{name=...}``).
    custom: dict[str, float]
    #: A copy of the per-sample rewards (list or ndarray), or None.
    rewards: Any
    #: Seconds since the previous step (or the step_time given), or None.
    duration: float | None
    memory: MemoryReading | None = None
    #: Labelled catalogue values: key -> label value -> number
    #: (``{"clip_ratio": {"low": 0.1}}``); the catalogue names their columns.
    labelled: Mapping[str, Mapping[str, float]] = MappingProxyType({})


@dataclass
class Completions:
    """The completions of one report, one entry per completion, groups contiguous.

    What a trainer integration knows of each completion it scored: the
    same data as ``log_training_step``'s ``rewards=``, ``group_size=``,
    ``completion_lengths=``, ``truncated=``, ``correct=``,
    ``thinking_tokens=`` and ``answer_tokens=`` keywords, and recorded as
    they are. A trainer that reports every N iterations hands the
    completions of those iterations concatenated (the completions of one
    prompt still side by side). Sequences are kept as given; the monitor
    copies and checks them.

        >>> Completions([1.0, 0.0, 1.0, 1.0], group_size=2, lengths=[12, 40, 8, 9])
        Completions(rewards=[1.0, 0.0, 1.0, 1.0], group_size=2, lengths=[12, 40, 8, 9], \
truncated=None, correct=None, thinking_tokens=None, answer_tokens=None)
    """

    rewards: Sequence[Any]
    group_size: int | None = None
    lengths: Sequence[Any] | None = None
    truncated: Sequence[Any] | None = None
    correct: Sequence[Any] | None = None
    thinking_tokens: Sequence[Any] | None = None
    answer_tokens: Sequence[Any] | None = None


@dataclass
class TrainerReport:
    """What a trainer integration reports at one step, by catalogue key.

    ``values`` holds unlabelled metrics (``loss``, ``kl``), ``labelled`` the
    labelled ones as label value -> number (``clip_ratio: {"low": 0.1}``),
    ``custom`` what the catalogue does not know (served as custom metrics),
    ``completions`` the per-completion data of the report's step, if any.
    Numbers are as the trainer gave them: the monitor counts what is not one.

        >>> TrainerReport(12, values={"kl": 0.1}, labelled={"clip_ratio": {"low": 0.0}})
        TrainerReport(step=12, values={'kl': 0.1}, labelled={'clip_ratio': {'low': 0.0}}, custom={})
    """

    step: Any
    values: dict[str, Any] = field(default_factory=dict)
    labelled: dict[str, dict[str, Any]] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    #: Left out of the repr: a report may carry thousands of completions.
    completions: Completions | None = field(default=None, repr=False)


class GradientRecord(NamedTuple):
    """Layer-wise gradient norms of one step (after grouping to the series cap)."""

    step: int
    per_layer: Mapping[str, float]


def to_number(value: Any) -> float | None:
    """A float for Python, NumPy and MLX numbers (0-d and 1-element arrays too).

    ``None`` for what is not a number: None, strings (``"0.5"`` is a caller's
    bug, not a number), bytes, objects ``float()`` refuses, and arrays of more
    than one element. NaN and inf are numbers and are returned as they are.
    """
    if value.__class__ is float:
        return value  # type: ignore[no-any-return]
    if value is None or isinstance(value, (str, bytes)):
        return None
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        try:
            value = value.item()  # NumPy / MLX scalars and 0-d or 1-element arrays
        except (TypeError, ValueError, AttributeError):
            return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def to_numbers(values: Any) -> np.ndarray | None:
    """Numbers flattened to a float64 array (lists, ragged or nested lists, arrays).

    ``None`` when something inside is not a number (strings, None, mappings).
    """
    if values is None or isinstance(values, (str, bytes, Mapping)):
        return None
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError):
        array = None  # ragged or nested: flatten by hand
    if array is not None and array.dtype.kind in _NUMERIC_KINDS:
        return array.astype(np.float64, copy=False).ravel()
    # Ragged, mixed or not numbers (text, None, ints beyond float): item by item.
    if hasattr(values, "tolist"):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        number = to_number(values)
        return None if number is None else np.array([number])
    parts: list[np.ndarray] = []
    for item in values:
        part = to_numbers(item)
        if part is None:
            return None
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros(0)
