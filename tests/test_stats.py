"""ComprehensiveStatsCollector and atomic file writing."""

from __future__ import annotations

import json
import math
import os
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlx_otel.fileio import atomic_path, atomic_write_bytes, atomic_write_text
from mlx_otel.numbers.stats import ComprehensiveStatsCollector


def leftovers(directory: Path) -> list[str]:
    """Temporary files left next to the targets (they start with a dot)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def collector(tmp_path: Path) -> ComprehensiveStatsCollector:
    return ComprehensiveStatsCollector(output_dir=tmp_path / "stats", max_history=10000)


# ---------------------------------------------------------------- statistics


def test_statistics_agree_with_numpy_and_pandas(collector, rng) -> None:
    values = rng.normal(0.4, 0.2, size=777)
    for step, value in enumerate(values):
        collector.record_metric("loss", value, step=step)

    got = collector.get_metric_stats("loss")

    assert got["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert got["std"] == pytest.approx(np.std(values), rel=1e-12)
    assert got["min"] == values.min()
    assert got["max"] == values.max()
    series = pd.Series(values)
    for q in (5, 25, 50, 75, 95, 99):
        assert got[f"p{q}"] == pytest.approx(np.percentile(values, q), rel=1e-12)
        assert got[f"p{q}"] == pytest.approx(series.quantile(q / 100), rel=1e-12)
    assert got["count"] == 777
    assert got["last"] == got["final"] == values[-1]
    assert got["non_finite"] == 0


def test_moving_averages_agree_with_pandas_rolling(collector, rng) -> None:
    loss, reward = rng.random(200), rng.random(150)
    collector.record_step(0, {"loss": loss[0]})
    for step in range(1, 200):
        collector.record_step(step, {"loss": loss[step]})
    for step in range(150):
        collector.record_metric("reward", reward[step], step=step)

    averages = collector.get_moving_averages(window=10)
    assert averages["loss"] == pytest.approx(loss[-10:].mean())
    assert averages["reward"] == pytest.approx(reward[-10:].mean())
    assert collector.get_moving_averages(window=1000)["loss"] == pytest.approx(loss.mean())

    series = collector.get_moving_average_series("loss", 7)
    expected = pd.Series(loss).rolling(7, min_periods=1).mean()
    np.testing.assert_allclose(series.to_numpy(), expected.to_numpy())
    assert list(series.index) == list(range(200))

    with pytest.raises(ValueError, match="window"):
        collector.get_moving_averages(window=0)


def test_correlation_matrix_aligns_metrics_by_step(collector, rng) -> None:
    n = 300
    a = rng.normal(size=n)
    b = 0.8 * a + 0.2 * rng.normal(size=n)
    c = rng.normal(size=n)
    for step in range(n):
        values = {"a": a[step], "b": b[step]}
        if step % 3:  # c is missing at every third step
            values["c"] = c[step]
        collector.record_step(step, values)

    got = collector.get_correlation_matrix()

    frame = pd.DataFrame({"a": a, "b": b, "c": np.where(np.arange(n) % 3, c, np.nan)})
    pd.testing.assert_frame_equal(got, frame.corr())
    assert got.loc["a", "b"] > 0.9


def test_custom_metrics_work_like_any_other(collector) -> None:
    for step in range(5):
        collector.record_metric("custom/my_metric", step * 2.0, step)
    assert collector.get_metric_stats("custom/my_metric")["mean"] == 4.0
    assert "custom/my_metric" in collector.to_dataframe().columns


def test_unknown_metric_raises_keyerror_listing_known_ones(collector) -> None:
    collector.record_metric("loss", 1.0, step=0)
    collector.record_metric("reward", 1.0, step=0)
    with pytest.raises(KeyError, match=r"'lss'.*known metrics: loss, reward"):
        collector.get_metric_stats("lss")
    with pytest.raises(KeyError, match="lss"):
        collector.non_finite_count("lss")


def test_values_that_are_not_numbers_are_refused(collector) -> None:
    with pytest.raises(TypeError, match="loss"):
        collector.record_metric("loss", "0.5", step=1)
    with pytest.raises(TypeError, match="loss"):
        collector.record_metric("loss", None, step=1)
    with pytest.raises(TypeError, match="step"):
        collector.record_metric("loss", 0.5, step=1.5)
    with pytest.raises(ValueError, match="name"):
        collector.record_metric("", 0.5, step=1)

    rejected = collector.record_step(3, {"loss": 0.5, "reward": None, "tokens": "12"})

    assert rejected == ["reward", "tokens"]
    assert collector.metric_names == ["loss"]


def test_step_defaults_to_one_past_the_metrics_previous_step(collector) -> None:
    collector.record_metric("loss", 1.0)
    collector.record_metric("loss", 2.0)
    collector.record_metric("loss", 3.0, step=10)
    collector.record_metric("loss", 4.0)
    assert collector.get_history("loss").steps.tolist() == [0, 1, 10, 11]


def test_numpy_and_mlx_scalars_are_accepted(collector) -> None:
    mx = pytest.importorskip("mlx.core")
    collector.record_step(np.int64(1), {"loss": np.float32(0.5), "reward": mx.array(0.25)})
    assert collector.get_metric_stats("reward")["last"] == 0.25
    assert collector.get_metric_stats("loss")["last"] == 0.5


# ----------------------------------------------------------- bounded memory


def test_history_is_bounded_by_max_history(tmp_path) -> None:
    collector = ComprehensiveStatsCollector(output_dir=tmp_path, max_history=100)
    for step in range(200):
        collector.record_step(step, {"loss": float(step), "reward": -float(step)})
    bytes_at_2x = collector.nbytes
    for step in range(200, 300):
        collector.record_step(step, {"loss": float(step), "reward": -float(step)})

    history = collector.get_history("loss")
    assert len(history) == 100
    assert history.values.tolist() == [float(s) for s in range(200, 300)]
    assert history.steps.tolist() == list(range(200, 300))
    assert collector.nbytes == bytes_at_2x == 2 * 100 * 3 * 8
    stats = collector.get_metric_stats("loss")
    assert stats["count"] == 100
    assert stats["min"] == 200.0
    assert stats["mean"] == pytest.approx(np.mean(np.arange(200, 300)))
    assert len(collector.to_dataframe()) == 100
    # The run length is not truncated with the history.
    assert collector.total_steps == 300
    assert collector.summary()["session"]["total_steps"] == 300


def test_number_of_metrics_is_capped(tmp_path) -> None:
    collector = ComprehensiveStatsCollector(output_dir=tmp_path, max_metrics=2)
    assert collector.record_step(0, {"a": 1.0, "b": 2.0, "c": 3.0}) == ["c"]
    with pytest.raises(ValueError, match="max_metrics"):
        collector.record_metric("d", 1.0, step=1)
    collector.record_metric("a", 5.0, step=1)  # known names still record
    assert collector.metric_names == ["a", "b"]


# -------------------------------------------------------------- non-finite


def test_nan_and_inf_are_counted_and_left_out(collector) -> None:
    values = [0.5, math.nan, 0.3, math.inf, 0.1, -math.inf]
    for step, value in enumerate(values):
        collector.record_metric("loss", value, step=step)
    collector.record_metric("only_nan", math.nan, step=0)

    assert collector.non_finite_count("loss") == 3
    stats = collector.get_metric_stats("loss")
    assert stats["count"] == 3
    assert stats["mean"] == pytest.approx(0.3)
    assert stats["max"] == 0.5
    assert stats["last"] == 0.1
    assert stats["non_finite"] == 3
    empty = collector.get_metric_stats("only_nan")
    assert empty["count"] == 0 and math.isnan(empty["mean"])
    assert "only_nan" not in collector.get_moving_averages()

    # The history keeps them where they happened; statistics never see them.
    history = collector.get_history("loss")
    np.testing.assert_array_equal(history.values, values)
    assert history.finite_values.tolist() == [0.5, 0.3, 0.1]
    frame = collector.to_dataframe().set_index("step")
    np.testing.assert_array_equal(frame["loss"].to_numpy(), values)
    assert frame["only_nan"].isna().all()
    smooth = collector.get_moving_average_series("loss", window=2)
    assert smooth.tolist() == pytest.approx([0.5, 0.4, 0.2])
    assert collector.get_moving_averages(window=2)["loss"] == pytest.approx(0.2)

    collector.record_metric("reward", 1.0, step=0)
    collector.record_metric("reward", 2.0, step=2)
    collector.record_metric("reward", 3.0, step=3)
    collector.record_metric("reward", 5.0, step=4)
    # loss is inf at step 3: left out of the pair, not allowed to poison it.
    expected = np.corrcoef([0.5, 0.3, 0.1], [1.0, 2.0, 5.0])[0, 1]
    assert collector.get_correlation_matrix().loc["loss", "reward"] == pytest.approx(expected)


# -------------------------------------------------------------- dataframe


def test_dataframe_has_one_row_per_step_and_one_column_per_metric(tmp_path) -> None:
    collector = ComprehensiveStatsCollector(output_dir=tmp_path, run_id="run_001")
    collector.record_step(1, {"loss": 0.5, "reward_mean": 0.8}, timestamp=100.0)
    collector.record_step(2, {"loss": 0.45}, timestamp=101.0)
    collector.record_metric("reward_mean", 0.82, step=2, timestamp=101.5)
    collector.record_metric("loss", 0.44, step=2, timestamp=101.2)  # last value wins
    collector.record_metric("grad_norm", 0.1, step=0, timestamp=99.0)

    frame = collector.to_dataframe()

    assert list(frame.columns) == [
        "step",
        "run_id",
        "timestamp",
        "loss",
        "reward_mean",
        "grad_norm",
    ]
    assert frame["step"].tolist() == [0, 1, 2]
    assert frame["run_id"].tolist() == ["run_001"] * 3
    assert frame["timestamp"].tolist() == [99.0, 100.0, 101.5]
    assert frame["loss"].tolist()[1:] == [0.5, 0.44]
    assert frame["reward_mean"].tolist()[1:] == [0.8, 0.82]
    assert math.isnan(frame["loss"][0])


def test_empty_collector_gives_empty_frame_and_summary(collector) -> None:
    frame = collector.to_dataframe()
    assert list(frame.columns) == ["step", "timestamp"]
    assert frame.empty
    assert collector.get_all_stats() == {}
    assert collector.summary() == {
        "session": {
            "duration_hours": 0.0,
            "total_steps": 0,
            "avg_step_time": None,
            "metrics_tracked": 0,
        },
        "metrics": {},
    }


# ----------------------------------------------------------------- exports


def fill(collector: ComprehensiveStatsCollector, rng: np.random.Generator, steps: int) -> None:
    for step in range(steps):
        collector.record_step(
            step,
            {"loss": rng.random(), "reward_mean": rng.random(), "learning_rate": 2e-6},
            timestamp=1_700_000_000.0 + 0.5 * step,
        )


def test_csv_export_round_trips_through_pandas(collector, rng) -> None:
    fill(collector, rng, 50)
    collector.record_metric("custom/nan_sometimes", math.nan, step=3)
    collector.record_metric("custom/nan_sometimes", math.inf, step=4)

    path = collector.export_to_csv()

    assert path == collector.output_dir / "metrics_history.csv"
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, collector.to_dataframe(), check_exact=True)
    assert leftovers(path.parent) == []


def test_json_export_round_trips_stats_averages_and_history(collector, rng) -> None:
    fill(collector, rng, 40)
    collector.record_metric("only_nan", math.nan, step=0)

    path = collector.export_to_json()

    assert path.parent == collector.output_dir
    assert re.fullmatch(r"stats_export_\d{8}_\d{6}\.json", path.name)
    data = json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert data["stats"]["loss"] == pytest.approx(collector.get_metric_stats("loss"))
    assert data["stats"]["only_nan"]["mean"] is None
    assert data["non_finite_counts"]["only_nan"] == 1
    assert data["moving_averages"] == pytest.approx(collector.get_moving_averages(window=10))
    history = collector.get_history("reward_mean")
    assert data["history"]["reward_mean"]["values"] == history.values.tolist()
    assert data["history"]["reward_mean"]["steps"] == list(range(40))
    assert data["history"]["only_nan"]["values"] == [None]
    assert data["total_steps"] == 40

    second = collector.export_to_json()  # same second: a new file, not an overwrite
    assert second != path and second.exists() and path.exists()

    explicit = collector.export_to_json(collector.output_dir / "x" / "mine.json")
    assert json.loads(explicit.read_text())["stats"].keys() == data["stats"].keys()


def test_summary_follows_the_seed_json_summary_format(collector, rng) -> None:
    fill(collector, rng, 101)  # 50 s of wall time over 101 steps

    summary = collector.summary(run_id="run_001")

    assert set(summary) == {"session", "metrics"}
    session = summary["session"]
    assert session["duration_hours"] == pytest.approx(50 / 3600)
    assert session["total_steps"] == 101
    assert session["avg_step_time"] == pytest.approx(0.5)
    assert session["metrics_tracked"] == 3
    assert session["run_id"] == "run_001"
    loss = collector.get_metric_stats("loss")
    assert summary["metrics"]["loss"] == {
        k: loss[k] for k in ("mean", "std", "min", "max", "final")
    }
    json.dumps(summary, allow_nan=False)

    given = collector.summary(avg_step_time=0.7)
    assert given["session"]["avg_step_time"] == 0.7

    written = collector.export_summary(collector.output_dir.parent / "monitoring_summary.json")
    assert json.loads(written.read_text())["session"]["total_steps"] == 101


# ------------------------------------------------------------------ threads


def test_readers_see_whole_steps_while_a_worker_records(tmp_path) -> None:
    collector = ComprehensiveStatsCollector(output_dir=tmp_path, max_history=500)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for step in range(3000):
                collector.record_step(step, {"a": float(step), "b": -float(step)})
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not stop.is_set() or reads < 5:
        frame = collector.to_dataframe()
        if not frame.empty:
            # record_step is atomic: never "a" without "b" at a step.
            assert (frame["a"] == -frame["b"]).all()
        collector.get_all_stats()
        collector.get_moving_averages()
        reads += 1
    thread.join()

    assert not errors
    assert collector.get_history("a").values.size == 500
    assert collector.total_steps == 3000


# -------------------------------------------------------------- seed usage


def test_seed_direct_stats_collection_example_runs(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)

    # Initialize
    stats = ComprehensiveStatsCollector(output_dir=Path("./stats"), max_history=10000)

    # Record metrics
    stats.record_metric("loss", 0.5, step=100)
    stats.record_metric("reward", 0.8, step=100)

    # Get statistics
    loss_stats = stats.get_metric_stats("loss")
    print(f"Loss mean: {loss_stats['mean']:.4f}")

    # Get moving averages
    averages = stats.get_moving_averages(window=10)

    # Export to JSON
    stats.export_to_json()

    # Custom metrics (seed: "Advanced Features")
    value, step = 0.25, 101
    stats.record_metric("custom/my_metric", value, step)

    # Reduce history size (seed: "Troubleshooting")
    stats_collector = ComprehensiveStatsCollector(max_history=1000)  # Reduce from 10000

    assert capsys.readouterr().out == "Loss mean: 0.5000\n"
    assert averages == {"loss": 0.5, "reward": 0.8}
    assert len(list((tmp_path / "stats").glob("stats_export_*.json"))) == 1
    assert stats_collector.output_dir == Path("./stats")


# ------------------------------------------------------------ atomic files


def test_atomic_write_creates_parents_and_replaces_content(tmp_path) -> None:
    target = tmp_path / "a" / "b" / "summary.json"
    assert atomic_write_text(target, "first") == target
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert leftovers(target.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_crash_inside_atomic_path_keeps_previous_file(tmp_path) -> None:
    target = tmp_path / "metrics_history.csv"
    target.write_text("step,loss\n0,0.5\n")

    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".csv"
        tmp.write_text("step,loss\n0,0.5\n1,")  # half a file
        raise RuntimeError("disk on fire")

    assert target.read_text() == "step,loss\n0,0.5\n"
    assert leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["metrics_history.csv"]


def test_crash_mid_csv_export_keeps_previous_export(collector, rng, monkeypatch) -> None:
    fill(collector, rng, 10)
    path = collector.export_to_csv()
    before = path.read_bytes()
    fill(collector, rng, 20)

    def disk_full(fd: int) -> None:  # the data is written, it cannot reach the disk
        raise OSError("No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        collector.export_to_csv()

    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


def test_failing_json_serialiser_keeps_previous_export(collector, rng, monkeypatch) -> None:
    fill(collector, rng, 10)
    path = collector.export_to_json(collector.output_dir / "stats.json")
    before = path.read_text()

    def broken_dumps(*args, **kwargs):
        raise TypeError("Object of type mx.array is not JSON serializable")

    monkeypatch.setattr(json, "dumps", broken_dumps)
    with pytest.raises(TypeError):
        collector.export_to_json(path)

    assert path.read_text() == before
    assert leftovers(path.parent) == []
