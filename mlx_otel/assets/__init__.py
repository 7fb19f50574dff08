"""The monitoring files shipped inside the package, read with :mod:`importlib.resources`.

The tree mirrors the repository (the repository's copy is the source;
``python scripts/sync_assets.py`` refreshes this one and a test fails when
they differ)::

    prometheus/prometheus.yml, alertmanager.yml, agent.yml
    prometheus/rules/*.yml, prometheus/tests/*.yml, prometheus/targets/
    grafana/dashboards/*.json, grafana/provisioning/**.yml
    docs/runbooks.md
    docker-compose.yml

    >>> sorted(p.name for p in asset_path("prometheus", "rules").glob("*.yml"))
    ['mlx_otel_alerts.yml', 'mlx_otel_recording.yml']
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from mlx_otel.errors import MlxOtelError

__all__ = ["AssetError", "asset_path", "dashboards_dir", "rule_files", "rule_test_files"]


class AssetError(MlxOtelError):
    """A shipped file is missing: the installation is incomplete."""


def asset_path(*parts: str) -> Path:
    """The shipped file or folder ``parts`` (e.g. ``"prometheus", "rules"``) as a real path."""
    root = files(__name__)
    if not isinstance(root, Path):  # a zipped install: resources are not plain files
        raise AssetError(
            f"mlx_otel is installed as {root!r}, not as files; reinstall it with "
            "`pip install mlx-otel` (not zipped) to use the shipped monitoring files"
        )
    path = root.joinpath(*parts)
    if not path.exists():
        raise AssetError(
            f"the shipped file {'/'.join(parts)} is missing from {root}; reinstall mlx-otel"
        )
    return path


def dashboards_dir() -> Path:
    """The folder of the shipped Grafana dashboard JSON."""
    return asset_path("grafana", "dashboards")


def rule_files() -> list[Path]:
    """The shipped Prometheus rule files (recording rules and alerts)."""
    return sorted(asset_path("prometheus", "rules").glob("*.yml"))


def rule_test_files() -> list[Path]:
    """The shipped promtool unit tests of the rules (they load ``../rules/*.yml``)."""
    return sorted(asset_path("prometheus", "tests").glob("*.yml"))
