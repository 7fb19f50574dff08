"""Every panel query of every dashboard, run against a real Prometheus scraping real runs.

One Prometheus serves the whole module, scraping every second, with the
project's rules loaded, two monitored processes:

- the demo (``python -m mlx_otel demo``), a single-process run without a
  ``rank`` label;
- a short loop of two ranks (0 and 1) of another run that uses what the
  demo leaves out: custom metrics (extra keywords of ``log_training_step``)
  and memory blocks (``MemoryMonitor``), so the panels fed by them, and the
  cross-rank panels of *MLX Ranks*, are proven too.

Each query read from the generated JSON, with Grafana's template variables
substituted as for a multi-value selection of both runs and "All" ranks,
must parse and return data, except on panels flagged incident-only. The demo
alone, a plain ``mlx-otel demo`` run, must fill at least 90% of all panel
queries (the share is printed). Then the preview renders one non-blank PNG
per dashboard.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlx_otel.dashboards import (
    DashboardError,
    PanelQuery,
    panel_queries,
    preview,
    regex_literal,
    substitute,
)
from mlx_otel.dashboards.render import make_renderer
from tests import processes
from tests.servers import REPO, PrometheusServer, free_port, python_command, wait_for

pytestmark = pytest.mark.integration

DIRECTORY = REPO / "grafana" / "dashboards"
RULES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
QUERIES = panel_queries(DIRECTORY)
RUN_ID = "dashboards-live"
RANKED_RUN_ID = "dashboards-live-ranked"
# Grafana sends a multi-value selection to Prometheus as a regex alternation.
BOTH_RUNS = f"({regex_literal(RUN_ID)}|{regex_literal(RANKED_RUN_ID)})"
STEPS = 40
# Slow the demo down so a 1 s scrape sees its training move (it is fast).
STEP_DELAY = "0.2"
# Grafana's $__rate_interval for a 1 s scrape interval: four scrapes.
RATE_INTERVAL = "4s"
# Share of all panel queries a plain demo run must fill (incident-only ones included).
DEMO_SHARE = 0.9


# One rank of a run, logging custom metrics and two memory blocks. Ranks add
# their rank to the configured port, hence ``port - rank``.
RANKED_LOOP = """
import sys, time
import mlx.core as mx
from mlx_otel import MemoryMonitor, TrainingMonitor

port, run_id, steps, output_dir = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
rank = int(sys.argv[5])
config = {"exporter": {"port": port - rank}, "monitoring": {"output_dir": output_dir}}
with TrainingMonitor(config, run_id=run_id, rank=rank) as monitor:
    kept = []
    for step in range(steps):
        with MemoryMonitor(monitor.memory_profiler, "rollout"):
            batch = mx.ones((64, 256)) * step
            mx.eval(batch)
        with MemoryMonitor(monitor.memory_profiler, "update"):
            kept.append(mx.zeros((16, 256)) + step)
            mx.eval(kept[-1])
        monitor.log_training_step(
            step, loss=1.0 / (step + 1), reward=step / steps, grad_norm=1.0,
            learning_rate=1e-4, thinking_tokens=40, answer_tokens=8,
            rewards=[0.1 * (i % 10) for i in range(16)], kl=0.01 * step, format_rate=0.9,
        )
        time.sleep(0.2 + 0.1 * rank)  # rank 1 is the slower one
    print("ranked loop done", flush=True)
    time.sleep(120)
"""


@dataclass
class Stack:
    prometheus: PrometheusServer
    start: float
    end: float


def demo_log(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("dashboards_live")
    port, ranked_ports = free_port(), (free_port(), free_port())
    log_path = work / "demo.log"
    ranked_log_paths = (work / "ranked0.log", work / "ranked1.log")
    targets = [f"127.0.0.1:{p}" for p in (port, *ranked_ports)]
    with PrometheusServer(work / "prometheus", targets=targets, rule_files=RULES) as prometheus:
        start = time.time()
        with open(log_path, "wb") as log:
            demo = processes.popen(
                python_command(
                    "demo", "--steps", str(STEPS), "--port", str(port),
                    "--output-dir", str(work / "outputs"), "--wandb", "disabled",
                    "--linger", "120", "--run-id", RUN_ID, "--no-progress",
                    "--step-delay", STEP_DELAY,
                ),
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        ranked = []
        pairs = zip(ranked_ports, ranked_log_paths, strict=True)
        for rank, (ranked_port, ranked_log_path) in enumerate(pairs):
            with open(ranked_log_path, "wb") as ranked_log:
                ranked.append(processes.popen(
                    [sys.executable, "-c", RANKED_LOOP, str(ranked_port), RANKED_RUN_ID, "30",
                     str(work / "ranked_outputs"), str(rank)],
                    cwd=REPO, stdout=ranked_log, stderr=subprocess.STDOUT,
                ))  # fmt: skip
        try:

            def trained_or_exited() -> bool:
                if demo.poll() is not None:
                    return True
                steps = prometheus.query(f'mlx_train_steps_total{{run_id="{RUN_ID}"}}')
                return bool(steps) and float(steps[0]["value"][1]) >= STEPS

            wait_for(trained_or_exited, timeout=90, interval=0.5, what=f"{STEPS} demo steps")
            for process, path in zip(ranked, ranked_log_paths, strict=True):
                wait_for(
                    lambda process=process, path=path: (
                        process.poll() is not None or "done" in demo_log(path)
                    ),
                    timeout=60, what="the ranked loop",
                )  # fmt: skip
            # All linger, serving metrics: an exit here is a failure.
            assert demo.poll() is None, f"the demo exited early:\n{demo_log(log_path)}"
            for process, path in zip(ranked, ranked_log_paths, strict=True):
                assert process.poll() is None, f"the ranked loop failed:\n{demo_log(path)}"
            # A few more scrapes, so rates and slopes see the end of the runs.
            done = time.time()
            wait_for(
                lambda: min(
                    float(r["value"][1]) for r in prometheus.query("timestamp(up)")
                ) > done + 2,
                timeout=30, what="three more scrapes of both runs",
            )  # fmt: skip
            yield Stack(prometheus=prometheus, start=start, end=time.time())
        finally:
            for process in (demo, *ranked):
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def run(stack: Stack, query: PanelQuery, run_id: str = BOTH_RUNS) -> list[dict]:
    expr = substitute(
        query.expr, run_id=run_id, rank=".*", rate_interval=RATE_INTERVAL,
        interval="1s", time_range=f"{round(stack.end - stack.start)}s",
    )  # fmt: skip
    try:
        if query.instant:
            return stack.prometheus.query(expr, time=stack.end)
        return list(stack.prometheus.query_range(expr, stack.start, stack.end, step="1s"))
    except Exception as exc:  # the API's 400 carries the parse error
        detail = getattr(exc, "read", lambda: b"")().decode(errors="replace")
        raise AssertionError(
            f"{query.label}: Prometheus rejected\n  {expr}\n  {exc} {detail}"
        ) from exc


def has_finite_value(result: list[dict]) -> bool:
    values = [v for item in result for _, v in item.get("values", [item.get("value", [0, "NaN"])])]
    return any(v not in ("NaN", "+Inf", "-Inf") for v in values)


@pytest.mark.parametrize("query", QUERIES, ids=[q.label for q in QUERIES])
def test_panel_query_parses_and_returns_data(stack: Stack, query: PanelQuery) -> None:
    result = run(stack, query)
    if query.incident_only or query.trainer_only:
        return  # trainer-only panels are proven by tests/test_trainers.py
    assert result, f"{query.label}: no series for\n  {query.expr}"
    assert has_finite_value(result), f"{query.label}: only NaN/inf for\n  {query.expr}"


def test_a_plain_demo_run_fills_nearly_every_panel_query(stack: Stack) -> None:
    # The demo alone, every RL and phase panel included; only incident-only
    # panels and what needs a clipped objective (mlx-lm-lora) may stay empty.
    # The preference dashboard is for DPO-style trainers, which the demo is not
    # (tests/test_instrumentation.py fills every one of its panels).
    panel_queries = [q for q in QUERIES
                     if q.panel_type != "annotation" and q.dashboard != "Preference optimisation"]  # fmt: skip
    empty = [q.label for q in panel_queries
             if not has_finite_value(run(stack, q, run_id=regex_literal(RUN_ID)))]  # fmt: skip
    filled = len(panel_queries) - len(empty)
    share = filled / len(panel_queries)
    print(f"\nthe demo fills {filled} of {len(panel_queries)} panel queries ({share:.0%})")
    assert share >= DEMO_SHARE, f"{filled} of {len(panel_queries)}; empty: {empty}"


def test_run_id_variable_lists_both_runs(stack: Stack) -> None:
    # label_values(mlx_train_steps_total, run_id), as Grafana asks for it.
    values = stack.prometheus.api("label/run_id/values", **{"match[]": "mlx_train_steps_total"})
    assert {RUN_ID, RANKED_RUN_ID} <= set(values)


def test_rank_variable_lists_the_ranks_of_the_selected_runs(stack: Stack) -> None:
    match = f'mlx_train_steps_total{{run_id=~"{BOTH_RUNS}"}}'
    assert stack.prometheus.api("label/rank/values", **{"match[]": match}) == ["0", "1"]


def test_one_rank_selects_only_that_rank(stack: Stack) -> None:
    (query,) = [q for q in QUERIES if q.panel == "Loss"]
    expr = substitute(query.expr, run_id=BOTH_RUNS, rank="1")
    runs = {item["metric"]["run_id"] for item in stack.prometheus.query(expr)}
    assert runs == {RANKED_RUN_ID}


def ranks_panel(stack: Stack, title: str, ref_id: str = "A") -> list[dict]:
    (query,) = [
        q for q in QUERIES if q.dashboard == "MLX Ranks" and q.panel == title and q.ref_id == ref_id
    ]
    return run(stack, query)


def test_the_ranks_dashboard_reduces_the_two_ranks_of_a_run(stack: Stack) -> None:
    def by_run(result: list[dict]) -> dict[str, float]:
        return {item["metric"]["run_id"]: float(item["values"][-1][1]) for item in result}

    assert by_run(ranks_panel(stack, "Ranks reporting"))[RANKED_RUN_ID] == 2
    # Rank 1 sleeps longer per step: while both trained, the slowest was slower.
    ratios = [
        float(v) for item in ranks_panel(stack, "Straggler ratio (slowest / fastest)")
        if item["metric"]["run_id"] == RANKED_RUN_ID for _, v in item["values"]
        if v not in ("NaN", "+Inf", "-Inf")
    ]  # fmt: skip
    assert ratios and max(ratios) > 1.2
    behind = {
        item["metric"].get("rank"): float(item["values"][-1][1])
        for item in ranks_panel(stack, "Steps behind the leading rank")
        if item["metric"]["run_id"] == RANKED_RUN_ID
    }
    assert behind == {"0": 0.0, "1": 0.0}  # both logged all their steps by the end
    # Host memory from rank 0 only: the sum over the ranks is one host's total.
    (host,) = [item for item in ranks_panel(stack, "Host memory available, all hosts", "B")
               if item["metric"]["run_id"] == RANKED_RUN_ID]  # fmt: skip
    single = stack.prometheus.query(
        f'mlx_system_memory_total_bytes{{run_id="{RANKED_RUN_ID}"}}', time=stack.end
    )
    assert [item["metric"]["rank"] for item in single] == ["0"]
    assert float(host["values"][-1][1]) == float(single[0]["value"][1])


def test_all_ranks_include_a_run_without_a_rank_label(stack: Stack) -> None:
    # A single-process demo has no rank label; "All" (.*) must still select it.
    steps = stack.prometheus.query(f'mlx_train_steps_total{{run_id="{RUN_ID}"}}')
    assert steps and "rank" not in steps[0]["metric"]
    assert stack.prometheus.query(f'mlx_train_steps_total{{run_id="{RUN_ID}", rank=~".*"}}')


def test_preview_renders_one_non_blank_png_per_dashboard(stack: Stack, tmp_path: Path) -> None:
    import numpy as np
    from matplotlib.image import imread

    minutes = (time.time() - stack.start) / 60 + 0.2
    written = preview(stack.prometheus.url, tmp_path, directory=DIRECTORY, minutes=minutes)
    expected = {p.stem for p in DIRECTORY.glob("*.json")}
    assert {p.stem for p in written} == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in expected)
    for path in written:
        pixels = np.asarray(imread(path))
        assert pixels.shape[0] > 500 and pixels.shape[1] > 1000, path.name
        # Lines, heatmaps and text make the image far from uniform.
        assert float(pixels[..., :3].std()) > 0.05, f"{path.name} is blank"


def minutes_since(stack: Stack) -> float:
    return (time.time() - stack.start) / 60 + 0.2


def figure_texts(stack: Stack, data: dict) -> tuple[list[str], Any]:
    from matplotlib.text import Text

    renderer = make_renderer(stack.prometheus.url, run_id=None, minutes=minutes_since(stack))
    fig = renderer.figure(data, "subtitle")
    return [t.get_text() for t in fig.findobj(Text)], fig


def stat_panel(height: int) -> dict:
    return {
        "type": "stat", "title": "Tokens", "gridPos": {"x": 0, "y": 0, "w": 6, "h": height},
        "targets": [{"expr": 'mlx_train_tokens_total{run_id=~"$run_id"}',
                     "legendFormat": "{{run_id}} {{kind}}"}],
        "fieldConfig": {"defaults": {"unit": "short"}},
    }  # fmt: skip


def test_a_run_id_that_matches_nothing_names_the_runs_that_exist(
    stack: Stack, tmp_path: Path
) -> None:
    with pytest.raises(DashboardError) as info:
        preview(stack.prometheus.url, tmp_path, run_id="no-such-run", minutes=minutes_since(stack))
    message = str(info.value)
    assert "no-such-run" in message and RUN_ID in message and RANKED_RUN_ID in message
    assert list(tmp_path.iterdir()) == []


def test_stat_panels_show_every_series_when_they_fit(stack: Stack) -> None:
    texts, _ = figure_texts(stack, {"title": "T", "panels": [stat_panel(height=12)]})
    names = {f"{run} {kind}" for run in (RUN_ID, RANKED_RUN_ID) for kind in ("thinking", "answer")}
    assert names <= set(texts)
    assert not any("more series" in t for t in texts)


def test_stat_panels_say_how_many_series_are_left_out(stack: Stack) -> None:
    texts, _ = figure_texts(stack, {"title": "T", "panels": [stat_panel(height=4)]})
    shown = [t for t in texts if t.startswith(("dashboards-live ", "dashboards-live-ranked "))]
    (more,) = [t for t in texts if "more series" in t]
    # Two kinds for the demo and for each of the two ranks of the ranked run.
    total = len(stack.prometheus.query("mlx_train_tokens_total", time=stack.end))
    assert total == 6
    assert more.startswith(f"… and {total - len(shown)} more series")
    assert 1 <= len(shown) < total


def test_annotation_regions_are_drawn_on_time_series(stack: Stack) -> None:
    # The dashboards annotate firing alerts (ALERTS{alertstate="firing"}); no alert
    # fires in this short run, so the same annotation reads a series that exists.
    panel = {
        "type": "timeseries", "title": "Loss", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
        "targets": [{"expr": 'mlx_train_loss{run_id=~"$run_id"}', "legendFormat": "{{run_id}}"}],
        "fieldConfig": {"defaults": {"unit": "short"}},
    }  # fmt: skip
    annotation = {
        "enable": True, "expr": f'mlx_train_steps_total{{run_id="{RUN_ID}"}}',
        "iconColor": "red", "name": "Firing alerts", "titleFormat": "{{run_id}}",
    }  # fmt: skip
    plain, fig = figure_texts(stack, {"title": "T", "panels": [panel]})
    assert not any(t.startswith("firing:") for t in plain)
    bare = sum(len(ax.patches) for ax in fig.axes)
    data = {"title": "T", "panels": [panel], "annotations": {"list": [annotation]}}
    texts, fig = figure_texts(stack, data)
    assert f"firing: {RUN_ID}" in texts
    assert sum(len(ax.patches) for ax in fig.axes) > bare


def test_every_dashboard_annotates_firing_alerts_the_way_the_preview_reads_them() -> None:
    for query in QUERIES:
        if query.panel_type == "annotation":
            assert query.expr.startswith('ALERTS{alertstate="firing"'), query.label
