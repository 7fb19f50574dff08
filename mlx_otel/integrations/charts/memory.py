"""Memory over the run: MLX active, cache and peak (and the user's own readings), in MiB.

Several series often hold the same numbers (``memory_allocated_mb`` is
usually MLX's active memory), so each line has its own style and marker and
the legend says which lines are equal: a line is never hidden under another.
Values of ``*_bytes`` columns are converted, so the axis has one unit: MiB
(2**20 bytes, the unit of every ``*_mb`` value of mlx_otel).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from mlx_otel.catalog import display_unit, is_memory_field
from mlx_otel.config.visualization import ChartStyle
from mlx_otel.integrations.charts.figure import (
    chart_path,
    colours,
    overlay_label,
    overlay_style,
    styled_figure,
)
from mlx_otel.integrations.charts.inputs import require_finite, series_map, step_suffix, x_values

__all__ = ["MEMORY_UNIT", "draw_memory", "in_mib", "memory_columns", "plot_memory_usage"]

#: The one memory unit of the charts (the catalogue's display unit of ``*_mb``).
MEMORY_UNIT = "MiB"
_MIB = float(1 << 20)
_THRESHOLD_COLOUR = "#d62728"


def memory_columns(data: Any) -> pd.DataFrame | dict[str, Any] | None:
    """The memory series of a metric history (``*_mb``, ``*_bytes``, "memory"), or None."""
    if isinstance(data, pd.DataFrame):
        names = [c for c in data.columns if c != "step" and is_memory_field(str(c))]
        if not names:
            return None
        return data[(["step"] if "step" in data.columns else []) + names]
    if isinstance(data, Mapping):
        picked = {k: v for k, v in data.items() if is_memory_field(str(k))}
        return picked or None
    return None


def in_mib(name: str, values: np.ndarray) -> np.ndarray:
    """The values of memory series ``name`` in MiB: series in bytes (``*_bytes``,
    ``trainer_peak_memory``) converted, those in MiB as given."""
    return values / _MIB if display_unit(name) == "bytes" else values


#: A threshold more than this many times the highest value is left off the axis.
_OFF_SCALE = 4.0


def draw_memory(
    ax: Axes,
    series: Mapping[str, np.ndarray],
    palette: Sequence[Any],
    *,
    steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    shared_x: np.ndarray | None = None,
    threshold: float | None = None,
) -> tuple[str, float, int]:
    """Draw the memory lines (MiB) and the threshold on ``ax``.

    Returns (name of the highest series, its maximum, points skipped as non-finite).
    """
    skipped = 0
    peak_name, peak_value = "", -math.inf
    drawn: dict[str, np.ndarray] = {}
    for index, ((name, raw), colour) in enumerate(zip(series.items(), palette, strict=True)):
        values = in_mib(name, raw)
        x = x_values(name, values.size, steps, shared_x)
        finite = np.isfinite(values) & np.isfinite(x)
        skipped += int(values.size - finite.sum())
        xs, ys = x[finite], values[finite]
        if xs.size == 0:
            continue
        label = overlay_label(name, ys, drawn)
        drawn[name] = ys
        ax.plot(xs, ys, color=colour, label=label, **overlay_style(index).keywords(xs.size))
        if threshold is not None:
            ax.fill_between(
                xs, threshold, ys, where=ys > threshold, interpolate=True,
                color=_THRESHOLD_COLOUR, alpha=0.2,
            )  # fmt: skip
        if ys.max() > peak_value:
            peak_name, peak_value = name, float(ys.max())
    if threshold is not None:
        label = f"threshold {threshold:,.0f} {MEMORY_UNIT}"
        if peak_value * _OFF_SCALE >= threshold:
            ax.axhline(threshold, color=_THRESHOLD_COLOUR, linestyle="--", linewidth=2, label=label)
        else:
            # Far above every line: drawn, it would squash the data into the
            # bottom of the chart. The legend still names it.
            ax.plot([], [], color=_THRESHOLD_COLOUR, linestyle="--", linewidth=2,
                    label=f"{label} (above the axis)")  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.set_xlabel("step")
    ax.set_ylabel(f"memory [{MEMORY_UNIT}]")
    return peak_name, peak_value, skipped


def plot_memory_usage(
    style: ChartStyle,
    output_dir: Path,
    memory: Mapping[str, Sequence[float]] | pd.DataFrame,
    threshold_mb: float | None = None,
    filename: str | Path | None = None,
    step: int | None = None,
    steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """Memory lines with the threshold; see :meth:`ChartGenerator.plot_memory_usage`."""
    series, shared_x = series_map(memory, "memory")
    require_finite(series, "memory")
    threshold = None
    if threshold_mb is not None:
        try:
            threshold = float(threshold_mb)
        except (TypeError, ValueError):
            raise ValueError(f"threshold_mb: expected a number, got {threshold_mb!r}") from None
        if not math.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"threshold_mb: must be a positive number, got {threshold_mb!r}")
    path = chart_path(output_dir, filename, "memory", step)
    with styled_figure(style, path, style.figsize) as figure:
        ax = figure.subplots()
        peak_name, peak_value, skipped = draw_memory(
            ax, series, colours(style, len(series)),
            steps=steps, shared_x=shared_x, threshold=threshold,
        )  # fmt: skip
        title = (
            f"Memory usage{step_suffix(step)}: max {peak_value:,.1f} {MEMORY_UNIT} ({peak_name})"
        )
        if threshold is not None and peak_value > threshold:
            title += " · ABOVE THRESHOLD"
        if skipped:
            title += f" · {skipped} non-finite skipped"
        ax.set_title(title)
        # Outside the axes: threshold line and shaded excess stay visible.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return path
