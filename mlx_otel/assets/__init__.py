"""The monitoring files mlx_otel ships: found in the wheel, or in the checkout.

Each file has one copy, at the top of the repository, where people edit it
and docker compose mounts it::

    prometheus/prometheus.yml, alertmanager.yml, agent.yml
    prometheus/rules/*.yml, prometheus/tests/*.yml, prometheus/targets/
    grafana/dashboards/*.json, grafana/provisioning/*/*.yml
    docs/runbooks.md
    docker-compose.yml

A wheel carries them at the same paths under ``mlx_otel/assets/`` (the build
places them there; :mod:`mlx_otel.assets.manifest` lists them). A checkout,
or an editable install, has none there: then they are read from the
repository next to the package, so an edit shows at once.

    >>> sorted(p.name for p in asset_path("prometheus", "rules").glob("*.yml"))
    ['mlx_otel_alerts.yml', 'mlx_otel_recording.yml']
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from mlx_otel.assets.manifest import SHIPPED
from mlx_otel.errors import MlxOtelError

__all__ = [
    "AssetError",
    "asset_path",
    "asset_root",
    "dashboards_dir",
    "rule_files",
    "rule_test_files",
    "shipped_files",
]


class AssetError(MlxOtelError):
    """A shipped file is missing: the installation is incomplete."""


def asset_root() -> Path:
    """The folder the shipped files are read from: the wheel's, else the repository's."""
    package = files(__name__)
    if not isinstance(package, Path):  # a zipped install: resources are not plain files
        raise AssetError(
            f"mlx_otel is installed as {package!r}, not as files; reinstall it with "
            "`pip install mlx-otel` (not zipped) to use the shipped monitoring files"
        )
    if (package / "prometheus").is_dir():
        return package
    repository = package.parent.parent
    if (repository / "prometheus").is_dir() and (repository / "pyproject.toml").is_file():
        return repository
    raise AssetError(
        f"the monitoring files are neither in {package} (a wheel) nor in {repository} "
        "(a checkout); reinstall mlx-otel"
    )


def asset_path(*parts: str) -> Path:
    """The shipped file or folder ``parts`` (e.g. ``"prometheus", "rules"``) as a real path."""
    root = asset_root()
    path = root.joinpath(*parts)
    if not path.exists():
        raise AssetError(
            f"the shipped file {'/'.join(parts)} is missing from {root}; reinstall mlx-otel"
        )
    return path


def shipped_files() -> list[str]:
    """Every shipped file, as a path relative to :func:`asset_root` (``prometheus/...``).

    In a checkout this is what the manifest selects, not everything in the
    folders (dashboard sources and local target files stay out).
    """
    root = asset_root()
    found = {
        path.relative_to(root).as_posix()
        for pattern in SHIPPED
        for path in root.glob(pattern)
        if path.is_file()
    }
    return sorted(found)


def dashboards_dir() -> Path:
    """The folder of the shipped Grafana dashboard JSON."""
    return asset_path("grafana", "dashboards")


def rule_files() -> list[Path]:
    """The shipped Prometheus rule files (recording rules and alerts)."""
    return sorted(asset_path("prometheus", "rules").glob("*.yml"))


def rule_test_files() -> list[Path]:
    """The shipped promtool unit tests of the rules (they load ``../rules/*.yml``)."""
    return sorted(asset_path("prometheus", "tests").glob("*.yml"))
