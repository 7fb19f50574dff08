"""The package's shape holds: layered imports, types, no reaching into other modules' privates,
and a training process that never loads the chart libraries."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import processes

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "mlx_otel"
BIN = Path(sys.executable).parent


def _run(*command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return processes.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.integration
def test_import_contracts_are_kept() -> None:
    # The layers and forbidden imports are declared in pyproject.toml.
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "KEPT" in result.stdout and "BROKEN" not in result.stdout


@pytest.mark.integration
def test_mypy_passes_on_the_package() -> None:
    result = _run(sys.executable, "-m", "mypy", "--no-incremental", timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_package_ships_its_type_marker() -> None:
    assert (PACKAGE / "py.typed").is_file()


def test_no_module_reads_another_objects_private_attributes() -> None:
    # ``obj._name`` is allowed on self/cls only (and namedtuple's public _make/_replace).
    allowed = {"_make", "_replace", "_asdict", "_fields"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in allowed:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}:
                continue
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "private attributes read across objects:\n" + "\n".join(found)


def test_no_two_modules_import_each_other() -> None:
    # import-linter's layers forbid cycles between parts; this checks module pairs too.
    imports: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        targets = imports.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlx_otel"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("mlx_otel."))
    pairs = sorted(
        (a, b) for a, targets in imports.items() for b in targets
        if a < b and a in imports.get(b, set()) and a != "mlx_otel" and b != "mlx_otel"
    )  # fmt: skip
    assert not pairs, f"modules that import each other: {pairs}"


@pytest.mark.integration
def test_training_with_charts_and_exports_never_imports_chart_libraries(tmp_path: Path) -> None:
    # Charts render in a child process; the training process stays lean.
    script = textwrap.dedent(
        f"""
        import sys
        from mlx_otel import TrainingMonitor
        config = {{"exporter": {{"port": 0}},
                  "monitoring": {{"output_dir": {str(tmp_path)!r}, "generate_charts_every": 10}}}}
        with TrainingMonitor(config, run_id="lean") as monitor:
            for step in range(40):
                monitor.log_training_step(step, loss=1.0 / (step + 1), reward=0.5,
                                          rewards=[0.1, 0.9], thinking_tokens=5)
            monitor.flush()
            during = sorted(m for m in ("matplotlib", "seaborn", "pandas") if m in sys.modules)
            written = monitor.export_all()
        after = sorted(m for m in ("matplotlib", "seaborn") if m in sys.modules)
        print("during", during, "after", after, "charts", sum(k.startswith("chart_") for k in written))
        """
    )
    result = _run(sys.executable, "-c", script, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("during [] after []"), line
    assert int(line.rsplit(" ", 1)[1]) >= 4, line  # the charts were still drawn, elsewhere
    assert list((tmp_path / "charts").glob("training_curves_step_*.png"))
