"""The public face: docstrings and docs teach the imports a user should write.

What ``mlx_otel`` exports (its ``__all__``) is imported from ``mlx_otel``;
a docstring that shows ``from mlx_otel.integrations.wandb_bridge import
EnhancedWandBLogger`` teaches a path that may move. The documentation
imports only from ``mlx_otel``, ``mlx_otel.trainers`` and ``mlx_otel.config``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mlx_otel

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "mlx_otel"

#: ``from mlx_otel.a.b import X, Y`` (optionally after a doctest prompt).
DEEP_IMPORT = re.compile(r"^\s*(>>>\s*)?from\s+(mlx_otel(?:\.\w+)+)\s+import\s+\(?([\w\s,]+)")
#: Any import of mlx_otel in documentation, with the module it names.
DOC_IMPORT = re.compile(r"^\s*(?:>>>\s*)?(?:from\s+(mlx_otel[\w.]*)\s+import|import\s+(mlx_otel[\w.]*))")
#: A dotted path below the package, ``mlx_otel.a.b.Name``.
DOTTED = re.compile(r"mlx_otel(?:\.[a-z_]\w*)+\.[A-Za-z_]\w*")
PUBLIC_MODULES = {"mlx_otel", "mlx_otel.trainers", "mlx_otel.config"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _docstrings(path: Path) -> list[tuple[str, str]]:
    """(where, docstring) of the module and of every class and function in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                name = getattr(node, "name", "<module>")
                found.append((f"{path.relative_to(REPO)}:{name}", doc))
    return found


def deep_imports_of_public_names(module: str, doc: str) -> list[str]:
    """Usage lines of ``doc`` that import an exported name from a deep module.

    >>> deep_imports_of_public_names("m", "    from mlx_otel.monitor import TrainingMonitor")
    ['from mlx_otel.monitor import TrainingMonitor']
    >>> deep_imports_of_public_names("m", "    from mlx_otel import TrainingMonitor")
    []
    """
    exported = set(mlx_otel.__all__)
    bad = []
    for line in doc.splitlines():
        match = DEEP_IMPORT.match(line)
        if match is None:
            continue
        prompt, source, names = match.groups()
        if source in PUBLIC_MODULES or (prompt and source == module):
            continue  # a documented module, or a module's doctest testing itself
        imported = {n.strip().split(" as ")[0] for n in names.split(",") if n.strip()}
        if imported & exported:
            bad.append(line.strip())
    return bad


def test_docstrings_teach_the_public_import_of_exported_names() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for where, doc in _docstrings(path):
            found.extend(f"{where}: {line}" for line in deep_imports_of_public_names(module, doc))
    assert not found, (
        "these docstrings teach a deep import of a name `mlx_otel` exports; "
        "write `from mlx_otel import ...`:\n" + "\n".join(found)
    )


def test_the_check_catches_a_deep_import_of_an_exported_name() -> None:
    doc = "Usage::\n\n    from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger\n"
    assert deep_imports_of_public_names("mlx_otel.cli.main", doc) == [
        "from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger"
    ]
    assert DOTTED.findall("`mlx_otel.integrations.alert_sink.AlertSink(port=0)`") == [
        "mlx_otel.integrations.alert_sink.AlertSink"
    ]
    assert DOTTED.findall("`mlx_otel.AlertSink(port=0)`") == []
    own = ">>> from mlx_otel.records import to_number"
    assert deep_imports_of_public_names("mlx_otel.records", own) == []


def test_readme_and_docs_import_only_public_modules() -> None:
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = DOC_IMPORT.match(line)
            if match is None:
                continue
            module = match.group(1) or match.group(2)
            if module not in PUBLIC_MODULES:
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
        text = path.read_text()
        for dotted in DOTTED.findall(text):
            module, name = dotted.rsplit(".", 1)
            if name in mlx_otel.__all__ and module not in PUBLIC_MODULES:
                found.append(f"{path.relative_to(REPO)}: `{dotted}` (write mlx_otel.<name>)")
    assert not found, (
        "the documentation imports from mlx_otel, mlx_otel.trainers or mlx_otel.config "
        "only:\n" + "\n".join(found)
    )


def test_every_exported_name_is_importable_from_the_package() -> None:
    for name in mlx_otel.__all__:
        assert getattr(mlx_otel, name) is not None, name
