"""The dashboard: one figure with a panel per kind of metric, for a glance at a checkpoint.

Known kinds get their own panel in a fixed order (losses, rewards, gradient
norm, learning rate, memory in MiB, token counts, spike scores, anomalous
steps, step phases; see :mod:`~mlx_otel.integrations.charts.panels`), each
line in its own style so equal series stay visible; the remaining metrics
follow, one panel each, up to ``max_dashboard_panels``. Each metric is drawn
at its own steps when ``steps`` maps names to steps, so a metric logged
every tenth step is not counted as nine missing values out of ten.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from mlx_otel.catalog import is_memory_field
from mlx_otel.config.visualization import ChartStyle
from mlx_otel.integrations.charts.figure import (
    chart_path,
    colours,
    no_data,
    overlay_label,
    overlay_style,
    plot_line,
    scientific_y,
    styled_figure,
)
from mlx_otel.integrations.charts.inputs import (
    require_finite,
    series_map,
    short_number,
    step_suffix,
    x_values,
)
from mlx_otel.integrations.charts.memory import in_mib
from mlx_otel.integrations.charts.panels import dashboard_panels, panel_unit

__all__ = ["create_dashboard", "dashboard_panel", "dashboard_panels"]

logger = logging.getLogger("mlx_otel.integrations.charts")


def dashboard_panel(
    ax: Axes,
    style: ChartStyle,
    title: str,
    names: list[str],
    series: Mapping[str, np.ndarray],
    *,
    steps: Any = None,
    shared_x: np.ndarray | None = None,
    colour_of: Mapping[str, Any] | None = None,
) -> None:
    """Draw one panel: a single metric smoothed, or several as distinct raw lines."""
    single = len(names) == 1
    if single and colour_of is not None:
        palette = [colour_of[names[0]]]
    else:
        # Lines sharing a panel get hues far apart, not run-wide neighbours.
        palette = colours(style, len(names))
    skipped = 0
    finite_values: list[np.ndarray] = []
    drawn: dict[str, np.ndarray] = {}
    for index, (name, colour) in enumerate(zip(names, palette, strict=True)):
        values = series[name]
        if is_memory_field(name):  # in MiB, as on the memory chart
            values = in_mib(name, values)
        x = x_values(name, values.size, steps, shared_x)
        label = name
        if not single:
            label = overlay_label(name, values, drawn)
            drawn[name] = values
        skipped += plot_line(
            ax, x, values, colour, label, smoothing_window=style.smoothing_window,
            smooth=single, overlay=None if single else overlay_style(index),
        )  # fmt: skip
        finite_values.append(values[np.isfinite(values)])
    everything = np.concatenate(finite_values)
    if everything.size == 0:
        no_data(ax)
    else:
        if single:
            title = f"{title} (last {short_number(float(finite_values[0][-1]))})"
        positive = everything[everything > 0]
        if (
            title.startswith("Learning rate")
            and positive.size == everything.size
            and positive.max() / positive.min() > 20
        ):
            ax.set_yscale("log")  # warmup + decay spans decades
        else:
            scientific_y(ax)
        ax.legend(loc="best", fontsize="x-small", framealpha=0.7)
    if skipped:
        title += f" · {skipped} non-finite"
    ax.set_title(title)
    ax.set_xlabel("step")
    unit = panel_unit(names[0])
    if single:
        ax.set_ylabel(f"{names[0]} [{unit}]" if unit else names[0])
    else:
        label = title.split(" (")[0]
        ax.set_ylabel(f"{label} [{unit}]" if unit and "[" not in label else label)


def create_dashboard(
    style: ChartStyle,
    output_dir: Path,
    data: Mapping[str, Sequence[float]] | pd.DataFrame,
    filename: str | Path | None = None,
    step: int | None = None,
    steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """The multi-panel overview; see :meth:`ChartGenerator.create_dashboard`."""
    series, shared_x = series_map(data, "data")
    require_finite(series, "data")
    panels = dashboard_panels(list(series))
    limit = style.max_dashboard_panels
    if len(panels) > limit:
        dropped = [name for panel in panels[limit:] for name in panel.names]
        logger.info("charts: dashboard shows %d panels; left out %s", limit, dropped)
        panels = panels[:limit]
    columns = 1 if len(panels) == 1 else min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figsize = (max(style.figsize[0], 5.0 * columns), 3.6 * rows + 0.8)
    path = chart_path(output_dir, filename, "dashboard", step)
    colour_of = dict(zip(series, colours(style, len(series)), strict=True))
    with styled_figure(style, path, figsize) as figure:
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, panel in zip(axes, panels, strict=False):
            dashboard_panel(
                ax, style, panel.title, panel.names, series, steps=steps, shared_x=shared_x,
                colour_of=colour_of,
            )  # fmt: skip
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        figure.suptitle(f"Training dashboard{step_suffix(step)}", fontsize="x-large")
    return path
