"""Each sink against real records: the statistics, the run's files, WandB, charts."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.pipeline.chart_sink import ChartSink
from mlx_otel.pipeline.run_files import write_run_files
from mlx_otel.pipeline.sink import RunEnding
from mlx_otel.pipeline.statistics_sink import StatisticsSink
from mlx_otel.pipeline.wandb_sink import WandBSink
from mlx_otel.records import GradientRecord, MemoryReading, StepRecord
from tests.wandb_records import read_run

STEPS = 20


def record(step: int, **values: float) -> StepRecord:
    return StepRecord(
        step=step, timestamp=1_000.0 + step, values=values, custom={"temperature": 0.7},
        rewards=[0.0, 1.0, float("nan"), 0.5], duration=0.1,
        memory=MemoryReading(active_bytes=512 << 20, cache_bytes=64 << 20, peak_bytes=600 << 20),
    )  # fmt: skip


def records() -> list[StepRecord]:
    return [record(s, loss=1.0 / (s + 1), reward_mean=s / STEPS) for s in range(STEPS)]


@pytest.fixture
def statistics(tmp_path: Path) -> tuple[StatisticsSink, ErrorLedger]:
    ledger = ErrorLedger(("non_finite", "invalid_value", "worker"))
    sink = StatisticsSink(output_dir=tmp_path, max_history=1000, profiler=MemoryProfiler(),
                          ledger=ledger)  # fmt: skip
    return sink, ledger


def test_statistics_hold_the_values_rewards_and_layer_norms(statistics) -> None:
    sink, ledger = statistics
    batch = records()
    sink.handle(batch[:7])
    sink.handle([*batch[7:], GradientRecord(STEPS - 1, {"layers.0": 0.25})])
    loss = sink.stats.get_metric_stats("loss")
    assert loss["count"] == STEPS
    assert loss["mean"] == pytest.approx(sum(1.0 / (s + 1) for s in range(STEPS)) / STEPS)
    assert loss["final"] == pytest.approx(1.0 / STEPS)
    assert sink.stats.get_metric_stats("custom/temperature")["mean"] == pytest.approx(0.7)
    assert sink.stats.get_metric_stats("mlx_active_mb")["max"] == 512.0
    assert list(sink.recent_rewards)[:3] == [0.0, 1.0, 0.5]  # NaN left out
    assert len(sink.recent_rewards) == 3 * STEPS
    assert sink.layer_norms == {"layers.0": 0.25}
    assert sink.last_step == STEPS - 1
    sink.handle([record(STEPS, loss=math.nan)])
    assert ledger.counts()["non_finite"] == 1
    assert sink.stats.non_finite_count("loss") == 1
    sink.close(time.monotonic())


def test_run_files_are_one_table_twice_and_a_summary(statistics, tmp_path: Path) -> None:
    sink, _ = statistics
    sink.handle(records())
    out = tmp_path / "run"
    written = write_run_files(sink.stats, out, run_id="run_9", start_time=time.time() - 60, rank=1)
    assert set(written) == {"monitoring_summary", "training_metrics_csv", "training_metrics_json",
                            "stats_csv", "stats_json"}  # fmt: skip
    metrics = pd.read_csv(out / "training_metrics.csv")
    history = pd.read_csv(sink.stats.output_dir / "metrics_history.csv")
    assert list(metrics.columns[:5]) == ["step", "run_id", "timestamp", "loss", "reward_mean"]
    assert metrics["step"].tolist() == list(range(STEPS))
    assert metrics["loss"].tolist() == [1.0 / (s + 1) for s in range(STEPS)]  # full precision
    assert set(metrics["run_id"]) == {"run_9"}
    # The same table: the same values under the same names, in another column order.
    shared = [c for c in history.columns if c != "run_id"]
    pd.testing.assert_frame_equal(metrics[shared], history[shared])
    rows = json.loads((out / "training_metrics.json").read_text())
    assert rows["run_id"] == "run_9" and rows["rank"] == 1
    assert [r["step"] for r in rows["steps"]] == list(range(STEPS))
    assert rows["steps"][3]["custom/temperature"] == 0.7
    summary = json.loads((out / "monitoring_summary.json").read_text())
    assert summary["session"]["total_steps"] == STEPS and summary["session"]["rank"] == 1
    assert summary["session"]["duration_hours"] == pytest.approx(60 / 3600, abs=0.01)
    assert summary["metrics"]["loss"]["min"] == pytest.approx(1.0 / STEPS)


def test_only_the_record_is_written_when_asked(statistics, tmp_path: Path) -> None:
    sink, _ = statistics
    sink.handle(records())
    written = write_run_files(sink.stats, tmp_path / "r", run_id="r", start_time=0.0,
                              only=("monitoring_summary", "training_metrics_csv"))  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "monitoring_summary.json", "training_metrics.csv"]  # fmt: skip
    assert set(written) == {"monitoring_summary", "training_metrics_csv"}


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
                        "WANDB_DISABLE_GIT": "true", "WANDB_ERROR_REPORTING": "false"}.items():
        monkeypatch.setenv(name, value)  # fmt: skip
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


def test_wandb_sink_writes_the_steps_to_a_real_offline_run(wandb_offline, tmp_path: Path) -> None:
    from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger
    from mlx_otel.integrations.wandb_thread import BackgroundWandB

    logger = BackgroundWandB(lambda: EnhancedWandBLogger(
        project="sinks", name="sink", mode="offline", dir=str(tmp_path)))  # fmt: skip
    sink = WandBSink(logger, log_samples_every=5, finish_timeout=60)
    batch = [
        StepRecord(step=s, timestamp=1.0 + s, values={"loss": 1.0 / (s + 1), "kl": 0.01 * s},
                   custom={}, rewards=[0.0, 1.0], duration=None)
        for s in range(10)
    ]  # fmt: skip
    sink.handle([*batch, GradientRecord(9, {"layers.0.mlp": 0.5})])
    sink.close(time.monotonic() + 60)
    run = read_run(tmp_path / "wandb")
    rows = run.by_step()
    assert [rows[s]["train/loss"] for s in range(10)] == pytest.approx([1 / (s + 1) for s in range(10)])
    assert rows[4]["rl/kl"] == pytest.approx(0.04)  # a trainer metric under its WandB key
    assert run.steps_with("rl/rewards") == [0, 5]
    assert run.exit_code == 0


def test_wandb_sink_close_honours_the_deadline_when_wandb_never_starts(tmp_path: Path) -> None:
    from mlx_otel.integrations.wandb_thread import BackgroundWandB

    never = threading.Event()

    def start_that_hangs():  # a WandB server that never answers wandb.init
        never.wait(60)
        raise ConnectionError("no answer")

    logger = BackgroundWandB(start_that_hangs)
    sink = WandBSink(logger, log_samples_every=5, finish_timeout=60)
    sink.handle(records()[:3])
    began = time.monotonic()
    sink.close(began + 1.0)
    assert time.monotonic() - began < 3.0
    never.set()


def test_chart_sink_renders_on_its_cadence_and_stops_at_the_end(statistics, tmp_path: Path) -> None:
    pytest.importorskip("seaborn")
    sink, ledger = statistics
    sink.handle(records())
    ending = RunEnding()
    charts = ChartSink(sink, output_dir=tmp_path, every=10, threshold_mb=8000, ledger=ledger,
                       ending=ending, in_subprocess=False)  # fmt: skip
    charts.handle(records()[8:12])  # step 10 is due
    assert (tmp_path / "charts" / "dashboard_step_10.png").is_file()
    ending.begun.set()
    charts.handle([record(20, loss=0.1)])  # the run is ending: no periodic chart
    assert not (tmp_path / "charts" / "dashboard_step_20.png").exists()
    charts.close(time.monotonic() + 5)
    assert charts.render(30, timeout=5) == {}  # closed: nothing new
    assert os.listdir(tmp_path / "charts")
