"""StepRecorder on its own: what one step stores, buffers, refuses and hands on.

The recorder is the training thread's side of the monitor; these tests drive
it directly (no endpoint, no worker) and read back what the instruments and
the sinks would read.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from collections.abc import Callable

import numpy as np
import pytest

from mlx_otel.catalog import ERROR_KINDS
from mlx_otel.errors import ErrorLedger
from mlx_otel.exporter.mlx_memory import MemoryProfiler
from mlx_otel.pipeline.recorder import StepRecorder
from mlx_otel.pipeline.step_arguments import MISSING, STEP_ARGUMENTS
from mlx_otel.records import TrainerReport


def make_recorder(
    *, max_custom: int = 4, max_records: int = 64, read_memory: bool = False, strict: bool = False
) -> tuple[StepRecorder, ErrorLedger]:
    ledger = ErrorLedger(ERROR_KINDS)
    recorder = StepRecorder(
        ledger=ledger, profiler=MemoryProfiler(reset_mlx_peak=False), max_custom=max_custom,
        max_records=max_records, read_memory=read_memory, strict=strict, started=100.0,
    )  # fmt: skip
    return recorder, ledger


def errors(ledger: ErrorLedger) -> dict[str, int]:
    return {kind: count for kind, count in ledger.counts().items() if count}


class Folded:
    """Where fold() puts samples: every array it was handed, per histogram."""

    def __init__(self) -> None:
        self.rewards: list[float] = []
        self.durations: list[float] = []
        self.completion_lengths: list[float] = []

    def into(self) -> dict[str, Callable[[np.ndarray], None]]:
        return {
            "rewards": lambda a: self.rewards.extend(a.tolist()),
            "durations": lambda a: self.durations.extend(a.tolist()),
            "completion_lengths": lambda a: self.completion_lengths.extend(a.tolist()),
        }


def test_the_declared_keywords_are_exactly_the_ones_record_pops() -> None:
    source = textwrap.dedent(inspect.getsource(StepRecorder.record))
    popped = {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "pop"
        and isinstance(node.args[0], ast.Constant)
    }
    assert popped == {"step", *(a.name for a in STEP_ARGUMENTS)}


def test_a_step_stores_its_values_under_their_keys() -> None:
    recorder, ledger = make_recorder()
    recorder.record(3, {
        "loss": 0.5, "reward": 0.75, "grad_norm": np.float32(2.0), "learning_rate": 1e-3,
        "memory_allocated_mb": 10.0, "thinking_tokens": 5, "answer_tokens": 2,
        "step_time": 0.25,
    })  # fmt: skip
    (record,) = recorder.drain()
    assert record.step == 3
    assert record.values == {
        "loss": 0.5, "reward_mean": 0.75, "grad_norm": 2.0, "learning_rate": 1e-3,
        "memory_allocated_mb": 10.0, "thinking_tokens": 5, "answer_tokens": 2, "step_time": 0.25,
    }  # fmt: skip
    assert record.duration == 0.25 and record.custom == {} and record.memory is None
    recorder.refresh_view()
    assert recorder.value("loss") == 0.5 and recorder.value("reward_mean") == 0.75
    assert recorder.value("steps") == 1 and recorder.value("step") == 3
    assert recorder.series("tokens") == {"thinking": 5, "answer": 2}
    assert errors(ledger) == {}


def test_before_any_step_the_last_step_time_is_the_start() -> None:
    recorder, _ = make_recorder()
    recorder.refresh_view()
    assert recorder.value("step_timestamp") == 100.0 and recorder.value("loss") is None


def test_token_counts_add_up_over_steps() -> None:
    recorder, _ = make_recorder()
    for step in range(4):
        recorder.record(step, {"thinking_tokens": 10, "answer_tokens": np.int64(step)})
    assert recorder.series("tokens") == {"thinking": 40, "answer": 6}


def test_step_may_be_given_by_keyword_and_is_required() -> None:
    recorder, _ = make_recorder()
    recorder.record(MISSING, {"step": 7, "loss": 1.0})
    assert [r.step for r in recorder.drain()] == [7]
    with pytest.raises(TypeError, match="needs the step"):
        recorder.record(MISSING, {"loss": 1.0})


def test_custom_metrics_are_sanitised_admitted_up_to_the_cap_and_counted_once() -> None:
    recorder, ledger = make_recorder(max_custom=2)
    recorder.record(0, {"Entropy Bonus!": 0.5, "beta": np.float64(0.1), "third": 3.0})
    recorder.record(1, {"third": 4.0, "beta": 0.2})
    first, second = recorder.drain()
    assert first.custom == {"entropy_bonus": 0.5, "beta": 0.1}
    assert second.custom == {"beta": 0.2}
    assert errors(ledger) == {"custom_metric_cap": 1}  # "third", once
    recorder.refresh_view()
    assert recorder.series("custom") == {"entropy_bonus": 0.5, "beta": 0.2}


def test_values_that_are_not_numbers_are_counted_and_left_out() -> None:
    recorder, ledger = make_recorder()
    recorder.record("seven", {
        "loss": "0.5", "reward": None, "thinking_tokens": -3, "answer_tokens": 2.5,
        "rewards": "many", "custom_thing": [1.0, 2.0], "grad_norm": float("nan"),
    })  # fmt: skip
    (record,) = recorder.drain()
    assert record.step == 0  # the steps counted so far stand in for a step that is no number
    assert math.isnan(record.values["grad_norm"])  # NaN is a value, not garbage
    assert "loss" not in record.values and "reward_mean" not in record.values
    assert record.custom == {} and record.rewards is None
    # loss, reward, answer_tokens, rewards, custom_thing, step
    assert errors(ledger) == {"invalid_value": 6, "negative_count": 1}


def test_strict_raises_on_a_value_that_is_not_a_number() -> None:
    recorder, _ = make_recorder(strict=True)
    with pytest.raises(ValueError, match="loss='x' is not recorded"):
        recorder.record(0, {"loss": "x"})


def test_rewards_and_durations_are_folded_exactly_non_finite_ones_counted() -> None:
    recorder, ledger = make_recorder(max_records=4)
    folded = Folded()
    recorder.fold_into(folded.into())
    expected: list[float] = []
    for step in range(20):  # five times the buffer bound: full buffers fold in place
        rewards = [step / 10, float("nan"), 1.0]
        recorder.record(step, {"rewards": rewards, "step_time": 0.5})
        expected += [step / 10, 1.0]
    recorder.record(20, {"rewards": np.array([2.0, np.inf]), "step_time": -1.0})
    recorder.fold()
    assert sorted(folded.rewards) == sorted([*expected, 2.0])
    assert folded.durations == [0.5] * 20  # the negative step_time is left out
    assert errors(ledger) == {"non_finite": 21, "invalid_value": 1}
    assert ledger.dropped() == {"step_record": 17}  # the record queue is bounded; samples not


def test_a_trainer_report_stores_values_labelled_series_and_custom_metrics() -> None:
    recorder, ledger = make_recorder(max_custom=2)
    recorder.record_report(TrainerReport(
        5, values={"loss": 1.5, "kl": np.float32(0.25), "validation_step": 4},
        labelled={"clip_ratio": {"low": 0.1, "high": 0.2, "total": 0.3}},
        custom={"train_chosen_reward": 0.5},
    ))  # fmt: skip
    (record,) = recorder.drain()
    assert record.step == 5
    assert record.values == {"loss": 1.5, "kl": 0.25, "validation_step": 4.0}
    assert record.labelled == {"clip_ratio": {"low": 0.1, "high": 0.2}}  # the cap of 2
    assert record.custom == {"train_chosen_reward": 0.5}
    assert errors(ledger) == {"custom_metric_cap": 1}
    recorder.refresh_view()
    assert recorder.value("kl") == 0.25
    assert recorder.series("clip_ratio") == {"low": 0.1, "high": 0.2}


def test_labelled_series_keep_their_latest_value_per_label_across_reports() -> None:
    recorder, _ = make_recorder()
    recorder.record_report(TrainerReport(1, labelled={"reward_function_mean": {"a": 1.0}}))
    recorder.drain()  # applied to the latest values
    recorder.record_report(TrainerReport(2, labelled={"reward_function_mean": {"b": 2.0}}))
    recorder.refresh_view()  # the second one is still queued
    assert recorder.series("reward_function_mean") == {"a": 1.0, "b": 2.0}


def test_a_trainer_report_counts_what_is_not_a_number_and_names_outside_the_catalogue() -> None:
    recorder, ledger = make_recorder()
    recorder.record_report(TrainerReport(1, values={"kl": "x", "loss": 2.0},
                                         labelled={"clip_ratio": {"low": None, "": 1.0}}))  # fmt: skip
    (record,) = recorder.drain()
    assert record.values == {"loss": 2.0} and record.labelled == {}
    assert errors(ledger) == {"invalid_value": 3}  # kl, clip_ratio low, the empty label
    recorder.record_report(TrainerReport(2, values={"not_a_metric": 1.0}))
    recorder.record_report(TrainerReport(3, labelled={"kl": {"x": 1.0}}))  # kl has no label
    assert errors(ledger) == {"invalid_value": 5} and recorder.pending == 0
    strict, _ = make_recorder(strict=True)
    with pytest.raises(ValueError, match="not_a_metric"):
        strict.record_report(TrainerReport(1, values={"not_a_metric": 1.0}))


def test_reports_are_steps_timed_by_the_interval_between_them() -> None:
    recorder, _ = make_recorder()
    folded = Folded()
    recorder.fold_into(folded.into())
    recorder.record_report(TrainerReport(5, values={"loss": 1.0}))
    recorder.record_report(TrainerReport(10, values={"loss": 0.5}))
    first, second = recorder.drain()
    assert first.duration is None and second.duration is not None and second.duration >= 0
    recorder.fold()
    assert folded.durations == [second.duration] and recorder.steps == 2


def test_drain_hands_steps_over_in_order_and_at_most_the_limit() -> None:
    recorder, _ = make_recorder()
    for step in range(10):
        recorder.record(step, {"loss": float(step)})
    assert [r.step for r in recorder.drain(limit=4)] == [0, 1, 2, 3]
    assert recorder.pending == 6
    assert [r.values["loss"] for r in recorder.drain()] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert recorder.drain() == []


def test_the_record_queue_drops_its_oldest_steps_beyond_the_bound() -> None:
    recorder, ledger = make_recorder(max_records=3)
    for step in range(5):
        recorder.record(step, {})
    assert [r.step for r in recorder.drain()] == [2, 3, 4]
    assert ledger.dropped() == {"step_record": 2} and recorder.steps == 5


def test_memory_is_read_at_each_step_boundary() -> None:
    recorder, _ = make_recorder(read_memory=True)
    recorder.record(0, {})
    (record,) = recorder.drain()
    assert record.memory is not None
    assert record.memory.active_bytes >= 0 and record.memory.peak_bytes >= 0
    assert recorder.step_peak == record.memory.peak_bytes


def test_series_set_outside_steps_are_replaced_whole() -> None:
    recorder, _ = make_recorder()
    recorder.set_series("layer_grad_norm", {"a": 1.0, "b": 2.0})
    recorder.set_series("layer_grad_norm", {"c": 3.0})
    assert recorder.series("layer_grad_norm") == {"c": 3.0}




def test_a_step_stores_trainer_metrics_passed_by_their_keys_not_as_custom() -> None:
    recorder, ledger = make_recorder(max_custom=2)
    recorder.record(3, {
        "loss": 1.0, "reward_std": 0.25, "validation_loss": np.float32(2.5),
        "reward_function_mean": {"format": 0.3, "answer": 0.5},
        "generated_tokens": {"mean": "x"}, "iterations_per_second": [1, 2], "other": 1.0,
    })  # fmt: skip
    (record,) = recorder.drain()
    assert record.values["reward_std"] == 0.25 and record.values["validation_loss"] == 2.5
    assert record.labelled == {"reward_function_mean": {"format": 0.3, "answer": 0.5}}
    assert record.custom == {"other": 1.0}  # the only custom metric
    assert errors(ledger) == {"invalid_value": 2}  # generated_tokens mean, iterations_per_second
    recorder.refresh_view()
    assert recorder.value("reward_std") == 0.25
    assert recorder.series("reward_function_mean") == {"format": 0.3, "answer": 0.5}
    strict, _ = make_recorder(strict=True)
    with pytest.raises(ValueError, match="reward_function_std"):
        strict.record(1, {"reward_function_std": 0.5})  # labelled: needs a mapping
# -- RL completions ----------------------------------------------------------------


def test_completions_are_copied_on_the_call_and_computed_off_it() -> None:
    recorder, ledger = make_recorder()
    folded = Folded()
    recorder.fold_into(folded.into())
    rewards, lengths = [1.0, 1.0, 0.0, 1.0], [10, 20, 30, 40]
    correct, thinking = [True, True, False, True], [5, 0, 7, 1]
    recorder.record(0, {"rewards": rewards, "group_size": 2, "completion_lengths": lengths,
                        "correct": correct, "thinking_tokens": thinking,
                        "answer_tokens": np.array([1, 2, 0, 3]), "entropy": 0.5})  # fmt: skip
    # The loop reuses its lists for the next step: the step keeps what it was given.
    rewards[:], lengths[:], correct[:], thinking[:] = [0.0] * 4, [99] * 4, [False] * 4, [9] * 4
    (record,) = recorder.drain()
    assert record.values["group_size"] == 2 and record.values["entropy"] == 0.5
    assert record.values["thinking_tokens"] == 13 and record.values["answer_tokens"] == 6
    assert record.labelled["zero_std_groups_ratio"] == {"solved": 0.5, "unsolved": 0.0, "tied": 0.0}
    assert record.labelled["completion_length_mean"] == {"true": 70 / 3, "false": 30.0}
    assert record.values["unclosed_thinking_ratio"] == 0.25
    recorder.fold()
    assert folded.completion_lengths == [10, 20, 30, 40]
    assert recorder.series("tokens") == {"thinking": 13, "answer": 6}
    assert errors(ledger) == {}


def test_a_scrape_and_the_worker_compute_a_step_once_and_count_its_problems_once() -> None:
    recorder, ledger = make_recorder()
    recorder.record(0, {"rewards": [1.0, 1.0, 1.0], "group_size": 2, "loss": 1.0})
    recorder.refresh_view()  # the scrape computes the queued step and counts its problem
    assert errors(ledger) == {"invalid_value": 1}
    recorder.refresh_view()
    (record,) = recorder.drain()
    assert errors(ledger) == {"invalid_value": 1}  # not again
    assert "group_size" not in record.values and "zero_std_groups_ratio" not in record.labelled


def test_anomalies_are_scored_once_per_step_as_the_worker_drains() -> None:
    recorder, _ = make_recorder(max_records=512)
    for step in range(150):
        recorder.record(step, {"grad_norm": 1.0})
        recorder.refresh_view()  # scrapes in between do not score
    recorder.record(150, {"grad_norm": 100.0})
    for _ in range(3):
        recorder.refresh_view()
    records = recorder.drain()
    assert [r.step for r in records if "anomaly_score" in r.labelled][0] == 20
    assert records[-1].labelled["anomalies"] == {"grad_norm": 1}
    assert records[-1].labelled["anomaly_score"]["grad_norm"] > 6
    recorder.refresh_view()
    assert recorder.series("anomalies") == {"grad_norm": 1}


def test_a_report_with_completions_is_recorded_as_the_same_keywords() -> None:
    from mlx_otel.records import Completions

    by_keyword, _ = make_recorder()
    by_report, _ = make_recorder()
    folded = [Folded(), Folded()]
    by_keyword.fold_into(folded[0].into())
    by_report.fold_into(folded[1].into())
    by_keyword.record(3, {"rewards": [0.5, 0.5], "group_size": 2, "completion_lengths": [4, 8],
                          "truncated": [False, True], "step_time": 1.0})  # fmt: skip
    by_report.record_report(TrainerReport(3, completions=Completions(
        [0.5, 0.5], group_size=2, lengths=[4, 8], truncated=[False, True])))  # fmt: skip
    ours, theirs = by_keyword.drain()[0], by_report.drain()[0]
    assert theirs.labelled == ours.labelled == {
        "zero_std_groups_ratio": {"solved": 0.0, "unsolved": 0.0, "tied": 1.0}}
    assert theirs.values == {"group_size": 2, "hit_max_tokens_ratio": 0.5}
    by_keyword.fold()
    by_report.fold()
    assert folded[0].rewards == folded[1].rewards == [0.5, 0.5]
    assert folded[0].completion_lengths == folded[1].completion_lengths == [4, 8]


def test_completion_lengths_are_folded_exactly_under_a_flood() -> None:
    recorder, ledger = make_recorder(max_records=4)
    folded = Folded()
    recorder.fold_into(folded.into())
    expected: list[float] = []
    for step in range(50):  # twelve times the buffer bound: full buffers fold in place
        recorder.record(step, {"completion_lengths": [step, step + 1], "step_time": 0.5})
        expected += [step, step + 1]
    recorder.fold()
    assert sorted(folded.completion_lengths) == sorted(expected)
    assert ledger.dropped() == {"step_record": 46}  # the record queue is bounded; samples not
    assert errors(ledger) == {}
