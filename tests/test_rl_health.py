"""RL health: what a GRPO step's completions make the monitor serve, exactly.

Known groups go in through ``log_training_step`` (and a trainer's
``Completions``); the values are read back where a user reads them: the
endpoint's exposition, the statistics, the CSV and the WandB keys. The
anomaly estimator and the bad inputs are checked on their own.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlx_otel.config import ConfigError, load_config
from mlx_otel.monitor import TrainingMonitor
from mlx_otel.numbers.anomaly import AnomalyDetector, RobustZScore
from mlx_otel.numbers.rl_health import rl_health
from mlx_otel.records import Completions, TrainerReport
from tests.conftest import parse_exposition, sample, scrape
from tests.wandb_records import read_run

# Four groups of four: all 1.0 (solved), all 0.0 (unsolved), all 0.5 (tied), mixed.
REWARDS = [1.0] * 4 + [0.0] * 4 + [0.5] * 4 + [1.0, 0.0, 1.0, 0.0]
CORRECT = [True] * 4 + [False] * 4 + [True, False, True, False] * 2
LENGTHS = [10, 20, 30, 40, 100, 200, 300, 400, 5, 6, 7, 8, 64, 64, 64, 20000]
TRUNCATED = [False] * 15 + [True]
THINKING = [50] * 16
ANSWER = [0, 0] + [10] * 14


def make_monitor(tmp_path: Path, **rl: object) -> TrainingMonitor:
    config = {
        "exporter": {"port": 0},
        "monitoring": {"output_dir": str(tmp_path / "outputs"), "generate_charts_every": 0},
        "rl": rl,
    }
    return TrainingMonitor(config, run_id="rl_run")


def served(monitor: TrainingMonitor) -> dict:
    assert monitor.endpoint is not None
    return parse_exposition(scrape(monitor.endpoint))


def rl_step(monitor: TrainingMonitor, step: int = 0, **extra: object) -> None:
    monitor.log_training_step(
        step, loss=0.5, reward=float(np.mean(REWARDS)), rewards=REWARDS, group_size=4,
        completion_lengths=LENGTHS, truncated=TRUNCATED, thinking_tokens=THINKING,
        answer_tokens=ANSWER, entropy=0.75, kl=0.125, **extra,
    )  # fmt: skip


def test_known_groups_by_reward_are_served_exactly(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)
    try:
        rl_step(monitor, validation_reward=0.625)
        before = served(monitor)  # before the worker drains: computed for the scrape
        assert monitor.flush()
        s = served(monitor)
    finally:
        monitor.cleanup()
    for samples in (before, s):
        ratio = "mlx_train_zero_std_groups_ratio"
        assert sample(samples, ratio, outcome="solved", run_id="rl_run") == 0.25
        assert sample(samples, ratio, outcome="unsolved") == 0.25
        assert sample(samples, ratio, outcome="tied") == 0.25
        assert sample(samples, "mlx_train_group_size") == 4
        assert sample(samples, "mlx_train_hit_max_tokens_ratio") == 1 / 16
        assert sample(samples, "mlx_train_unclosed_thinking_ratio") == 2 / 16
        assert sample(samples, "mlx_train_entropy") == 0.75
        assert sample(samples, "mlx_train_kl") == 0.125
        assert sample(samples, "mlx_train_validation_reward") == 0.625
    # Without correct= there is no split of lengths by correctness.
    assert not [k for k in s if k[0] == "mlx_train_completion_length_mean_tokens"]
    # One observation per completion, in token buckets.
    assert sample(s, "mlx_train_completion_length_tokens_count") == 16
    assert sample(s, "mlx_train_completion_length_tokens_sum") == sum(LENGTHS)
    assert sample(s, "mlx_train_completion_length_tokens_bucket", le="16.0") == 5
    assert sample(s, "mlx_train_completion_length_tokens_bucket", le="64.0") == 11
    assert sample(s, "mlx_train_completion_length_tokens_bucket", le="16384.0") == 15
    assert sample(s, "mlx_train_completion_length_tokens_bucket", le="+Inf") == 16
    # Per-completion token lists add up in the counter.
    assert sample(s, "mlx_train_tokens_total", kind="thinking") == 50 * 16
    assert sample(s, "mlx_train_tokens_total", kind="answer") == 10 * 14
    assert sample(s, "mlx_train_reward_count") == 16
    assert sample(s, "mlx_otel_errors_total", kind="invalid_value") == 0


def test_correct_decides_the_outcome_and_splits_lengths(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)
    try:
        rl_step(monitor, correct=CORRECT)
        assert monitor.flush()
        s = served(monitor)
    finally:
        monitor.cleanup()
    ratio = "mlx_train_zero_std_groups_ratio"
    # The all-0.5 group is half right: tied; the others follow correct=.
    assert sample(s, ratio, outcome="solved") == 0.25
    assert sample(s, ratio, outcome="unsolved") == 0.25
    assert sample(s, ratio, outcome="tied") == 0.25
    mean = "mlx_train_completion_length_mean_tokens"
    right = [n for n, c in zip(LENGTHS, CORRECT, strict=True) if c]
    wrong = [n for n, c in zip(LENGTHS, CORRECT, strict=True) if not c]
    assert sample(s, mean, correct="true") == pytest.approx(sum(right) / len(right))
    assert sample(s, mean, correct="false") == pytest.approx(sum(wrong) / len(wrong))


def test_the_config_gives_the_group_size_and_thresholds(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path, group_size=2, solved_reward=0.5, unsolved_reward=0.25)
    try:
        # Groups of two: (1, 1) solved, (0.5, 0.5) solved at 0.5, (0.3, 0.3) tied, (0, 0)
        # unsolved, (1, 0) with signal. A plain step: no RL keyword but rewards.
        monitor.log_training_step(0, rewards=[1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.0, 0.0, 1.0, 0.0])
        assert monitor.flush()
        s = served(monitor)
    finally:
        monitor.cleanup()
    ratio = "mlx_train_zero_std_groups_ratio"
    assert sample(s, ratio, outcome="solved") == 0.4
    assert sample(s, ratio, outcome="unsolved") == 0.2
    assert sample(s, ratio, outcome="tied") == 0.2
    assert sample(s, "mlx_train_group_size") == 2


def test_without_a_group_size_lengths_are_served_and_groups_are_not(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)
    try:
        monitor.log_training_step(0, rewards=REWARDS, completion_lengths=LENGTHS,
                                  truncated=TRUNCATED, correct=CORRECT)  # fmt: skip
        assert monitor.flush()
        s = served(monitor)
    finally:
        monitor.cleanup()
    names = {name for name, _ in s}
    assert "mlx_train_zero_std_groups_ratio" not in names
    assert "mlx_train_group_size" not in names
    assert sample(s, "mlx_train_completion_length_tokens_count") == 16
    assert sample(s, "mlx_train_hit_max_tokens_ratio") == 1 / 16
    assert sample(s, "mlx_otel_errors_total", kind="invalid_value") == 0


def test_a_trainer_report_with_completions_is_the_same_step(tmp_path: Path) -> None:
    by_keyword, by_report = make_monitor(tmp_path / "a"), make_monitor(tmp_path / "b")
    try:
        rl_step(by_keyword, correct=CORRECT)
        by_report.record_report(TrainerReport(
            0, values={"loss": 0.5, "reward_mean": float(np.mean(REWARDS)), "kl": 0.125,
                       "entropy": 0.75},
            completions=Completions(
                REWARDS, group_size=4, lengths=LENGTHS, truncated=TRUNCATED, correct=CORRECT,
                thinking_tokens=THINKING, answer_tokens=ANSWER,
            ),
        ))  # fmt: skip
        assert by_keyword.flush() and by_report.flush()
        ours, theirs = served(by_keyword), served(by_report)
    finally:
        by_keyword.cleanup()
        by_report.cleanup()

    def rl(samples: dict) -> dict:
        prefixes = ("mlx_train_zero_std", "mlx_train_completion", "mlx_train_hit_max",
                    "mlx_train_unclosed", "mlx_train_group_size", "mlx_train_tokens",
                    "mlx_train_reward_", "mlx_train_entropy", "mlx_train_kl")  # fmt: skip
        return {k: v for k, v in samples.items() if k[0].startswith(prefixes)}

    assert rl(theirs) == rl(ours)
    assert len(rl(ours)) > 30


def test_rl_values_reach_statistics_csv_and_the_summary(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)
    try:
        for step in range(30):
            rl_step(monitor, step, correct=CORRECT, validation_reward=0.625)
        assert monitor.flush()
        stats = monitor.stats
        assert stats.get_metric_stats("zero_std_groups_ratio/solved")["last"] == 0.25
        assert stats.get_metric_stats("completion_length_mean/true")["count"] == 30
        assert stats.get_metric_stats("entropy")["mean"] == 0.75
        assert stats.get_metric_stats("validation_reward")["last"] == 0.625
        # Scores once 20 steps are known; a steady loss scores 0 and counts no anomaly.
        assert stats.get_metric_stats("anomaly_score/loss")["max"] == 0
        assert stats.get_metric_stats("anomalies/loss")["last"] == 0
        monitor.files.write_record()  # the summary and CSV the end of a run writes
    finally:
        monitor.cleanup()
    out = tmp_path / "outputs"
    frame = pd.read_csv(out / "training_metrics.csv")
    assert frame["zero_std_groups_ratio/tied"].tolist() == [0.25] * 30
    assert frame["unclosed_thinking_ratio"].tolist() == [2 / 16] * 30
    assert "rl/zero_std_groups_ratio/solved" not in frame.columns  # WandB names stay in WandB
    summary = json.loads((out / "monitoring_summary.json").read_text())
    assert summary["metrics"]["hit_max_tokens_ratio"]["final"] == 1 / 16
    assert summary["metrics"]["zero_std_groups_ratio/unsolved"]["mean"] == 0.25


def test_a_spike_after_steady_steps_is_one_anomaly_on_the_endpoint(tmp_path: Path) -> None:
    monitor = make_monitor(tmp_path)
    try:
        for step in range(150):
            monitor.log_training_step(step, grad_norm=1.0 + 0.01 * (step % 5), kl=0.01)
        monitor.log_training_step(150, grad_norm=100.0, kl=0.01)
        for step in range(151, 170):
            monitor.log_training_step(step, grad_norm=1.0 + 0.01 * (step % 5), kl=0.01)
        assert monitor.flush()
        s = served(monitor)
    finally:
        monitor.cleanup()
    assert sample(s, "mlx_train_anomalies_total", metric="grad_norm") == 1
    assert sample(s, "mlx_train_anomalies_total", metric="kl") == 0
    assert abs(sample(s, "mlx_train_anomaly_score", metric="grad_norm")) < 3
    assert sample(s, "mlx_train_anomaly_score", metric="kl") == 0  # steady: MAD 0, no inf


# -- the estimator on its own ----------------------------------------------------


def test_a_steady_noisy_series_scores_low() -> None:
    rng = np.random.default_rng(0)
    scores = RobustZScore(window=100)
    results = [scores.update(v) for v in 5.0 + rng.normal(0, 0.1, size=2000)]
    tail = np.array([r for r in results if r is not None])
    assert len(tail) == 2000 - 20
    assert np.abs(tail).max() < 6  # 2000 normal draws stay within about 4 sigma
    assert 0.8 < tail.std() < 1.2  # MAD * 1.4826 estimates sigma


def test_one_hundredfold_spike_after_150_steady_steps_counts_exactly_one() -> None:
    detector = AnomalyDetector(["grad_norm"], window=100, threshold=6.0)
    for _ in range(150):
        detector.observe({"grad_norm": 2.0})
    assert detector.observe({"grad_norm": 200.0})["grad_norm"] > 6
    for _ in range(300):
        assert abs(detector.observe({"grad_norm": 2.0})["grad_norm"]) <= 6
    assert detector.counts == {"grad_norm": 1}


def test_a_constant_series_and_zeros_never_score_infinite() -> None:
    for value in (0.0, 3.0, -7.5):
        scores = RobustZScore(window=50)
        results = [scores.update(value) for _ in range(100)]
        assert all(r == 0 for r in results[20:])
    # A 1% change of a perfectly steady value scores 1 (the relative floor).
    scores = RobustZScore(window=50)
    for _ in range(50):
        scores.update(10.0)
    assert scores.update(10.1) == pytest.approx(1.0)


def test_sparse_rewards_do_not_make_every_success_an_anomaly() -> None:
    # A hard task: reward 0 nearly always, 0.5 one step in four (MAD is 0).
    detector = AnomalyDetector(["reward_mean"], window=100, threshold=6.0)
    for step in range(1000):
        detector.observe({"reward_mean": 0.5 if step % 4 == 0 else 0.0})
    assert detector.counts == {"reward_mean": 0}


def test_non_finite_values_count_as_anomalies_and_stay_out_of_the_reference() -> None:
    detector = AnomalyDetector(["loss"], window=20, threshold=6.0)
    for _ in range(30):
        detector.observe({"loss": 1.0})
    assert detector.observe({"loss": math.nan})["loss"] == math.inf
    assert detector.observe({"loss": 1.0})["loss"] == 0
    assert detector.counts == {"loss": 1}


def test_the_window_is_bounded_and_the_reference_is_recomputed_rarely() -> None:
    scores = RobustZScore(window=1000)
    for i in range(100_000):
        scores.update(float(i % 7))
    assert len(scores) == 1000
    # About one recomputation per window/4 steps: O(1) amortised.
    assert scores.recomputed < 100_000 / 250 + 50


def test_a_steady_drift_scores_low() -> None:
    # KL grows through a healthy run: linearly here, a hundredfold over 2,000 steps.
    detector = AnomalyDetector(["kl"], window=100, threshold=6.0)
    scores = [detector.observe({"kl": 0.001 * (1 + step / 20)}).get("kl") for step in range(2000)]
    assert max(s for s in scores if s is not None) <= 2.05
    assert detector.counts == {"kl": 0}


# -- the numbers on their own ----------------------------------------------------


def test_the_three_outcomes_add_up_to_the_groups_without_signal() -> None:
    rng = np.random.default_rng(1)
    rewards = rng.choice([0.0, 0.5, 1.0], size=(50, 4), p=[0.6, 0.1, 0.3])
    health = rl_health(rewards.ravel(), group_size=4)
    assert health.zero_std is not None
    flat = (rewards.max(axis=1) == rewards.min(axis=1)).mean()
    assert sum(health.zero_std.values()) == pytest.approx(flat)


def test_a_group_holding_nan_has_signal() -> None:
    health = rl_health([math.nan, math.nan, 1.0, 1.0], group_size=2)
    assert health.zero_std == {"solved": 0.5, "unsolved": 0.0, "tied": 0.0}


# -- bad input -------------------------------------------------------------------

BAD = [
    ({"group_size": 3}, "group_size", "does not divide the 16 completions"),
    ({"group_size": 0}, "group_size", "positive integer"),
    ({"completion_lengths": LENGTHS[:-1]}, "completion_lengths", "has 15 entries"),
    ({"completion_lengths": [-1] + LENGTHS[1:]}, "completion_lengths", "not negative"),
    ({"truncated": [0] * 16}, "truncated", "expected booleans"),
    ({"correct": ["yes"] * 16}, "correct", "expected booleans"),
    ({"correct": CORRECT + [True]}, "correct", "has 17 entries"),
    ({"answer_tokens": ANSWER[:4]}, "answer_tokens", "has 4 entries"),
    ({"entropy": math.nan}, "entropy", "entropy is NaN"),
    ({"thinking_tokens": [-1] * 16}, "thinking_tokens", "cannot be negative"),
]


@pytest.mark.parametrize(("bad", "culprit", "reason"), BAD)
def test_bad_completions_are_counted_logged_once_and_the_rest_recorded(
    monitor: TrainingMonitor,
    caplog: pytest.LogCaptureFixture,
    bad: dict,
    culprit: str,
    reason: str,
) -> None:
    good = dict(rewards=REWARDS, group_size=4, completion_lengths=LENGTHS, truncated=TRUNCATED,
                correct=CORRECT, thinking_tokens=THINKING, answer_tokens=ANSWER, entropy=0.5)
    with caplog.at_level(logging.WARNING, logger="mlx_otel"):
        for step in range(3):
            monitor.log_training_step(step, loss=0.25, **{**good, **bad})
        assert monitor.flush()
    warnings = [r.getMessage() for r in caplog.records if culprit in r.getMessage()]
    assert len(warnings) == 1 and reason in warnings[0], warnings
    s = served(monitor)
    assert sample(s, "mlx_otel_errors_total", kind="invalid_value") + sample(
        s, "mlx_otel_errors_total", kind="negative_count"
    ) == 3
    assert sample(s, "mlx_train_loss") == 0.25  # the rest of the step is recorded
    assert sample(s, "mlx_train_reward_count") == 3 * 16
    if culprit != "truncated":
        assert sample(s, "mlx_train_hit_max_tokens_ratio") == 1 / 16
    if culprit not in ("group_size", "correct"):
        assert sample(s, "mlx_train_zero_std_groups_ratio", outcome="tied") == 0.25


def test_strict_monitors_raise_on_bad_completions(tmp_path: Path) -> None:
    config = {"exporter": {"port": 0}, "monitoring": {"output_dir": str(tmp_path)}}
    monitor = TrainingMonitor(config, run_id="strict", strict=True, serve=False)
    good = dict(rewards=REWARDS, group_size=4, completion_lengths=LENGTHS, truncated=TRUNCATED,
                correct=CORRECT, thinking_tokens=THINKING, answer_tokens=ANSWER)
    try:
        for bad, culprit, reason in BAD:
            with pytest.raises(ValueError, match=culprit) as raised:
                monitor.log_training_step(0, **{**good, **bad})
            assert reason in str(raised.value)
            completions = Completions(
                REWARDS, group_size=bad.get("group_size", 4),
                lengths=bad.get("completion_lengths", LENGTHS),
                truncated=bad.get("truncated", TRUNCATED), correct=bad.get("correct", CORRECT),
                thinking_tokens=bad.get("thinking_tokens", THINKING),
                answer_tokens=bad.get("answer_tokens", ANSWER),
            )  # fmt: skip
            report = TrainerReport(0, values={"entropy": bad.get("entropy", 0.5)},
                                   completions=completions)  # fmt: skip
            with pytest.raises(ValueError, match=culprit):
                monitor.record_report(report)
    finally:
        monitor.cleanup()


# -- configuration ---------------------------------------------------------------


def test_the_rl_section_loads_from_yaml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("rl:\n  group_size: 8\n  anomaly_metrics: [kl, entropy]\n")
    config = load_config(path, env={"MLX_OTEL_RL__ANOMALY_THRESHOLD": "4.5"})
    assert config.rl.group_size == 8 and config.rl.anomaly_threshold == 4.5
    assert config.rl.anomaly_metrics == ("kl", "entropy")
    assert load_config(None, env={}).rl.anomaly_window == 100


@pytest.mark.parametrize(
    ("rl", "message"),
    [
        ({"group_size": 0}, "rl.group_size"),
        ({"solved_reward": 0.0, "unsolved_reward": 0.5}, "must be below solved_reward"),
        ({"anomaly_metrics": ["los"]}, "rl.anomaly_metrics.*did you mean .loss."),
        ({"anomaly_window": 5}, "rl.anomaly_window"),
        ({"anomaly_threshold": 0}, "rl.anomaly_threshold"),
        ({"groupsize": 4}, "did you mean 'group_size'"),
    ],
)
def test_bad_rl_settings_are_refused_with_the_key_named(rl: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"rl": rl}, env={})


@pytest.mark.integration
def test_rl_values_reach_wandb_under_rl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    config = {
        "exporter": {"port": 0},
        "monitoring": {"output_dir": str(tmp_path), "generate_charts_every": 0,
                       "use_wandb": True, "wandb_mode": "offline", "wandb_finish_timeout": 60},
    }  # fmt: skip
    monitor = TrainingMonitor(config, run_id="rl_wandb", serve=False)
    try:
        for step in range(25):
            rl_step(monitor, step, correct=CORRECT)
    finally:
        monitor.finish_run()
    rows = read_run(tmp_path / "wandb").by_step()
    assert rows[0]["rl/zero_std_groups_ratio/solved"] == 0.25
    assert rows[0]["rl/completion_length_mean/false"] == pytest.approx(
        np.mean([n for n, c in zip(LENGTHS, CORRECT, strict=True) if not c]))
    assert rows[0]["rl/entropy"] == 0.75 and rows[0]["rl/kl"] == 0.125
    assert rows[0]["rl/hit_max_tokens_ratio"] == 1 / 16
    assert rows[24]["rl/anomaly_score/loss"] == 0 and rows[24]["rl/anomalies/loss"] == 0


def test_a_series_mostly_at_one_value_is_judged_by_the_range_it_has_shown() -> None:
    # A GRPO loss is exactly 0 whenever no group has reward spread, and moves a
    # little on the other steps: those moves are the run, not spikes.
    rng = np.random.default_rng(7)
    detector = AnomalyDetector(["loss"], window=100, threshold=6.0)
    for _ in range(400):
        value = 0.0 if rng.random() < 0.85 else float(rng.uniform(-0.05, 0.05))
        detector.observe({"loss": value})
    assert detector.counts == {"loss": 0}
    # A move a hundred times larger than any seen is still one anomaly.
    detector.observe({"loss": 5.0})
    assert detector.counts == {"loss": 1}
