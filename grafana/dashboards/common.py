"""Building blocks shared by the mlx_otel dashboards; the one module that uses grafanalib.

A dashboard module reads as a list of small panel functions built from these
helpers, and metric names, units and descriptions come from the catalogue
(:mod:`mlx_otel.catalog`), so a renamed metric fails the build instead of
leaving an empty panel::

    from . import common

    def loss() -> common.Panel:
        return common.timeseries(
            1, "Loss", [common.target(common.series("loss"))],
            unit=common.unit("loss"), description=common.describe("loss"),
        )

    dashboard = common.dashboard("MLX Training", uid="mlx-training", description="...",
                                 rows=[[loss()]])

Every series is filtered by the ``run_id`` and ``rank`` template variables.
Their "All" value is ``.*``, which also matches a missing label (PromQL sees
it as ""), so single-process runs without a ``rank`` label show up too.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import attr
from grafanalib import core as g

from mlx_otel.catalog import Metric, by_key
from mlx_otel.dashboards import INCIDENT_ONLY_NOTE, TRAINER_ONLY_NOTE

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "RUN_FILTER",
    "RUN_LEGEND",
    "Panel",
    "dashboard",
    "describe",
    "heatmap",
    "legend",
    "metric",
    "series",
    "stat",
    "table",
    "target",
    "timeseries",
    "unit",
]

#: uid of the Prometheus data source provisioned by grafana/provisioning.
DATASOURCE_UID = "prometheus"
#: Panels and variables use the data source chosen in the ``datasource`` variable.
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
#: Label matchers every series selector carries.
RUN_FILTER = 'run_id=~"$run_id", rank=~"$rank"'
#: Legend suffix that tells runs and ranks apart.
RUN_LEGEND = "{{run_id}} {{rank}}"
#: Grafana's grid is 24 columns wide; one row of panels shares it.
GRID_WIDTH = 24
DEFAULT_HEIGHT = 8

Panel = g.Panel


# --- the catalogue ----------------------------------------------------------


def metric(key: str) -> Metric:
    """The catalogue entry for ``key`` (``KeyError`` lists the known keys)."""
    return by_key(key)


def series(key: str, *, suffix: str = "", matchers: str = "") -> str:
    """A selector of the catalogued metric ``key``, filtered by run and rank.

    >>> series("loss")
    'mlx_train_loss{run_id=~"$run_id", rank=~"$rank"}'
    >>> series("reward", suffix="_bucket")
    'mlx_train_reward_bucket{run_id=~"$run_id", rank=~"$rank"}'
    """
    selector = RUN_FILTER + (f", {matchers}" if matchers else "")
    return f"{metric(key).prometheus_name}{suffix}{{{selector}}}"


def unit(key: str) -> str:
    """The Grafana unit of the catalogued metric ``key``."""
    return metric(key).grafana_unit


def describe(*parts: str, incident_only: bool = False, trainer_only: bool = False) -> str:
    """A panel description: catalogue keys become their descriptions, other text stays.

    >>> describe("loss", "Lower is better.")
    'Training loss of the last step (NaN and inf are exported as they are). Lower is better.'
    """
    texts = []
    for part in parts:
        try:
            texts.append(metric(part).description)
        except KeyError:
            texts.append(part)
    text = " ".join(texts)
    if trainer_only:
        text = f"{text}\n\n{TRAINER_ONLY_NOTE}"
    return f"{text}\n\n{INCIDENT_ONLY_NOTE}" if incident_only else text


def legend(*labels: str) -> str:
    """A legend naming ``labels`` (``{{label}}``) followed by the run and rank."""
    return " ".join([*(f"{{{{{name}}}}}" for name in labels), RUN_LEGEND])


# --- queries ----------------------------------------------------------------


def target(
    expr: str,
    legend_format: str = RUN_LEGEND,
    *,
    instant: bool = False,
    format: str = "time_series",
) -> g.Target:
    """A Prometheus query of a panel (its refId is set by the panel helper)."""
    return g.Target(
        expr=expr,
        legendFormat=legend_format,
        instant=instant,
        format=format,
        datasource=DATASOURCE,
        intervalFactor=1,
    )


def _with_ref_ids(targets: Sequence[g.Target]) -> list[g.Target]:
    if not targets:
        raise ValueError("a panel needs at least one query")
    if len(targets) > len(string.ascii_uppercase):
        raise ValueError(f"too many queries in one panel: {len(targets)}")
    return [
        attr.evolve(t, refId=ref) for t, ref in zip(targets, string.ascii_uppercase, strict=False)
    ]


# --- panels -----------------------------------------------------------------


def timeseries(
    panel_id: int,
    title: str,
    targets: Sequence[g.Target],
    *,
    unit: str,
    description: str,
    height: int = DEFAULT_HEIGHT,
    log_scale: bool = False,
    log_base: int = 10,
    dashed: Sequence[str] = (),
    min_zero: bool = False,
    stacked: bool = False,
    right_axis: Sequence[str] = (),
    right_unit: str = "short",
) -> g.TimeSeries:
    """A time series panel.

    ``log_scale`` draws the y axis logarithmic in ``log_base`` (2 gives
    power-of-two ticks for bytes). ``dashed`` are regular expressions of
    series names drawn as red dashed lines (limits and thresholds, not data).
    ``stacked`` stacks the series as filled areas (shares of a whole);
    ``right_axis`` are regular expressions of series drawn against a second
    y axis on the right, in ``right_unit`` (a score beside its metric).
    """
    overrides = [
        {
            "matcher": {"id": "byRegexp", "options": pattern},
            "properties": [
                {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
                {"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}},
            ],
        }
        for pattern in dashed
    ] + [
        {
            "matcher": {"id": "byRegexp", "options": pattern},
            "properties": [
                {"id": "custom.axisPlacement", "value": "right"},
                {"id": "unit", "value": right_unit},
            ],
        }
        for pattern in right_axis
    ]
    return g.TimeSeries(
        id=panel_id,
        title=title,
        description=description,
        dataSource=DATASOURCE,
        maxDataPoints=None,
        targets=_with_ref_ids(targets),
        unit=unit,
        height=height,
        lineWidth=2,
        showPoints="never",
        spanNulls=True,
        tooltipMode="multi",
        tooltipSort="desc",
        legendDisplayMode="list",
        scaleDistributionType="log" if log_scale else "linear",
        scaleDistributionLog=log_base,
        valueMin=0 if min_zero else None,
        overrides=overrides,
        stacking={"mode": "normal", "group": "A"} if stacked else {},
        fillOpacity=60 if stacked else 0,
    )


@attr.s
class _Heatmap(g.Panel):
    """Grafana's heatmap panel as of Grafana 9+ (grafanalib only knows the old one).

    The old panel's ``heatmap`` key would make Grafana migrate the panel and
    drop these options, so this class writes the current schema.
    """

    unit = attr.ib(default="short", validator=attr.validators.instance_of(str))
    cell_unit = attr.ib(default="short", validator=attr.validators.instance_of(str))
    log_colors = attr.ib(default=False, validator=attr.validators.instance_of(bool))

    def to_json_data(self) -> dict[str, Any]:
        return self.panel_json(
            {
                "type": "heatmap",
                "fieldConfig": {"defaults": {"unit": self.unit, "custom": {}}, "overrides": []},
                "options": {
                    "calculate": False,
                    "cellGap": 1,
                    "cellValues": {"unit": self.cell_unit},
                    "color": {
                        "exponent": 0.5,
                        "fill": "dark-orange",
                        "mode": "scheme",
                        "reverse": False,
                        "scale": "exponential" if self.log_colors else "linear",
                        "scheme": "Spectral",
                        "steps": 64,
                    },
                    "filterValues": {"le": 1e-9},
                    "legend": {"show": True},
                    "rowsFrame": {"layout": "auto"},
                    "tooltip": {"mode": "single", "yHistogram": False},
                    "yAxis": {"axisPlacement": "left", "reverse": False, "unit": self.unit},
                },
            }
        )


def heatmap(
    panel_id: int,
    title: str,
    query: g.Target,
    *,
    unit: str,
    cell_unit: str,
    description: str,
    height: int = DEFAULT_HEIGHT,
    log_colors: bool = False,
) -> Panel:
    """A heatmap: Prometheus histogram buckets (``format="heatmap"``, legend ``{{le}}``) or
    one row per series (``format="time_series"``), with ``unit`` on the y axis and
    ``cell_unit`` for the colour scale."""
    return _Heatmap(
        id=panel_id,
        title=title,
        description=description,
        dataSource=DATASOURCE,
        maxDataPoints=None,
        targets=_with_ref_ids([query]),
        height=height,
        unit=unit,
        cell_unit=cell_unit,
        log_colors=log_colors,
    )


def table(
    panel_id: int,
    title: str,
    targets: Sequence[g.Target],
    *,
    unit: str,
    description: str,
    height: int = DEFAULT_HEIGHT,
    hide_columns: Sequence[str] = ("Time", "job", "instance", "__name__"),
    sort_by: str = "Value",
) -> g.Table:
    """A table of instant queries (one row per series), largest ``sort_by`` first."""
    return g.Table(
        id=panel_id,
        title=title,
        description=description,
        dataSource=DATASOURCE,
        maxDataPoints=None,
        targets=_with_ref_ids(targets),
        unit=unit,
        height=height,
        sortBy=[g.TableSortByField(displayName=sort_by, desc=True)],
        transformations=[
            {
                "id": "organize",
                "options": {"excludeByName": {name: True for name in hide_columns}},
            }
        ],
    )


def stat(
    panel_id: int,
    title: str,
    targets: Sequence[g.Target],
    *,
    unit: str,
    description: str,
    height: int = 4,
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
) -> g.Stat:
    """A single-value panel showing the last value; ``thresholds`` colour it."""
    return g.Stat(
        id=panel_id,
        title=title,
        description=description,
        dataSource=DATASOURCE,
        maxDataPoints=None,
        targets=_with_ref_ids(targets),
        format=unit,
        height=height,
        reduceCalc="lastNotNull",
        graphMode="area",
        colorMode="value",
        thresholds=[{"value": value, "color": color} for value, color in thresholds],
        noValue="no data",
    )


# --- the dashboard ----------------------------------------------------------


@attr.s
class _Variable(g.Template):
    """A template variable with the ``current`` selection written as Grafana writes it."""

    current: dict[str, Any] | None = attr.ib(default=None)

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_json_data()
        if self.current is not None:
            data["current"] = self.current
        if self.type == "query":
            data["definition"] = self.query
        return data


# Grafana's value for the "All" option of a variable.
_ALL = {"selected": True, "text": ["All"], "value": ["$__all"]}


def _templating() -> g.Templating:
    steps = metric("steps").prometheus_name
    datasource = _Variable(
        name="datasource",
        label="Data source",
        type="datasource",
        query="prometheus",
        current={"selected": True, "text": "Prometheus", "value": DATASOURCE_UID},
    )
    run_id = _Variable(
        name="run_id",
        label="Run",
        query=f"label_values({steps}, run_id)",
        dataSource=DATASOURCE,
        includeAll=True,
        multi=True,
        allValue=".*",
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
        current=_ALL,
    )
    rank = _Variable(
        name="rank",
        label="Rank",
        query=f'label_values({steps}{{run_id=~"$run_id"}}, rank)',
        dataSource=DATASOURCE,
        includeAll=True,
        multi=True,
        # ".*" also matches series without a rank label (single-process runs).
        allValue=".*",
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
        sort=g.SORT_NUMERIC_ASC,
        current=_ALL,
    )
    return g.Templating(list=[datasource, run_id, rank])


def _annotations() -> g.Annotations:
    return g.Annotations(
        list=[
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            },
            {
                "datasource": DATASOURCE,
                "enable": True,
                "expr": 'ALERTS{alertstate="firing", run_id=~"$run_id"}',
                "iconColor": "red",
                "name": "Firing alerts",
                "step": "15s",
                "tagKeys": "alertname,severity",
                "textFormat": "{{alertname}} ({{severity}}) run {{run_id}} {{rank}}",
                "titleFormat": "{{alertname}}",
                "useValueForTime": False,
            },
        ]
    )


def _check_unique_ids(title: str, panels: Sequence[Panel]) -> None:
    seen: dict[int, str] = {}
    for panel in panels:
        if panel.id is None:
            raise ValueError(f"{title}: panel {panel.title!r} has no id")
        if panel.id in seen:
            raise ValueError(
                f"{title}: panels {seen[panel.id]!r} and {panel.title!r} share id {panel.id}"
            )
        seen[panel.id] = panel.title


def _layout(rows: Sequence[Sequence[Panel]]) -> list[Panel]:
    """Place each row's panels side by side, sharing the grid's width."""
    placed = []
    y = 0
    for row in rows:
        if not row:
            continue
        width = GRID_WIDTH // len(row)
        height = max(p.height or DEFAULT_HEIGHT for p in row)
        for i, panel in enumerate(row):
            # The last panel takes what integer division left over.
            w = GRID_WIDTH - width * (len(row) - 1) if i == len(row) - 1 else width
            grid = g.GridPos(h=height, w=w, x=i * width, y=y)
            placed.append(attr.evolve(panel, gridPos=grid, height=None))
        y += height
    return placed


def dashboard(
    title: str, *, uid: str, description: str, rows: Sequence[Sequence[Panel]]
) -> g.Dashboard:
    """A dashboard with the shared variables and alert annotations.

    ``rows`` lists the panels row by row, top to bottom. Panel ids must be
    unique: they are checked here, when the dashboard module is imported.
    """
    panels = [p for row in rows for p in row]
    _check_unique_ids(title, panels)
    return g.Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["mlx_otel", "mlx"],
        timezone="browser",
        refresh="10s",
        time=g.Time("now-30m", "now"),
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        schemaVersion=39,
        templating=_templating(),
        annotations=_annotations(),
        panels=_layout(rows),
    )
