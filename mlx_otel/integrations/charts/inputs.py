"""What the charts accept: numbers, ``{name: values}`` or a DataFrame, checked once.

Every chart family normalises its input here, so a bad argument fails the
same way everywhere: a ``ValueError`` whose message starts with the
argument's name. Data that is valid but too little for a chart (a
correlation over one step) raises :class:`NotEnoughData`, which a checkpoint
batch skips quietly instead of reporting it as a failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlx_otel.catalog import display_unit
from mlx_otel.records import to_numbers

__all__ = [
    "NotEnoughData",
    "axis_label",
    "require_finite",
    "series_map",
    "short_number",
    "step_suffix",
    "to_float_array",
    "x_values",
]

# Columns of ComprehensiveStatsCollector.to_dataframe() that are not metrics.
NON_METRIC_COLUMNS = frozenset({"step", "timestamp", "run_id"})


class NotEnoughData(ValueError):
    """The data is valid but too little for this chart yet (e.g. one step to correlate)."""


def to_float_array(values: Any, argument: str) -> np.ndarray:
    """Flatten numbers (list, tuple, numpy or MLX array, scalar) to float64."""
    if values is None:
        raise ValueError(f"{argument}: expected numbers, got None")
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{argument}: expected numbers, got a string {values!r}")
    array = to_numbers(values)
    if array is None:
        raise ValueError(f"{argument}: expected a sequence of numbers")
    return array


def series_map(data: Any, argument: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Normalise ``{name: values}`` or a DataFrame into float arrays.

    Returns the arrays and, for a DataFrame with a ``step`` column, the
    shared x values.
    """
    if isinstance(data, pd.DataFrame):
        x = data["step"].to_numpy(dtype=np.float64) if "step" in data.columns else None
        columns = [
            column
            for column in data.columns
            if column not in NON_METRIC_COLUMNS and pd.api.types.is_numeric_dtype(data[column])
        ]
        series = {str(c): data[c].to_numpy(dtype=np.float64) for c in columns}
    elif isinstance(data, Mapping):
        x = None
        series = {str(k): to_float_array(v, f"{argument}[{k!r}]") for k, v in data.items()}
    else:
        raise ValueError(
            f"{argument}: expected a mapping of metric name to values or a DataFrame, "
            f"got {type(data).__name__}"
        )
    if not series:
        raise ValueError(f"{argument}: is empty; expected e.g. {{'loss': [0.5, 0.4, ...]}}")
    return series, x


def require_finite(series: Mapping[str, np.ndarray], argument: str) -> None:
    if not any(np.isfinite(values).any() for values in series.values()):
        names = ", ".join(series)
        raise ValueError(f"{argument}: no finite values to plot (metrics: {names})")


def x_values(name: str, length: int, steps: Any, shared: np.ndarray | None) -> np.ndarray:
    """The x values of series ``name``: from ``steps`` (shared or per name), else
    the frame's step column, else 0..n-1."""
    if isinstance(steps, Mapping):
        chosen = steps.get(name)
        argument = f"steps[{name!r}]"
    else:
        chosen = steps
        argument = "steps"
    if chosen is None:
        if shared is not None:
            return shared
        return np.arange(length, dtype=np.float64)
    x = to_float_array(chosen, argument)
    if x.size != length:
        raise ValueError(f"{argument} has {x.size} values but data[{name!r}] has {length}")
    return x


def axis_label(name: str) -> str:
    """``name [unit]`` with the catalogue's display unit (MiB for memory)."""
    unit = display_unit(name)
    return f"{name} [{unit}]" if unit else name


def short_number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def step_suffix(step: int | None) -> str:
    return "" if step is None else f" (step {step})"
