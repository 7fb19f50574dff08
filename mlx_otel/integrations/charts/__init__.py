"""Seaborn snapshot charts of a training run, written as PNG files.

Live views belong to Grafana; these charts are the snapshots kept next to a
checkpoint or attached to a WandB run. :class:`ChartGenerator` (the seed's
class) is the way in; each chart family lives in a module of its own:

- ``curves``: training curves, one panel per metric with a moving average;
- ``distributions``: per-sample rewards, thinking vs answer tokens;
- ``correlation``: the correlation heatmap of the metrics;
- ``gradients``: gradient norm per layer, and per layer over time;
- ``memory``: MLX memory in MiB against the alert threshold;
- ``dashboard``: the grid of panels for a glance at a checkpoint;
- ``figure`` and ``inputs``: the styled figure and line styles they share,
  and the input checks every chart makes.

Importing this package imports matplotlib and seaborn; a monitor never does
it in the training process (charts render in
:mod:`mlx_otel.integrations.chart_process`).

Example::

    from pathlib import Path
    from mlx_otel import ChartGenerator

    charts = ChartGenerator(output_dir=Path("./charts"), style="darkgrid", dpi=150)
    charts.plot_training_curves({"loss": [0.5, 0.4, 0.3]}, step=100)
    # -> charts/training_curves_step_100.png
"""

from __future__ import annotations

from mlx_otel.config.visualization import ChartStyle, VisualizationConfig
from mlx_otel.integrations.charts.generator import ChartBatch, ChartGenerator
from mlx_otel.integrations.charts.inputs import NotEnoughData

__all__ = ["ChartBatch", "ChartGenerator", "ChartStyle", "NotEnoughData", "VisualizationConfig"]
