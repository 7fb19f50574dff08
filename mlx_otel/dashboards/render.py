"""Dashboards drawn with matplotlib from a live Prometheus, without Grafana.

Each panel runs the same queries as in Grafana and is drawn in the
dashboard's grid: time series as lines, heatmaps as heatmaps, tables as
tables, stats as numbers; firing alerts (the dashboards' annotation) shade
the time series where they fired. matplotlib and seaborn are imported only
when :func:`preview` runs.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_otel.dashboards.prometheus_api import PrometheusAPI
from mlx_otel.dashboards.queries import (
    INCIDENT_ONLY_NOTE,
    TRAINER_ONLY_NOTE,
    DashboardError,
    dashboard_json,
    duration,
    iter_panels,
    regex_literal,
    substitute,
)
from mlx_otel.fileio import atomic_path

__all__ = ["preview"]

# --- preview: the panels drawn with matplotlib from a live Prometheus ---------

# Grafana's grid: 24 columns; a row unit is 30 px on a ~1900 px wide screen.
_FIGURE_WIDTH_IN = 20.0
_COLUMN_IN = _FIGURE_WIDTH_IN / 24
_ROW_IN = _COLUMN_IN * 30 / 80
_HEADER_IN = 0.75
_PREVIEW_POINTS = 240
# Grafana's named colours, so stat panels look as they do in Grafana.
_COLOURS = {"green": "#37872d", "orange": "#ff9830", "red": "#e02f44", "blue": "#3274d9"}

# Ticks of a logarithmic duration axis: a second, a minute ... a century.
_DURATION_TICKS = (1, 60, 3600, 86400, 604800, 2592000, 31536000, 3153600000)


@dataclass(frozen=True)
class _Scale:
    """How values of a Grafana unit are shown: divided by ``factor``, labelled ``label``."""

    factor: float
    label: str


def _unit_scale(unit: str, magnitude: float) -> _Scale:
    """The scale Grafana would pick for values around ``magnitude`` in ``unit``."""
    magnitude = abs(magnitude) if math.isfinite(magnitude) else 0.0
    if unit in ("bytes", "Bps"):
        per_second = "/s" if unit == "Bps" else ""
        for power, prefix in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
            if magnitude >= 1024**power:
                return _Scale(1024.0**power, prefix + per_second)
        return _Scale(1.0, "B" + per_second)
    if unit == "s":
        for factor, name in ((31536000, "years"), (86400, "days"), (3600, "hours"), (60, "min")):
            if magnitude >= 2 * factor:
                return _Scale(float(factor), name)
        if 0 < magnitude < 1:
            return _Scale(0.001, "ms")
        return _Scale(1.0, "s")
    if unit == "percentunit":
        return _Scale(0.01, "%")
    if unit == "ops":
        return _Scale(1.0, "ops/s")
    if unit.startswith("suffix:"):
        return _Scale(1.0, unit.split(":", 1)[1].strip())
    return _Scale(1.0, "")


def _format_value(value: float, unit: str) -> str:
    """One value as text with its unit, e.g. ``1.5 GiB``, ``3.2 hours``, ``2.0e-04``."""
    if not math.isfinite(value):
        return str(value)
    if unit == "sci":
        return f"{value:.2e}"
    scale = _unit_scale(unit, value)
    text = f"{value / scale.factor:.3g}"
    return f"{text} {scale.label}".strip() if scale.label not in ("%",) else f"{text}%"


def _legend_text(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend templating, with runs of blanks collapsed."""
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    text = " ".join(text.split())
    if text:
        return text
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else name or "value"


def _bucket_bound(labels: dict[str, str]) -> float:
    try:
        return float(labels.get("le", "inf"))
    except ValueError:
        return math.inf


class _Renderer:
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
        self.prometheus = prometheus
        self.start, self.end, self.step = start, end, step
        self.variables = variables
        # (start, end, title) of the annotation regions of the dashboard being drawn.
        self.regions: list[tuple[float, float, str, str]] = []

    def query(self, expr: str) -> str:
        return substitute(expr, **self.variables)

    def figure(self, data: dict[str, Any], subtitle: str) -> Any:
        from matplotlib.figure import Figure

        panels = [p for p in iter_panels(data.get("panels", [])) if p.get("gridPos")]
        rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=8)
        height = _HEADER_IN + rows * _ROW_IN
        fig = Figure(figsize=(_FIGURE_WIDTH_IN, height), dpi=100)
        fig.text(
            0.006, 1 - 0.32 / height, data.get("title", ""), fontsize=17, weight="bold", va="center"
        )
        fig.text(0.006, 1 - 0.6 / height, subtitle, fontsize=10, color="#555555", va="center")
        self.regions = self.annotations(data)
        if self.regions:
            names = sorted({title for _, _, title, _ in self.regions})
            fig.text(
                0.994, 1 - 0.6 / height, "firing: " + ", ".join(names), fontsize=10,
                color=_COLOURS["red"], va="center", ha="right",
            )  # fmt: skip
        for panel in sorted(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
            self.panel(fig, panel, height)
        return fig

    def annotations(self, data: dict[str, Any]) -> list[tuple[float, float, str, str]]:
        """Time regions of the dashboard's Prometheus annotations (firing alerts), as Grafana
        draws them: one region per series and stretch of consecutive samples."""
        regions = []
        for annotation in data.get("annotations", {}).get("list", []):
            if not annotation.get("expr") or not annotation.get("enable", True):
                continue
            icon = str(annotation.get("iconColor") or "red")
            colour = _COLOURS.get(icon, icon)
            for labels, times, _values in self.prometheus.range(
                self.query(annotation["expr"]), self.start, self.end, self.step
            ):
                if not len(times):
                    continue
                title = _legend_text(annotation.get("titleFormat", ""), labels)
                stamps = [float(x) for x in times]
                begin = previous = stamps[0]
                for stamp in stamps[1:]:
                    if stamp - previous > 1.5 * self.step:  # a gap: the alert stopped firing
                        regions.append((begin, previous + self.step, title, colour))
                        begin = stamp
                    previous = stamp
                regions.append((begin, previous + self.step, title, colour))
        return regions

    def draw_regions(self, ax: Any) -> None:
        for begin, end, _title, colour in self.regions:
            ax.axvspan(*self._dates([begin, min(end, self.end)]), color=colour, alpha=0.12,
                       linewidth=0, zorder=0)  # fmt: skip

    def panel(self, fig: Any, panel: dict[str, Any], height: float) -> None:
        from matplotlib.patches import FancyBboxPatch

        grid = panel["gridPos"]
        left = grid["x"] * _COLUMN_IN
        top = _HEADER_IN + grid["y"] * _ROW_IN
        width, tall = grid["w"] * _COLUMN_IN, grid["h"] * _ROW_IN
        pad = 0.06
        card = FancyBboxPatch(
            ((left + pad) / _FIGURE_WIDTH_IN, 1 - (top + tall - pad) / height),
            (width - 2 * pad) / _FIGURE_WIDTH_IN,
            (tall - 2 * pad) / height,
            boxstyle="round,pad=0,rounding_size=0.004",
            transform=fig.transFigure,
            facecolor="#fbfbfc",
            edgecolor="#d0d3d9",
            linewidth=0.8,
            zorder=-10,
        )
        fig.patches.append(card)
        fig.text(
            (left + 0.18) / _FIGURE_WIDTH_IN,
            1 - (top + 0.22) / height,
            panel.get("title", ""),
            fontsize=11,
            weight="bold",
            va="center",
        )
        kind = str(panel.get("type", ""))
        draw = {
            "timeseries": self.timeseries,
            "stat": self.stat,
            "heatmap": self.heatmap,
            "table": self.table,
        }.get(kind)
        if draw is None:
            return
        # Space inside the card for the plot: titles above, tick labels around.
        box = {"left": left, "top": top, "width": width, "height": tall, "fig_height": height}
        try:
            draw(fig, panel, box)
        except DashboardError as exc:
            raise DashboardError(f"panel {panel.get('title')!r}: {exc}") from exc

    def axes(
        self,
        fig: Any,
        box: dict[str, float],
        *,
        left: float = 0.85,
        right: float = 0.2,
        top: float = 0.45,
        bottom: float = 0.4,
    ) -> Any:
        h = box["fig_height"]
        rect = (
            (box["left"] + left) / _FIGURE_WIDTH_IN,
            1 - (box["top"] + box["height"] - bottom) / h,
            max(0.1, box["width"] - left - right) / _FIGURE_WIDTH_IN,
            max(0.1, box["height"] - top - bottom) / h,
        )
        return fig.add_axes(rect)

    @staticmethod
    def no_data(ax: Any, panel: dict[str, Any]) -> None:
        incident = INCIDENT_ONLY_NOTE in (panel.get("description") or "")
        text = "No data (incident-only: empty while healthy)" if incident else "No data"
        if TRAINER_ONLY_NOTE in (panel.get("description") or ""):
            text = "No data (mlx-lm / mlx-lm-lora runs only)"
        ax.text(
            0.5,
            0.5,
            text,
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="#777777",
            fontsize=11,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)

    def _time_axis(self, ax: Any) -> None:
        import matplotlib.dates as mdates

        # The subtitle gives the date; ticks give the time of day.
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        short = self.end - self.start <= 900
        formatter = mdates.DateFormatter("%H:%M:%S" if short else "%H:%M")  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_formatter(formatter)
        ax.tick_params(labelsize=8)

    @staticmethod
    def _dates(times: Any) -> Any:
        import numpy as np

        return (np.asarray(times) * 1000).astype("datetime64[ms]")

    @staticmethod
    def _dashed(panel: dict[str, Any], name: str) -> dict[str, Any]:
        style: dict[str, Any] = {}
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            matcher = override.get("matcher", {})
            if matcher.get("id") != "byRegexp" or not re.search(matcher.get("options", ""), name):
                continue
            for prop in override.get("properties", []):
                if prop.get("id") == "custom.lineStyle":
                    style["linestyle"] = "--"
                elif prop.get("id") == "color":
                    style["color"] = _COLOURS.get(prop["value"].get("fixedColor"), "red")
        return style

    def timeseries(self, fig: Any, panel: dict[str, Any], box: dict[str, float]) -> None:
        import numpy as np
        from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

        lines = []
        for target in panel.get("targets", []):
            for labels, times, values in self.prometheus.range(
                self.query(target["expr"]), self.start, self.end, self.step
            ):
                lines.append((_legend_text(target.get("legendFormat", ""), labels), times, values))
        n_legend = min(len(lines), 10)
        columns = max(1, min(n_legend, int((box["width"] - 0.4) // 2.4)))
        legend_rows = math.ceil(n_legend / columns) if n_legend else 0
        bottom = 0.36 + 0.19 * legend_rows
        ax = self.axes(fig, box, bottom=bottom)
        # The legend sits under the time axis' labels, as in Grafana.
        legend_y = -0.3 / max(0.1, box["height"] - 0.45 - bottom)
        if not lines:
            self.no_data(ax, panel)
            return
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit", "")
        present = [v[np.isfinite(v)] for _, _, v in lines]
        scale_type = defaults.get("custom", {}).get("scaleDistribution", {}).get("type")
        log = scale_type == "log" and all(p.size == 0 or p.min() > 0 for p in present)
        finite = [float(np.abs(p).max()) for p in present if p.size]
        # On a log axis each tick carries its own unit (1 MiB, 1 GiB), so no scaling.
        scale = _Scale(1.0, "") if log else _unit_scale(unit, max(finite, default=0.0))
        for name, times, values in lines:
            ax.plot(
                self._dates(times),
                values / scale.factor,
                label=name,
                linewidth=1.6,
                **self._dashed(panel, name),
            )
        self.draw_regions(ax)
        if log:
            base = defaults.get("custom", {}).get("scaleDistribution", {}).get("log", 10)
            ax.set_yscale("log", base=base)
            low, high = ax.get_ylim()
            if unit == "s" and sum(low <= t <= high for t in _DURATION_TICKS) >= 2:
                # Durations read best at a minute, an hour, a day, a week, a year.
                ax.yaxis.set_major_locator(FixedLocator(_DURATION_TICKS))
            else:
                # 1-2-5 steps in base 10, so a range within one decade still gets ticks.
                subs = (1.0, 2.0, 5.0) if base == 10 else (1.0,)
                ax.yaxis.set_major_locator(LogLocator(base=base, subs=subs, numticks=7))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _format_value(v, unit)))
        elif unit != "sci":
            # A flat series would get an offset text ("1e-5+9.9999e-1") over the panel.
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            values = np.concatenate(present) / scale.factor if finite else np.array([])
            if values.size:
                low, high = float(values.min()), float(values.max())
                size = max(abs(low), abs(high))
                if size > 0 and high - low < 1e-3 * size:
                    # Nearly constant: show it as a flat line, not its rounding noise.
                    ax.set_ylim(low - size / 2, high + size / 2)
        else:
            # Each tick in full (1.0e-04) rather than an offset text above the axis.
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.1e}"))
        ax.set_ylabel(scale.label, fontsize=9)
        ax.set_xlim(self._dates([self.start])[0], self._dates([self.end])[0])
        self._time_axis(ax)
        handles, names = ax.get_legend_handles_labels()
        if len(names) > 10:
            handles, names = handles[:10], [*names[:9], f"… and {len(names) - 9} more"]
        ax.legend(
            handles,
            names,
            loc="upper left",
            bbox_to_anchor=(0, legend_y),
            ncol=columns,
            fontsize=8,
            frameon=False,
            handlelength=1.6,
            borderaxespad=0.0,
        )

    def stat(self, fig: Any, panel: dict[str, Any], box: dict[str, float]) -> None:
        import numpy as np

        ax = self.axes(fig, box, left=0.2, right=0.2, top=0.4, bottom=0.15)
        ax.set_axis_off()
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
        shown = []
        for target in panel.get("targets", []):
            for labels, times, values in self.prometheus.range(
                self.query(target["expr"]), self.start, self.end, self.step
            ):
                finite = np.isfinite(values)
                last = float(values[finite][-1]) if finite.any() else float(values[-1])
                shown.append(
                    (_legend_text(target.get("legendFormat", ""), labels), times, values, last)
                )
        if not shown:
            self.no_data(ax, panel)
            return
        # Every series gets a line while they fit; the last line says how many did not.
        capacity = max(1, int((box["height"] - 0.55) / 0.22))
        left_out = 0
        if len(shown) > capacity:
            left_out = len(shown) - (capacity - 1)
            shown = shown[: capacity - 1]
        lines = len(shown) + (1 if left_out else 0)
        if left_out:
            ax.text(
                0.5, 1 - (lines - 0.5) / lines, f"… and {left_out} more series (pick a run)",
                ha="center", va="center", fontsize=8, color="#555555", transform=ax.transAxes,
            )  # fmt: skip
        for i, (name, _times, _values, last) in enumerate(shown):
            colour = "#37872d"
            for step_ in steps or []:
                if step_.get("value") is None or last >= step_["value"]:
                    colour = _COLOURS.get(step_.get("color"), step_.get("color", colour))
            y = 1 - (i + 0.5) / lines
            ax.text(
                0.5,
                y,
                _format_value(last, unit),
                ha="center",
                va="center",
                fontsize=22 if lines == 1 else (14 if lines <= 3 else 10),
                weight="bold",
                color=colour,
                transform=ax.transAxes,
            )
            if lines > 1:
                ax.text(
                    0.02,
                    y,
                    name,
                    ha="left",
                    va="center",
                    fontsize=7,
                    color="#555555",
                    transform=ax.transAxes,
                )
        # Grafana's stat draws the recent history faintly behind the number.
        _, times, values, _ = shown[0]
        spark = fig.add_axes(ax.get_position(), zorder=-1)
        spark.set_axis_off()
        finite = np.isfinite(values)
        if finite.sum() > 1:
            spark.fill_between(
                times[finite],
                values[finite],
                np.nanmin(values[finite]),
                color="#3274d9",
                alpha=0.12,
                linewidth=0,
            )

    def heatmap(self, fig: Any, panel: dict[str, Any], box: dict[str, float]) -> None:
        import numpy as np
        from matplotlib.colors import PowerNorm

        target = panel["targets"][0]
        series = self.prometheus.range(self.query(target["expr"]), self.start, self.end, self.step)
        ax = self.axes(fig, box, left=1.3, right=0.9)
        if not series:
            self.no_data(ax, panel)
            return
        grid = np.arange(self.start, self.end + self.step / 2, self.step)
        index = {round(t, 3): i for i, t in enumerate(grid)}
        if target.get("format") == "heatmap":
            series.sort(key=lambda s: _bucket_bound(s[0]))
            names = [s[0].get("le", "") for s in series]
        else:
            series.sort(key=lambda s: _legend_text(target.get("legendFormat", ""), s[0]))
            names = [_legend_text(target.get("legendFormat", ""), s[0]) for s in series]
        matrix = np.full((len(series), len(grid)), np.nan)
        for row, (_, times, values) in enumerate(series):
            for t, v in zip(times, values, strict=True):
                column = index.get(round(float(t), 3))
                if column is not None:
                    matrix[row, column] = v
        options = panel.get("options", {})
        if target.get("format") == "heatmap":
            # Prometheus buckets are cumulative; Grafana shows each bucket's own count.
            empty = np.isnan(matrix).all(axis=0)
            matrix = np.diff(np.nan_to_num(matrix), axis=0, prepend=0.0).clip(min=0)
            matrix[:, empty] = np.nan
            # Grafana hides cells at or below filterValues.le (empty buckets).
            hide_at = options.get("filterValues", {}).get("le")
            if hide_at is not None:
                matrix[matrix <= hide_at] = np.nan
        unit = options.get("cellValues", {}).get("unit", "short")
        finite = matrix[np.isfinite(matrix)]
        scale = _unit_scale(unit, float(np.max(np.abs(finite))) if finite.size else 0.0)
        exponent = options.get("color", {}).get("exponent", 0.5)
        norm = (
            PowerNorm(gamma=exponent)
            if options.get("color", {}).get("scale") == "exponential"
            else None
        )
        if norm is not None and finite.size and float(np.nanmin(finite)) < 0:
            norm = None  # a power scale is undefined below zero
        edges = self._dates(np.append(grid - self.step / 2, grid[-1] + self.step / 2))
        mesh = ax.pcolormesh(
            edges,
            np.arange(len(series) + 1),
            matrix / scale.factor,
            cmap="Spectral_r",
            norm=norm,
            shading="flat",
        )
        ax.set_yticks(np.arange(len(series)) + 0.5)
        every = max(1, math.ceil(len(series) / max(1, int(box["height"] / 0.22))))
        ax.set_yticklabels([n if i % every == 0 else "" for i, n in enumerate(names)], fontsize=7)
        if target.get("format") == "heatmap":
            y_unit = _unit_scale(options.get("yAxis", {}).get("unit", ""), 0).label
            ax.set_ylabel(f"bucket upper bound (le) {y_unit}".strip(), fontsize=9)
        ax.grid(False)
        self._time_axis(ax)
        bar = fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04)
        bar.set_label(scale.label, fontsize=8)
        bar.ax.tick_params(labelsize=7)

    def table(self, fig: Any, panel: dict[str, Any], box: dict[str, float]) -> None:
        ax = self.axes(fig, box, left=0.2, right=0.2, top=0.4, bottom=0.15)
        ax.set_axis_off()
        hidden: set[str] = set()
        for transform in panel.get("transformations", []):
            if transform.get("id") == "organize":
                hidden |= {k for k, v in transform["options"].get("excludeByName", {}).items() if v}
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        rows = []
        for target in panel.get("targets", []):
            rows.extend(self.prometheus.instant(self.query(target["expr"]), self.end))
        if not rows:
            self.no_data(ax, panel)
            return
        columns = sorted({k for labels, _ in rows for k in labels if k not in hidden})
        rows.sort(key=lambda r: -r[1] if math.isfinite(r[1]) else math.inf)
        capacity = max(1, int((box["height"] - 0.6) / 0.24) - 1)
        cells = [
            [labels.get(c, "") for c in columns] + [_format_value(v, unit)] for labels, v in rows
        ]
        if len(cells) > capacity:
            cells = [
                *cells[: capacity - 1],
                ["…"] * len(columns) + [f"{len(cells) - capacity + 1} more"],
            ]
        table = ax.table(
            cellText=cells,
            colLabels=[*columns, "Value"],
            loc="upper center",
            cellLoc="left",
            colLoc="left",
            edges="horizontal",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1, 1.15)
        for (row, _), cell in table.get_celld().items():
            cell.set_edgecolor("#d0d3d9")
            if row == 0:
                cell.set_text_props(weight="bold")


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


def make_renderer(prometheus_url: str, *, run_id: str | None, minutes: float) -> _Renderer:
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
    return _Renderer(
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
    end = renderer.end
    subtitle = (
        f"run {run_id or 'all'} · last {minutes:g} min · "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(end))} · rendered by mlx-otel from Prometheus"
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


