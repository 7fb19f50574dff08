"""The preview's panels: time series, stats, heatmaps and tables drawn as Grafana draws them.

Each drawer runs its panel's queries over the preview's time range (through
:class:`PanelContext`, which substitutes Grafana's ``$variables``) and draws
into the panel's place on the figure, given in inches of Grafana's grid
(:class:`Box`). A panel with no series says so, and why when its
description marks it incident-only or trainer-only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlx_otel.dashboards.prometheus_api import PrometheusAPI, Series
from mlx_otel.dashboards.queries import INCIDENT_ONLY_NOTE, TRAINER_ONLY_NOTE, substitute
from mlx_otel.dashboards.render_units import (
    DURATION_TICKS,
    GRAFANA_COLOURS,
    Scale,
    bucket_bound,
    format_value,
    legend_text,
    unit_scale,
)

__all__ = ["COLUMN_IN", "DRAWERS", "FIGURE_WIDTH_IN", "ROW_IN", "Box", "PanelContext", "dates"]

# Grafana's grid: 24 columns; a row unit is 30 px on a ~1900 px wide screen.
FIGURE_WIDTH_IN = 20.0
COLUMN_IN = FIGURE_WIDTH_IN / 24
ROW_IN = COLUMN_IN * 30 / 80

#: An alert's firing stretch: (start, end, title, colour).
Region = tuple[float, float, str, str]


@dataclass(frozen=True)
class Box:
    """A panel's place on the figure in inches from the top left, and the figure's height."""

    left: float
    top: float
    width: float
    height: float
    fig_height: float


@dataclass
class PanelContext:
    """The Prometheus, time range and variables every panel's queries run with."""

    prometheus: PrometheusAPI
    start: float
    end: float
    step: float
    variables: dict[str, str]
    #: Where the dashboard's alerts fired; time series shade them.
    regions: list[Region] = field(default_factory=list)

    def query(self, expr: str) -> str:
        return substitute(expr, **self.variables)

    def range(self, expr: str) -> list[Series]:
        return self.prometheus.range(self.query(expr), self.start, self.end, self.step)

    def instant(self, expr: str) -> list[tuple[dict[str, str], float]]:
        return self.prometheus.instant(self.query(expr), self.end)


def dates(times: Any) -> Any:
    """Unix seconds as numpy datetimes, which matplotlib draws as a time axis."""
    import numpy as np

    return (np.asarray(times) * 1000).astype("datetime64[ms]")


def _axes(
    fig: Any, box: Box, *, left: float = 0.85, right: float = 0.2, top: float = 0.45,
    bottom: float = 0.4,
) -> Any:  # fmt: skip
    """Axes inside the panel's card: room for the title above, tick labels around."""
    h = box.fig_height
    rect = (
        (box.left + left) / FIGURE_WIDTH_IN,
        1 - (box.top + box.height - bottom) / h,
        max(0.1, box.width - left - right) / FIGURE_WIDTH_IN,
        max(0.1, box.height - top - bottom) / h,
    )
    return fig.add_axes(rect)


def _no_data(ax: Any, panel: dict[str, Any]) -> None:
    description = panel.get("description") or ""
    incident = INCIDENT_ONLY_NOTE in description
    text = "No data (incident-only: empty while healthy)" if incident else "No data"
    if TRAINER_ONLY_NOTE in description:
        text = "No data (mlx-lm / mlx-lm-lora runs only)"
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777777",
            fontsize=11)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _time_axis(ax: Any, context: PanelContext) -> None:
    import matplotlib.dates as mdates

    # The subtitle gives the date; ticks give the time of day.
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    short = context.end - context.start <= 900
    formatter = mdates.DateFormatter("%H:%M:%S" if short else "%H:%M")  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    ax.tick_params(labelsize=8)


def _line_style(panel: dict[str, Any], name: str) -> dict[str, Any]:
    """The dashed style and fixed colour of the panel's overrides matching series ``name``."""
    style: dict[str, Any] = {}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") != "byRegexp" or not re.search(matcher.get("options", ""), name):
            continue
        for prop in override.get("properties", []):
            if prop.get("id") == "custom.lineStyle":
                style["linestyle"] = "--"
            elif prop.get("id") == "color":
                style["color"] = GRAFANA_COLOURS.get(prop["value"].get("fixedColor"), "red")
    return style


def _right_axis_unit(panel: dict[str, Any], name: str) -> str | None:
    """The unit of series ``name`` when an override puts it on the right axis, else None."""
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") != "byRegexp" or not re.search(matcher.get("options", ""), name):
            continue
        props = {prop.get("id"): prop.get("value") for prop in override.get("properties", [])}
        if props.get("custom.axisPlacement") == "right":
            return str(props.get("unit") or "short")
    return None


def _stacked(lines: list[tuple[str, Any, Any]]) -> tuple[Any, list[Any]]:
    """Series on one time grid for a stacked plot: a missing or NaN value counts as 0."""
    import numpy as np

    grid = np.unique(np.concatenate([np.asarray(times, dtype=float) for _, times, _ in lines]))
    stacked = []
    for _, times, values in lines:
        row = np.zeros(grid.size)
        row[np.searchsorted(grid, np.asarray(times, dtype=float))] = np.nan_to_num(
            np.asarray(values, dtype=float), nan=0.0, posinf=0.0, neginf=0.0
        )
        stacked.append(row)
    return grid, stacked


def _draw_right_axis(ax: Any, right: list[tuple[str, Any, Any]], unit: str) -> list[Any]:
    """Series drawn against a second y axis on the right, in their own unit."""
    from matplotlib.ticker import FuncFormatter

    twin = ax.twinx()
    handles = []
    colours = ("#8f3bb8", "#fa6400", "#1f60c4")
    for index, (name, times, values) in enumerate(right):
        (line,) = twin.plot(dates(times), values, label=name, linewidth=1.2, linestyle=":",
                            color=colours[index % len(colours)])  # fmt: skip
        handles.append(line)
    twin.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
    twin.tick_params(labelsize=8)
    return handles


def _draw_regions(ax: Any, context: PanelContext) -> None:
    for begin, end, _title, colour in context.regions:
        ax.axvspan(*dates([begin, min(end, context.end)]), color=colour, alpha=0.12,
                   linewidth=0, zorder=0)  # fmt: skip


def timeseries(context: PanelContext, fig: Any, panel: dict[str, Any], box: Box) -> None:
    """Lines over time in the panel's unit (log axis when asked), alerts shaded, legend below."""
    import numpy as np
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    lines = []
    for target in panel.get("targets", []):
        for labels, times, values in context.range(target["expr"]):
            lines.append((legend_text(target.get("legendFormat", ""), labels), times, values))
    n_legend = min(len(lines), 10)
    columns = max(1, min(n_legend, int((box.width - 0.4) // 2.4)))
    legend_rows = math.ceil(n_legend / columns) if n_legend else 0
    bottom = 0.36 + 0.19 * legend_rows
    # Room for the right axis' tick labels when an override puts series there.
    margin = 0.6 if any(_right_axis_unit(panel, name) for name, _, _ in lines) else 0.2
    ax = _axes(fig, box, bottom=bottom, right=margin)
    # The legend sits under the time axis' labels, as in Grafana.
    legend_y = -0.3 / max(0.1, box.height - 0.45 - bottom)
    if not lines:
        _no_data(ax, panel)
        return
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "")
    present = [v[np.isfinite(v)] for _, _, v in lines]
    scale_type = defaults.get("custom", {}).get("scaleDistribution", {}).get("type")
    log = scale_type == "log" and all(p.size == 0 or p.min() > 0 for p in present)
    finite = [float(np.abs(p).max()) for p in present if p.size]
    # Series an override puts on the right axis (a score beside its metric).
    on_right = [_right_axis_unit(panel, name) is not None for name, _, _ in lines]
    right = []
    if any(on_right) and not all(on_right):
        right = [line for line, r in zip(lines, on_right, strict=True) if r]
        lines = [line for line, r in zip(lines, on_right, strict=True) if not r]
    present = [v[np.isfinite(v)] for _, _, v in lines]
    finite = [float(np.abs(p).max()) for p in present if p.size]
    # On a log axis each tick carries its own unit (1 MiB, 1 GiB), so no scaling.
    scale = Scale(1.0, "") if log else unit_scale(unit, max(finite, default=0.0))
    if defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal":
        grid, stacked = _stacked(lines)
        ax.stackplot(dates(grid), *[row / scale.factor for row in stacked],
                     labels=[name for name, _, _ in lines], alpha=0.75)  # fmt: skip
        totals = np.sum(stacked, axis=0)
        present = [totals[np.isfinite(totals)]]
        finite = [float(np.abs(totals).max())] if totals.size else []
    else:
        for name, times, values in lines:
            ax.plot(dates(times), values / scale.factor, label=name, linewidth=1.6,
                    **_line_style(panel, name))  # fmt: skip
    extra = _draw_right_axis(ax, right, _right_axis_unit(panel, right[0][0]) or "") if right else []
    _draw_regions(ax, context)
    if log:
        base = defaults.get("custom", {}).get("scaleDistribution", {}).get("log", 10)
        ax.set_yscale("log", base=base)
        low, high = ax.get_ylim()
        if unit == "s" and sum(low <= t <= high for t in DURATION_TICKS) >= 2:
            # Durations read best at a minute, an hour, a day, a week, a year.
            ax.yaxis.set_major_locator(FixedLocator(DURATION_TICKS))
        else:
            # 1-2-5 steps in base 10, so a range within one decade still gets ticks.
            subs = (1.0, 2.0, 5.0) if base == 10 else (1.0,)
            ax.yaxis.set_major_locator(LogLocator(base=base, subs=subs, numticks=7))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
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
    ax.set_xlim(dates([context.start])[0], dates([context.end])[0])
    _time_axis(ax, context)
    handles, names = ax.get_legend_handles_labels()
    handles, names = [*handles, *extra], [*names, *(h.get_label() for h in extra)]
    if len(names) > 10:
        handles, names = handles[:10], [*names[:9], f"… and {len(names) - 9} more"]
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(0, legend_y), ncol=columns,
              fontsize=8, frameon=False, handlelength=1.6, borderaxespad=0.0)  # fmt: skip


def stat(context: PanelContext, fig: Any, panel: dict[str, Any], box: Box) -> None:
    """The last value of each series as a number coloured by the thresholds, history behind."""
    import numpy as np

    ax = _axes(fig, box, left=0.2, right=0.2, top=0.4, bottom=0.15)
    ax.set_axis_off()
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "")
    steps = defaults.get("thresholds", {}).get("steps")
    shown = []
    for target in panel.get("targets", []):
        for labels, times, values in context.range(target["expr"]):
            finite = np.isfinite(values)
            last = float(values[finite][-1]) if finite.any() else float(values[-1])
            shown.append((legend_text(target.get("legendFormat", ""), labels), times, values, last))
    if not shown:
        _no_data(ax, panel)
        return
    # Every series gets a line while they fit; the last line says how many did not.
    capacity = max(1, int((box.height - 0.55) / 0.22))
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
                colour = GRAFANA_COLOURS.get(step_.get("color"), step_.get("color", colour))
        y = 1 - (i + 0.5) / lines
        ax.text(
            0.5, y, format_value(last, unit), ha="center", va="center",
            fontsize=22 if lines == 1 else (14 if lines <= 3 else 10), weight="bold",
            color=colour, transform=ax.transAxes,
        )  # fmt: skip
        if lines > 1:
            ax.text(0.02, y, name, ha="left", va="center", fontsize=7, color="#555555",
                    transform=ax.transAxes)  # fmt: skip
    # Grafana's stat draws the recent history faintly behind the number.
    _, times, values, _ = shown[0]
    spark = fig.add_axes(ax.get_position(), zorder=-1)
    spark.set_axis_off()
    finite = np.isfinite(values)
    if finite.sum() > 1:
        spark.fill_between(times[finite], values[finite], np.nanmin(values[finite]),
                           color="#3274d9", alpha=0.12, linewidth=0)  # fmt: skip


def heatmap(context: PanelContext, fig: Any, panel: dict[str, Any], box: Box) -> None:
    """Series (or histogram buckets, each its own count) over time as coloured cells."""
    import numpy as np
    from matplotlib.colors import PowerNorm

    target = panel["targets"][0]
    series = context.range(target["expr"])
    ax = _axes(fig, box, left=1.3, right=0.9)
    if not series:
        _no_data(ax, panel)
        return
    grid = np.arange(context.start, context.end + context.step / 2, context.step)
    index = {round(t, 3): i for i, t in enumerate(grid)}
    buckets = target.get("format") == "heatmap"
    if buckets:
        series.sort(key=lambda s: bucket_bound(s[0]))
        names = [s[0].get("le", "") for s in series]
    else:
        series.sort(key=lambda s: legend_text(target.get("legendFormat", ""), s[0]))
        names = [legend_text(target.get("legendFormat", ""), s[0]) for s in series]
    matrix = np.full((len(series), len(grid)), np.nan)
    for row, (_, times, values) in enumerate(series):
        for t, v in zip(times, values, strict=True):
            column = index.get(round(float(t), 3))
            if column is not None:
                matrix[row, column] = v
    options = panel.get("options", {})
    if buckets:
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
    scale = unit_scale(unit, float(np.max(np.abs(finite))) if finite.size else 0.0)
    colour = options.get("color", {})
    norm = PowerNorm(gamma=colour.get("exponent", 0.5)) if colour.get("scale") == "exponential" else None
    if norm is not None and finite.size and float(np.nanmin(finite)) < 0:
        norm = None  # a power scale is undefined below zero
    edges = dates(np.append(grid - context.step / 2, grid[-1] + context.step / 2))
    mesh = ax.pcolormesh(edges, np.arange(len(series) + 1), matrix / scale.factor,
                         cmap="Spectral_r", norm=norm, shading="flat")  # fmt: skip
    ax.set_yticks(np.arange(len(series)) + 0.5)
    every = max(1, math.ceil(len(series) / max(1, int(box.height / 0.22))))
    ax.set_yticklabels([n if i % every == 0 else "" for i, n in enumerate(names)], fontsize=7)
    if buckets:
        y_unit = unit_scale(options.get("yAxis", {}).get("unit", ""), 0).label
        ax.set_ylabel(f"bucket upper bound (le) {y_unit}".strip(), fontsize=9)
    ax.grid(False)
    _time_axis(ax, context)
    bar = fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04)
    bar.set_label(scale.label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def table(context: PanelContext, fig: Any, panel: dict[str, Any], box: Box) -> None:
    """The instant values at the end of the range, largest first, as Grafana's table."""
    ax = _axes(fig, box, left=0.2, right=0.2, top=0.4, bottom=0.15)
    ax.set_axis_off()
    hidden: set[str] = set()
    for transform in panel.get("transformations", []):
        if transform.get("id") == "organize":
            hidden |= {k for k, v in transform["options"].get("excludeByName", {}).items() if v}
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    rows = []
    for target in panel.get("targets", []):
        rows.extend(context.instant(target["expr"]))
    if not rows:
        _no_data(ax, panel)
        return
    columns = sorted({k for labels, _ in rows for k in labels if k not in hidden})
    rows.sort(key=lambda r: -r[1] if math.isfinite(r[1]) else math.inf)
    capacity = max(1, int((box.height - 0.6) / 0.24) - 1)
    cells = [[labels.get(c, "") for c in columns] + [format_value(v, unit)] for labels, v in rows]
    if len(cells) > capacity:
        cells = [*cells[: capacity - 1], ["…"] * len(columns) + [f"{len(cells) - capacity + 1} more"]]
    drawn = ax.table(cellText=cells, colLabels=[*columns, "Value"], loc="upper center",
                     cellLoc="left", colLoc="left", edges="horizontal")  # fmt: skip
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.scale(1, 1.15)
    for (row, _), cell in drawn.get_celld().items():
        cell.set_edgecolor("#d0d3d9")
        if row == 0:
            cell.set_text_props(weight="bold")


#: The drawer of each Grafana panel type the preview knows; others are left as empty cards.
DRAWERS: dict[str, Callable[[PanelContext, Any, dict[str, Any], Box], None]] = {
    "timeseries": timeseries,
    "stat": stat,
    "heatmap": heatmap,
    "table": table,
}
