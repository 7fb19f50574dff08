"""The built wheel, installed into a fresh virtual environment, delivers the product.

As a user gets it: ``pip wheel`` builds the package, a new venv installs it
with its dependencies from the package index (no extras, no access to this
repository), and every command runs in an empty folder: the README's quick
start, ``mlx-otel stack init`` with the real promtool on what it wrote, the
shipped rules and the validation of the shipped dashboards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import processes
from tests.servers import REPO, PrometheusServer, find_binary

pytestmark = pytest.mark.integration

README = (REPO / "README.md").read_text()


@dataclass(frozen=True)
class Installed:
    bin: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return processes.run(
            list(argv), cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def ok(self, *argv: str) -> str:
        result = self.run(*argv)
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    # Nothing of this checkout may leak in: no PYTHONPATH, no active venv.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    build = processes.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"),
         str(REPO)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (work / "dist").glob("mlx_otel-*.whl")
    venv = work / "venv"
    processes.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = processes.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    empty = work / "empty"
    empty.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return Installed(bin=venv / "bin", cwd=empty, env=env)


def test_the_package_is_imported_from_the_venv_not_the_checkout(installed: Installed) -> None:
    where = installed.ok(str(installed.bin / "python"), "-c", "import mlx_otel; print(mlx_otel.__file__)")
    assert str(installed.bin.parent) in where and str(REPO) not in where
    version = installed.ok(str(installed.bin / "mlx-otel"), "--version")
    assert re.fullmatch(r"mlx-otel \d+\.\d+\.\d+\S*\n", version)
    typed = installed.ok(
        str(installed.bin / "python"), "-c",
        "import importlib.resources as r; print(r.files('mlx_otel').joinpath('py.typed').is_file())",
    )  # fmt: skip
    assert typed.strip() == "True"


def test_the_readme_quick_start_runs(installed: Installed) -> None:
    quick_start = re.findall(r"```python\n(.*?)```", README, flags=re.S)[0]
    assert "TrainingMonitor" in quick_start
    env = {**installed.env, "MLX_OTEL_EXPORTER__PORT": "0"}
    result = processes.run(
        [str(installed.bin / "python"), "-c", quick_start], cwd=installed.cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"metrics at http://127\.0\.0\.1:\d+/metrics", result.stdout), result.stdout
    assert (installed.cwd / "outputs" / "monitoring_summary.json").exists()


def test_stack_init_writes_what_promtool_accepts(installed: Installed) -> None:
    promtool = find_binary("promtool")
    installed.ok(str(installed.bin / "mlx-otel"), "stack", "init", "monitoring")
    stack = installed.cwd / "monitoring"
    output = installed.ok(promtool, "check", "config", str(stack / "prometheus" / "prometheus.yml"))
    assert "SUCCESS: 2 rule files found" in output
    tests = sorted(str(p) for p in (stack / "prometheus" / "tests").glob("*.yml"))
    assert len(tests) == 5
    installed.ok(promtool, "test", "rules", *tests)
    assert len(list((stack / "grafana" / "dashboards").glob("*.json"))) == 4
    assert (stack / "docker-compose.yml").exists() and (stack / "runbooks.md").exists()

    installed.ok(str(installed.bin / "mlx-otel"), "stack", "init", "--local", "local")
    installed.ok(promtool, "check", "config", str(installed.cwd / "local" / "prometheus" / "prometheus.yml"))


def test_the_shipped_rules_and_dashboards_validate(installed: Installed) -> None:
    find_binary("promtool")
    rules = installed.ok(str(installed.bin / "mlx-otel"), "rules")
    assert "MLXMemoryLeakSuspected" in rules
    checked = installed.ok(str(installed.bin / "mlx-otel"), "dashboards", "validate", "--promtool")
    assert "is valid (gradient_flow.json, mlx_memory.json, mlx_ranks.json, mlx_training.json" in checked


def test_preview_without_the_extra_names_the_install_command(installed: Installed) -> None:
    result = installed.run(
        str(installed.bin / "mlx-otel"), "dashboards", "preview",
        "--prometheus", "http://127.0.0.1:9", "--out", "previews",
    )  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'mlx-otel[dashboards]'" in result.stderr


def test_preview_with_the_extra_renders_the_shipped_dashboards(
    installed: Installed, tmp_path: Path
) -> None:
    # Runs last: it adds the extra to the venv the test above needs without it.
    (wheel,) = (installed.bin.parent.parent / "dist").glob("mlx_otel-*.whl")
    installed.ok(str(installed.bin / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[charts]")
    with PrometheusServer(tmp_path / "prometheus") as prometheus:
        output = installed.ok(
            str(installed.bin / "mlx-otel"), "dashboards", "preview",
            "--prometheus", prometheus.url, "--out", "previews", "--minutes", "5",
        )  # fmt: skip
    written = sorted(p.name for p in (installed.cwd / "previews").glob("*.png"))
    assert written == ["gradient_flow.png", "mlx_memory.png", "mlx_ranks.png", "mlx_training.png"], output
