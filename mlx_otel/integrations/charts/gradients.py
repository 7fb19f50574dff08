"""Gradient flow: each layer's latest gradient norm, and every layer over time.

Norms span decades between embedding and head, so bars sit on a log axis;
zero and non-finite norms have no place there and are marked by the layer's
name instead. With histories, a heatmap beside the bars shows vanishing or
exploding layers as bands.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter

from mlx_otel.config.visualization import ChartStyle
from mlx_otel.integrations.charts.figure import chart_path, colours, styled_figure
from mlx_otel.integrations.charts.inputs import short_number, step_suffix, to_float_array

__all__ = ["plot_gradient_flow"]


def _latest(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    if finite.size:
        return float(finite[-1])
    return float(values[-1]) if values.size else math.nan


def plot_gradient_flow(
    style: ChartStyle,
    output_dir: Path,
    layer_norms: Mapping[str, float] | Mapping[str, Sequence[float]],
    filename: str | Path | None = None,
    step: int | None = None,
) -> Path:
    """Bars on a log scale (and a heatmap); see :meth:`ChartGenerator.plot_gradient_flow`."""
    if not isinstance(layer_norms, Mapping):
        raise ValueError(
            f"layer_norms: expected a mapping of layer name to norm, got "
            f"{type(layer_norms).__name__}"
        )
    if not layer_norms:
        raise ValueError("layer_norms: is empty; expected {layer name: gradient norm}")
    histories = {
        str(name): to_float_array(values, f"layer_norms[{name!r}]")
        for name, values in layer_norms.items()
    }
    latest = np.array([_latest(values) for values in histories.values()])
    names = list(histories)
    drawable = np.isfinite(latest) & (latest > 0)
    if not drawable.any():
        raise ValueError("layer_norms: no positive finite norm to draw on a log scale")
    with_history = max(values.size for values in histories.values()) > 1
    count = len(names)
    height = min(max(0.28 * count + 1.8, 4.5), 36.0)
    width = style.figsize[0] if with_history else max(style.figsize[0] * 0.75, 7.0)
    path = chart_path(output_dir, filename, "gradient_flow", step)
    colour = colours(style, 1)[0]
    with styled_figure(style, path, (width, height)) as figure:
        if with_history:
            bar_ax, heat_ax = figure.subplots(1, 2, width_ratios=(1, 1.3), sharey=False)
        else:
            bar_ax, heat_ax = figure.subplots(), None
        positions = np.arange(count)
        bar_values = np.where(drawable, latest, np.nan)
        bar_ax.barh(
            positions[drawable], bar_values[drawable], color=colour, edgecolor="white",
            linewidth=0.5,
        )  # fmt: skip
        bar_ax.set_xscale("log")
        smallest, largest = latest[drawable].min(), latest[drawable].max()
        # Log bars have no zero; start at the decade below the smallest so
        # every bar is visible and at least one decade tick is labelled.
        bar_ax.set_xlim(10.0 ** math.floor(math.log10(smallest) - 1e-9), largest * 1.6)
        bar_ax.xaxis.set_minor_formatter(NullFormatter())
        median = float(np.median(latest[drawable]))
        bar_ax.axvline(
            median, color="#2f2f2f", linestyle="--", linewidth=1.2,
            label=f"median {short_number(median)}",
        )  # fmt: skip
        bar_ax.set_yticks(positions, labels=names, fontsize="small" if count > 20 else None)
        if count > 120:
            # Too many names to read; keep every k-th so the axis stays legible.
            keep = max(count // 60, 1)
            for index, label in enumerate(bar_ax.get_yticklabels()):
                label.set_visible(index % keep == 0)
        bar_ax.set_ylim(count - 0.5, -0.5)  # first layer on top
        for index in np.flatnonzero(~drawable).tolist():
            value = latest[index]
            note = "0" if value == 0 else ("< 0" if value < 0 else str(value))
            bar_ax.text(
                0.01, index, f"{note} ✗", color="#d62728", va="center", ha="left",
                fontweight="bold", transform=bar_ax.get_yaxis_transform(),
            )  # fmt: skip
        bar_ax.set_xlabel("gradient L2 norm (log scale)")
        bar_ax.set_ylabel("layer")
        title = f"Gradient flow{step_suffix(step)}"
        problems = int((~drawable).sum())
        if problems:
            title += f" · {problems} zero/non-finite"
        bar_ax.set_title(title)
        bar_ax.legend(loc="lower right", fontsize="small")
        if heat_ax is not None:
            _gradient_heatmap(heat_ax, histories)
    return path


def _gradient_heatmap(ax: Axes, histories: Mapping[str, np.ndarray]) -> None:
    length = max(values.size for values in histories.values())
    grid = np.full((len(histories), length), np.nan)
    for row, values in enumerate(histories.values()):
        # Right-align: the last column is the latest update of every layer.
        grid[row, length - values.size :] = values
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = np.where(np.isfinite(grid) & (grid > 0), np.log10(grid), np.nan)
    frame = pd.DataFrame(logged, index=list(histories))
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The set_bad function", category=PendingDeprecationWarning
        )
        sns.heatmap(
            frame, ax=ax, cmap="mako", yticklabels=False, xticklabels=False,
            cbar_kws={"label": "log10 gradient norm"},
        )  # fmt: skip
    # Ticks counted back from the latest update, which is always labelled.
    every = max(length // 8, 1)
    columns = [i for i in range(length) if (length - 1 - i) % every == 0]
    ax.set_xticks([i + 0.5 for i in columns], labels=[str(i - length + 1) for i in columns])
    ax.set_xlabel("update (0 = latest)")
    ax.set_title("per-layer history")
