"""Checks of dashboard JSON that need neither grafanalib nor Grafana.

    >>> validate(shipped_directory())  # doctest: +SKIP
    []

Every file must parse, carry a title and a unique uid, give each panel a
unique id and a grid position, and every query must use only the template
variables Grafana defines for it. With ``promtool`` (the path of Prometheus'
promtool), every query, variables substituted, is also parsed as PromQL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from mlx_otel.dashboards.queries import (
    DashboardError,
    check_directory,
    iter_panels,
    panel_queries,
    substitute,
)

__all__ = ["validate"]


def _structure(directory: Path) -> list[str]:
    problems = []
    uids: dict[str, str] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name}: not valid JSON ({exc})")
            continue
        if not isinstance(data, dict) or not data.get("title") or not data.get("uid"):
            problems.append(f"{path.name}: a dashboard needs a title and a uid")
            continue
        if data["uid"] in uids:
            problems.append(f"{path.name}: uid {data['uid']!r} is also used by {uids[data['uid']]}")
        uids[data["uid"]] = path.name
        ids: set[object] = set()
        for panel in iter_panels(data.get("panels", [])):
            where = f"{path.name} / {panel.get('title', '?')}"
            if panel.get("id") in ids:
                problems.append(f"{where}: panel id {panel.get('id')} is used twice")
            ids.add(panel.get("id"))
            if panel.get("type") != "row" and not panel.get("gridPos"):
                problems.append(f"{where}: no gridPos")
    if not uids and not problems:
        problems.append(f"{directory}: no dashboard JSON")
    return problems


def _promql(exprs: dict[str, str], promtool: str) -> list[str]:
    """Parse each expression with ``promtool check rules`` (one recording rule per query)."""
    import yaml

    labels = list(exprs)
    rules = [{"record": f"dashboard:query_{i}:check", "expr": e} for i, e in enumerate(exprs.values())]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard_queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
        result = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120
        )
    if result.returncode == 0:
        return []
    output = (result.stdout + result.stderr).strip()
    named = [f"{label}: rejected by promtool" for i, label in enumerate(labels)
             if f"query_{i}:check" in output]  # fmt: skip
    return [*named, f"promtool check rules: {output[-2000:]}"]


def validate(directory: Path, *, promtool: str | None = None) -> list[str]:
    """Problems of the dashboard JSON in ``directory`` (empty when all is well).

    ``promtool`` is a command name or path; when given, every query is also
    parsed by it, and a missing promtool is a :class:`DashboardError`.
    """
    directory = check_directory(Path(directory))
    problems = _structure(directory)
    if problems:
        return problems
    exprs: dict[str, str] = {}
    for query in panel_queries(directory):
        try:
            exprs[query.label] = substitute(query.expr)
        except ValueError as exc:
            problems.append(f"{query.label}: {exc}")
    if promtool is not None and not problems:
        found = shutil.which(promtool)
        if found is None:
            raise DashboardError(
                f"--promtool: {promtool!r} is not an executable on PATH; install Prometheus' "
                "promtool or leave --promtool out"
            )
        problems += _promql(exprs, found)
    return problems
