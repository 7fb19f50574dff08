"""The Grafana dashboards as code, checked without servers.

What Grafana loads is the committed JSON, so most checks read that JSON (via
``panel_queries`` or directly), and the first one proves it is what the code
generates. Whether every query runs and returns data is checked against a
real Prometheus in ``test_dashboards_live.py``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlx_otel.catalog import METRICS, Kind
from mlx_otel.cli import dashboards as dashboards_cli
from mlx_otel.dashboards import (
    INCIDENT_ONLY_NOTE,
    DashboardError,
    generate,
    load_dashboards,
    panel_queries,
    regex_literal,
    substitute,
)
from mlx_otel.dashboards.render_units import format_value, legend_text
from tests.servers import REPO, free_port

DIRECTORY = REPO / "grafana" / "dashboards"
DOCS = REPO / "docs" / "dashboards.md"
REQUIRED = {
    "mlx_training": "MLX Training",
    "mlx_memory": "MLX Memory",
    "gradient_flow": "Gradient Flow",
}


def dashboard_json() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DIRECTORY.glob("*.json"))}


def all_panels() -> list[tuple[str, dict[str, Any]]]:
    return [(data["title"], p) for data in dashboard_json().values() for p in data["panels"]]


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mlx-otel")
    dashboards_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


# --- generated JSON -----------------------------------------------------------


def test_committed_json_is_what_the_code_generates() -> None:
    assert generate(DIRECTORY, check=True) == [], "run `mlx-otel dashboards` and commit the JSON"


def test_the_required_dashboards_exist_with_their_titles() -> None:
    loaded = {d.name: d.dashboard.title for d in load_dashboards(DIRECTORY)}
    assert {k: loaded.get(k) for k in REQUIRED} == REQUIRED
    assert set(dashboard_json()) == set(loaded), "every JSON file comes from a module"


def test_json_is_sorted_indented_and_ends_with_a_newline() -> None:
    for path in DIRECTORY.glob("*.json"):
        text = path.read_text()
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n", path


def test_check_mode_writes_nothing_and_lists_stale_files(tmp_path: Path) -> None:
    copy = tmp_path / "dashboards"
    shutil.copytree(DIRECTORY, copy, ignore=shutil.ignore_patterns("__pycache__"))
    stale = copy / "mlx_memory.json"
    stale.write_text("{}\n")
    (copy / "gradient_flow.json").unlink()

    assert generate(copy, check=True) == [copy / "gradient_flow.json", stale]
    assert stale.read_text() == "{}\n"
    assert not (copy / "gradient_flow.json").exists()

    assert generate(copy) == [copy / "gradient_flow.json", stale]
    assert generate(copy, check=True) == []


def test_cli_check_exits_1_naming_stale_files_and_0_when_fresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "dashboards"
    shutil.copytree(DIRECTORY, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "mlx_training.json").write_text("{}\n")

    assert run_cli("dashboards", "--dir", str(copy), "--check") == 1
    assert "mlx_training.json" in capsys.readouterr().err
    assert run_cli("dashboards", "--dir", str(copy)) == 0
    assert "wrote" in capsys.readouterr().out
    assert run_cli("dashboards", "--dir", str(copy), "--check") == 0


def test_cli_names_a_missing_folder_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert run_cli("dashboards", "--dir", str(missing), "--check") == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "--dir" in err


def test_a_module_without_a_dashboard_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("NAME = 'broken'\n")
    with pytest.raises(DashboardError, match="broken.py"):
        load_dashboards(tmp_path)


def test_preview_names_an_unreachable_prometheus_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = run_cli(
        "dashboards",
        "preview",
        "--prometheus",
        url,
        "--out",
        str(tmp_path),
        "--dir",
        str(DIRECTORY),
    )
    err = capsys.readouterr().err
    assert code == 2
    assert url in err and "--prometheus" in err
    assert list(tmp_path.iterdir()) == []


def test_preview_asks_for_a_url_with_a_scheme(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli("dashboards", "preview", "--prometheus", "localhost:9090", "--out", str(tmp_path),
                   "--dir", str(DIRECTORY))  # fmt: skip
    assert code == 2
    assert "http://127.0.0.1:9090" in capsys.readouterr().err


def test_preview_keeps_a_dir_given_before_the_subcommand(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="mlx-otel")
    dashboards_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["dashboards", "--dir", "elsewhere", "preview", "--prometheus", "http://x", "--out", "o"]
    )
    assert args.dir == Path("elsewhere")
    assert args.func is dashboards_cli._run_preview


# --- panels -------------------------------------------------------------------


def test_panel_ids_are_unique_per_dashboard() -> None:
    for title, data in ((d["title"], d) for d in dashboard_json().values()):
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids)), title


def test_a_duplicate_panel_id_fails_when_the_module_is_imported(tmp_path: Path) -> None:
    shutil.copy(DIRECTORY / "common.py", tmp_path / "common.py")
    (tmp_path / "dup.py").write_text(
        "from . import common\n"
        "NAME = 'dup'\n"
        "def a():\n"
        "    return common.timeseries(1, 'A', [common.target(common.series('loss'))],\n"
        "                             unit='short', description='a')\n"
        "def b():\n"
        "    return common.timeseries(1, 'B', [common.target(common.series('loss'))],\n"
        "                             unit='short', description='b')\n"
        "dashboard = common.dashboard('Dup', uid='dup', description='', rows=[[a(), b()]])\n"
    )
    with pytest.raises(ValueError, match="share id 1"):
        load_dashboards(tmp_path)


def test_panel_titles_are_unique_per_dashboard() -> None:
    for data in dashboard_json().values():
        titles = [p["title"] for p in data["panels"]]
        assert len(titles) == len(set(titles)), data["title"]


def test_every_panel_has_a_unit_and_a_description() -> None:
    for title, panel in all_panels():
        where = f"{title} / {panel['title']}"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"
        assert panel.get("description"), f"{where} has no description"
        if panel["type"] == "heatmap":
            assert panel["options"]["yAxis"].get("unit"), where
            assert panel["options"]["cellValues"].get("unit"), where


def test_panels_fill_the_grid_without_overlapping() -> None:
    for data in dashboard_json().values():
        taken: set[tuple[int, int]] = set()
        for panel in data["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
            cells = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & taken, f"{data['title']} / {panel['title']} overlaps"
            taken |= cells


def test_units_of_single_metric_panels_come_from_the_catalogue() -> None:
    by_name = {m.prometheus_name: m for m in METRICS}
    for title, panel in all_panels():
        for target in panel["targets"]:
            match = re.fullmatch(r"(\w+)\{[^}]*\}", target["expr"])
            if match and match.group(1) in by_name and panel["type"] != "heatmap":
                expected = by_name[match.group(1)].grafana_unit
                assert panel["fieldConfig"]["defaults"]["unit"] == expected, (
                    f"{title} / {panel['title']}"
                )


def test_heatmap_of_the_reward_histogram_uses_its_buckets() -> None:
    training = dashboard_json()["mlx_training"]
    heatmaps = [p for p in training["panels"] if p["type"] == "heatmap"]
    assert heatmaps
    (target,) = heatmaps[0]["targets"]
    assert target["format"] == "heatmap" and target["legendFormat"] == "{{le}}"
    assert re.fullmatch(
        r"sum by \(le\) \(rate\(mlx_train_reward_bucket\{.*\}\[\$__rate_interval\]\)\)",
        target["expr"],
    )
    # The current heatmap panel: calculate=false, and no legacy key that would
    # make Grafana migrate it and drop the options.
    assert heatmaps[0]["options"]["calculate"] is False
    assert "heatmap" not in heatmaps[0] and "dataFormat" not in heatmaps[0]


def test_step_duration_quantiles_are_p50_p90_p99() -> None:
    training = dashboard_json()["mlx_training"]
    (panel,) = [p for p in training["panels"] if p["title"] == "Step duration quantiles"]
    exprs = [t["expr"] for t in panel["targets"]]
    assert [re.match(r"histogram_quantile\(([\d.]+),", e).group(1) for e in exprs] == [  # type: ignore[union-attr]
        "0.5",
        "0.9",
        "0.99",
    ]
    assert all("mlx_train_step_duration_seconds_bucket" in e for e in exprs)


def test_time_to_limit_is_headroom_over_a_floored_slope() -> None:
    memory = dashboard_json()["mlx_memory"]
    exprs = [
        t["expr"]
        for p in memory["panels"]
        if "time to the MLX limit" in p["title"]
        for t in p["targets"]
    ]
    assert len(exprs) == 2 and len(set(exprs)) == 1
    assert re.fullmatch(
        r"\(mlx_memory_limit_bytes\{.*\} - \(mlx_memory_active_bytes\{.*\} \+ "
        r"mlx_memory_cache_bytes\{.*\}\)\) / clamp_min\(deriv\(mlx_memory_active_bytes\{.*\}"
        r"\[10m\]\), 1\)",
        exprs[0],
    )


def test_tables_use_instant_queries() -> None:
    tables = [p for _, p in all_panels() if p["type"] == "table"]
    assert tables
    for panel in tables:
        assert all(t["instant"] and t["format"] == "table" for t in panel["targets"])


# --- queries ------------------------------------------------------------------


def test_every_catalogued_metric_is_on_a_dashboard() -> None:
    exprs = " ".join(q.expr for q in panel_queries(DIRECTORY))
    missing = []
    for m in METRICS:
        suffixes = ("_bucket", "_sum", "_count") if m.kind is Kind.HISTOGRAM else ("",)
        if not any(re.search(rf"\b{m.prometheus_name}{s}\b", exprs) for s in suffixes):
            missing.append(m.prometheus_name)
    assert missing == []


def test_every_series_selector_filters_by_run_and_rank() -> None:
    names = "|".join(m.prometheus_name for m in METRICS)
    selector = re.compile(rf"\b((?:{names})(?:_bucket|_sum|_count)?)\b(\{{[^}}]*\}})?")
    for q in panel_queries(DIRECTORY):
        if q.panel_type == "annotation":
            continue
        for match in selector.finditer(q.expr):
            assert match.group(2), f"{q.label}: {match.group(1)} has no label matchers"
            assert 'run_id=~"$run_id"' in match.group(2), q.label
            assert 'rank=~"$rank"' in match.group(2), q.label


def test_queries_name_metrics_only_through_the_catalogue() -> None:
    # Every selector's metric is catalogued (histogram series by their suffix),
    # or is Prometheus' own ALERTS: no metric name typed in by hand.
    known = {m.prometheus_name for m in METRICS} | {"ALERTS"}
    for q in panel_queries(DIRECTORY):
        names = re.findall(r"([A-Za-z_:][\w:]*)\{", q.expr)
        assert names, q.label
        for name in names:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in known or base in known, f"{q.label}: {name} is not catalogued"


def test_incident_only_panels_are_flagged_and_documented() -> None:
    flagged = {(q.dashboard, q.panel) for q in panel_queries(DIRECTORY) if q.incident_only}
    panels = {
        (q.dashboard, q.panel) for q in panel_queries(DIRECTORY) if q.panel_type != "annotation"
    }
    assert ("MLX Training", "Exporter errors and dropped tasks") in flagged
    # Most panels must show data in a healthy run; incident-only is the exception.
    assert len(flagged & panels) <= 3
    docs = DOCS.read_text()
    for dashboard, panel in flagged & panels:
        section = docs.split("## Incident-only panels", 1)[1]
        assert panel in section, f"{dashboard} / {panel} is incident-only but not documented"


def test_docs_describe_every_dashboard_and_panel() -> None:
    docs = DOCS.read_text()
    for data in dashboard_json().values():
        assert f"## {data['title']}" in docs
        for panel in data["panels"]:
            assert panel["title"] in docs, f"{data['title']} / {panel['title']} not in {DOCS}"


# --- variables, data source, annotations ----------------------------------------


def test_template_variables_select_data_source_run_and_rank() -> None:
    for data in dashboard_json().values():
        variables = {v["name"]: v for v in data["templating"]["list"]}
        assert list(variables) == ["datasource", "run_id", "rank"], data["title"]
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for name in ("run_id", "rank"):
            variable = variables[name]
            assert variable["type"] == "query" and variable["multi"] and variable["includeAll"]
            # All must match series without the label (single-process runs have no rank).
            assert variable["allValue"] == ".*"
            assert variable["current"]["value"] == ["$__all"]
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variables["run_id"]["query"] == "label_values(mlx_train_steps_total, run_id)"
        assert re.fullmatch(
            r'label_values\(mlx_train_steps_total\{run_id=~"\$run_id"\}, rank\)',
            variables["rank"]["query"],
        )


def test_panels_and_queries_use_the_datasource_variable() -> None:
    for title, panel in all_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_firing_alerts_are_annotated() -> None:
    for data in dashboard_json().values():
        exprs = [a.get("expr") for a in data["annotations"]["list"]]
        assert 'ALERTS{alertstate="firing", run_id=~"$run_id"}' in exprs, data["title"]


# --- substitution -----------------------------------------------------------------


def test_substitute_replaces_grafana_variables() -> None:
    expr = 'rate(x{run_id=~"$run_id", rank=~"${rank}"}[$__rate_interval]) / $__range_s'
    assert substitute(expr, run_id="r1", rank="0", rate_interval="4s", time_range="5m") == (
        'rate(x{run_id=~"r1", rank=~"0"}[4s]) / 300'
    )
    assert substitute("increase(x[$__interval]) $__interval_ms", interval="2s") == (
        "increase(x[2s]) 2000"
    )


def test_substitute_refuses_unknown_variables() -> None:
    with pytest.raises(ValueError, match=r"\$layer"):
        substitute('x{layer=~"$layer"}')


def test_regex_literal_escapes_for_a_promql_string() -> None:
    assert regex_literal("run-1.a") == "run-1\\\\.a"
    assert regex_literal("plain_run") == "plain_run"


def test_panel_queries_read_the_incident_flag_from_the_json(tmp_path: Path) -> None:
    panel = {
        "type": "timeseries",
        "title": "T",
        "description": f"x\n\n{INCIDENT_ONLY_NOTE}",
        "targets": [
            {"expr": "up", "refId": "A", "legendFormat": "", "instant": False},
            {"expr": "hidden", "refId": "B", "hide": True},
        ],
    }
    (tmp_path / "d.json").write_text(json.dumps({"title": "D", "panels": [panel]}))
    (q,) = panel_queries(tmp_path)
    assert (q.dashboard, q.panel, q.expr, q.incident_only) == ("D", "T", "up", True)


# --- preview helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1.5 * 1024**3, "bytes", "1.5 GiB"),
        (2048, "Bps", "2 KiB/s"),
        (0.25, "s", "250 ms"),
        (7200, "s", "2 hours"),
        (3e9, "s", "95.1 years"),
        (0.42, "percentunit", "42%"),
        (1e-4, "sci", "1.00e-04"),
        (3.5, "ops", "3.5 ops/s"),
        (12, "suffix: tokens/s", "12 tokens/s"),
        (float("nan"), "short", "nan"),
    ],
)
def test_values_are_formatted_with_grafana_like_units(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_legends_follow_grafana_templating() -> None:
    labels = {"__name__": "m", "run_id": "r", "kind": "answer"}
    assert legend_text("{{kind}} {{run_id}} {{rank}}", labels) == "answer r"
    assert legend_text("", labels) == 'm{kind="answer", run_id="r"}'


def test_loading_leaves_another_common_module_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    other = types.ModuleType("common")
    monkeypatch.setitem(sys.modules, "common", other)
    path_before = list(sys.path)
    load_dashboards(DIRECTORY)
    assert sys.modules["common"] is other
    assert sys.path == path_before
