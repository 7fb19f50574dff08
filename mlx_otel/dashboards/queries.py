"""What the dashboards' JSON holds: its panels, their queries, and Grafana's ``$variables``.

Everything here reads the generated JSON (the files Grafana provisions), so
it works from an installed package as well as from the repository:

    >>> from mlx_otel.dashboards.queries import substitute
    >>> substitute('up{run_id=~"$run_id"}', run_id="demo")
    'up{run_id=~"demo"}'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_otel.errors import MlxOtelError

__all__ = [
    "DEFAULT_DIRECTORY",
    "INCIDENT_ONLY_NOTE",
    "TRAINER_ONLY_NOTE",
    "DashboardError",
    "PanelQuery",
    "check_directory",
    "dashboard_json",
    "duration",
    "iter_panels",
    "panel_queries",
    "regex_literal",
    "seconds",
    "substitute",
]

#: Where the dashboard modules live, relative to the repository root.
DEFAULT_DIRECTORY = Path("grafana/dashboards")

#: Appended to the description of panels that stay empty while all is well
#: (errors, dropped work): the live test accepts "no data" only from them.
INCIDENT_ONLY_NOTE = "Incident-only: this panel stays empty while training is healthy."
#: Appended to the description of panels fed only by the mlx-lm / mlx-lm-lora
#: callbacks: the demo's live test skips them, tests/test_trainers.py proves them.
TRAINER_ONLY_NOTE = (
    "Trainer runs only: filled by mlx-otel lora / lora-train (mlx-lm, mlx-lm-lora callbacks)."
)

class DashboardError(MlxOtelError):
    """A dashboard folder, module or Prometheus server cannot be used as asked."""


@dataclass(frozen=True)
class PanelQuery:
    """One query of a panel (or of an annotation) as Grafana will send it.

    ``incident_only`` marks panels whose description carries
    :data:`INCIDENT_ONLY_NOTE`: they may legitimately return no data.
    ``trainer_only`` marks those carrying :data:`TRAINER_ONLY_NOTE`: they have
    data for mlx-lm and mlx-lm-lora runs only.
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


def check_directory(directory: Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise DashboardError(
            f"no dashboard folder at {directory}: run from the repository root "
            "or pass --dir with the folder that holds the dashboards (the JSON shipped "
            "in the package: `mlx-otel dashboards export DIR`)"
        )
    return directory


def dashboard_json(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    directory = check_directory(directory)
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


def iter_panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        # Collapsed rows carry their panels inside them.
        yield from iter_panels(panel.get("panels") or [])


def panel_queries(directory: Path | None = None) -> list[PanelQuery]:
    """Every query of every dashboard JSON in ``directory`` (default: the shipped JSON).

    Annotation queries are included (as panel ``Annotation: <name>``, always
    incident-only: firing alerts are the exception, not the rule).

        >>> qs = panel_queries(Path("grafana/dashboards"))  # doctest: +SKIP
        >>> qs[0].dashboard, qs[0].panel                    # doctest: +SKIP
        ('Gradient Flow', 'Global gradient norm')
    """
    if directory is None:
        from mlx_otel.assets import dashboards_dir

        directory = dashboards_dir()
    queries = []
    for _path, data in dashboard_json(directory):
        title = data.get("title", "")
        for panel in iter_panels(data.get("panels", [])):
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


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", duration.strip())
    if not match:
        raise ValueError(f"not a Prometheus duration: {duration!r} (expected e.g. 30s, 5m, 1h)")
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return float(match.group(1)) * factor[match.group(2)]


def duration(seconds: float) -> str:
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
    range_seconds = seconds(time_range)
    interval_seconds = seconds(interval)
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

