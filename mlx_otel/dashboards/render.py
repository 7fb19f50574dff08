"""Dashboards drawn with matplotlib from a live Prometheus, without Grafana.

Each panel runs the same queries as in Grafana and is drawn in the
dashboard's grid: time series as lines, heatmaps as heatmaps, tables as
tables, stats as numbers; firing alerts (the dashboards' annotation) shade
the time series where they fired. This module lays out the figure (title,
cards in Grafana's grid, the alert regions); the panels are drawn by
:mod:`~mlx_otel.dashboards.render_panels`, values written by
:mod:`~mlx_otel.dashboards.render_units`. matplotlib and seaborn are
imported only when :func:`preview` runs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from mlx_otel.dashboards.prometheus_api import PrometheusAPI
from mlx_otel.dashboards.queries import (
    DashboardError,
    dashboard_json,
    duration,
    iter_panels,
    regex_literal,
)
from mlx_otel.dashboards.render_panels import (
    COLUMN_IN,
    DRAWERS,
    FIGURE_WIDTH_IN,
    ROW_IN,
    Box,
    PanelContext,
)
from mlx_otel.dashboards.render_units import GRAFANA_COLOURS, legend_text
from mlx_otel.fileio import atomic_path

__all__ = ["DashboardRenderer", "make_renderer", "preview"]

_HEADER_IN = 0.75
_PREVIEW_POINTS = 240


class DashboardRenderer:
    """Draws one dashboard's panels into a matplotlib Figure, in Grafana's grid."""

    def __init__(
        self,
        prometheus: PrometheusAPI,
        *,
        start: float,
        end: float,
        step: float,
        variables: dict[str, str],
    ) -> None:
        self.context = PanelContext(prometheus, start, end, step, variables)

    @property
    def end(self) -> float:
        return self.context.end

    def figure(self, data: dict[str, Any], subtitle: str) -> Any:
        from matplotlib.figure import Figure

        panels = [p for p in iter_panels(data.get("panels", [])) if p.get("gridPos")]
        rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=8)
        height = _HEADER_IN + rows * ROW_IN
        fig = Figure(figsize=(FIGURE_WIDTH_IN, height), dpi=100)
        fig.text(0.006, 1 - 0.32 / height, data.get("title", ""), fontsize=17, weight="bold",
                 va="center")  # fmt: skip
        fig.text(0.006, 1 - 0.6 / height, subtitle, fontsize=10, color="#555555", va="center")
        self.context.regions = self.annotations(data)
        if self.context.regions:
            names = sorted({title for _, _, title, _ in self.context.regions})
            fig.text(
                0.994, 1 - 0.6 / height, "firing: " + ", ".join(names), fontsize=10,
                color=GRAFANA_COLOURS["red"], va="center", ha="right",
            )  # fmt: skip
        for panel in sorted(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
            self.panel(fig, panel, height)
        return fig

    def annotations(self, data: dict[str, Any]) -> list[tuple[float, float, str, str]]:
        """Time regions of the dashboard's Prometheus annotations (firing alerts), as Grafana
        draws them: one region per series and stretch of consecutive samples."""
        step = self.context.step
        regions = []
        for annotation in data.get("annotations", {}).get("list", []):
            if not annotation.get("expr") or not annotation.get("enable", True):
                continue
            icon = str(annotation.get("iconColor") or "red")
            colour = GRAFANA_COLOURS.get(icon, icon)
            for labels, times, _values in self.context.range(annotation["expr"]):
                if not len(times):
                    continue
                title = legend_text(annotation.get("titleFormat", ""), labels)
                stamps = [float(x) for x in times]
                begin = previous = stamps[0]
                for stamp in stamps[1:]:
                    if stamp - previous > 1.5 * step:  # a gap: the alert stopped firing
                        regions.append((begin, previous + step, title, colour))
                        begin = stamp
                    previous = stamp
                regions.append((begin, previous + step, title, colour))
        return regions

    def panel(self, fig: Any, panel: dict[str, Any], height: float) -> None:
        """The panel's card and title, then its content by the drawer of its type."""
        from matplotlib.patches import FancyBboxPatch

        grid = panel["gridPos"]
        left = grid["x"] * COLUMN_IN
        top = _HEADER_IN + grid["y"] * ROW_IN
        width, tall = grid["w"] * COLUMN_IN, grid["h"] * ROW_IN
        pad = 0.06
        card = FancyBboxPatch(
            ((left + pad) / FIGURE_WIDTH_IN, 1 - (top + tall - pad) / height),
            (width - 2 * pad) / FIGURE_WIDTH_IN,
            (tall - 2 * pad) / height,
            boxstyle="round,pad=0,rounding_size=0.004", transform=fig.transFigure,
            facecolor="#fbfbfc", edgecolor="#d0d3d9", linewidth=0.8, zorder=-10,
        )  # fmt: skip
        fig.patches.append(card)
        fig.text((left + 0.18) / FIGURE_WIDTH_IN, 1 - (top + 0.22) / height,
                 panel.get("title", ""), fontsize=11, weight="bold", va="center")  # fmt: skip
        draw = DRAWERS.get(str(panel.get("type", "")))
        if draw is None:
            return
        box = Box(left=left, top=top, width=width, height=tall, fig_height=height)
        try:
            draw(self.context, fig, panel, box)
        except DashboardError as exc:
            raise DashboardError(f"panel {panel.get('title')!r}: {exc}") from exc


def _check_run_id(
    prometheus: PrometheusAPI, run_id: str, start: float, end: float, minutes: float
) -> None:
    """Fail naming the runs that exist when ``run_id`` has no series in the time range."""
    runs = prometheus.label_values("run_id", "mlx_train_steps_total", start, end)
    if run_id in runs:
        return
    known = ", ".join(runs[:20]) + (f" and {len(runs) - 20} more" if len(runs) > 20 else "")
    raise DashboardError(
        f"--run-id {run_id!r} has no series in the last {minutes:g} minutes at {prometheus.url}; "
        + (f"runs there: {known}" if runs else "no run has series there (is the trainer scraped?)")
        + " (a longer --minutes reaches older runs)"
    )


def make_renderer(prometheus_url: str, *, run_id: str | None, minutes: float) -> DashboardRenderer:
    """A renderer for the last ``minutes`` of ``prometheus_url`` (one run, or all runs)."""
    prometheus = PrometheusAPI(prometheus_url)
    scrape = prometheus.scrape_interval()
    end = time.time()
    start = end - minutes * 60
    if run_id is not None:
        _check_run_id(prometheus, run_id, start, end, minutes)
    step = max(scrape, math.ceil((end - start) / _PREVIEW_POINTS))
    # Grafana's $__rate_interval: at least four scrapes, and one interval plus a scrape.
    rate_interval = max(4 * scrape, step + scrape)
    return DashboardRenderer(
        prometheus,
        start=start,
        end=end,
        step=step,
        variables={
            "run_id": regex_literal(run_id) if run_id else ".*",
            "rank": ".*",
            "rate_interval": duration(rate_interval),
            "interval": duration(step),
            "time_range": duration(round(minutes * 60)),
        },
    )


def preview(
    prometheus_url: str,
    out_dir: Path,
    *,
    directory: Path | None = None,
    run_id: str | None = None,
    minutes: float = 30.0,
) -> list[Path]:
    """Render each generated dashboard of ``directory`` into ``<out_dir>/<NAME>.png``.

    The panels run the same queries as in Grafana (template variables
    substituted: ``run_id`` selects one run, all runs by default) over the
    last ``minutes`` against the Prometheus at ``prometheus_url``, and are
    drawn in the dashboard's grid: time series as lines, heatmaps as
    heatmaps, tables as tables, stats as numbers.

        >>> preview("http://127.0.0.1:9090", Path("docs/images"))  # doctest: +SKIP
        [PosixPath('docs/images/gradient_flow.png'), ...]
    """
    try:
        import matplotlib  # noqa: F401 - checked here so the error names the fix
        import seaborn as sns
    except ImportError as exc:
        raise DashboardError(
            f"previews need {exc.name}: `pip install 'mlx-otel[dashboards]'`"
        ) from exc
    if minutes <= 0:
        raise DashboardError(f"--minutes must be positive, not {minutes}")
    if directory is None:
        from mlx_otel.assets import dashboards_dir

        directory = dashboards_dir()
    dashboards = list(dashboard_json(Path(directory)))
    renderer = make_renderer(prometheus_url, run_id=run_id, minutes=minutes)
    subtitle = (
        f"run {run_id or 'all'} · last {minutes:g} min · "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(renderer.end))} · "
        "rendered by mlx-otel from Prometheus"
    )
    written = []
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        for path, data in dashboards:
            fig = renderer.figure(data, subtitle)
            target = Path(out_dir) / f"{path.stem}.png"
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format="png", facecolor="white")
            written.append(target)
    return written
