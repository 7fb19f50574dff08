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
    NON_METRIC_COLUMNS,
    axis_label,
    require_finite,
    series_map,
    short_number,
    step_suffix,
    x_values,
)

__all__ = ["HEADLINE_LIMIT", "headline_metrics", "panel_grid", "plot_training_curves"]

#: Most metrics a checkpoint's training curves and correlation matrix show.
HEADLINE_LIMIT = 16
#: Shown first, in this order, when a run reports more than the limit; the
#: others follow in the order given.
HEADLINE_ORDER: tuple[str, ...] = (
    "loss", "reward_mean", "grad_norm", "learning_rate", "kl", "entropy",
    "validation_reward", "validation_loss", "reward_std", "hit_max_tokens_ratio",
    "zero_std_groups_ratio/unsolved", "zero_std_groups_ratio/solved",
    "zero_std_groups_ratio/tied", "unclosed_thinking_ratio", "step_time", "tokens_per_second",
)  # fmt: skip


def headline_metrics(
    data: Mapping[str, Sequence[float]] | pd.DataFrame,
) -> Mapping[str, Sequence[float]] | pd.DataFrame:
    """``data`` with at most :data:`HEADLINE_LIMIT` metrics, those of
    :data:`HEADLINE_ORDER` first; ``data`` itself when it has no more.

    A DataFrame keeps its ``step`` and other non-metric columns.

        >>> sorted(headline_metrics({f"m{i}": [0.0] for i in range(20)} | {"kl": [1.0]}))[:3]
        ['kl', 'm0', 'm1']
        >>> len(headline_metrics({f"m{i}": [0.0] for i in range(20)}))
        16
    """
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns if c not in NON_METRIC_COLUMNS]
    elif isinstance(data, Mapping):
        names = [str(k) for k in data]
    else:
        return data
    if len(names) <= HEADLINE_LIMIT:
        return data
    first = [name for name in HEADLINE_ORDER if name in names]
    chosen = (first + [name for name in names if name not in first])[:HEADLINE_LIMIT]
    if isinstance(data, pd.DataFrame):
        kept = set(chosen)
        return data[[c for c in data.columns if c in NON_METRIC_COLUMNS or c in kept]]
    return {name: data[name] for name in chosen}


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
