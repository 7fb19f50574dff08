"""Let the API reference name classes where users import them, and read their docstrings.

``mlx_otel`` imports its chart, WandB and seed classes lazily (a module
``__getattr__``), so that ``import mlx_otel`` never pulls in matplotlib or
wandb. Griffe reads the package statically and cannot see those names; this
extension asks the imported package where each public name lives and adds an
alias, so ``::: mlx_otel.ChartGenerator`` works wherever the class is defined.

The docstrings cross-reference in Sphinx's roles (``:class:`~a.B```,
``:meth:`name```) and end literal blocks' introductions with ``::``; Markdown
shows both as they are written, so they are turned into code spans and a
plain colon for the site (the source stays as it is).
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe

#: Docstrings made at import time from a declaration (the keywords of
#: log_training_step come from STEP_ARGUMENTS): read from the imported object.
RUNTIME_DOCSTRINGS = (("mlx_otel.monitor", "TrainingMonitor.log_training_step"),)

ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):`(~?)([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def markdown_docstring(text: str) -> str:
    """Sphinx roles as code spans, ``Example::`` as ``Example:``."""
    text = ROLE.sub(_plain, text)
    text = re.sub(r"^\s*::\s*$", "", text, flags=re.M)
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.M)


def _rewrite(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = markdown_docstring(obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _rewrite(member)  # type: ignore[arg-type]


class PublicNames(griffe.Extension):
    """Alias every name of ``mlx_otel.__all__`` that only exists at run time."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "mlx_otel":
            return
        for module, qualname in RUNTIME_DOCSTRINGS:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            member = pkg[f"{module.removeprefix('mlx_otel.')}.{qualname}"]
            if member.docstring is not None and obj.__doc__:
                member.docstring.value = inspect.cleandoc(obj.__doc__)
        _rewrite(pkg)
        package = importlib.import_module("mlx_otel")
        for name in package.__all__:
            if name in pkg.members:
                continue
            obj = getattr(package, name)
            target = f"{obj.__module__}.{obj.__qualname__}"
            pkg.set_member(name, griffe.Alias(name, target, parent=pkg))
