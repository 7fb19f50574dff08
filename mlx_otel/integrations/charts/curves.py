"""Training curves: one panel per metric, raw values and their moving average."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlx_otel.config.visualization import ChartStyle
from mlx_otel.integrations.charts.figure import (
    chart_path,
    colours,
    no_data,
    plot_line,
    scientific_y,
    styled_figure,
)
from mlx_otel.integrations.charts.inputs import (
    axis_label,
    require_finite,
    series_map,
    short_number,
    step_suffix,
    x_values,
)

__all__ = ["panel_grid", "plot_training_curves"]


def panel_grid(
    style: ChartStyle, count: int, max_columns: int = 2
) -> tuple[int, int, tuple[float, float]]:
    """(rows, columns, figure size) of ``count`` panels: the style's width, taller per row."""
    columns = 1 if count == 1 else min(max_columns if count <= 6 else 3, count)
    rows = math.ceil(count / columns)
    width = style.figsize[0]
    row_height = 3.4 if rows <= 3 else 2.8
    height = style.figsize[1] if rows == 1 else row_height * rows + 0.6
    return rows, columns, (width, height)


def plot_training_curves(
    style: ChartStyle,
    output_dir: Path,
    data: Mapping[str, Sequence[float]] | pd.DataFrame,
    filename: str | Path | None = None,
    step: int | None = None,
    steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """One panel per metric; see :meth:`ChartGenerator.plot_training_curves`."""
    series, shared_x = series_map(data, "data")
    require_finite(series, "data")
    rows, columns, figsize = panel_grid(style, len(series))
    path = chart_path(output_dir, filename, "training_curves", step)
    palette = colours(style, len(series))
    with styled_figure(style, path, figsize) as figure:
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, (name, values), colour in zip(axes, series.items(), palette, strict=False):
            x = x_values(name, values.size, steps, shared_x)
            skipped = plot_line(
                ax, x, values, colour, name, smoothing_window=style.smoothing_window
            )
            finite = values[np.isfinite(values)]
            last = "" if finite.size == 0 else f" (last {short_number(float(finite[-1]))})"
            title = name + last
            if skipped:
                title += f" · {skipped} non-finite skipped"
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_ylabel(axis_label(name))
            if finite.size:
                scientific_y(ax)
                ax.legend(loc="best", fontsize="small", framealpha=0.7)
            else:
                no_data(ax)
        for ax in axes[len(series) :]:
            ax.set_visible(False)
        figure.suptitle(f"Training curves{step_suffix(step)}")
    return path
