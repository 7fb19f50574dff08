"""Seaborn snapshot charts of a training run, written as PNG files.

Live views belong to Grafana; these charts are the snapshots kept next to a
checkpoint or attached to a WandB run. They are rendered with matplotlib's
object-oriented API (``Figure`` + ``FigureCanvasAgg``): no pyplot figure is
created, the user's backend is never switched and ``plt.show`` is never
called, so rendering works headless, on a background thread, and cannot
disturb a notebook's own figures. Styles are applied inside
``matplotlib.rc_context`` and restored afterwards. Files are written
atomically, so a reader never sees a half-written PNG.

Example::

    from pathlib import Path
    from mlx_otel.integrations.charts import ChartGenerator

    charts = ChartGenerator(output_dir=Path("./charts"), style="darkgrid", dpi=150)
    charts.plot_training_curves({"loss": [0.5, 0.4, 0.3]}, step=100)
    # -> charts/training_curves_step_100.png
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

from mlx_otel.catalog import display_unit, is_memory_field
from mlx_otel.config.visualization import VisualizationConfig
from mlx_otel.fileio import atomic_path
from mlx_otel.records import to_numbers

__all__ = ["ChartBatch", "ChartGenerator", "VisualizationConfig"]

logger = logging.getLogger(__name__)

# rcParams are process-global: one chart at a time, so two threads rendering
# with different styles cannot mix their settings.
_RENDER_LOCK = threading.RLock()

# Columns of ComprehensiveStatsCollector.to_dataframe() that are not metrics.
_NON_METRIC_COLUMNS = frozenset({"step", "timestamp", "run_id"})

_MEMORY_COLOUR_THRESHOLD = "#d62728"


@dataclass
class ChartBatch:
    """Result of :meth:`ChartGenerator.generate_checkpoint_charts`.

    ``paths`` maps chart kind to the written file; ``errors`` maps chart kind
    to the exception that stopped it (the other charts are still written).
    """

    paths: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)


# --------------------------------------------------------------------- input


def _to_float_array(values: Any, argument: str) -> np.ndarray:
    """Flatten numbers (list, tuple, numpy or MLX array, scalar) to float64."""
    if values is None:
        raise ValueError(f"{argument}: expected numbers, got None")
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{argument}: expected numbers, got a string {values!r}")
    array = to_numbers(values)
    if array is None:
        raise ValueError(f"{argument}: expected a sequence of numbers")
    return array


def _series_map(data: Any, argument: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Normalise ``{name: values}`` or a DataFrame into float arrays.

    Returns the arrays and, for a DataFrame with a ``step`` column, the
    shared x values.
    """
    if isinstance(data, pd.DataFrame):
        x = data["step"].to_numpy(dtype=np.float64) if "step" in data.columns else None
        columns = [
            column
            for column in data.columns
            if column not in _NON_METRIC_COLUMNS and pd.api.types.is_numeric_dtype(data[column])
        ]
        series = {str(c): data[c].to_numpy(dtype=np.float64) for c in columns}
    elif isinstance(data, Mapping):
        x = None
        series = {str(k): _to_float_array(v, f"{argument}[{k!r}]") for k, v in data.items()}
    else:
        raise ValueError(
            f"{argument}: expected a mapping of metric name to values or a DataFrame, "
            f"got {type(data).__name__}"
        )
    if not series:
        raise ValueError(f"{argument}: is empty; expected e.g. {{'loss': [0.5, 0.4, ...]}}")
    return series, x


def _require_finite(series: Mapping[str, np.ndarray], argument: str) -> None:
    if not any(np.isfinite(values).any() for values in series.values()):
        names = ", ".join(series)
        raise ValueError(f"{argument}: no finite values to plot (metrics: {names})")


def _x_values(name: str, length: int, steps: Any, shared: np.ndarray | None) -> np.ndarray:
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
    x = _to_float_array(chosen, argument)
    if x.size != length:
        raise ValueError(f"{argument} has {x.size} values but data[{name!r}] has {length}")
    return x


def _label(name: str) -> str:
    unit = display_unit(name)
    return f"{name} [{unit}]" if unit else name


def _short(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def _step_suffix(step: int | None) -> str:
    return "" if step is None else f" (step {step})"


# ------------------------------------------------------------------- charts


class ChartGenerator:
    """Render training snapshots (curves, distributions, heatmaps) to PNG.

    Every ``plot_*`` method returns the path it wrote. With ``filename``
    the file is ``output_dir / filename``; otherwise it is the seed's name,
    ``<kind>_step_<step>.png`` when ``step`` is given and ``<kind>.png``
    when not. Empty or all-NaN input raises ``ValueError`` naming the
    argument; NaN points inside otherwise valid data are skipped and counted
    in the chart.

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

        Example::

            if charts.should_generate(step):
                charts.create_dashboard(stats.to_dataframe(), step=step)
        """
        every = self.config.generate_every_n_steps
        return every > 0 and step % every == 0

    # ------------------------------------------------------------ machinery

    def _target(self, filename: str | Path | None, base: str, step: int | None) -> Path:
        if filename is not None:
            path = self.output_dir / filename
            # savefig infers the format from the suffix; give it one.
            return path if path.suffix else path.with_suffix(".png")
        suffix = "" if step is None else f"_step_{step}"
        return self.output_dir / f"{base}{suffix}.png"

    def _colours(self, count: int) -> list[Any]:
        return list(sns.color_palette(self.palette, max(count, 1)))

    @contextlib.contextmanager
    def _figure(self, path: Path, figsize: tuple[float, float]) -> Iterator[Figure]:
        """A styled Agg figure that is saved atomically to ``path`` on success."""
        config = self.config
        with _RENDER_LOCK, matplotlib.rc_context():
            sns.set_theme(
                style=config.style,
                palette=config.palette,
                context=config.context,
                font_scale=config.font_scale,
                rc=config.rc or None,
            )
            figure = Figure(figsize=figsize, dpi=config.dpi, layout="constrained")
            FigureCanvasAgg(figure)
            try:
                yield figure
                with atomic_path(path) as tmp:
                    figure.savefig(tmp, dpi=config.dpi, format=path.suffix.lstrip(".") or "png")
            finally:
                # Figures outside pyplot are freed by refcount; clearing
                # breaks the artist cycles now rather than at the next GC.
                figure.clear()
        logger.debug("charts: wrote %s", path)

    def _grid(self, count: int, max_columns: int = 2) -> tuple[int, int, tuple[float, float]]:
        columns = 1 if count == 1 else min(max_columns if count <= 6 else 3, count)
        rows = math.ceil(count / columns)
        width = self.config.figsize[0]
        row_height = 3.4 if rows <= 3 else 2.8
        height = self.config.figsize[1] if rows == 1 else row_height * rows + 0.6
        return rows, columns, (width, height)

    def _plot_line(
        self,
        ax: Axes,
        x: np.ndarray,
        y: np.ndarray,
        colour: Any,
        label: str,
        *,
        smooth: bool = True,
    ) -> int:
        """Faint raw line plus moving average; returns how many points were skipped.

        With ``smooth=False`` a single line labelled ``label`` is drawn.
        """
        finite = np.isfinite(y) & np.isfinite(x)
        skipped = int(y.size - finite.sum())
        xs, ys = x[finite], y[finite]
        if xs.size == 0:
            return skipped
        marker = "o" if xs.size <= 30 else None
        window = min(self.config.smoothing_window, xs.size)
        if smooth and window > 1:
            ax.plot(
                xs,
                ys,
                color=colour,
                alpha=0.3,
                linewidth=1.0,
                marker=marker,
                markersize=3,
                label="raw",
            )
            smoothed = pd.Series(ys).rolling(window, min_periods=1).mean().to_numpy()
            # The panel title names the metric; the legend only tells the lines apart.
            ax.plot(
                xs, smoothed, color=colour, linewidth=2.0, label=f"{window}-point moving average"
            )
        else:
            ax.plot(xs, ys, color=colour, linewidth=1.8, marker=marker, markersize=4, label=label)
        return skipped

    @staticmethod
    def _no_data(ax: Axes, message: str = "no finite values") -> None:
        ax.text(
            0.5,
            0.5,
            message,
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize="large",
            color="grey",
        )

    @staticmethod
    def _scientific_y(ax: Axes) -> None:
        formatter = ScalarFormatter(useMathText=True)
        formatter.set_powerlimits((-3, 4))
        ax.yaxis.set_major_formatter(formatter)

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
        series, shared_x = _series_map(data, "data")
        _require_finite(series, "data")
        rows, columns, figsize = self._grid(len(series))
        path = self._target(filename, "training_curves", step)
        colours = self._colours(len(series))
        with self._figure(path, figsize) as figure:
            axes = figure.subplots(rows, columns, squeeze=False).ravel()
            for ax, (name, values), colour in zip(axes, series.items(), colours, strict=False):
                x = _x_values(name, values.size, steps, shared_x)
                skipped = self._plot_line(ax, x, values, colour, name)
                finite = values[np.isfinite(values)]
                title = name if finite.size == 0 else f"{name} (last {_short(float(finite[-1]))})"
                if skipped:
                    title += f" · {skipped} non-finite skipped"
                ax.set_title(title)
                ax.set_xlabel("step")
                ax.set_ylabel(_label(name))
                if finite.size:
                    self._scientific_y(ax)
                    ax.legend(loc="best", fontsize="small", framealpha=0.7)
                else:
                    self._no_data(ax)
            for ax in axes[len(series) :]:
                ax.set_visible(False)
            figure.suptitle(f"Training curves{_step_suffix(step)}")
        return path

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
        values = _to_float_array(rewards, "rewards")
        if values.size == 0:
            raise ValueError("rewards: is empty; expected per-sample rewards")
        finite = values[np.isfinite(values)]
        skipped = values.size - finite.size
        if finite.size == 0:
            raise ValueError(f"rewards: no finite values ({skipped} NaN/inf)")
        path = self._target(filename, "reward_dist", step)
        colours = self._colours(3)
        with self._figure(path, self.config.figsize) as figure:
            ax = figure.subplots()
            # A KDE needs spread; seaborn would warn and skip it otherwise.
            kde = finite.size >= 2 and float(np.ptp(finite)) > 0
            sns.histplot(
                x=finite,
                kde=kde,
                ax=ax,
                color=colours[0],
                stat="count",
                bins="auto",
                label="rewards",
            )
            mean, median = float(finite.mean()), float(np.median(finite))
            ax.axvline(mean, color="#d62728", linestyle="--", linewidth=2, label=f"mean {mean:.3f}")
            ax.axvline(
                median, color="#2f2f2f", linestyle=":", linewidth=2, label=f"median {median:.3f}"
            )
            title = (
                f"Reward distribution{_step_suffix(step)}: n={finite.size}, std={finite.std():.3f}"
            )
            if skipped:
                title += f", {skipped} non-finite skipped"
            ax.set_title(title)
            ax.set_xlabel("reward")
            ax.set_ylabel("samples")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(loc="best")
        return path

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
        groups: dict[str, np.ndarray] = {}
        skipped = 0
        for kind, argument, raw in (
            ("thinking", "thinking_tokens", thinking_tokens),
            ("answer", "answer_tokens", answer_tokens),
        ):
            values = _to_float_array(raw, argument)
            finite = values[np.isfinite(values)]
            skipped += values.size - finite.size
            if (finite < 0).any():
                raise ValueError(f"{argument}: token counts cannot be negative")
            if finite.size:
                groups[kind] = finite
        if not groups:
            raise ValueError("thinking_tokens and answer_tokens: no finite token counts")
        path = self._target(filename, "token_dist", step)
        colours = dict(zip(("thinking", "answer"), self._colours(2), strict=True))
        width, height = self.config.figsize
        with self._figure(path, (width, height)) as figure:
            hist_ax, violin_ax = figure.subplots(1, 2, width_ratios=(2, 1))
            for kind, values in groups.items():
                kde = values.size >= 2 and float(np.ptp(values)) > 0
                sns.histplot(
                    x=values,
                    kde=kde,
                    ax=hist_ax,
                    color=colours[kind],
                    alpha=0.4,
                    element="step",
                    bins="auto",
                    label=f"{kind} (n={values.size}, mean {values.mean():.1f})",
                )
                hist_ax.axvline(
                    float(values.mean()), color=colours[kind], linestyle="--", linewidth=2
                )
            hist_ax.set_xlabel(f"tokens per {per}")
            hist_ax.set_ylabel("samples")
            hist_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            hist_ax.legend(loc="best")
            title = f"Token distribution{_step_suffix(step)}"
            if skipped:
                title += f" · {skipped} non-finite skipped"
            hist_ax.set_title(title)
            long = pd.DataFrame(
                {
                    "kind": np.concatenate(
                        [[kind] * values.size for kind, values in groups.items()]
                    ),
                    "tokens": np.concatenate(list(groups.values())),
                }
            )
            sns.violinplot(
                long,
                x="kind",
                y="tokens",
                hue="kind",
                palette=colours,
                ax=violin_ax,
                inner="quart",
                cut=0,
                legend=False,
            )
            violin_ax.set_title("thinking vs answer")
            violin_ax.set_xlabel("")
            violin_ax.set_ylabel(f"tokens per {per}")
        return path

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
        title). Writes ``correlation_matrix.png``.

        Example::

            charts.plot_correlation_matrix({"loss": [0.5, 0.4, 0.3], "reward": [0.6, 0.7, 0.8]})
        """
        matrix = self._correlation(data)
        undefined = [name for name in matrix.columns if matrix[name].drop(name).isna().all()]
        matrix = matrix.drop(index=undefined, columns=undefined)
        if matrix.shape[0] < 2:
            raise ValueError(
                "data: need at least two metrics that vary together over two or more "
                f"points to correlate (without correlation: {', '.join(undefined) or 'none'})"
            )
        count = matrix.shape[0]
        side = min(max(1.0 + 0.75 * count, 6.0), 18.0)
        path = self._target(filename, "correlation_matrix", step)
        with self._figure(path, (side + 1.8, side)) as figure:
            ax = figure.subplots()
            with warnings.catch_warnings():
                # seaborn 0.13 calls Colormap.set_bad, which matplotlib 3.11
                # marks for deprecation; harmless and not ours to fix.
                warnings.filterwarnings(
                    "ignore", message="The set_bad function", category=PendingDeprecationWarning
                )
                sns.heatmap(
                    matrix,
                    ax=ax,
                    annot=count <= self.config.annotate_max_metrics,
                    fmt=".2f",
                    cmap="vlag",
                    vmin=-1.0,
                    vmax=1.0,
                    center=0.0,
                    square=True,
                    linewidths=0.5,
                    cbar_kws={"label": "Pearson correlation", "shrink": 0.8},
                )
            ax.tick_params(axis="x", labelrotation=45)
            ax.tick_params(axis="y", labelrotation=0)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
            title = f"Metric correlation{_step_suffix(step)}"
            if undefined:
                title += f"\n(no variance: {', '.join(undefined)})"
            ax.set_title(title)
        return path

    @staticmethod
    def _correlation(data: Any) -> pd.DataFrame:
        if (
            isinstance(data, pd.DataFrame)
            and data.shape[0] == data.shape[1]
            and list(data.index) == list(data.columns)
            and data.shape[0] > 0
        ):
            return data.astype(np.float64)
        series, _ = _series_map(data, "data")
        frame = pd.DataFrame({name: pd.Series(values) for name, values in series.items()})
        frame = frame.where(np.isfinite(frame))
        usable = [name for name in frame.columns if frame[name].count() >= 2]
        if len(usable) < 2:
            raise ValueError(
                "data: need at least two metrics with two or more finite values each, "
                f"got {', '.join(f'{k}={frame[k].count()}' for k in frame.columns)}"
            )
        return frame[usable].corr()

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
        if not isinstance(layer_norms, Mapping):
            raise ValueError(
                f"layer_norms: expected a mapping of layer name to norm, got "
                f"{type(layer_norms).__name__}"
            )
        if not layer_norms:
            raise ValueError("layer_norms: is empty; expected {layer name: gradient norm}")
        histories = {
            str(name): _to_float_array(values, f"layer_norms[{name!r}]")
            for name, values in layer_norms.items()
        }
        latest = np.array(
            [
                values[np.isfinite(values)][-1]
                if np.isfinite(values).any()
                else (values[-1] if values.size else np.nan)
                for values in histories.values()
            ]
        )
        names = list(histories)
        drawable = np.isfinite(latest) & (latest > 0)
        if not drawable.any():
            raise ValueError("layer_norms: no positive finite norm to draw on a log scale")
        with_history = max(values.size for values in histories.values()) > 1
        count = len(names)
        height = min(max(0.28 * count + 1.8, 4.5), 36.0)
        width = self.config.figsize[0] if with_history else max(self.config.figsize[0] * 0.75, 7.0)
        path = self._target(filename, "gradient_flow", step)
        colour = self._colours(1)[0]
        with self._figure(path, (width, height)) as figure:
            if with_history:
                bar_ax, heat_ax = figure.subplots(1, 2, width_ratios=(1, 1.3), sharey=False)
            else:
                bar_ax, heat_ax = figure.subplots(), None
            positions = np.arange(count)
            bar_values = np.where(drawable, latest, np.nan)
            bar_ax.barh(
                positions[drawable],
                bar_values[drawable],
                color=colour,
                edgecolor="white",
                linewidth=0.5,
            )
            bar_ax.set_xscale("log")
            smallest, largest = latest[drawable].min(), latest[drawable].max()
            # Log bars have no zero; start at the decade below the smallest so
            # every bar is visible and at least one decade tick is labelled.
            bar_ax.set_xlim(10.0 ** math.floor(math.log10(smallest) - 1e-9), largest * 1.6)
            bar_ax.xaxis.set_minor_formatter(NullFormatter())
            median = float(np.median(latest[drawable]))
            bar_ax.axvline(
                median,
                color="#2f2f2f",
                linestyle="--",
                linewidth=1.2,
                label=f"median {_short(median)}",
            )
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
                    0.01,
                    index,
                    f"{note} ✗",
                    color="#d62728",
                    va="center",
                    ha="left",
                    fontweight="bold",
                    transform=bar_ax.get_yaxis_transform(),
                )
            bar_ax.set_xlabel("gradient L2 norm (log scale)")
            bar_ax.set_ylabel("layer")
            title = f"Gradient flow{_step_suffix(step)}"
            problems = int((~drawable).sum())
            if problems:
                title += f" · {problems} zero/non-finite"
            bar_ax.set_title(title)
            bar_ax.legend(loc="lower right", fontsize="small")
            if heat_ax is not None:
                self._gradient_heatmap(heat_ax, histories)
        return path

    @staticmethod
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
                frame,
                ax=ax,
                cmap="mako",
                yticklabels=False,
                xticklabels=False,
                cbar_kws={"label": "log10 gradient norm"},
            )
        # Ticks counted back from the latest update, which is always labelled.
        every = max(length // 8, 1)
        columns = [i for i in range(length) if (length - 1 - i) % every == 0]
        ax.set_xticks([i + 0.5 for i in columns], labels=[str(i - length + 1) for i in columns])
        ax.set_xlabel("update (0 = latest)")
        ax.set_title("per-layer history")

    def plot_memory_usage(
        self,
        memory: Mapping[str, Sequence[float]] | pd.DataFrame,
        threshold_mb: float | None = None,
        filename: str | Path | None = None,
        step: int | None = None,
        steps: Sequence[float] | None = None,
    ) -> Path:
        """Memory series (e.g. active/cache/peak in MB) over steps, with the threshold.

        Where a series rises above ``threshold_mb`` the excess is shaded red.
        Writes ``memory_step_{step}.png``.

        Example::

            charts.plot_memory_usage({"active_mb": [900, 950, 1010], "peak_mb": [1000, 1000, 1100]},
                                     threshold_mb=1000, step=100)
        """
        series, shared_x = _series_map(memory, "memory")
        _require_finite(series, "memory")
        if threshold_mb is not None:
            try:
                threshold = float(threshold_mb)
            except (TypeError, ValueError):
                raise ValueError(f"threshold_mb: expected a number, got {threshold_mb!r}") from None
            if not math.isfinite(threshold) or threshold <= 0:
                raise ValueError(f"threshold_mb: must be a positive number, got {threshold_mb!r}")
        path = self._target(filename, "memory", step)
        colours = self._colours(len(series))
        with self._figure(path, self.config.figsize) as figure:
            ax = figure.subplots()
            skipped = 0
            peak_name, peak_value = "", -math.inf
            for (name, values), colour in zip(series.items(), colours, strict=True):
                x = _x_values(name, values.size, steps, shared_x)
                finite = np.isfinite(values) & np.isfinite(x)
                skipped += int(values.size - finite.sum())
                xs, ys = x[finite], values[finite]
                if xs.size == 0:
                    continue
                ax.plot(
                    xs,
                    ys,
                    color=colour,
                    linewidth=2,
                    label=name,
                    marker="o" if xs.size <= 30 else None,
                    markersize=3,
                )
                if threshold_mb is not None:
                    ax.fill_between(
                        xs,
                        threshold,
                        ys,
                        where=ys > threshold,
                        interpolate=True,
                        color=_MEMORY_COLOUR_THRESHOLD,
                        alpha=0.2,
                    )
                if ys.max() > peak_value:
                    peak_name, peak_value = name, float(ys.max())
            if threshold_mb is not None:
                ax.axhline(
                    threshold,
                    color=_MEMORY_COLOUR_THRESHOLD,
                    linestyle="--",
                    linewidth=2,
                    label=f"threshold {threshold:,.0f} MB",
                )
            ax.set_ylim(bottom=0)
            ax.set_xlabel("step")
            ax.set_ylabel("memory [MB]")
            title = f"Memory usage{_step_suffix(step)}: max {peak_value:,.1f} MB ({peak_name})"
            if threshold_mb is not None and peak_value > threshold:
                title += " · ABOVE THRESHOLD"
            if skipped:
                title += f" · {skipped} non-finite skipped"
            ax.set_title(title)
            # Outside the axes: threshold line and shaded excess stay visible.
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        return path

    def create_dashboard(
        self,
        data: Mapping[str, Sequence[float]] | pd.DataFrame,
        filename: str | Path | None = None,
        step: int | None = None,
        steps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    ) -> Path:
        """Multi-panel overview: loss, reward, grad norm, LR, memory, tokens, others.

        Known metrics get their own panel in that order (memory series and
        token series share one panel each); the remaining metrics follow, up
        to ``max_dashboard_panels``. Writes ``dashboard_step_{step}.png``.

        Example::

            charts.create_dashboard({"loss": [0.5, 0.4], "reward": [0.6, 0.7]}, step=100)
        """
        series, shared_x = _series_map(data, "data")
        _require_finite(series, "data")
        panels = self._dashboard_panels(list(series))
        limit = self.config.max_dashboard_panels
        if len(panels) > limit:
            dropped = [name for _, names in panels[limit:] for name in names]
            logger.info("charts: dashboard shows %d panels; left out %s", limit, dropped)
            panels = panels[:limit]
        columns = 1 if len(panels) == 1 else min(3, len(panels))
        rows = math.ceil(len(panels) / columns)
        figsize = (max(self.config.figsize[0], 5.0 * columns), 3.6 * rows + 0.8)
        path = self._target(filename, "dashboard", step)
        colours = self._colours(len(series))
        colour_of = dict(zip(series, colours, strict=True))
        with self._figure(path, figsize) as figure:
            axes = figure.subplots(rows, columns, squeeze=False).ravel()
            for ax, (title, names) in zip(axes, panels, strict=False):
                self._dashboard_panel(ax, title, names, series, steps, shared_x, colour_of)
            for ax in axes[len(panels) :]:
                ax.set_visible(False)
            figure.suptitle(f"Training dashboard{_step_suffix(step)}", fontsize="x-large")
        return path

    @staticmethod
    def _dashboard_panels(names: list[str]) -> list[tuple[str, list[str]]]:
        def base(name: str) -> str:
            # "train/loss" and "loss" are the same kind of metric.
            return name.rsplit("/", 1)[-1].lower()

        groups: list[tuple[str, Callable[[str], bool]]] = [
            ("Loss", lambda n: base(n) == "loss"),
            ("Reward", lambda n: base(n) in {"reward", "reward_mean", "mean_reward"}),
            ("Gradient norm", lambda n: base(n) in {"grad_norm", "gradient_norm"}),
            ("Learning rate", lambda n: base(n) in {"learning_rate", "lr"}),
            ("Memory [MB]", lambda n: "memory" in base(n) or base(n).endswith("_mb")),
            ("Tokens", lambda n: "tokens" in base(n)),
        ]
        panels: list[tuple[str, list[str]]] = []
        used: set[str] = set()
        for title, matches in groups:
            members = [name for name in names if name not in used and matches(name)]
            if members:
                panels.append((title, members))
                used.update(members)
        panels.extend((name, [name]) for name in names if name not in used)
        return panels

    def _dashboard_panel(
        self,
        ax: Axes,
        title: str,
        names: list[str],
        series: Mapping[str, np.ndarray],
        steps: Any,
        shared_x: np.ndarray | None,
        colour_of: Mapping[str, Any],
    ) -> None:
        single = len(names) == 1
        if not single:
            # Lines sharing a panel get hues far apart, not run-wide neighbours.
            colour_of = dict(zip(names, self._colours(len(names)), strict=True))
        skipped = 0
        finite_values: list[np.ndarray] = []
        for name in names:
            values = series[name]
            x = _x_values(name, values.size, steps, shared_x)
            skipped += self._plot_line(ax, x, values, colour_of[name], name, smooth=single)
            finite_values.append(values[np.isfinite(values)])
        everything = np.concatenate(finite_values)
        if everything.size == 0:
            self._no_data(ax)
        else:
            if single:
                title = f"{title} (last {_short(float(finite_values[0][-1]))})"
            positive = everything[everything > 0]
            if (
                title.startswith("Learning rate")
                and positive.size == everything.size
                and positive.max() / positive.min() > 20
            ):
                ax.set_yscale("log")  # warmup + decay spans decades
            else:
                self._scientific_y(ax)
            ax.legend(loc="best", fontsize="x-small", framealpha=0.7)
        if skipped:
            title += f" · {skipped} non-finite"
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(_label(names[0]) if single else title.split(" (")[0])

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
    ) -> ChartBatch:
        """Render every chart that the given data allows; never raises for bad data.

        ``data`` is the metric history (typically
        ``ComprehensiveStatsCollector.to_dataframe()``). Memory series default
        to its memory-like columns (``*_mb`` or containing "memory"). Each
        chart that fails is logged and reported in ``ChartBatch.errors`` so a
        background worker can count it and go on.

        Example::

            batch = charts.generate_checkpoint_charts(stats.to_dataframe(), step=100,
                                                      rewards=last_rewards)
            batch.paths["dashboard"]   # charts/dashboard_step_100.png
        """
        batch = ChartBatch()

        def attempt(kind: str, render: Callable[[], Path]) -> None:
            try:
                batch.paths[kind] = render()
            except Exception as error:  # one bad chart must not stop the others
                logger.warning("charts: %s failed: %s", kind, error)
                batch.errors[kind] = error

        attempt("training_curves", lambda: self.plot_training_curves(data, step=step))
        attempt("dashboard", lambda: self.create_dashboard(data, step=step))
        attempt("correlation_matrix", lambda: self.plot_correlation_matrix(data))
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
            memory = self._memory_columns(data)
        if memory is not None:
            attempt(
                "memory",
                lambda: self.plot_memory_usage(memory, threshold_mb=memory_threshold_mb, step=step),
            )
        return batch

    @staticmethod
    def _memory_columns(data: Any) -> pd.DataFrame | dict[str, Any] | None:
        if isinstance(data, pd.DataFrame):
            names = [c for c in data.columns if c != "step" and is_memory_field(str(c))]
            if not names:
                return None
            return data[(["step"] if "step" in data.columns else []) + names]
        if isinstance(data, Mapping):
            picked = {k: v for k, v in data.items() if is_memory_field(str(k))}
            return picked or None
        return None
