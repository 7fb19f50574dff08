"""The examples in the package's docstrings run, and print what they say.

A docstring example is the first code a reader copies; one that no longer
runs teaches the wrong call. Every module of ``mlx_otel`` whose source holds a
``>>>`` example is found by reading the files (so a module that moves keeps
its examples checked) and run through :mod:`doctest` as written, without
option flags a reader's ``python -m doctest`` would not have either.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mlx_otel"

#: Modules whose examples train a real MLX model for seconds: the integration tier.
TRAINS_A_MODEL = {"mlx_otel.demo.rl"}


def modules_with_examples() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_package_has_examples_to_run() -> None:
    assert len(modules_with_examples()) >= 10


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.integration) if name in TRAINS_A_MODEL else name
        for name in modules_with_examples()
    ],
)
def test_docstring_examples_run_as_written(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(verbose=False)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
