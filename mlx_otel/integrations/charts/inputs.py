"""What the charts accept: numbers, ``{name: values}`` or a DataFrame, checked once.

Every chart family normalises its input here, so a bad argument fails the
same way everywhere: a ``ValueError`` whose message starts with the
argument's name. Data that is valid but too little for a chart (a
correlation over one step) raises :class:`NotEnoughData`, which a checkpoint
batch skips quietly instead of reporting it as a failure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlx_otel.catalog import METRICS, Metric, by_key, display_unit
from mlx_otel.records import to_numbers

__all__ = [
    "NotEnoughData",
    "aligned_frame",
    "axis_label",
    "catalogued",
    "require_finite",
    "series_map",
    "short_number",
    "step_suffix",
    "to_float_array",
    "unit_of",
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


def aligned_frame(series: Mapping[str, Any], steps: Mapping[str, Any]) -> pd.DataFrame:
    """One row per step, one column per metric (NaN where a metric has no value),
    from each metric's values at its own ``steps``; a step logged twice keeps
    its last value. For what compares metrics step by step (correlation)."""
    columns: dict[str, pd.Series] = {}
    for name, raw in series.items():
        values = to_float_array(raw, f"data[{name!r}]")
        index = pd.Index(x_values(name, values.size, steps, None), name="step")
        keep = ~index.duplicated(keep="last")
        columns[str(name)] = pd.Series(values[keep], index=index[keep])
    if not columns:
        raise ValueError("data: is empty; expected e.g. {'loss': [0.5, 0.4, ...]}")
    frame = pd.concat(columns, axis=1).sort_index()
    return frame.reset_index()


def catalogued(name: str) -> Metric | None:
    """The catalogue's metric of a column: ``loss``, or ``anomaly_score`` for the
    labelled column ``anomaly_score/loss``, or the labelled metric whose WandB
    section is the prefix (``timing/reward`` is a phase duration); else None."""
    family, slash, _ = name.partition("/")
    for key in (name, family) if slash else (name,):
        try:
            return by_key(key)
        except KeyError:
            continue
    if slash:
        for metric in METRICS:
            if metric.labels and metric.wandb_group == family:
                return metric
    return None


#: How an OpenTelemetry unit reads on a chart axis ({token} is a count of tokens).
_UNITS = {"By": "bytes", "1": ""}


def unit_of(name: str) -> str:
    """The unit of a column on a chart axis ('' when it has none).

    >>> unit_of("timing/reward"), unit_of("tokens_per_second"), unit_of("mlx_active_mb")
    ('s', 'tokens/s', 'MiB')
    """
    metric = catalogued(name)
    if metric is None or metric.key == "custom":
        unit = display_unit(name.rsplit("/", 1)[-1] if metric is not None else name)
    else:
        unit = _UNITS.get(metric.unit, metric.unit)
    return re.sub(r"\{(\w+)\}", r"\1s", unit)


def axis_label(name: str) -> str:
    """``name [unit]`` with the catalogue's unit (MiB for memory)."""
    unit = unit_of(name)
    return f"{name} [{unit}]" if unit else name


def short_number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def step_suffix(step: int | None) -> str:
    return "" if step is None else f" (step {step})"
