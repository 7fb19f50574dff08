"""The documentation works when read and when pasted.

The site builds with ``mkdocs build --strict`` (every link and anchor
resolves, the API reference finds every public name), every Python block of
every page runs, every link of the README and of the pages points at a file
and a heading that exist, and the pages that list what the code has (the
metric table, the alerts, the rule groups, commands, make targets, benchmark
and test files) list exactly what is there.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

import mlx_otel
from mlx_otel.catalog import markdown_table
from mlx_otel.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = REPO / "README.md"

#: A fenced Python block at the start of a line, with the text before it.
PYTHON_BLOCK = re.compile(r"^```(?:python|py)\n(.*?)^```", flags=re.M | re.S)
SKIP = re.compile(r"^<!-- skip-snippet:(.*?)-->\s*$", flags=re.M)


def python_blocks(text: str) -> list[tuple[str, str | None]]:
    """Each Python block of ``text`` with the reason it is skipped (or None)."""
    blocks = []
    for match in PYTHON_BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        blocks.append((match.group(1), skip.group(1).strip() if skip else None))
    return blocks


SNIPPETS = [
    pytest.param(page, index, id=f"{page.stem}-{index}")
    for page in PAGES
    for index, (_, skip) in enumerate(python_blocks(page.read_text()))
    if skip is None
]


def test_docs_have_python_snippets_to_run() -> None:
    assert len(SNIPPETS) >= 3


def test_every_skipped_snippet_says_why() -> None:
    for page in [*PAGES, README]:
        text = page.read_text()
        markers = SKIP.findall(text)
        skipped = [skip for _, skip in python_blocks(text) if skip is not None]
        assert len(markers) == len(skipped), (
            f"{page.name}: a skip-snippet marker not before a block"
        )
        for reason in skipped:
            assert len(reason.split()) >= 2, (
                f"{page.name}: skip-snippet needs a reason, got {reason!r}"
            )


@pytest.mark.integration
@pytest.mark.parametrize(("page", "index"), SNIPPETS)
def test_docs_python_block_runs(page: Path, index: int, tmp_path: Path) -> None:
    code, _ = python_blocks(page.read_text())[index]
    env = {**os.environ, "MLX_OTEL_EXPORTER__PORT": "0", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"{page.name} block {index} failed:\n{result.stderr[-3000:]}"
    if "with TrainingMonitor" in code:
        assert (tmp_path / "outputs" / "monitoring_summary.json").exists()


@pytest.mark.integration
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-5000:]}"
    print(f"mkdocs build --strict took {took:.1f} s")
    api = (site / "api" / "index.html").read_text()
    for name in set(mlx_otel.__all__) - {"MonitoringManager"}:  # the same class as TrainingMonitor
        assert f'id="mlx_otel.{name}"' in api, f"the API reference lacks mlx_otel.{name}"
    for name in ("MlxLmCallback", "MlxLmLoraCallback"):
        assert f'id="mlx_otel.trainers.{name}"' in api, f"the API reference lacks {name}"
    assert 'id="mlx_otel.TrainingMonitor.log_training_step"' in api
    # Pages that include a file of the repository show it.
    assert "mlx-otel demo [--steps N]" in (site / "cli" / "index.html").read_text()
    changelog = (site / "changelog" / "index.html").read_text()
    assert "--8&lt;--" not in changelog and "--8<--" not in changelog and "Unreleased" in changelog
    for page in PAGES:
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} is not in the site (mkdocs.yml nav?)"


# --- links -------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file, as MkDocs (and GitHub) make them."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {slugify(h.strip(), "-") for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(
                f"{target}: no file {file.relative_to(REPO) if REPO in file.parents else file}"
            )
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    assert not broken_links(page), f"{page.name} has broken links: {broken_links(page)}"


def test_readme_links_into_the_docs() -> None:
    targets = {t.partition("#")[0] for t in LINK.findall(README.read_text())}
    linked = {Path(t).name for t in targets if t.startswith("docs/") and t.endswith(".md")}
    missing = {p.name for p in PAGES} - linked - {"changelog.md"}
    assert not missing, f"README's 'Where to go next' misses {sorted(missing)}"


# --- what the pages list is what the code has ---------------------------------------


def test_metric_table_is_generated_from_the_catalogue() -> None:
    assert markdown_table() in (DOCS / "metrics.md").read_text(), (
        "docs/metrics.md's table is stale: paste mlx_otel.catalog.markdown_table() into it"
    )


def rule_files() -> list[dict]:
    return [
        yaml.safe_load(p.read_text()) for p in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    ]


def test_alerts_page_lists_every_alert_and_every_rule_group() -> None:
    text = (DOCS / "alerts.md").read_text()
    groups = [group for rules in rule_files() for group in rules["groups"]]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    assert alerts, "no alerts found in prometheus/rules"
    missing = sorted(a for a in alerts if f"| `{a}` |" not in text)
    assert not missing, f"docs/alerts.md's alert table misses {missing}"
    missing = sorted(g["name"] for g in groups if f"`{g['name']}`" not in text)
    assert not missing, f"docs/alerts.md's file table misses the rule groups {missing}"


def test_runbooks_have_a_section_for_every_alert() -> None:
    alerts = {
        rule["alert"]
        for rules in rule_files()
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert {a.lower() for a in alerts} <= anchors(DOCS / "runbooks.md")


def code_lines(text: str) -> list[str]:
    blocks = re.findall(r"^ *```[a-z]*\n(.*?)^ *```", text, flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_commands_in_the_docs_exist() -> None:
    parser = build_parser()
    makefile = (REPO / "Makefile").read_text()
    commands: dict[str, str] = {}
    for page in PAGES:
        for line in code_lines(page.read_text()):
            if match := re.match(r"(?:\.venv/bin/)?mlx-otel ([a-z][a-z-]*)", line):
                commands.setdefault(match.group(1), f"{page.name}: `{line}`")
            if match := re.match(r"make ([\w-]+)", line):
                target = match.group(1)
                assert re.search(rf"^{target}:", makefile, flags=re.M), (
                    f"{page.name}: make {target} is not defined"
                )
    assert {"demo", "stack", "alert-sink", "lora"} <= set(commands)
    # The subcommands the parser knows (`lora --help` would load the trainer).
    known = {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    for command, where in commands.items():
        assert command in known, f"{where}: no such command"


def test_files_named_in_the_docs_exist() -> None:
    pattern = re.compile(
        r"(?<![\w/])((?:benchmarks|tests|scripts)/[\w/.-]+\.(?:py|sh)|prometheus/[\w/.-]+\.(?:yml|json))"
    )
    for page in [README, *PAGES]:
        for path in set(pattern.findall(page.read_text())):
            assert (REPO / path).exists(), f"{page.name} names {path}, which does not exist"


def test_license_is_the_declared_one() -> None:
    declared = re.search(r'license = \{ text = "(\w+)" \}', (REPO / "pyproject.toml").read_text())
    assert declared and declared.group(1) == "MIT"
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "mlx_otel contributors" in license_text


def test_changelog_starts_with_this_release() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.M)
    assert releases and releases[0] in {"Unreleased", mlx_otel.__version__}
