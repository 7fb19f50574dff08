"""The monitoring files shipped in the package, and the folders ``mlx-otel stack init`` writes.

Every shipped file has one copy (the repository's; no file is a copy of
another); what ``stack init`` writes must pass the real promtool (``check config``,
``test rules``) and, with ``--local``, run as documented in docs/alerts.md:
the real Prometheus and Alertmanager started with the commands printed there,
the alert sink and a demo run, until an alert reaches the sink.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlx_otel.assets import asset_path, asset_root, rule_files, shipped_files
from mlx_otel.assets.manifest import SHIPPED
from mlx_otel.assets.stack import LocalPorts, StackError, init_stack, local_commands
from mlx_otel.cli import main
from mlx_otel.cli.rules import combined_rules
from mlx_otel.dashboards import shipped_directory, validate
from tests import processes as children
from tests.servers import REPO, find_binary, free_port, python_command, run_promtool, wait_for

COMPOSE_HOSTS = ("trainer:", "alertmanager:9093", "alert-sink:", "prometheus:9090")


def promtool_ok(*args: str, cwd: Path) -> str:
    result = run_promtool(*args, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


# --- one copy of every shipped file -----------------------------------------------


def test_no_file_of_the_repository_is_a_copy_of_another() -> None:
    listed = children.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    by_content: dict[str, list[str]] = {}
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        data = path.read_bytes()
        if len(data.strip()) == 0:  # empty files (an empty __init__.py) are not copies
            continue
        by_content.setdefault(hashlib.sha256(data).hexdigest(), []).append(name)
    copies = [names for names in by_content.values() if len(names) > 1]
    assert copies == [], f"byte-identical files: {copies}"


def test_a_checkout_reads_the_shipped_files_from_the_repository() -> None:
    assert asset_root() == REPO
    shipped = shipped_files()
    # Each pattern of the manifest selects at least one file, and only those.
    assert all(any(fnmatch.fnmatch(name, p) for name in shipped) for p in SHIPPED)
    assert "prometheus/rules/mlx_otel_alerts.yml" in shipped
    assert "docker-compose.yml" in shipped and "docs/runbooks.md" in shipped
    assert not [name for name in shipped if name.endswith(".py")]  # dashboard sources stay out
    assert len(shipped) == 26


@pytest.mark.integration
def test_the_shipped_dashboards_are_valid_and_parse_as_promql() -> None:
    find_binary("promtool")
    assert validate(shipped_directory(), promtool="promtool") == []
    names = sorted(p.stem for p in shipped_directory().glob("*.json"))
    assert names == [
        "gradient_flow", "mlx_memory", "mlx_preference", "mlx_ranks", "mlx_rl_health", "mlx_training",
    ]


def test_validate_names_an_unknown_variable_and_a_duplicate_panel_id(tmp_path: Path) -> None:
    data = json.loads((shipped_directory() / "mlx_training.json").read_text())
    data["panels"][1]["id"] = data["panels"][0]["id"]
    (tmp_path / "a.json").write_text(json.dumps(data))
    (problem,) = validate(tmp_path)
    assert "a.json" in problem and f"panel id {data['panels'][0]['id']} is used twice" in problem

    data = json.loads((shipped_directory() / "mlx_memory.json").read_text())
    data["panels"][0]["targets"][0]["expr"] = 'up{layer=~"$layer"}'
    (tmp_path / "a.json").write_text(json.dumps(data))
    (problem,) = validate(tmp_path)
    assert "$layer" in problem and data["panels"][0]["title"] in problem


@pytest.mark.integration
def test_validate_names_a_query_promtool_cannot_parse(tmp_path: Path) -> None:
    find_binary("promtool")
    data = json.loads((shipped_directory() / "mlx_memory.json").read_text())
    data["panels"][0]["targets"][0]["expr"] = "rate(mlx_train_loss{run_id=~\"$run_id\"}"
    (tmp_path / "m.json").write_text(json.dumps(data))
    problems = validate(tmp_path, promtool="promtool")
    assert any(data["panels"][0]["title"] in p and "promtool" in p for p in problems), problems


@pytest.mark.integration
def test_rules_prints_one_rule_file_that_promtool_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules"]) == 0
    printed = capsys.readouterr().out
    assert printed == combined_rules()
    path = tmp_path / "mlx_otel_rules.yml"
    path.write_text(printed)
    output = promtool_ok("check", "rules", str(path), cwd=tmp_path)
    shipped = sum(
        len(g["rules"]) for p in rule_files() for g in yaml.safe_load(p.read_text())["groups"]
    )
    assert f"SUCCESS: {shipped} rules found" in output


@pytest.mark.integration
def test_rules_out_writes_the_rules_with_their_passing_promtool_tests(tmp_path: Path) -> None:
    assert main(["rules", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "rules").iterdir()) == [
        p.name for p in rule_files()
    ]
    tests = sorted(str(p) for p in (tmp_path / "tests").glob("*.yml"))
    assert tests
    promtool_ok("test", "rules", *tests, cwd=tmp_path)
    assert (tmp_path / "runbooks.md").read_text() == (REPO / "docs" / "runbooks.md").read_text()


def test_dashboards_export_writes_the_shipped_json(tmp_path: Path) -> None:
    assert main(["dashboards", "export", str(tmp_path)]) == 0
    for path in shipped_directory().glob("*.json"):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


# --- stack init -------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("stack") / "monitoring"
    assert main(["stack", "init", str(directory)]) == 0
    return directory


def test_stack_init_writes_the_compose_folder(compose_stack: Path) -> None:
    written = {p.relative_to(compose_stack).as_posix() for p in compose_stack.rglob("*")}
    for name in (
        "docker-compose.yml", "Dockerfile", "README.md", "runbooks.md",
        "prometheus/prometheus.yml", "prometheus/alertmanager.yml", "prometheus/targets",
        "prometheus/rules/mlx_otel_alerts.yml", "prometheus/rules/mlx_otel_recording.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/provider.yml", "grafana/dashboards/mlx_training.json",
    ):  # fmt: skip
        assert name in written, name
    # Compose reads the files where the repository has them, so its mounts hold.
    assert (compose_stack / "docker-compose.yml").read_text() == (
        REPO / "docker-compose.yml"
    ).read_text()
    compose = yaml.safe_load((compose_stack / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (compose_stack / source).exists(), f"{name} mounts missing {source}"
        if "build" in service:
            assert (compose_stack / service["build"] / "Dockerfile").exists()


@pytest.mark.integration
def test_promtool_accepts_the_written_config_and_its_rule_tests_pass(compose_stack: Path) -> None:
    output = promtool_ok("check", "config", "prometheus/prometheus.yml", cwd=compose_stack)
    assert f"SUCCESS: {len(rule_files())} rule files found" in output
    tests = sorted(str(p) for p in (compose_stack / "prometheus" / "tests").glob("*.yml"))
    assert len(tests) == 8
    promtool_ok("test", "rules", *tests, cwd=compose_stack)


@pytest.mark.integration
def test_the_written_job_reads_the_targets_folder(compose_stack: Path) -> None:
    config = yaml.safe_load((compose_stack / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "mlx_otel"
    assert job["file_sd_configs"][0]["files"] == ["targets/*.json"]
    # A target file there is accepted as Prometheus would read it.
    example = json.loads((compose_stack / "prometheus" / "targets.example.json").read_text())
    (compose_stack / "prometheus" / "targets" / "job.json").write_text(json.dumps(example))
    try:
        promtool_ok("check", "config", "prometheus/prometheus.yml", cwd=compose_stack)
    finally:
        (compose_stack / "prometheus" / "targets" / "job.json").unlink()


def test_stack_init_refuses_a_non_empty_folder_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["stack", "init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "not empty" in err and "--force" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    assert main(["stack", "init", "--force", str(tmp_path)]) == 0
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "prometheus" / "prometheus.yml").exists()
    with pytest.raises(StackError, match="is a file"):
        init_stack(tmp_path / "notes.txt", version="0.1.0")


def test_ports_need_local(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["stack", "init", str(tmp_path / "s"), "--metrics-port", "9500"]) == 2
    assert "--metrics-port need --local" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LocalPorts]:
    directory = tmp_path_factory.mktemp("local") / "monitoring"
    ports = LocalPorts(
        metrics=free_port(), prometheus=free_port(), alertmanager=free_port(),
        alert_sink=free_port(),
    )  # fmt: skip
    argv = [
        "stack", "init", "--local", str(directory),
        "--metrics-port", str(ports.metrics), "--prometheus-port", str(ports.prometheus),
        "--alertmanager-port", str(ports.alertmanager), "--alert-sink-port", str(ports.alert_sink),
    ]  # fmt: skip
    assert main(argv) == 0
    return directory, ports


def test_the_local_stack_names_only_127_0_0_1(local_stack: tuple[Path, LocalPorts]) -> None:
    directory, ports = local_stack
    assert not (directory / "docker-compose.yml").exists()
    for path in directory.rglob("*.yml"):
        if "tests" in path.parts:
            continue
        for line in path.read_text().splitlines():
            if not line.lstrip().startswith("#"):
                assert not any(h in line for h in COMPOSE_HOSTS), f"{path}: {line}"
    prometheus = yaml.safe_load((directory / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"] == [
        {"targets": [f"127.0.0.1:{ports.metrics}"]}
    ]
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"] == [
        {"targets": [f"127.0.0.1:{ports.alertmanager}"]}
    ]
    alertmanager = yaml.safe_load((directory / "prometheus" / "alertmanager.yml").read_text())
    hooks = [h for r in alertmanager["receivers"] for h in r.get("webhook_configs", [])]
    assert {h["url"] for h in hooks} == {f"http://127.0.0.1:{ports.alert_sink}/alerts"}
    # Alertmanager presents the token the sink of the printed command asks for.
    token = directory / "secrets" / "alert_sink_token"
    assert {h["http_config"]["authorization"]["credentials_file"] for h in hooks} == {str(token)}
    assert len(token.read_text().strip()) >= 40 and token.stat().st_mode & 0o777 == 0o600
    assert any("--bearer-token-file secrets/alert_sink_token" in c for c in local_commands(ports))
    provider = (directory / "grafana" / "provisioning" / "dashboards" / "provider.yml").read_text()
    assert str(directory / "grafana" / "dashboards") in provider
    readme = (directory / "README.md").read_text()
    assert all(command in readme for command in local_commands(ports))


@pytest.mark.integration
def test_promtool_accepts_the_local_config(local_stack: tuple[Path, LocalPorts]) -> None:
    directory, _ = local_stack
    promtool_ok("check", "config", "prometheus/prometheus.yml", cwd=directory)
    amtool = shutil.which("amtool")
    if amtool is not None:
        result = children.run([amtool, "check-config", "prometheus/alertmanager.yml"],
                                cwd=directory, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_stack_speaks_of_no_compose_mount(local_stack: tuple[Path, LocalPorts]) -> None:
    directory, _ = local_stack
    for name in ("prometheus/prometheus.yml", "prometheus/alertmanager.yml"):
        text = (directory / name).read_text()
        assert text.startswith("# Written by `mlx-otel stack init --local`: no docker compose")
        assert "nothing mounts it" in text
    readme = (directory / "prometheus" / "targets" / "README.md").read_text()
    assert "mlx-otel stack init --local" in readme and "at this folder itself" in readme


def test_a_forced_rewrite_keeps_the_sink_token(tmp_path: Path) -> None:
    init_stack(tmp_path / "a", local=True, version="0.1.0")
    token = (tmp_path / "a" / "secrets" / "alert_sink_token").read_text()
    init_stack(tmp_path / "a", local=True, force=True, version="0.1.0")
    assert (tmp_path / "a" / "secrets" / "alert_sink_token").read_text() == token
    init_stack(tmp_path / "b", local=True, version="0.1.0")
    assert (tmp_path / "b" / "secrets" / "alert_sink_token").read_text() != token


def _compress_time(directory: Path) -> None:
    """1 s scrapes and evaluations, 1 s group_wait, and MLXMemoryAboveThreshold's ``for:``
    cut to 2 s: the documented path in seconds instead of minutes."""
    path = directory / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["scrape_interval"] = "1s"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path = directory / "prometheus" / "rules" / "mlx_otel_alerts.yml"
    rules = yaml.safe_load(path.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "MLXMemoryAboveThreshold":
                rule["for"] = "2s"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    path = directory / "prometheus" / "alertmanager.yml"
    config = yaml.safe_load(path.read_text())
    config["route"]["group_wait"] = "1s"
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in reversed(started):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.integration
def test_the_documented_local_path_delivers_an_alert_to_the_sink(
    local_stack: tuple[Path, LocalPorts], processes: list[subprocess.Popen[bytes]]
) -> None:
    directory, ports = local_stack
    work = directory.parent / "local_run"
    work.mkdir()
    shutil.copytree(directory, work / "monitoring")
    directory = work / "monitoring"
    _compress_time(directory)
    (work / "low.yaml").write_text("trainer:\n  memory_safety_threshold_mb: 1\n")
    binaries = {"prometheus": find_binary("prometheus"), "alertmanager": find_binary("alertmanager")}
    logs = {}

    def start(name: str, argv: list[str]) -> None:
        logs[name] = work / f"{name}.log"
        with open(logs[name], "wb") as log:
            processes.append(
                children.popen(argv, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
            )

    def log_tail() -> str:
        return "\n".join(f"--- {n}\n{p.read_text(errors='replace')[-1500:]}" for n, p in logs.items())

    # The commands as docs/alerts.md and the stack's README give them.
    for command in local_commands(ports):
        words = command.split()
        if words[0] in binaries:
            start(words[0], [binaries[words[0]], *words[1:]])
        elif words[:2] == ["mlx-otel", "alert-sink"]:
            start("alert-sink", python_command(*words[1:]))
        elif words[:2] == ["mlx-otel", "demo"]:
            demo = [*words[1:], "--config", str(work / "low.yaml"), "--run-id", "local-path",
                    "--steps", "40", "--output-dir", str(work / "outputs"), "--no-progress"]  # fmt: skip
            start("demo", python_command(*demo))

    def delivered() -> bool:
        for process in processes:
            assert process.poll() is None, f"a process exited early:\n{log_tail()}"
        text = logs["alert-sink"].read_text(errors="replace")
        return "FIRING MLXMemoryAboveThreshold" in text and "local-path" in text

    try:
        wait_for(delivered, timeout=180, interval=1, what="MLXMemoryAboveThreshold at the sink")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_tail()}") from None


def test_shipped_assets_are_plain_files() -> None:
    assert asset_path("prometheus", "rules").is_dir()
    assert (asset_path() / "docker-compose.yml").is_file()


def test_the_one_machine_path_of_the_docs_is_what_the_code_runs() -> None:
    import re
    import shlex

    from mlx_otel.cli import build_parser

    text = (REPO / "docs" / "alerts.md").read_text()
    section = text.split("## Try it on one machine", 1)[1].split("\n## ", 1)[0]
    lines = [
        line
        for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S)
        for line in block.splitlines()
    ]
    # The binaries' command lines are the ones the stack prints and the test above runs.
    for command in local_commands(LocalPorts()):
        if command.startswith("mlx-otel demo"):
            continue  # the docs give two demos of their own, parsed below
        assert command in lines, f"docs/alerts.md lacks `{command}`"
    parser = build_parser()
    commands = [line for line in lines if line.startswith("mlx-otel ")]
    assert len(commands) >= 4
    for line in commands:
        parser.parse_args(shlex.split(line)[1:])  # exits on a flag that does not exist
