"""Grafana dashboards as code: generate their JSON, list their queries, preview them.

The dashboards are written with grafanalib in the repository's
``grafana/dashboards/*.py`` (one module per dashboard, each exposing
``dashboard`` and ``NAME``); the package ships only the JSON they generate.
By concern:

- :mod:`~mlx_otel.dashboards.build`: JSON from the grafanalib modules
  (and the check that the committed JSON is up to date);
- :mod:`~mlx_otel.dashboards.queries`: the panels and queries the JSON holds,
  and Grafana's ``$variables`` substituted, so tests run exactly what Grafana
  sends to Prometheus;
- :mod:`~mlx_otel.dashboards.prometheus_api`: a small Prometheus HTTP client;
- :mod:`~mlx_otel.dashboards.render`: PNG previews of the panels from a live
  Prometheus, drawn with matplotlib (the panels in
  :mod:`~mlx_otel.dashboards.render_panels`, Grafana's units and legends in
  :mod:`~mlx_otel.dashboards.render_units`).

    >>> from mlx_otel.dashboards import panel_queries, substitute, shipped_directory
    >>> for q in panel_queries(shipped_directory()):                # doctest: +SKIP
    ...     print(q.panel, substitute(q.expr, run_id="demo"))

The command line is :mod:`mlx_otel.cli.dashboards`.
"""

from __future__ import annotations

from pathlib import Path

from mlx_otel.dashboards.build import DashboardModule, generate, load_dashboards, render_json
from mlx_otel.dashboards.checks import validate
from mlx_otel.dashboards.queries import (
    DEFAULT_DIRECTORY,
    INCIDENT_ONLY_NOTE,
    TRAINER_ONLY_NOTE,
    DashboardError,
    PanelQuery,
    panel_queries,
    regex_literal,
    substitute,
)
from mlx_otel.dashboards.render import preview

__all__ = [
    "DEFAULT_DIRECTORY",
    "INCIDENT_ONLY_NOTE",
    "TRAINER_ONLY_NOTE",
    "DashboardError",
    "DashboardModule",
    "PanelQuery",
    "generate",
    "load_dashboards",
    "panel_queries",
    "preview",
    "regex_literal",
    "render_json",
    "shipped_directory",
    "substitute",
    "validate",
]


def shipped_directory() -> Path:
    """The folder of the dashboard JSON shipped in the package."""
    from mlx_otel.assets import dashboards_dir

    return dashboards_dir()
