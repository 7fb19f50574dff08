"""Grafana dashboards as code: generate their JSON, list their queries, preview them.

The dashboards live in the repository's ``grafana/dashboards/*.py`` (written
with grafanalib, one module per dashboard, each exposing ``dashboard`` and
``NAME``). This module turns them into the JSON files Grafana provisions,
checks that the committed JSON is up to date, lists every query the JSON
holds (so tests execute exactly what Grafana will send to Prometheus) and
renders PNG previews of the panels from a live Prometheus, for the README and
for a look at a run without Grafana.

    >>> from mlx_otel.dashboards import generate, panel_queries, substitute
    >>> stale = generate(Path("grafana/dashboards"), check=True)  # doctest: +SKIP
    >>> for q in panel_queries(Path("grafana/dashboards")):        # doctest: +SKIP
    ...     print(q.panel, substitute(q.expr, run_id="demo"))

Command line (registered by :func:`add_parser`)::

    mlx-otel dashboards [--dir grafana/dashboards] [--check]
    mlx-otel dashboards preview --prometheus http://127.0.0.1:9090 --out docs/images
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlx_otel.errors import MlxOtelError
from mlx_otel.fileio import atomic_path, atomic_write_text

__all__ = [
    "DEFAULT_DIRECTORY",
    "INCIDENT_ONLY_NOTE",
    "TRAINER_ONLY_NOTE",
    "DashboardError",
    "DashboardModule",
    "PanelQuery",
    "add_parser",
    "generate",
    "load_dashboards",
    "panel_queries",
    "preview",
    "render_json",
    "substitute",
]

#: Where the dashboard modules live, relative to the repository root.
DEFAULT_DIRECTORY = Path("grafana/dashboards")

#: Appended to the description of panels that stay empty while all is well
#: (errors, dropped work): the live test accepts "no data" only from them.
INCIDENT_ONLY_NOTE = "Incident-only: this panel stays empty while training is healthy."
TRAINER_ONLY_NOTE = (
    "Trainer runs only: filled by mlx-otel lora / lora-train (mlx-lm, mlx-lm-lora callbacks)."
)

# Modules in the dashboard folder that are not dashboards themselves.
_HELPER_MODULES = frozenset({"common"})


class DashboardError(MlxOtelError):
    """A dashboard folder, module or Prometheus server cannot be used as asked."""


@dataclass(frozen=True)
class DashboardModule:
    """One loaded dashboard module: its JSON stem, source file and grafanalib object."""

    name: str
    path: Path
    dashboard: Any

    @property
    def json_path(self) -> Path:
        """The generated JSON file beside the module."""
        return self.path.with_name(f"{self.name}.json")


@dataclass(frozen=True)
class PanelQuery:
    """One query of a panel (or of an annotation) as Grafana will send it.

    ``incident_only`` marks panels whose description carries
    :data:`INCIDENT_ONLY_NOTE`: they may legitimately return no data.
    ``trainer_only`` marks those carrying :data:`TRAINER_ONLY_NOTE`: they have
    data for mlx-lm and mlx-lm-lora runs only (tests/test_trainers.py proves them).
    """

    dashboard: str
    panel: str
    expr: str
    legend: str
    instant: bool
    incident_only: bool
    ref_id: str = "A"
    format: str = "time_series"
    panel_type: str = "timeseries"
    trainer_only: bool = False

    @property
    def label(self) -> str:
        """``Dashboard / Panel / refId``, for test ids and messages."""
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def _check_directory(directory: Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise DashboardError(
            f"no dashboard folder at {directory}: run from the repository root "
            "or pass --dir with the folder that holds the dashboard modules"
        )
    return directory


def _dashboard_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.glob("*.py")
        if p.stem not in _HELPER_MODULES and not p.stem.startswith("_")
    )


def _import_module(path: Path) -> ModuleType:
    """Import a dashboard module by path, with its folder importable (``import common``)."""
    folder = str(path.parent.resolve())
    # The helper module is imported under its plain name: set aside any
    # module of that name (another folder's, or a stale copy) and put it back
    # afterwards, so loading dashboards leaves the interpreter as it was.
    saved = {name: sys.modules.pop(name) for name in _HELPER_MODULES if name in sys.modules}
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(f"_mlx_otel_dashboard_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise DashboardError(f"cannot import {path}: not a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ImportError as exc:
            raise DashboardError(
                f"cannot import {path}: {exc}; install the dashboard dependencies "
                "with `pip install 'mlx-otel[dashboards]'`"
            ) from exc
        return module
    finally:
        sys.path.remove(folder)
        for name in _HELPER_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def load_dashboards(directory: Path = DEFAULT_DIRECTORY) -> list[DashboardModule]:
    """Import every dashboard module of ``directory``, sorted by file name.

    Each module must define ``NAME`` (the JSON file stem) and ``dashboard``
    (a grafanalib ``Dashboard``); a module that does not is an error naming it.

        >>> [d.name for d in load_dashboards(Path("grafana/dashboards"))]  # doctest: +SKIP
        ['gradient_flow', 'mlx_memory', 'mlx_training']
    """
    directory = _check_directory(directory)
    files = _dashboard_files(directory)
    if not files:
        raise DashboardError(
            f"no dashboard modules (*.py) in {directory}; pass --dir with the folder "
            "that holds them"
        )
    loaded = []
    names: dict[str, Path] = {}
    for path in files:
        module = _import_module(path)
        name = getattr(module, "NAME", None)
        dashboard = getattr(module, "dashboard", None)
        if not isinstance(name, str) or dashboard is None or not hasattr(dashboard, "to_json_data"):
            raise DashboardError(
                f"{path} is not a dashboard module: it must define NAME (a string) and "
                "dashboard (a grafanalib Dashboard)"
            )
        if name in names:
            raise DashboardError(f"{path} and {names[name]} both use NAME = {name!r}")
        names[name] = path
        loaded.append(DashboardModule(name=name, path=path, dashboard=dashboard))
    return loaded


def render_json(dashboard: Any) -> str:
    """The dashboard's JSON as committed: sorted keys, two-space indent, final newline."""
    from grafanalib._gen import DashboardEncoder

    return (
        json.dumps(dashboard.to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"
    )


def generate(directory: Path = DEFAULT_DIRECTORY, *, check: bool = False) -> list[Path]:
    """Write ``<NAME>.json`` beside each dashboard module; return the files that changed.

    With ``check=True`` nothing is written: the returned list names the JSON
    files that are missing or differ from what the code generates (empty when
    all are up to date), which is what CI fails on.

        >>> generate(Path("grafana/dashboards"), check=True)  # doctest: +SKIP
        []
    """
    changed = []
    for module in load_dashboards(directory):
        text = render_json(module.dashboard)
        target = module.json_path
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        changed.append(target)
        if not check:
            atomic_write_text(target, text)
    return changed


def _dashboard_json(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    directory = _check_directory(directory)
    files = sorted(directory.glob("*.json"))
    if not files:
        raise DashboardError(
            f"no dashboard JSON in {directory}; run `mlx-otel dashboards --dir {directory}` first"
        )
    for path in files:
        try:
            yield path, json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DashboardError(
                f"{path} is not valid JSON ({exc}); regenerate it with `mlx-otel dashboards`"
            ) from exc


def _iter_panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        # Collapsed rows carry their panels inside them.
        yield from _iter_panels(panel.get("panels") or [])


def panel_queries(directory: Path = DEFAULT_DIRECTORY) -> list[PanelQuery]:
    """Every query of every generated dashboard, read from the JSON Grafana loads.

    Annotation queries are included (as panel ``Annotation: <name>``, always
    incident-only: firing alerts are the exception, not the rule).

        >>> qs = panel_queries(Path("grafana/dashboards"))  # doctest: +SKIP
        >>> qs[0].dashboard, qs[0].panel                    # doctest: +SKIP
        ('Gradient Flow', 'Global gradient norm')
    """
    queries = []
    for _path, data in _dashboard_json(directory):
        title = data.get("title", "")
        for panel in _iter_panels(data.get("panels", [])):
            incident_only = INCIDENT_ONLY_NOTE in (panel.get("description") or "")
            for target in panel.get("targets", []):
                if target.get("hide") or not target.get("expr"):
                    continue
                queries.append(
                    PanelQuery(
                        dashboard=title,
                        panel=panel.get("title", ""),
                        expr=target["expr"],
                        legend=target.get("legendFormat", ""),
                        instant=bool(target.get("instant")),
                        incident_only=incident_only,
                        ref_id=target.get("refId", ""),
                        format=target.get("format", "time_series"),
                        panel_type=panel.get("type", ""),
                        trainer_only=TRAINER_ONLY_NOTE in (panel.get("description") or ""),
                    )
                )
        for annotation in data.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                queries.append(
                    PanelQuery(
                        dashboard=title,
                        panel=f"Annotation: {annotation.get('name', '')}",
                        expr=annotation["expr"],
                        legend=annotation.get("titleFormat", ""),
                        instant=False,
                        incident_only=True,
                        panel_type="annotation",
                    )
                )
    return queries


# $name, ${name} and ${name:format}; Grafana's built-ins start with "__".
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_REGEX_META = re.compile(r"([.+*?()|\[\]{}^$\\])")


def regex_literal(value: str) -> str:
    """``value`` escaped for a PromQL ``=~"..."`` matcher (backslashes doubled for the string)."""
    return _REGEX_META.sub(r"\\\\\1", value)


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", duration.strip())
    if not match:
        raise ValueError(f"not a Prometheus duration: {duration!r} (expected e.g. 30s, 5m, 1h)")
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return float(match.group(1)) * factor[match.group(2)]


def _duration(seconds: float) -> str:
    """A Prometheus duration for ``seconds`` (whole seconds, or milliseconds when smaller)."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def substitute(
    expr: str,
    *,
    run_id: str = ".*",
    rank: str = ".*",
    rate_interval: str = "1m",
    interval: str = "1m",
    time_range: str = "1h",
) -> str:
    """Replace Grafana's template variables in ``expr`` the way Grafana would.

    ``run_id`` and ``rank`` are regular expressions, as Grafana sends for a
    multi-value variable (``.*`` is "All"; use :func:`regex_literal` for one
    literal run id). An unknown variable is an error, so a dashboard cannot
    grow a variable the tests and previews silently leave in the query.

        >>> substitute('rate(x{run_id=~"$run_id"}[$__rate_interval])', run_id="demo")
        'rate(x{run_id=~"demo"}[1m])'
    """
    range_seconds = _seconds(time_range)
    interval_seconds = _seconds(interval)
    values = {
        "run_id": run_id,
        "rank": rank,
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__interval_ms": str(int(interval_seconds * 1000)),
        "__range": time_range,
        "__range_s": str(int(range_seconds)),
        "__range_ms": str(int(range_seconds * 1000)),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(
                f"unknown template variable ${name} in {expr!r}; known: {sorted(values)}"
            )
        return values[name]

    return _VARIABLE.sub(replace, expr)


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

_Series = tuple[dict[str, str], Any, Any]  # labels, times (s), values


class _Prometheus:
    """The few calls of Prometheus' HTTP API the preview needs (urllib, no extra deps)."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise DashboardError(
                f"--prometheus needs a URL such as http://127.0.0.1:9090, not {url!r}"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, **params: Any) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read().decode()).get("error", str(exc))
            except (ValueError, OSError):
                detail = str(exc)
            raise DashboardError(f"Prometheus at {self.url} rejected {params}: {detail}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DashboardError(
                f"cannot reach Prometheus at {self.url} ({reason}); start it (for example "
                "`docker compose up prometheus`) or pass --prometheus with its address"
            ) from exc
        if body.get("status") != "success":
            raise DashboardError(f"Prometheus at {self.url} answered {body} to {params}")
        return body["data"]

    def scrape_interval(self) -> float:
        """The global scrape interval in seconds (Grafana's ``$__rate_interval`` needs it)."""
        text = self.get("status/config").get("yaml", "")
        match = re.search(r"^\s+scrape_interval:\s*(\S+)", text, re.MULTILINE)
        return _seconds(match.group(1)) if match else 15.0

    def range(self, expr: str, start: float, end: float, step: float) -> list[_Series]:
        import numpy as np

        result = self.get("query_range", query=expr, start=start, end=end, step=step)["result"]
        series = []
        for item in result:
            points = item.get("values", [])
            times = np.array([float(t) for t, _ in points])
            values = np.array([float(v) for _, v in points])
            series.append((item.get("metric", {}), times, values))
        return series

    def instant(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        data = self.get("query", query=expr, time=at)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item.get("metric", {}), float(item["value"][1])) for item in data["result"]]


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
        prometheus: _Prometheus,
        *,
        start: float,
        end: float,
        step: float,
        variables: dict[str, str],
    ) -> None:
        self.prometheus = prometheus
        self.start, self.end, self.step = start, end, step
        self.variables = variables

    def query(self, expr: str) -> str:
        return substitute(expr, **self.variables)

    def figure(self, data: dict[str, Any], subtitle: str) -> Any:
        from matplotlib.figure import Figure

        panels = [p for p in _iter_panels(data.get("panels", [])) if p.get("gridPos")]
        rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels), default=8)
        height = _HEADER_IN + rows * _ROW_IN
        fig = Figure(figsize=(_FIGURE_WIDTH_IN, height), dpi=100)
        fig.text(
            0.006, 1 - 0.32 / height, data.get("title", ""), fontsize=17, weight="bold", va="center"
        )
        fig.text(0.006, 1 - 0.6 / height, subtitle, fontsize=10, color="#555555", va="center")
        for panel in sorted(panels, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
            self.panel(fig, panel, height)
        return fig

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
        kind = panel.get("type")
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
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8))
        short = self.end - self.start <= 900
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if short else "%H:%M"))
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
        shown = shown[:3]
        for i, (name, _times, _values, last) in enumerate(shown):
            colour = "#37872d"
            for step_ in steps or []:
                if step_.get("value") is None or last >= step_["value"]:
                    colour = _COLOURS.get(step_.get("color"), step_.get("color", colour))
            y = 1 - (i + 0.5) / len(shown)
            ax.text(
                0.5,
                y,
                _format_value(last, unit),
                ha="center",
                va="center",
                fontsize=22 if len(shown) == 1 else 14,
                weight="bold",
                color=colour,
                transform=ax.transAxes,
            )
            if len(shown) > 1:
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


def preview(
    prometheus_url: str,
    out_dir: Path,
    *,
    directory: Path = DEFAULT_DIRECTORY,
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
    dashboards = list(_dashboard_json(Path(directory)))
    prometheus = _Prometheus(prometheus_url)
    scrape = prometheus.scrape_interval()
    end = time.time()
    start = end - minutes * 60
    step = max(scrape, math.ceil((end - start) / _PREVIEW_POINTS))
    # Grafana's $__rate_interval: at least four scrapes, and one interval plus a scrape.
    rate_interval = max(4 * scrape, step + scrape)
    renderer = _Renderer(
        prometheus,
        start=start,
        end=end,
        step=step,
        variables={
            "run_id": regex_literal(run_id) if run_id else ".*",
            "rank": ".*",
            "rate_interval": _duration(rate_interval),
            "interval": _duration(step),
            "time_range": _duration(round(minutes * 60)),
        },
    )
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


# --- command line ------------------------------------------------------------


def _fail(exc: Exception) -> int:
    print(f"mlx-otel dashboards: {exc}", file=sys.stderr)
    return 2


def _run_generate(args: argparse.Namespace) -> int:
    try:
        changed = generate(args.dir, check=args.check)
    except DashboardError as exc:
        return _fail(exc)
    if args.check:
        if changed:
            print(
                "stale dashboard JSON (regenerate with `mlx-otel dashboards` and commit):",
                file=sys.stderr,
            )
            for path in changed:
                print(f"  {path}", file=sys.stderr)
            return 1
        print(f"dashboard JSON in {args.dir} is up to date")
        return 0
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"dashboard JSON in {args.dir} is up to date")
    return 0


def _run_preview(args: argparse.Namespace) -> int:
    try:
        written = preview(
            args.prometheus, args.out, directory=args.dir, run_id=args.run_id, minutes=args.minutes
        )
    except DashboardError as exc:
        return _fail(exc)
    for path in written:
        print(f"wrote {path}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``dashboards`` (and ``dashboards preview``) on an argparse subparsers object.

    >>> parser = argparse.ArgumentParser(prog="mlx-otel")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["dashboards", "--check"])
    >>> args.func is _run_generate, args.check
    (True, True)
    """
    parser = subparsers.add_parser(
        "dashboards",
        help="generate the Grafana dashboard JSON (or check it, or preview the dashboards)",
        description="Generate grafana/dashboards/*.json from the dashboard modules beside them.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIRECTORY,
        help="folder of the dashboard modules (default: %(default)s)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing JSON files that are stale",
    )
    parser.set_defaults(func=_run_generate)
    commands = parser.add_subparsers(dest="dashboards_command", metavar="{preview}")
    show = commands.add_parser(
        "preview",
        help="render the dashboards' panels from a Prometheus into PNG files",
        description="Render each dashboard's panels, queried from Prometheus, into <out>/<name>.png.",
    )
    show.add_argument(
        "--prometheus",
        required=True,
        metavar="URL",
        help="Prometheus to query, e.g. http://127.0.0.1:9090",
    )
    show.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the PNG files"
    )
    # SUPPRESS keeps `dashboards --dir X preview` from being reset to the default.
    show.add_argument(
        "--dir",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"folder of the dashboard JSON (default: {DEFAULT_DIRECTORY})",
    )
    show.add_argument("--run-id", default=None, help="show one run (default: all runs)")
    show.add_argument(
        "--minutes",
        type=float,
        default=30.0,
        help="time range to show, ending now (default: %(default)s)",
    )
    show.set_defaults(func=_run_preview)
