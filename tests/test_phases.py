"""Phases of a step: ``monitor.phase(name)`` as a user times generation, scoring and the update.

What a user checks: the phase histogram a scrape serves, the ``timing/<phase>``
column of the run's CSV/JSON files and of WandB, nested phases each timing
themselves, MLX's lazy work landing in the phase that evaluates it, bad names
counted and never raised, and the histogram exact under a flood of phases.
The spans of a step are checked here through the SDK's in-memory exporter,
and end to end against a real collector in ``tests/test_traces.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
import pandas as pd
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mlx_otel.exporter.tracing import StepTracer
from mlx_otel.monitor import TrainingMonitor
from mlx_otel.pipeline.phases import NULL_PHASES
from mlx_otel.records import TrainerReport
from tests.conftest import parse_exposition, sample
from tests.wandb_records import read_run

PHASE = "mlx_train_phase_duration_seconds"


def served(monitor: TrainingMonitor, suffix: str, phase: str) -> float:
    samples = parse_exposition(monitor.telemetry.exposition())
    return sample(samples, f"{PHASE}_{suffix}", phase=phase)


def make_monitor(tmp_path: Path, **exporter: Any) -> TrainingMonitor:
    config = {
        "exporter": {"port": 0, **exporter},
        "monitoring": {"output_dir": str(tmp_path / "out"), "generate_charts_every": 0},
    }
    return TrainingMonitor(config, run_id="phases", serve=False)


def test_each_phase_is_served_as_a_histogram_labelled_by_its_name(
    monitor: TrainingMonitor,
) -> None:
    for step in range(3):
        with monitor.phase("generate"):
            time.sleep(0.02)
        with monitor.phase("update"):
            pass
        monitor.log_training_step(step, loss=1.0)
    assert served(monitor, "count", "generate") == 3
    assert served(monitor, "count", "update") == 3
    assert 0.06 <= served(monitor, "sum", "generate") < 3.0
    assert served(monitor, "sum", "update") < served(monitor, "sum", "generate")
    samples = parse_exposition(monitor.telemetry.exposition())
    # Buckets from a millisecond to ten minutes.
    bounds = {float(dict(labels)["le"]) for (name, labels) in samples
              if name == f"{PHASE}_bucket" and ("phase", "generate") in labels}  # fmt: skip
    assert min(bounds) == 0.001 and 600.0 in bounds
    assert sample(samples, f"{PHASE}_bucket", phase="generate", le="0.01") == 0
    assert sample(samples, f"{PHASE}_bucket", phase="generate", le="+Inf") == 3


def test_the_step_record_holds_the_summed_time_of_each_phase(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)
    try:
        for step in range(2):
            for _ in range(2):  # a phase run twice in a step counts twice
                with monitor.phase("reward"):
                    time.sleep(0.01)
            monitor.log_training_step(step, loss=0.5)
        with monitor.phase("reward"):  # after the last step: served, in no step
            pass
        monitor.flush()
        monitor.files.write_record()
        assert served(monitor, "count", "reward") == 5
    finally:
        monitor.cleanup()
    frame = pd.read_csv(tmp_path / "out" / "training_metrics.csv")
    assert frame["step"].tolist() == [0, 1]
    assert frame["timing/reward"].between(0.02, 2.0).all(), frame["timing/reward"]


def test_nested_phases_each_time_themselves(monitor: TrainingMonitor) -> None:
    with monitor.phase("update"):
        time.sleep(0.01)
        with monitor.phase("validation"):
            time.sleep(0.02)
    monitor.log_training_step(0)
    update, validation = served(monitor, "sum", "update"), served(monitor, "sum", "validation")
    assert validation >= 0.02 and update >= validation + 0.01


def test_a_decorated_function_is_timed_at_each_call(monitor: TrainingMonitor) -> None:
    @monitor.phase("reward")
    def score(completions: list[str]) -> list[float]:
        """Scores completions."""
        return [float(len(c)) for c in completions]

    assert score(["ab", "c"]) == [2.0, 1.0]
    assert score([]) == []
    assert score.__name__ == "score" and score.__doc__ == "Scores completions."
    assert served(monitor, "count", "reward") == 2


def test_a_decorated_coroutine_is_timed_until_it_returns(monitor: TrainingMonitor) -> None:
    @monitor.phase("reward")
    async def score() -> float:
        await asyncio.sleep(0.02)
        return 1.0

    assert asyncio.run(score()) == 1.0
    assert served(monitor, "sum", "reward") >= 0.02


def test_a_trainer_report_carries_the_phases_of_its_step(monitor: TrainingMonitor) -> None:
    with monitor.phase("generate"):
        pass
    monitor.record_report(TrainerReport(10, values={"loss": 1.0}))
    monitor.flush()
    history = {h.name: h for h in monitor.stats.histories()}
    assert history["timing/generate"].steps.tolist() == [10]


def heavy(x: mx.array) -> mx.array:
    for _ in range(20):
        x = mx.tanh(x @ x) * 0.5
    return x


def test_mlx_work_lands_in_the_phase_that_evaluates_or_synchronises(
    monitor: TrainingMonitor,
) -> None:
    x = mx.random.normal((256, 256))
    mx.eval(x)
    with monitor.phase("lazy"):
        y = heavy(x)  # builds a graph: nothing is computed yet
    with monitor.phase("evaluated", arrays=y):
        pass
    with monitor.phase("synchronised", sync=True):
        z = heavy(x + 1)
        mx.async_eval(z)  # runs on MLX's stream; the phase waits for it
    monitor.log_training_step(0)
    lazy = served(monitor, "sum", "lazy")
    assert served(monitor, "sum", "evaluated") > 3 * lazy
    assert served(monitor, "sum", "synchronised") > 3 * lazy


def test_bad_names_are_counted_and_the_block_still_runs(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path, max_custom_metrics=2)
    try:
        ran = []
        for name in (None, "", "!!", ["generate"], "a", "b", "c"):
            with monitor.phase(name):  # type: ignore[arg-type]
                ran.append(name)
        assert len(ran) == 7
        counts = monitor.error_counts()
        assert counts["invalid_value"] == 4 and counts["custom_metric_cap"] == 1
        samples = parse_exposition(monitor.telemetry.exposition())
        phases = {dict(labels)["phase"] for (name, labels) in samples if name == f"{PHASE}_count"}
        assert phases == {"a", "b"}
    finally:
        monitor.cleanup()


def test_strict_monitors_raise_on_a_bad_phase_name(tmp_path: Path) -> None:
    config = {"exporter": {"port": 0},
              "monitoring": {"output_dir": str(tmp_path), "generate_charts_every": 0}}  # fmt: skip
    monitor = TrainingMonitor(config, run_id="strict", serve=False, strict=True)
    try:
        with pytest.raises(ValueError, match="phase name None"):
            monitor.phase(None)  # type: ignore[arg-type]
    finally:
        monitor.cleanup()


def test_a_flood_of_phases_is_counted_exactly(tmp_path: Path) -> None:
    config = {"exporter": {"port": 0},
              "monitoring": {"output_dir": str(tmp_path), "queue_size": 8,
                             "generate_charts_every": 0}}  # fmt: skip
    monitor = TrainingMonitor(config, run_id="flood", serve=False)
    try:
        for step in range(2_000):
            for _ in range(10):
                with monitor.phase("generate"):
                    pass
            monitor.log_training_step(step)
        assert served(monitor, "count", "generate") == 20_000
        assert "phase_duration" not in monitor.errors.dropped()
    finally:
        monitor.cleanup()


def test_phases_without_a_monitor_have_the_same_shape() -> None:
    with NULL_PHASES.phase("generate", sync=True):
        y = heavy(mx.ones((8, 8)))

    @NULL_PHASES.phase("reward")
    def score() -> int:
        return 3

    assert score() == 3 and y.shape == (8, 8)


def test_phases_after_the_run_ended_do_not_fail(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)
    monitor.cleanup()
    with monitor.phase("generate"):
        pass
    monitor.log_training_step(0)


def test_a_step_span_holds_its_phases_nested_as_they_ran() -> None:
    exporter = InMemorySpanExporter()
    tracer = StepTracer(
        exporter, resource=Resource.create({"run_id": "r1"}), run_id="r1", rank=2,
        on_failure=pytest.fail,
    )  # fmt: skip
    # As the phase timer records them: in the order they end, with their depth.
    phases = [("generate", 1.0, 2.0, 0), ("check", 2.2, 2.25, 2), ("score", 2.1, 2.26, 1),
              ("reward", 2.05, 2.3, 0), ("update", 2.3, 3.0, 0)]  # fmt: skip
    tracer.step_ended(7, phases)
    tracer.step_ended(8, [])
    tracer.close(time.monotonic() + 10)
    spans = exporter.get_finished_spans()
    steps = [s for s in spans if s.name == "train.step"]
    assert [dict(s.attributes or {}) for s in steps] == [
        {"step": 7, "run_id": "r1", "rank": 2}, {"step": 8, "run_id": "r1", "rank": 2},
    ]  # fmt: skip
    by_name = {s.name: s for s in spans if s.name != "train.step"}
    assert set(by_name) == {"generate", "score", "check", "reward", "update"}
    step = steps[0]

    def parent(name: str) -> int | None:
        span = by_name[name]
        assert span.context.trace_id == step.context.trace_id
        return span.parent.span_id if span.parent else None

    assert parent("generate") == parent("reward") == parent("update") == step.context.span_id
    assert parent("score") == by_name["reward"].context.span_id
    assert parent("check") == by_name["score"].context.span_id
    assert steps[1].context.trace_id != step.context.trace_id
    generate = by_name["generate"]
    assert generate.end_time - generate.start_time == pytest.approx(1e9, abs=1e3)
    assert step.start_time <= generate.start_time and step.end_time >= by_name["update"].end_time


@pytest.mark.integration
def test_the_run_files_and_wandb_hold_the_time_of_each_phase(tmp_path: Path) -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    config = {
        "monitoring": {"use_wandb": True, "wandb_mode": "offline", "output_dir": str(tmp_path),
                       "generate_charts_every": 0},
        "exporter": {"port": 0},
    }  # fmt: skip
    with TrainingMonitor(config, run_id="phases_files", serve=False) as monitor:
        for step in range(3):
            with monitor.phase("generate"):
                time.sleep(0.01)
            monitor.log_training_step(step, loss=1.0)
    frame = pd.read_csv(tmp_path / "training_metrics.csv")
    assert frame["timing/generate"].between(0.01, 2.0).all(), frame["timing/generate"]
    steps = json.loads((tmp_path / "training_metrics.json").read_text())["steps"]
    assert [row["timing/generate"] for row in steps] == pytest.approx(frame["timing/generate"])
    rows = read_run(tmp_path / "wandb").by_step()
    assert [rows[step]["timing/generate"] for step in range(3)] == pytest.approx(
        frame["timing/generate"]
    )
