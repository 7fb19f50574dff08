"""ChartGenerator, the seed's class: one method per chart, and a checkpoint's batch.

The class holds the configuration and delegates each chart to its family's
module; :meth:`ChartGenerator.generate_checkpoint_charts` renders every chart
the data allows and reports failures without raising, for the chart process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlx_otel.config.visualization import VisualizationConfig
from mlx_otel.integrations.charts.correlation import plot_correlation_matrix
from mlx_otel.integrations.charts.curves import headline_metrics, plot_training_curves
from mlx_otel.integrations.charts.dashboard import create_dashboard
from mlx_otel.integrations.charts.distributions import (
    plot_reward_distribution,
    plot_token_distribution,
)
from mlx_otel.integrations.charts.gradients import plot_gradient_flow
from mlx_otel.integrations.charts.inputs import NotEnoughData, aligned_frame
from mlx_otel.integrations.charts.memory import memory_columns, plot_memory_usage

__all__ = ["ChartBatch", "ChartGenerator"]

logger = logging.getLogger("mlx_otel.integrations.charts")


@dataclass
class ChartBatch:
    """Result of :meth:`ChartGenerator.generate_checkpoint_charts`.

    ``paths`` maps chart kind to the written file; ``errors`` maps chart kind
    to the exception that stopped it (the other charts are still written);
    ``skipped`` maps chart kind to why the data does not make that chart yet
    (a correlation over a single step): not a failure.
    """

    paths: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


class ChartGenerator:
    """Render training snapshots (curves, distributions, heatmaps) to PNG.

    Every ``plot_*`` method returns the path it wrote. With ``filename``
    the file is ``output_dir / filename``; otherwise it is the seed's name,
    ``<kind>_step_<step>.png`` when ``step`` is given and ``<kind>.png``
    when not. Empty or all-NaN input raises ``ValueError`` naming the
    argument; NaN points inside otherwise valid data are skipped and counted
    in the chart. Memory is drawn in MiB.

    Arguments given explicitly override the same fields of ``config``.

    Example::

        charts = ChartGenerator(output_dir=Path("./charts"), style="darkgrid", dpi=150)
        charts.plot_reward_distribution([0.6, 0.7, 0.8, 0.75, 0.82], step=100)
        # -> charts/reward_dist_step_100.png
    """

    def __init__(
        self,
        output_dir: Path | str = Path("./charts"),
        style: str = "darkgrid",
        dpi: int = 150,
        *,
        palette: str = "husl",
        config: VisualizationConfig | None = None,
    ) -> None:
        base = config if config is not None else VisualizationConfig()
        # A value differing from the default was passed on purpose: it wins
        # over the config.
        overrides: dict[str, Any] = {}
        if Path(output_dir) != Path("./charts"):
            overrides["output_dir"] = Path(output_dir)
        if style != "darkgrid":
            overrides["style"] = style
        if dpi != 150:
            overrides["dpi"] = dpi
        if palette != "husl":
            overrides["palette"] = palette
        self.config = base.model_copy(update=overrides) if overrides else base
        if overrides:  # model_copy does not validate: validate the merged values
            self.config = VisualizationConfig(**self.config.model_dump())

    @property
    def output_dir(self) -> Path:
        return self.config.output_dir

    @property
    def style(self) -> str:
        return self.config.style

    @property
    def dpi(self) -> int:
        return int(self.config.dpi)

    @property
    def palette(self) -> str:
        return self.config.palette

    def should_generate(self, step: int) -> bool:
        """True when ``step`` is a multiple of ``generate_every_n_steps``.

        For a loop that draws its own charts; a monitor renders them every
        ``monitoring.generate_charts_every`` steps by itself.

        Example::

            if charts.should_generate(step):
                charts.create_dashboard(stats.to_dataframe(), step=step)
        """
        every = self.config.generate_every_n_steps
        return every > 0 and step % every == 0

    # --------------------------------------------------------- the charts

    def plot_training_curves(
        self,
        data: Mapping[str, Sequence[float]] | pd.DataFrame,
        filename: str | Path | None = None,
        step: int | None = None,
        steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    ) -> Path:
        """One panel per metric: the raw values (faint) and a moving average.

        ``data`` maps metric names to values (or is a DataFrame such as
        ``ComprehensiveStatsCollector.to_dataframe()``, whose ``step`` column
        is then the x axis). ``steps`` gives x values, shared or per metric;
        default 0..n-1. Writes ``training_curves_step_{step}.png``.

        Example::

            charts.plot_training_curves({"loss": [0.5, 0.4, 0.3]}, filename="curves.png")
        """
        return plot_training_curves(
            self.config, self.output_dir, data, filename=filename, step=step, steps=steps
        )

    def plot_reward_distribution(
        self,
        rewards: Sequence[float] | np.ndarray,
        filename: str | Path | None = None,
        step: int | None = None,
    ) -> Path:
        """Histogram with KDE of per-sample rewards, with mean and median lines.

        Nested groups (GRPO: groups x samples) are flattened. Writes
        ``reward_dist_step_{step}.png``.

        Example::

            charts.plot_reward_distribution([0.6, 0.7, 0.8, 0.75, 0.82], step=100)
        """
        return plot_reward_distribution(
            self.config, self.output_dir, rewards, filename=filename, step=step
        )

    def plot_token_distribution(
        self,
        thinking_tokens: Sequence[float] | np.ndarray,
        answer_tokens: Sequence[float] | np.ndarray,
        filename: str | Path | None = None,
        step: int | None = None,
        *,
        per: str = "sample",
    ) -> Path:
        """Thinking vs answer token counts: overlaid histograms with KDE and violins.

        ``per`` names what one count covers, for the axis labels ("sample",
        or "step" for counts summed over a training step).

        Either list may be empty (the other is drawn alone). Writes
        ``token_dist_step_{step}.png``.

        Example::

            charts.plot_token_distribution([120, 180, 150], [30, 42, 35], step=100)
        """
        return plot_token_distribution(
            self.config, self.output_dir, thinking_tokens, answer_tokens,
            filename=filename, step=step, per=per,
        )  # fmt: skip

    def plot_correlation_matrix(
        self,
        data: Mapping[str, Sequence[float]] | pd.DataFrame,
        filename: str | Path | None = "correlation_matrix.png",
        step: int | None = None,
    ) -> Path:
        """Annotated seaborn heatmap of the Pearson correlation between metrics.

        ``data`` is metric series (a mapping, or a DataFrame aligned by step)
        or an already computed correlation matrix (a square DataFrame whose
        index equals its columns, such as
        ``ComprehensiveStatsCollector.get_correlation_matrix()``). Metrics
        with no variance have no correlation and are left out (named in the
        title). Too little data to correlate (fewer than two metrics varying
        over two or more points) raises ``ValueError``. Writes
        ``correlation_matrix.png``.

        Example::

            charts.plot_correlation_matrix({"loss": [0.5, 0.4, 0.3], "reward": [0.6, 0.7, 0.8]})
        """
        return plot_correlation_matrix(
            self.config, self.output_dir, data, filename=filename, step=step
        )

    def plot_gradient_flow(
        self,
        layer_norms: Mapping[str, float] | Mapping[str, Sequence[float]],
        filename: str | Path | None = None,
        step: int | None = None,
    ) -> Path:
        """Gradient norm per layer as horizontal bars on a log scale.

        ``layer_norms`` maps layer name (in model order) to its latest norm,
        or to a history of norms: then the bars show the latest value and a
        heatmap beside them shows every layer over time, which makes
        vanishing or exploding layers stand out. Zero and non-finite norms
        cannot sit on a log axis; they are marked in red by the layer name.
        Writes ``gradient_flow_step_{step}.png``.

        Example::

            charts.plot_gradient_flow({"embed": 0.02, "layers.0": 0.1, "lm_head": 0.5}, step=100)
        """
        return plot_gradient_flow(
            self.config, self.output_dir, layer_norms, filename=filename, step=step
        )

    def plot_memory_usage(
        self,
        memory: Mapping[str, Sequence[float]] | pd.DataFrame,
        threshold_mb: float | None = None,
        filename: str | Path | None = None,
        step: int | None = None,
        steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    ) -> Path:
        """Memory series (e.g. active/cache/peak, in MiB) over steps, with the threshold.

        Where a series rises above ``threshold_mb`` the excess is shaded red.
        Series with equal values are drawn in distinct styles and named equal
        in the legend. Writes ``memory_step_{step}.png``.

        Example::

            charts.plot_memory_usage({"active_mb": [900, 950, 1010], "peak_mb": [1000, 1000, 1100]},
                                     threshold_mb=1000, step=100)
        """
        return plot_memory_usage(
            self.config, self.output_dir, memory, threshold_mb=threshold_mb,
            filename=filename, step=step, steps=steps,
        )  # fmt: skip

    def create_dashboard(
        self,
        data: Mapping[str, Sequence[float]] | pd.DataFrame,
        filename: str | Path | None = None,
        step: int | None = None,
        steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    ) -> Path:
        """Multi-panel overview: losses, rewards, grad norm, LR, memory, tokens, others.

        Known kinds get their own panel in that order, then spike scores
        (``anomaly_score/*``), anomalous steps (``anomalies/*``) and step
        phases (``timing/*``, seconds); series of different units never share
        a panel, and memory is drawn in MiB. The remaining metrics follow, up
        to ``max_dashboard_panels``. ``steps`` gives x values, shared or per
        metric. Writes ``dashboard_step_{step}.png``.

        Example::

            charts.create_dashboard({"loss": [0.5, 0.4], "reward": [0.6, 0.7]}, step=100)
        """
        return create_dashboard(
            self.config, self.output_dir, data, filename=filename, step=step, steps=steps
        )

    # ------------------------------------------------------------ batches

    def generate_checkpoint_charts(
        self,
        data: Mapping[str, Sequence[float]] | pd.DataFrame,
        *,
        step: int | None = None,
        rewards: Sequence[float] | None = None,
        thinking_tokens: Sequence[float] | None = None,
        answer_tokens: Sequence[float] | None = None,
        layer_norms: Mapping[str, float] | Mapping[str, Sequence[float]] | None = None,
        memory: Mapping[str, Sequence[float]] | pd.DataFrame | None = None,
        memory_threshold_mb: float | None = None,
        tokens_per: str = "sample",
        steps: Mapping[str, Sequence[float]] | None = None,
    ) -> ChartBatch:
        """Render every chart that the given data allows; never raises for bad data.

        ``data`` is the metric history: ``{name: values}`` with ``steps``
        giving each metric's own steps (a metric logged every tenth step is
        drawn at those steps, and only its NaN/inf values are counted as
        non-finite), or a DataFrame aligned by step such as
        ``ComprehensiveStatsCollector.to_dataframe()`` (where a step a metric
        was not logged at reads as NaN). The training curves and
        the correlation matrix show its :func:`headline_metrics` (at most
        :data:`HEADLINE_LIMIT`; every column stays in the CSV/JSON exports): a
        GRPO run reports sixty values a step, and sixty panels are neither
        readable nor quick to draw. Memory series default
        to its memory-like columns (``*_mb`` or containing "memory"). Each
        chart that fails is logged and reported in ``ChartBatch.errors`` so a
        background worker can count it and go on; a chart the data is too
        short for yet (a correlation over one step) is left out quietly and
        named in ``ChartBatch.skipped``.

        Example::

            batch = charts.generate_checkpoint_charts(stats.to_dataframe(), step=100,
                                                      rewards=last_rewards)
            batch.paths["dashboard"]   # charts/dashboard_step_100.png
        """
        batch = ChartBatch()

        def attempt(kind: str, render: Callable[[], Path]) -> None:
            try:
                batch.paths[kind] = render()
            except NotEnoughData as reason:  # early in a run: not a failure
                logger.debug("charts: %s skipped: %s", kind, reason)
                batch.skipped[kind] = str(reason)
            except Exception as error:  # one bad chart must not stop the others
                logger.warning("charts: %s failed: %s", kind, error)
                batch.errors[kind] = error

        headline = headline_metrics(data)
        attempt(
            "training_curves",
            lambda: self.plot_training_curves(headline, step=step, steps=steps),
        )
        attempt("dashboard", lambda: self.create_dashboard(data, step=step, steps=steps))
        attempt(
            "correlation_matrix",
            # Correlation compares metrics step by step: align them first.
            lambda: self.plot_correlation_matrix(
                aligned_frame(headline, steps)
                if steps is not None and isinstance(headline, Mapping)
                else headline
            ),
        )
        if rewards is not None:
            attempt("reward_dist", lambda: self.plot_reward_distribution(rewards, step=step))
        if thinking_tokens is not None or answer_tokens is not None:
            attempt(
                "token_dist",
                lambda: self.plot_token_distribution(
                    thinking_tokens if thinking_tokens is not None else [],
                    answer_tokens if answer_tokens is not None else [],
                    step=step,
                    per=tokens_per,
                ),
            )
        if layer_norms:
            attempt("gradient_flow", lambda: self.plot_gradient_flow(layer_norms, step=step))
        if memory is None:
            memory = memory_columns(data)
        if memory is not None:
            attempt(
                "memory",
                lambda: self.plot_memory_usage(
                    memory,
                    threshold_mb=memory_threshold_mb,
                    step=step,
                    steps=steps if isinstance(memory, Mapping) else None,
                ),
            )
        return batch
