"""Let the API reference name classes by the path users import them from.

``mlx_otel`` imports its chart, WandB and seed classes lazily (a module
``__getattr__``), so that ``import mlx_otel`` never pulls in matplotlib or
wandb. Griffe reads the package statically and cannot see those names; this
extension asks the imported package where each public name lives and adds an
alias, so ``::: mlx_otel.ChartGenerator`` works wherever the class is defined.
"""

from __future__ import annotations

import importlib
from typing import Any

import griffe


class PublicNames(griffe.Extension):
    """Alias every name of ``mlx_otel.__all__`` that only exists at run time."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "mlx_otel":
            return
        package = importlib.import_module("mlx_otel")
        for name in package.__all__:
            if name in pkg.members:
                continue
            obj = getattr(package, name)
            target = f"{obj.__module__}.{obj.__qualname__}"
            pkg.set_member(name, griffe.Alias(name, target, parent=pkg))
