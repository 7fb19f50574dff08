"""The ``mlx-otel`` command as a newcomer meets it: version, flag errors, usage."""

from __future__ import annotations

import pytest

import mlx_otel
from mlx_otel.cli import main
from tests import processes
from tests.servers import REPO, python_command


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlx-otel {mlx_otel.__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--steps", "-5"], "argument --steps: must be at least 1, not -5"),
        (["demo", "--steps", "many"], "argument --steps: expected an integer, not 'many'"),
        (["demo", "--leak-mb-per-step", "-1"], "argument --leak-mb-per-step: must be a finite"),
        (["demo", "--linger", "nan"], "argument --linger: must be a finite number"),
        (["demo", "--port", "70000"], "argument --port: must be a TCP port from 0 to 65535"),
        (["demo", "--step-delay", "-0.5"], "argument --step-delay: must be a finite"),
        (["stack", "init", "d", "--metrics-port", "-1"], "argument --metrics-port: must be"),
        (["dashboards", "preview", "--prometheus", "u", "--out", "o", "--minutes", "0"],
         "argument --minutes: must be positive"),
    ],
)  # fmt: skip
def test_out_of_range_flags_are_a_one_line_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert message in line
    # The usage shown is the subcommand's own.
    assert err.startswith(f"usage: mlx-otel {' '.join(a for a in argv[:2] if not a.startswith('-'))}")


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--bogus"],
        ["stack", "init", "d", "--bogus"],
        ["dashboards", "preview", "--prometheus", "u", "--out", "o", "--bogus"],
        ["rules", "--bogus"],
    ],
)
def test_an_unknown_flag_prints_the_usage_of_its_subcommand(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    command = " ".join(a for a in argv if a in {"demo", "stack", "init", "dashboards", "preview", "rules"})
    assert err.startswith(f"usage: mlx-otel {command} ")
    assert err.rstrip().endswith(f"mlx-otel {command}: error: unrecognized arguments: --bogus")


@pytest.mark.integration
def test_the_console_script_reports_a_bad_flag_without_a_traceback() -> None:
    result = processes.run(
        python_command("demo", "--steps", "-5"), cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "mlx-otel demo: error: argument --steps: must be at least 1, not -5"
    )
