"""The README works when pasted: its Python runs, its commands exist."""

from __future__ import annotations

import argparse
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


@pytest.mark.integration
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


def test_readme_stays_a_page_for_newcomers() -> None:
    # What it is, the two commands, the quick start, the tests, where to go next;
    # everything else belongs in docs/.
    assert len(README.splitlines()) <= 300


def test_readme_points_into_the_docs() -> None:
    # Every link target and anchor is checked by tests/test_docs.py; the README
    # says where to go next.
    pages = set(re.findall(r"\]\((docs/[\w./-]+\.md)(?:#[\w-]+)?\)", README))
    assert len(pages) >= 10, pages
    for path in pages:
        assert (REPO / path).exists(), path


# --- the command synopsis ---------------------------------------------------------

# The block sits between snippet markers that docs/cli.md includes it by.
SYNOPSIS = re.search(r"## Command line\n\n(?:<!--.*?-->\n)?```\n(.*?)```", README, flags=re.S)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict:
    """{command words: parser} of every (sub)command of ``mlx-otel``."""
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _commands(sub, (*path, name))
    return found


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """The option strings of each flag of ``parser`` itself (``--help`` left out)."""
    return [
        tuple(a.option_strings)
        for a in parser._actions
        if a.option_strings and a.dest != "help"
    ]


def _synopsis_entries() -> dict[tuple[str, ...], str]:
    """{command words: its synopsis text} (continuation lines joined, comments dropped)."""
    assert SYNOPSIS, "README has no ```-block under '## Command line'"
    entries: list[str] = []
    for line in SYNOPSIS.group(1).splitlines():
        text = line.split("#", 1)[0]
        if line.startswith("mlx-otel"):
            entries.append(text)
        elif line.strip():
            assert entries and line[0].isspace(), f"stray synopsis line {line!r}"
            entries[-1] += " " + text
    parsed = {}
    for entry in entries:
        words = entry.split()[1:]
        path = tuple(w for w in words[:2] if re.fullmatch(r"[a-z][a-z-]*", w))
        # `dashboards export OUT`: only words that are subcommands belong to the path.
        while path and path not in _commands(build_parser()):
            path = path[:-1]
        assert path not in parsed, f"README lists `mlx-otel {' '.join(path)}` twice"
        parsed[path] = entry
    return parsed


def test_readme_synopsis_lists_every_command_and_every_flag() -> None:
    entries = _synopsis_entries()
    for path, parser in _commands(build_parser()).items():
        options = _options(parser)
        name = " ".join(("mlx-otel", *path))
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if groups and not options:
            continue  # a group such as `stack`: its subcommands are listed
        assert path in entries, f"README's synopsis has no line for `{name}`"
        listed = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", entries[path]))
        for strings in options:
            assert listed & set(strings), f"README's synopsis of `{name}` misses {strings[-1]}"
        known = {s for strings in options for s in strings}
        assert listed <= known, f"README's synopsis of `{name}` lists {listed - known}, unknown"
