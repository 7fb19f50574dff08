"""Dashboard JSON generated from the grafanalib modules of ``grafana/dashboards/``.

The modules are development sources: the wheel ships only the JSON they
generate (``grafana/dashboards/*.json``). Loading them needs grafanalib
(``pip install 'mlx-otel[dashboards]'``). They share helpers through
``from . import common``: each folder is imported as a package of its own.

    >>> stale = generate(Path("grafana/dashboards"), check=True)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import itertools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlx_otel.dashboards.queries import DEFAULT_DIRECTORY, DashboardError, check_directory
from mlx_otel.fileio import atomic_write_text

__all__ = ["DashboardModule", "generate", "load_dashboards", "render_json"]

# Modules in the dashboard folder that are not dashboards themselves.
_HELPER_MODULES = frozenset({"common"})
#: Numbers the packages of successive loads, so that no two share a name.
_LOADS = itertools.count()


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


@contextmanager
def _dashboard_package(directory: Path) -> Iterator[str]:
    """A package, under a name of its own, whose modules are the files of ``directory``.

    Dashboard modules import their helpers relatively (``from . import
    common``), so each folder's ``common`` is its own: nothing is put on
    ``sys.path`` and no other module named ``common`` is touched. The package
    and its modules are forgotten afterwards, so a second load reads the files
    again.
    """
    name = f"_mlx_otel_dashboards_{next(_LOADS)}"
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(directory.resolve())]
    sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        yield name
    finally:
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]


def _import_module(package: str, path: Path) -> ModuleType:
    """Import the dashboard module ``path`` as a member of ``package``."""
    try:
        return importlib.import_module(f"{package}.{path.stem}")
    except ImportError as exc:
        if exc.name in _HELPER_MODULES:
            raise DashboardError(
                f"cannot import {path}: {exc}; dashboard modules import their helpers "
                f"relatively (`from . import {exc.name}`)"
            ) from exc
        raise DashboardError(
            f"cannot import {path}: {exc}; install the dashboard dependencies "
            "with `pip install 'mlx-otel[dashboards]'`"
        ) from exc


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
    with _dashboard_package(directory) as package:
        modules = [(path, _import_module(package, path)) for path in files]
    for path, module in modules:
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

