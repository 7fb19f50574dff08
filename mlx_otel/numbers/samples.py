"""Per-sample values (rewards of a group of completions) as a flat float array.

Training loops hand over rewards in many shapes: a list, a nested list (one
row per prompt), a tuple, a NumPy or MLX array, a single number. All of
them become one flat ``float64`` array; what is not numbers is refused with
a ``ValueError`` that says why, so the caller can count it and go on.

    >>> as_samples([[0.5, 1.0], [0.0, 0.25]]).tolist()
    [0.5, 1.0, 0.0, 0.25]
    >>> as_samples(["high"])
    Traceback (most recent call last):
    ...
    ValueError: rewards must be numbers, got an array of <U4
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_samples"]

#: NumPy kinds that are numbers: bool, signed and unsigned int, float.
_NUMERIC_KINDS = frozenset("biuf")


def as_samples(value: Any) -> np.ndarray:
    """``value`` as a flat float64 array; ``ValueError`` if it is not numbers.

    Strings, ``None``, mappings, ragged nesting and integers beyond the float
    range are refused. NaN and inf are kept (the caller decides what they mean).
    """
    if value is None or isinstance(value, (str, bytes, dict)):
        raise ValueError(f"rewards must be numbers, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"rewards must be a rectangular sequence of numbers: {exc}") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"rewards must be numbers, got an array of {array.dtype}")
    return array.astype(np.float64, copy=False).ravel()
