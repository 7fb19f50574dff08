"""The built wheel, installed into a fresh virtual environment, delivers the product.

As a user gets it: ``python -m build --sdist`` packs the repository, ``pip
wheel`` builds the wheel from that sdist (so the sdist must hold the
top-level prometheus/ and grafana/ the wheel takes), a new venv installs it
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
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlx_otel.assets import shipped_files
from tests import processes
from tests.servers import REPO, PrometheusServer, find_binary

pytestmark = pytest.mark.integration

README = (REPO / "README.md").read_text()


@dataclass(frozen=True)
class Installed:
    bin: Path
    wheel: Path
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
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist of this checkout and the wheel built from that sdist, as a user's pip does."""
    work = tmp_path_factory.mktemp("dist")
    build = processes.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(work), str(REPO)],
        env=clean_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (sdist,) = work.glob("mlx_otel-*.tar.gz")
    wheel = processes.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work), str(sdist)],
        env=clean_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    return work


def clean_env() -> dict[str, str]:
    # Nothing of this checkout may leak in: no PYTHONPATH, no active venv.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    env = clean_env()
    (wheel,) = dist.glob("mlx_otel-*.whl")
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
    return Installed(bin=venv / "bin", wheel=wheel, cwd=empty, env=env)


def test_the_sdist_holds_the_top_level_files_and_the_wheel_built_from_it_ships_them(
    dist: Path,
) -> None:
    (sdist,) = dist.glob("mlx_otel-*.tar.gz")
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    (wheel,) = dist.glob("mlx_otel-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name: archive.read(name) for name in archive.namelist()}
    shipped = shipped_files()
    assert len(shipped) == 26
    for name in shipped:
        assert name in in_sdist, f"the sdist lacks {name}"
        assert in_wheel.get(f"mlx_otel/assets/{name}") == (REPO / name).read_bytes(), name
    # Only the manifest's files: no dashboard sources, no local target files.
    assets = {n.removeprefix("mlx_otel/assets/") for n in in_wheel if n.startswith("mlx_otel/assets/")}
    assert assets - set(shipped) == {"__init__.py", "manifest.py", "stack.py"}


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
    root = installed.ok(
        str(installed.bin / "python"), "-c", "from mlx_otel.assets import asset_root; print(asset_root())"
    )  # fmt: skip
    assert root.strip().startswith(str(installed.bin.parent)) and root.strip().endswith("mlx_otel/assets")


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
    assert len(tests) == 8
    installed.ok(promtool, "test", "rules", *tests)
    assert len(list((stack / "grafana" / "dashboards").glob("*.json"))) == 6
    assert (stack / "docker-compose.yml").exists() and (stack / "runbooks.md").exists()

    installed.ok(str(installed.bin / "mlx-otel"), "stack", "init", "--local", "local")
    installed.ok(promtool, "check", "config", str(installed.cwd / "local" / "prometheus" / "prometheus.yml"))


def test_the_shipped_rules_and_dashboards_validate(installed: Installed) -> None:
    find_binary("promtool")
    rules = installed.ok(str(installed.bin / "mlx-otel"), "rules")
    assert "MLXMemoryLeakSuspected" in rules
    checked = installed.ok(str(installed.bin / "mlx-otel"), "dashboards", "validate", "--promtool")
    assert (
        "is valid (gradient_flow.json, mlx_memory.json, mlx_preference.json, mlx_ranks.json, "
        "mlx_rl_health.json, mlx_training.json"
    ) in checked


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
    installed.ok(
        str(installed.bin / "python"), "-m", "pip", "install", "--quiet", f"{installed.wheel}[charts]"
    )  # fmt: skip
    with PrometheusServer(tmp_path / "prometheus") as prometheus:
        output = installed.ok(
            str(installed.bin / "mlx-otel"), "dashboards", "preview",
            "--prometheus", prometheus.url, "--out", "previews", "--minutes", "5",
        )  # fmt: skip
    written = sorted(p.name for p in (installed.cwd / "previews").glob("*.png"))
    assert written == [
        "gradient_flow.png", "mlx_memory.png", "mlx_preference.png", "mlx_ranks.png",
        "mlx_rl_health.png", "mlx_training.png",
    ], output  # fmt: skip
