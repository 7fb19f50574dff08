"""Dashboard JSON generated from the grafanalib modules of ``grafana/dashboards/``.

The modules are development sources: the package ships only the JSON they
generate (``mlx_otel/assets/grafana/dashboards``). Loading them needs
grafanalib (``pip install 'mlx-otel[dashboards]'``).

    >>> stale = generate(Path("grafana/dashboards"), check=True)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlx_otel.dashboards.queries import DEFAULT_DIRECTORY, DashboardError, check_directory
from mlx_otel.fileio import atomic_write_text

__all__ = ["DashboardModule", "generate", "load_dashboards", "render_json"]

# Modules in the dashboard folder that are not dashboards themselves.
_HELPER_MODULES = frozenset({"common"})


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
    directory = check_directory(directory)
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

