"""The Prometheus rules and configs: promtool, the catalogue, the runbooks.

promtool (the real binary) checks the rule files and the scrape config and
runs the unit tests in prometheus/tests/. Static tests tie the rules to the
rest of the project: every metric a rule reads is in mlx_otel.catalog, every
alert carries severity, summary, description and a runbook anchor that
exists, and the alerts of the public contract are there. The real
Alertmanager loads prometheus/alertmanager.yml.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlx_otel.catalog import METRICS, Kind

try:
    from tests.servers import REPO, AlertmanagerServer, run_promtool
except ImportError:  # run from inside tests/
    from servers import REPO, AlertmanagerServer, run_promtool  # type: ignore[no-redef]

PROMETHEUS_DIR = REPO / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/mlx-otel/mlx-otel/blob/main/docs/runbooks.md#"
CONTRACT_ALERTS = {
    "MLXMemoryAboveThreshold",
    "MLXMemoryLeakSuspected",
    "MLXTrainingStalled",
    "MLXTrainingLossNotFinite",
    "MLXExporterDown",
}
SEVERITIES = {"critical", "warning", "info"}


def rules() -> list[dict[str, Any]]:
    """Every rule of every rule file, each with the file it came from."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append({**rule, "_file": path.name, "_group": group["name"]})
    return found


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recording_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def catalogue_names() -> set[str]:
    names = {"up"}
    for metric in METRICS:
        names.add(metric.prometheus_name)
        if metric.kind is Kind.HISTOGRAM:
            names.update(f"{metric.prometheus_name}_{s}" for s in ("bucket", "count", "sum"))
    return names


def assert_promtool_ok(*args: str) -> str:
    result = run_promtool(*args, cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


# ---------------------------------------------------------------- promtool


def test_the_rule_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["mlx_otel_alerts.yml", "mlx_otel_recording.yml"]
    assert TEST_FILES


@pytest.mark.integration
def test_promtool_checks_the_rules() -> None:
    output = assert_promtool_ok("check", "rules", *map(str, RULE_FILES))
    assert output.count("SUCCESS") == len(RULE_FILES)


@pytest.mark.integration
def test_promtool_checks_the_prometheus_config_and_the_rules_it_loads() -> None:
    output = assert_promtool_ok("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    # rule_files are resolved relative to the config: all of ours are found.
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in output


@pytest.mark.integration
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    output = assert_promtool_ok("test", "rules", *map(str, TEST_FILES))
    assert output.count("SUCCESS") == len(TEST_FILES)


@pytest.mark.integration
def test_the_file_sd_example_is_a_valid_target_file(tmp_path: Path) -> None:
    example = PROMETHEUS_DIR / "targets.example.json"
    groups = json.loads(example.read_text())
    assert groups and all(set(g) == {"targets", "labels"} for g in groups)
    assert {g["labels"]["rank"] for g in groups} == {"0", "1"}
    # The scrape config reading the example instead of the (empty) targets folder.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    del job["static_configs"]
    job["file_sd_configs"] = [{"files": [str(example)]}]
    config["rule_files"] = []
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert_promtool_ok("check", "config", str(path))


def test_the_scrape_config_matches_the_compose_stack_and_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "mlx_otel"  # MLXExporterDown selects up{job="mlx_otel"}
    assert job["static_configs"] == [{"targets": ["trainer:9464"]}]
    assert config["alerting"]["alertmanagers"] == [
        {"static_configs": [{"targets": ["alertmanager:9093"]}]}
    ]
    assert config["rule_files"] == ["rules/*.yml"]
    # The targets folder beside prometheus.yml, where launchers and the exporter
    # (exporter.file_sd_dir) write one file per job.
    assert job["file_sd_configs"] == [{"files": ["targets/*.json"], "refresh_interval": "30s"}]
    assert (PROMETHEUS_DIR / "targets").is_dir()
    # The example is beside the folder, not in it: nothing scrapes node-a.
    assert list((PROMETHEUS_DIR / "targets").glob("*.json")) == []


# ---------------------------------------------------------------- the catalogue

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names a PromQL expression reads.

    >>> sorted(metric_names('sum by (job) (rate(a_total{x="y"}[5m])) > on (job) b * 2'))
    ['a_total', 'b']
    """
    expr = _STRINGS.sub('""', expr)
    expr = _MATCHERS.sub("", expr)
    expr = _RANGES.sub("", expr)
    expr = _LABEL_LISTS.sub("", expr)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue  # a function or an operator
        names.add(name)
    return names


def test_metric_names_finds_metrics_and_skips_functions_labels_and_numbers() -> None:
    expr = (
        '(up{job="mlx_otel"} == 0) * on (job, instance) group_left (run_id, rank) '
        "topk by (job, instance) (1, last_over_time(job_instance:x:timestamp[6h])) * 0 + 1 "
        "or mlx_train_loss != mlx_train_loss and abs(mlx_train_loss) == +Inf "
        "and predict_linear(mlx_memory_active_bytes[30m], 3600) > 1e9 unless NaN"
    )
    assert metric_names(expr) == {
        "up",
        "job_instance:x:timestamp",
        "mlx_train_loss",
        "mlx_memory_active_bytes",
    }


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("alert") or r.get("record"))
def test_every_name_a_rule_reads_is_in_the_catalogue_or_a_recording_rule(rule) -> None:
    known = catalogue_names() | recording_names()
    used = metric_names(rule["expr"])
    assert used, f"no metric found in {rule['expr']!r}"
    assert used <= known, f"unknown names {sorted(used - known)} in {rule['expr']!r}"


def test_every_recording_rule_is_read_by_an_alert_or_another_rule() -> None:
    read = set().union(*(metric_names(r["expr"]) for r in rules()))
    assert recording_names() <= read, sorted(recording_names() - read)


def test_recording_rule_names_follow_the_level_metric_operation_convention() -> None:
    for name in recording_names():
        level, metric, operation = name.split(":")
        assert level and operation, name
        assert metric in catalogue_names() or metric.startswith(("mlx_", "mlx_otel_")), name


# ---------------------------------------------------------------- the alerts


def test_the_contract_alerts_exist() -> None:
    assert {a["alert"] for a in alerts()} >= CONTRACT_ALERTS


def test_alerts_are_in_alert_files_and_recordings_in_recording_files() -> None:
    for rule in rules():
        if "alert" in rule:
            assert rule["_file"] == "mlx_otel_alerts.yml", rule["alert"]
        else:
            assert rule["_file"] == "mlx_otel_recording.yml", rule["record"]


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook's headings."""
    anchors = set()
    for line in RUNBOOKS.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize(
    "alert", alerts(), ids=lambda a: f"{a['alert']}-{a.get('labels', {}).get('severity')}"
)
def test_every_alert_has_for_severity_summary_description_and_runbook(alert) -> None:
    name = alert["alert"]
    assert name.startswith("MLX") and re.fullmatch(r"[A-Z][A-Za-z]+", name), name
    assert alert.get("for"), f"{name} has no for:"
    assert alert.get("labels", {}).get("severity") in SEVERITIES, name
    annotations = alert.get("annotations", {})
    assert set(annotations) == {"summary", "description", "runbook_url"}, name
    summary = annotations["summary"]
    assert "{{" not in summary and summary.endswith("."), f"{name}: {summary!r}"
    description = annotations["description"]
    assert "$labels.run_id" in description, f"{name}: the description names no run"
    assert "{{" in description, f"{name}: the description is not templated"
    runbook = annotations["runbook_url"]
    assert runbook == RUNBOOK_BASE + name.lower(), runbook
    assert name.lower() in runbook_anchors(), f"docs/runbooks.md has no section {name}"


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"


def test_both_severities_of_a_paired_alert_are_tested_firing() -> None:
    severities: dict[str, set[str]] = {}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                for exp in case.get("exp_alerts") or []:
                    severities.setdefault(case["alertname"], set()).add(
                        exp["exp_labels"]["severity"]
                    )
    for alert in alerts():
        assert alert["labels"]["severity"] in severities.get(alert["alert"], set()), alert


def test_every_promtool_test_name_reads_as_a_sentence() -> None:
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            name = test.get("name", "")
            assert name[:1].isupper() and name.endswith("."), f"{path.name}: {name!r}"


def test_every_alert_is_listed_in_the_alerts_documentation() -> None:
    text = (REPO / "docs" / "alerts.md").read_text()
    for name in {a["alert"] for a in alerts()}:
        assert f"`{name}`" in text, name


# ---------------------------------------------------------------- Alertmanager


@pytest.mark.integration
def test_alertmanager_starts_with_the_project_config(tmp_path: Path) -> None:
    path = PROMETHEUS_DIR / "alertmanager.yml"
    with AlertmanagerServer(tmp_path, config=path) as am:
        assert "Completed loading of configuration file" in am.log()


def test_the_alertmanager_config_routes_by_severity_and_inhibits_warnings() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "alertmanager.yml").read_text())
    route = config["route"]
    assert route["group_by"] == ["run_id", "alertname"]
    by_severity = {tuple(r["matchers"]): r["receiver"] for r in route["routes"]}
    assert by_severity == {('severity="critical"',): "page", ('severity="warning"',): "ticket"}
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert {"alertname", "run_id"} <= set(inhibit["equal"])
    for receiver in config["receivers"]:
        (webhook,) = receiver["webhook_configs"]
        assert webhook == {
            "url": "http://alert-sink:9095/alerts",
            "send_resolved": True,
            # The sink's bearer token (mlx-otel alert-sink --bearer-token-file).
            "http_config": {
                "authorization": {
                    "credentials_file": "/etc/alertmanager/secrets/alert_sink_token"
                }
            },
        }


# ---------------------------------------------------------------- RL health, preference and throughput

RL_CONTRACT_ALERTS = {
    "MLXNoLearningSignal",
    "MLXEntropyCollapsed",
    "MLXEntropyExploding",
    "MLXCompletionsTruncated",
    "MLXKLDivergenceExploding",
    "MLXTrainingAnomaly",
    "MLXThroughputDropped",
    "MLXPreferenceNotLearning",
}


def _minutes(duration: str) -> float:
    """Minutes of a promtool duration such as ``90m``, ``2h30m`` or ``45s``."""
    units = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def test_minutes_reads_promtool_durations() -> None:
    assert [_minutes(d) for d in ("90m", "2h30m", "45s", "6h")] == [90, 150, 0.75, 360]


def test_the_rl_health_and_throughput_alerts_exist() -> None:
    assert {a["alert"] for a in alerts()} >= RL_CONTRACT_ALERTS


def test_a_finished_run_never_fires_an_rl_health_or_throughput_alert() -> None:
    for alert in alerts():
        if alert["alert"] in RL_CONTRACT_ALERTS:
            assert "mlx_otel_run_finished" in metric_names(alert["expr"]), alert["alert"]


def test_rl_health_and_throughput_alerts_stay_silent_over_hours_of_series() -> None:
    """Each is tested silent at four hours or later into a series, not only minutes."""
    longest: dict[str, float] = {}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if not case.get("exp_alerts"):
                    name = case["alertname"]
                    longest[name] = max(longest.get(name, 0), _minutes(case["eval_time"]))
    short = {name for name in RL_CONTRACT_ALERTS if longest.get(name, 0) < 240}
    assert not short, f"tested silent for less than 4 hours: {sorted(short)}"
