"""The correlation matrix of a run's metrics, as an annotated heatmap.

Correlation needs at least two metrics that vary over two or more steps; at
the start of a run there is not enough data yet. That is raised as
:class:`~mlx_otel.integrations.charts.inputs.NotEnoughData` (a ``ValueError``
naming ``data``), which a checkpoint batch skips without reporting a failure.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns

from mlx_otel.config.visualization import ChartStyle
from mlx_otel.integrations.charts.figure import chart_path, styled_figure
from mlx_otel.integrations.charts.inputs import NotEnoughData, series_map, step_suffix

__all__ = ["correlation", "plot_correlation_matrix"]


def correlation(data: Any) -> pd.DataFrame:
    """Pearson correlation of metric series, or ``data`` itself when it already is a
    correlation matrix (square, index equal to its columns)."""
    if (
        isinstance(data, pd.DataFrame)
        and data.shape[0] == data.shape[1]
        and list(data.index) == list(data.columns)
        and data.shape[0] > 0
    ):
        return data.astype(np.float64)
    series, _ = series_map(data, "data")
    frame = pd.DataFrame({name: pd.Series(values) for name, values in series.items()})
    frame = frame.where(np.isfinite(frame))
    usable = [name for name in frame.columns if frame[name].count() >= 2]
    if len(usable) < 2:
        raise NotEnoughData(
            "data: need at least two metrics with two or more finite values each, "
            f"got {', '.join(f'{k}={frame[k].count()}' for k in frame.columns)}"
        )
    return frame[usable].corr()


def plot_correlation_matrix(
    style: ChartStyle,
    output_dir: Path,
    data: Mapping[str, Sequence[float]] | pd.DataFrame,
    filename: str | Path | None = "correlation_matrix.png",
    step: int | None = None,
) -> Path:
    """Annotated heatmap; see :meth:`ChartGenerator.plot_correlation_matrix`."""
    matrix = correlation(data)
    undefined = [name for name in matrix.columns if matrix[name].drop(name).isna().all()]
    matrix = matrix.drop(index=undefined, columns=undefined)
    if matrix.shape[0] < 2:
        raise NotEnoughData(
            "data: need at least two metrics that vary together over two or more "
            f"points to correlate (without correlation: {', '.join(undefined) or 'none'})"
        )
    count = matrix.shape[0]
    side = min(max(1.0 + 0.75 * count, 6.0), 18.0)
    path = chart_path(output_dir, filename, "correlation_matrix", step)
    with styled_figure(style, path, (side + 1.8, side)) as figure:
        ax = figure.subplots()
        with warnings.catch_warnings():
            # seaborn 0.13 calls Colormap.set_bad, which matplotlib 3.11
            # marks for deprecation; harmless and not ours to fix.
            warnings.filterwarnings(
                "ignore", message="The set_bad function", category=PendingDeprecationWarning
            )
            sns.heatmap(
                matrix, ax=ax, annot=count <= style.annotate_max_metrics, fmt=".2f",
                cmap="vlag", vmin=-1.0, vmax=1.0, center=0.0, square=True, linewidths=0.5,
                cbar_kws={"label": "Pearson correlation", "shrink": 0.8},
            )  # fmt: skip
        ax.tick_params(axis="x", labelrotation=45)
        ax.tick_params(axis="y", labelrotation=0)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        title = f"Metric correlation{step_suffix(step)}"
        if undefined:
            title += f"\n(no variance: {', '.join(undefined)})"
        ax.set_title(title)
    return path
