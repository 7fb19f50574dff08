"""The README works when pasted: its Python runs, its commands exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import mlx_otel
from mlx_otel.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path) -> None:
    env = {**os.environ, "MLX_OTEL_EXPORTER__PORT": "0", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", PYTHON_BLOCKS[index]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"README block {index} failed:\n{result.stderr[-3000:]}"
    if "with TrainingMonitor" in PYTHON_BLOCKS[index]:
        assert (tmp_path / "outputs" / "monitoring_summary.json").exists()


def test_readme_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in set(re.findall(r"^make (\w[\w-]*)", README, flags=re.M)):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"make {target} is not defined"


def test_readme_commands_parse() -> None:
    parser = build_parser()
    for line in re.findall(r"^mlx-otel ([a-z-]+)", README, flags=re.M):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([line, "--help"])
        assert info.value.code == 0


def test_public_api_is_exactly_all() -> None:
    # What the package exposes by name (dir, the lazy seed classes, plain attributes
    # that are not modules or dunders) is exactly __all__.
    public = {
        name
        for name in set(dir(mlx_otel)) | set(vars(mlx_otel))
        if not name.startswith("_") and not isinstance(getattr(mlx_otel, name), types.ModuleType)
    }
    assert public == set(mlx_otel.__all__)
    for name in mlx_otel.__all__:
        assert getattr(mlx_otel, name) is not None
    assert mlx_otel.MonitoringManager is mlx_otel.TrainingMonitor


def test_benchmarks_named_in_readme_exist() -> None:
    for path in re.findall(r"benchmarks/[\w./]+\.py", README):
        assert (REPO / path).exists(), path
    for path in re.findall(r"\]\((docs/[\w./-]+)\)", README):
        assert (REPO / path).exists(), path


def test_readme_lists_every_alert_of_the_rule_files() -> None:
    import yaml

    alerts = set()
    for path in (REPO / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts |= {rule["alert"] for rule in group["rules"] if "alert" in rule}
    assert alerts, "no alerts found in prometheus/rules"
    missing = sorted(a for a in alerts if f"`{a}`" not in README)
    assert not missing, f"README's alert table misses {missing}"
