"""A batch of steps recorded at once is the same history as its steps one by one.

The monitor's worker hands the statistics thousands of steps at a time
(``record_steps``, copied a metric at a time); readers must not be able to
tell it from ``record_step`` called per step: values, steps, timestamps,
NaN counts, the distinct step count, ring-buffer wrap-around, steps of
different shapes in one batch, and the value-by-value path for values that
are not plain numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlx_otel.numbers.columns import gather_columns
from mlx_otel.numbers.stats import ComprehensiveStatsCollector


def _rows(count: int, rng: np.random.Generator) -> list[tuple[int, dict[str, float], float]]:
    rows = []
    for step in range(count):
        values = {"loss": float(rng.normal()), "reward": float(rng.uniform())}
        if step % 7 == 0:  # a validation every 7 steps: another shape of step
            values["validation_reward"] = float(rng.uniform())
        if step % 5 == 0:  # a key first, then the others: a third shape
            values = {"kl": float(rng.uniform()), **values}
        if step == 11:
            values["loss"] = math.nan
        if step % 3 == 0:
            values["tokens"] = step  # ints are numbers too
        rows.append((step, values, 1_000.0 + step))
    return rows


def _one_by_one(rows, max_history: int) -> ComprehensiveStatsCollector:
    stats = ComprehensiveStatsCollector(output_dir="unused", max_history=max_history)
    for row in rows:
        assert stats.record_step(*row) == []
    return stats


def _histories(stats: ComprehensiveStatsCollector) -> dict[str, tuple[list, list, list, int]]:
    return {
        h.name: (h.values.tolist(), h.steps.tolist(), h.timestamps.tolist(), h.non_finite)
        for h in stats.histories()
    }


@pytest.mark.parametrize("max_history", [10, 64, 1_000])
@pytest.mark.parametrize("batch", [1, 13, 200])
def test_batches_give_the_history_of_steps_one_by_one(max_history: int, batch: int) -> None:
    rows = _rows(200, np.random.default_rng(3))
    batched = ComprehensiveStatsCollector(output_dir="unused", max_history=max_history)
    for start in range(0, len(rows), batch):
        assert batched.record_steps(rows[start : start + batch]) == []
    expected = _one_by_one(rows, max_history)
    got, want = _histories(batched), _histories(expected)
    assert got.keys() == want.keys()
    for name in want:  # NaN != NaN: compare as text
        assert repr(got[name]) == repr(want[name]), name
    assert batched.total_steps == expected.total_steps == 200
    assert batched.non_finite_count("loss") == 1
    assert batched.non_finite_total == 1
    assert batched.get_metric_stats("reward") == expected.get_metric_stats("reward")


def test_a_value_that_is_not_a_plain_number_sends_the_batch_value_by_value() -> None:
    rows = [(0, {"loss": 0.5}, 1.0), (1, {"loss": "0.4", "reward": np.float32(0.25)}, 2.0)]
    assert gather_columns(rows) is None
    stats = ComprehensiveStatsCollector(output_dir="unused")
    assert stats.record_steps(rows) == ["loss"]  # the text is refused and named
    assert stats.get_history("loss").values.tolist() == [0.5]
    assert stats.get_history("reward").values.tolist() == [0.25]


def test_names_beyond_max_metrics_are_refused_and_named() -> None:
    stats = ComprehensiveStatsCollector(output_dir="unused", max_metrics=2)
    rejected = stats.record_steps([(0, {"a": 1.0, "b": 2.0, "c": 3.0}, 1.0)])
    assert rejected == ["c"]
    assert stats.metric_names == ["a", "b"]
