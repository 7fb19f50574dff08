"""The worker's batch paths give what their step-by-step forms give.

The worker takes thousands of steps at once; its batch forms (spike scores
of a whole drain, the statistics gathered from a record's parts, step counts
with NumPy, memory readings added together) must be indistinguishable from
taking the steps one at a time, including NaN, warm-up, steps that repeat or
go back, and steps of several shapes.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.numbers.anomaly import AnomalyDetector, RobustZScore
from mlx_otel.numbers.columns import Columns
from mlx_otel.numbers.stats import ComprehensiveStatsCollector
from mlx_otel.pipeline.samples import SampleBuffers
from mlx_otel.pipeline.sink import step_values
from mlx_otel.pipeline.statistics_sink import StatisticsSink
from mlx_otel.records import MemoryReading, StepRecord


def _series(count: int, rng: np.random.Generator) -> list[float]:
    values = list(rng.normal(1.0, 0.1, size=count))
    for i in (40, 41, 170):  # spikes, one right after another
        values[i] = 50.0
    values[90] = math.nan
    values[91] = math.inf
    values[5] = -math.inf  # during warm-up
    return [float(v) for v in values]


@pytest.mark.parametrize("window", [10, 100, 3000])
@pytest.mark.parametrize("batch", [1, 7, 64, 500])
def test_scores_of_a_batch_are_the_scores_one_by_one(window: int, batch: int) -> None:
    values = _series(500, np.random.default_rng(window + batch))
    one, many = RobustZScore(window), RobustZScore(window)
    expected = [one.update(v) for v in values]
    got: list[float | None] = []
    for start in range(0, len(values), batch):
        got.extend(many.update_many(values[start : start + batch]))
    assert repr(got) == repr(expected)  # None, inf and every float exactly
    assert many.recomputed == one.recomputed
    assert expected[40] is not None and expected[40] > 100 and expected[90] == math.inf


def test_a_drain_of_rows_counts_as_rows_one_by_one() -> None:
    rng = np.random.default_rng(5)
    rows: list[dict[str, float]] = []
    for step in range(300):
        row = {"loss": float(rng.normal(1, 0.1))}
        if step >= 30 and step % 3 == 0:  # a metric first seen later, on some steps
            row["kl"] = float(rng.normal(0.1, 0.01))
        if step in (120, 121, 250):
            row["loss"] = 80.0
        if step == 200:
            row["loss"] = math.nan
        rows.append(row)
    one = AnomalyDetector(["kl", "loss", "entropy"], window=50, threshold=6.0)
    many = AnomalyDetector(["kl", "loss", "entropy"], window=50, threshold=6.0)
    expected = []
    for row in rows:
        scores = one.observe(row)
        expected.append((scores or None, dict(one.counts) if scores else None))
    got = []
    for start in range(0, len(rows), 37):
        scores, counts = many.observe_many(rows[start : start + 37])
        got.extend(zip(scores, [None if c is None else dict(c) for c in counts], strict=True))
    assert repr(got) == repr(expected)
    assert list(many.counts.items()) == list(one.counts.items()) == [("loss", 4), ("kl", 0)]


def _records(count: int) -> list[StepRecord]:
    records = []
    for i in range(count):
        step = i if i < 60 else i - 20  # a resumed run: steps go back and repeat
        values = {"loss": 1.0 / (i + 1), "step_time": 0.01}
        if i % 4 == 0:
            values["validation_reward"] = 0.5 + i
        custom = {"lr_scale": float(i)} if i % 2 else {}
        labelled = {"anomaly_score": {"loss": float(i)}} if i > 10 else {}
        if i % 5 == 0:
            labelled = {**labelled, "clip_ratio": {"low": 0.1, "high": 0.2}}
        memory = MemoryReading(2**20 * i, 2**21, 2**22) if i % 3 else None
        records.append(StepRecord(step, 1000.0 + i, values, custom, None, 0.01, memory, labelled))
    return records


def _as_one_by_one(records: list[StepRecord]) -> ComprehensiveStatsCollector:
    stats = ComprehensiveStatsCollector(output_dir="unused", max_history=50)
    for record in records:  # as the sink took them before batches: a merged dict per step
        stats.record_step(record.step, step_values(record, memory=True), record.timestamp)
    return stats


def test_the_statistics_sink_gathers_a_records_parts_as_its_steps_one_by_one(tmp_path) -> None:
    records = _records(100)
    profiler = MemoryProfiler(history_size=30)
    sink = StatisticsSink(output_dir=tmp_path, max_history=50, profiler=profiler,
                          ledger=ErrorLedger())  # fmt: skip
    for start in range(0, len(records), 33):
        sink.handle(records[start : start + 33])
    expected = _as_one_by_one(records)
    got = sink.stats
    assert got.metric_names == expected.metric_names
    for name in expected.metric_names:
        a, b = got.get_history(name), expected.get_history(name)
        assert (a.values.tolist(), a.steps.tolist(), a.timestamps.tolist()) == (
            b.values.tolist(), b.steps.tolist(), b.timestamps.tolist()), name  # fmt: skip
    assert got.total_steps == expected.total_steps == 80  # steps 0..79, the repeats not twice
    assert sink.last_step == 79
    # The profiler keeps its newest readings, as added one by one.
    kept = [(s.step, s.mlx_allocated_mb) for s in profiler.snapshots()]
    with_memory = [r for r in records if r.memory is not None][-profiler.history_capacity :]
    assert kept == [(r.step, r.memory.active_bytes / 2**20) for r in with_memory]


def test_a_value_that_is_no_number_sends_the_records_value_by_value(tmp_path) -> None:
    records = _records(5)
    bad = records[2]
    records[2] = bad._replace(values={**bad.values, "loss": "0.3"})
    ledger = ErrorLedger()
    sink = StatisticsSink(output_dir=tmp_path, max_history=50, profiler=MemoryProfiler(),
                          ledger=ledger)  # fmt: skip
    sink.handle(records)
    assert sink.stats.get_history("loss").steps.tolist() == [0, 1, 3, 4]
    assert sink.stats.get_history("custom/lr_scale").values.tolist() == [1.0, 3.0]
    assert sink.stats.total_steps == 5


@pytest.mark.parametrize("steps", [[3, 1, 2, 5, 5, 4, 9], [7], [0, 0, 0], [10, 11, 2, 12]])
def test_steps_counted_a_batch_at_a_time_as_one_by_one(steps: list[int]) -> None:
    for before in ([], [6]):
        one = ComprehensiveStatsCollector(output_dir="unused")
        many = ComprehensiveStatsCollector(output_dir="unused")
        for step in before:
            one.record_step(step, {"x": 1.0}, 5.0)
            many.record_step(step, {"x": 1.0}, 5.0)
        stamps = [float(10 - i) for i in range(len(steps))]  # not in order either
        for step, stamp in zip(steps, stamps, strict=True):
            one.record_step(step, {"x": 1.0}, stamp)
        columns = Columns(steps, stamps)
        assert columns.add([{"x": 1.0}] * len(steps))
        assert many.record_columns(columns) == []
        assert many.total_steps == one.total_steps
        assert many.summary() == one.summary()


def test_readings_added_together_are_the_readings_added_one_by_one() -> None:
    one, many = MemoryProfiler(history_size=4), MemoryProfiler(history_size=4)
    now = time.time()
    readings = [(i, now + i, 2**20 * i, 2**21, 2**22 + i) for i in range(10)]
    for step, stamp, active, cache, peak in readings:
        one.add_reading(step=step, timestamp=stamp, active_bytes=active, cache_bytes=cache,
                        peak_bytes=peak)  # fmt: skip
    many.add_readings(readings)
    many.add_readings([])
    assert many.snapshots() == one.snapshots()
    assert many.latest == one.latest and many.latest is not None
    assert many.leak_report() == one.leak_report()
    assert [s.step for s in many.snapshots()] == list(range(max(0, 10 - many.history_capacity), 10))


@pytest.mark.parametrize("bad", [None, "0.5", 10**400, {"a": 1.0}])
def test_copies_of_one_length_fold_together_and_a_bad_one_alone(bad: object) -> None:
    ledger = ErrorLedger()
    samples = SampleBuffers(ledger=ledger, max_samples=1_000)
    folded: list[np.ndarray] = []
    samples.fold_into({"rewards": folded.append})
    good = [tuple(float(i + j) for j in range(4)) for i in range(50)]
    for chunk in good[:20]:
        samples.add(samples.rewards, chunk, "rewards")
    samples.add(samples.rewards, (0.5, bad, 0.25, 1.0), "rewards")  # a copied list, unchecked
    samples.add(samples.rewards, np.array([7.0, math.nan]), "rewards")  # an array, not a copy
    for chunk in good[20:]:
        samples.add(samples.rewards, chunk, "rewards")
    samples.fold()
    values = np.concatenate(folded)
    expected = [v for chunk in good for v in chunk] + [7.0]
    assert sorted(values.tolist()) == sorted(expected)  # a histogram's order does not matter
    assert ledger.counts().get("invalid_value") == 1  # the bad copy, named once
    assert ledger.counts().get("non_finite") == 1
    assert not samples.rewards
