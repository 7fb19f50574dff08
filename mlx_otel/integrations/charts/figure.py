"""The figure every chart family draws into, and the lines they share.

Charts are rendered with matplotlib's object-oriented API (``Figure`` +
``FigureCanvasAgg``): no pyplot figure is created, the user's backend is
never switched and ``plt.show`` is never called, so rendering works
headless, on a background thread, and cannot disturb a notebook's own
figures. Styles are applied inside ``matplotlib.rc_context`` and restored
afterwards; rcParams are process-global, so one chart renders at a time.
Files are written atomically, so a reader never sees a half-written PNG.

Lines that share one axes (memory series, token series) get distinct line
styles and markers as well as colours: two series with the same values
(``memory_allocated_mb`` is often ``mlx_active_mb``) must both stay visible.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from mlx_otel.config.visualization import ChartStyle
from mlx_otel.fileio import atomic_path

__all__ = [
    "OverlayStyle",
    "chart_path",
    "colours",
    "no_data",
    "overlay_label",
    "overlay_style",
    "plot_line",
    "scientific_y",
    "styled_figure",
]

logger = logging.getLogger("mlx_otel.integrations.charts")

# rcParams are process-global: one chart at a time, so two threads rendering
# with different styles cannot mix their settings.
_RENDER_LOCK = threading.RLock()


def chart_path(output_dir: Path, filename: str | Path | None, base: str, step: int | None) -> Path:
    """``output_dir / filename`` (with a suffix), else the seed's ``<base>_step_<step>.png``."""
    if filename is not None:
        path = output_dir / filename
        # savefig infers the format from the suffix; give it one.
        return path if path.suffix else path.with_suffix(".png")
    suffix = "" if step is None else f"_step_{step}"
    return output_dir / f"{base}{suffix}.png"


def colours(style: ChartStyle, count: int) -> list[Any]:
    return list(sns.color_palette(style.palette, max(count, 1)))


@contextlib.contextmanager
def styled_figure(style: ChartStyle, path: Path, figsize: tuple[float, float]) -> Iterator[Figure]:
    """A styled Agg figure that is saved atomically to ``path`` on success."""
    with _RENDER_LOCK, matplotlib.rc_context():
        sns.set_theme(
            style=style.style,
            palette=style.palette,
            context=style.context,
            font_scale=style.font_scale,
            rc=style.rc or None,
        )
        figure = Figure(figsize=figsize, dpi=style.dpi, layout="constrained")
        FigureCanvasAgg(figure)
        try:
            yield figure
            with atomic_path(path) as tmp:
                figure.savefig(tmp, dpi=style.dpi, format=path.suffix.lstrip(".") or "png")
        finally:
            # Figures outside pyplot are freed by refcount; clearing
            # breaks the artist cycles now rather than at the next GC.
            figure.clear()
    logger.debug("charts: wrote %s", path)


def plot_line(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    colour: Any,
    label: str,
    *,
    smoothing_window: int,
    smooth: bool = True,
    overlay: OverlayStyle | None = None,
) -> int:
    """Faint raw line plus moving average; returns how many points were skipped.

    With ``smooth=False`` a single line labelled ``label`` is drawn, in the
    ``overlay`` style when it shares the axes with other lines.
    """
    finite = np.isfinite(y) & np.isfinite(x)
    skipped = int(y.size - finite.sum())
    xs, ys = x[finite], y[finite]
    if xs.size == 0:
        return skipped
    marker = "o" if xs.size <= 30 else None
    window = min(smoothing_window, xs.size)
    if smooth and window > 1:
        ax.plot(
            xs, ys, color=colour, alpha=0.3, linewidth=1.0, marker=marker, markersize=3,
            label="raw",
        )  # fmt: skip
        smoothed = pd.Series(ys).rolling(window, min_periods=1).mean().to_numpy()
        # The panel title names the metric; the legend only tells the lines apart.
        ax.plot(xs, smoothed, color=colour, linewidth=2.0, label=f"{window}-point moving average")
    elif overlay is not None:
        ax.plot(xs, ys, color=colour, label=label, **overlay.keywords(xs.size))
    else:
        ax.plot(xs, ys, color=colour, linewidth=1.8, marker=marker, markersize=4, label=label)
    return skipped


@dataclass(frozen=True)
class OverlayStyle:
    """How the ``index``-th of several lines on one axes is drawn."""

    index: int
    linestyle: str
    marker: str
    linewidth: float

    def keywords(self, points: int) -> dict[str, Any]:
        """Keyword arguments for ``Axes.plot`` of a line of ``points`` points.

        Markers sit on every k-th point (about a dozen per line), each line's
        shifted so that equal lines still show every marker.
        """
        every = max(points // 12, 1)
        return {
            "linestyle": self.linestyle,
            "linewidth": self.linewidth,
            "marker": self.marker,
            "markersize": 4.5 if points <= 30 else 5.5,
            "markevery": (self.index * max(every // 4, 1) % every, every),
            # Earlier (wider, solid) lines below, later (thinner, dashed) on top.
            "zorder": 2.0 + 0.1 * self.index,
        }


_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def overlay_style(index: int) -> OverlayStyle:
    """The ``index``-th line's style: line style, marker and width all differ, the
    first line widest, so a later line drawn over an equal one leaves it visible."""
    return OverlayStyle(
        index=index,
        linestyle=_LINESTYLES[index % len(_LINESTYLES)],
        marker=_MARKERS[index % len(_MARKERS)],
        linewidth=max(2.8 - 0.8 * index, 1.2),
    )


def overlay_label(name: str, values: np.ndarray, drawn: dict[str, np.ndarray]) -> str:
    """``name``, or ``name (= other)`` when an earlier line of the axes has the same values."""
    for other, earlier in drawn.items():
        if earlier.shape == values.shape and np.allclose(
            earlier, values, rtol=1e-9, atol=0.0, equal_nan=True
        ):
            return f"{name} (= {other})"
    return name


def no_data(ax: Axes, message: str = "no finite values") -> None:
    ax.text(
        0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
        fontsize="large", color="grey",
    )  # fmt: skip


def scientific_y(ax: Axes) -> None:
    formatter = ScalarFormatter(useMathText=True)
    formatter.set_powerlimits((-3, 4))
    ax.yaxis.set_major_formatter(formatter)
