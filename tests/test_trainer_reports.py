"""A trainer's report, from the callback to every place it shows, without a trainer.

The callbacks of :mod:`mlx_otel.trainers` are fed the dictionaries mlx-lm-lora
hands them (GRPO: rewards, KL, clip ratios, completion lengths, one entry per
reward function); the monitor serves, writes and logs them under the names
the catalogue gives: the Prometheus series with its label, the CSV column,
the WandB key. The real trainers run in tests/test_trainers.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlx_otel import TrainingMonitor
from mlx_otel.records import TrainerReport
from mlx_otel.trainers import MlxLmCallback, MlxLmLoraCallback, train_info_report
from tests.conftest import parse_exposition, sample
from tests.wandb_records import read_run

GRPO_REPORT = {
    "iteration": 2, "train_loss": 0.5, "learning_rate": 1e-5, "tokens_per_second": 40.0,
    "iterations_per_second": 2.0, "trained_tokens": 120, "peak_memory": 0.002,
    "train_total_rewards_mean": 0.75, "train_total_rewards_std": 0.25,
    "train_grouped_rewards_mean": 0.75, "train_grouped_rewards_std": 0.125, "train_kl": 0.03125,
    "train_kl_clip_ratio": 0.0, "train_hit_max_tokens_ratio": 0.5,
    "train_clip_ratio_low": 0.01, "train_clip_ratio_high": 0.02, "train_clip_ratio_total": 0.03,
    "train_average_generated_tokens": 4.5, "train_max_generated_tokens": 6,
    "train_min_generated_tokens": 3, "train_digits_mean": 0.5, "train_digits_std": 0.1,
    "train_digits_coverage": 1.0, "train_regression_loss": 0.25,
}  # fmt: skip


def test_a_report_maps_onto_catalogue_keys_labels_and_custom_names() -> None:
    report = train_info_report(2, GRPO_REPORT, reward_functions={"digits"})
    assert report.values["loss"] == 0.5 and report.values["reward_mean"] == 0.75
    assert report.values["kl"] == 0.03125 and report.values["trained_tokens"] == 120
    assert report.labelled == {
        "clip_ratio": {"low": 0.01, "high": 0.02, "total": 0.03},
        "generated_tokens": {"mean": 4.5, "max": 6, "min": 3},
        "reward_function_mean": {"digits": 0.5},
        "reward_function_std": {"digits": 0.1},
        "reward_function_coverage": {"digits": 1.0},
    }
    assert report.custom == {"train_regression_loss": 0.25}
    assert "iteration" not in report.values and "peak_memory" not in report.values


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[Any, float]]]:
    os.environ.setdefault("WANDB_SILENT", "true")
    out = tmp_path_factory.mktemp("trainer_reports")
    monitor = TrainingMonitor({
        "monitoring": {"use_wandb": True, "wandb_mode": "offline", "output_dir": str(out),
                       "generate_charts_every": 0},
        "exporter": {"port": 0},
    }, run_id="grpo_reports", serve=False)  # fmt: skip
    callback = MlxLmLoraCallback(config={"steps_per_report": 2}, monitor=monitor)
    callback.on_val_loss_report({"iteration": 2, "val_loss": 1.25, "val_time": 0.5})
    callback.on_train_loss_report(GRPO_REPORT)
    callback.on_train_loss_report({**GRPO_REPORT, "iteration": 4, "train_kl": 0.0625})
    samples = parse_exposition(monitor.telemetry.exposition())
    callback.close()  # the callback did not make the monitor: it exports, the owner cleans up
    monitor.export_all()
    monitor.cleanup()
    yield out, samples


def test_reports_are_served_under_their_catalogue_series(
    reported: tuple[Path, dict[Any, float]],
) -> None:
    _, samples = reported

    def value(series: str, /, **labels: str) -> float:
        return sample(samples, series, run_id="grpo_reports", **labels)

    assert value("mlx_train_step") == 4 and value("mlx_train_steps_total") == 2
    assert value("mlx_train_loss") == 0.5 and value("mlx_train_reward_mean") == 0.75
    assert value("mlx_train_kl") == 0.0625
    assert value("mlx_train_clip_ratio", bound="high") == 0.02
    assert value("mlx_train_generated_tokens", stat="max") == 6
    assert value("mlx_train_reward_function_coverage", reward_fn="digits") == 1.0
    assert value("mlx_train_trainer_peak_memory_bytes") == pytest.approx(2e6)
    assert value("mlx_train_steps_per_report") == 2
    assert value("mlx_train_validation_loss") == 1.25
    assert value("mlx_train_validation_step") == 1  # mlx-lm-lora's validation before it 2
    assert value("mlx_train_custom", name="train_regression_loss") == 0.25


def test_reports_reach_the_csv_and_wandb_under_the_catalogue_names(
    reported: tuple[Path, dict[Any, float]],
) -> None:
    out, _ = reported
    frame = pd.read_csv(out / "training_metrics.csv")
    assert frame["step"].tolist() == [2, 4]
    assert frame["kl"].tolist() == [0.03125, 0.0625]
    assert frame["clip_ratio/low"].tolist() == [0.01, 0.01]
    assert frame["reward_function_mean/digits"].tolist() == [0.5, 0.5]
    assert frame["custom/train_regression_loss"].tolist() == [0.25, 0.25]
    rows = read_run(out / "wandb").by_step()
    assert rows[4]["rl/kl"] == 0.0625 and rows[4]["train/loss"] == 0.5
    assert rows[2]["rl/clip_ratio/total"] == 0.03
    assert rows[2]["rl/reward_function_std/digits"] == 0.1
    assert rows[2]["val/validation_loss"] == 1.25
    assert rows[2]["custom/train_regression_loss"] == 0.25


def test_a_loss_that_is_no_number_is_counted_and_the_report_still_recorded(tmp_path: Path) -> None:
    monitor = TrainingMonitor({"monitoring": {"output_dir": str(tmp_path)}}, serve=False)
    try:
        callback = MlxLmCallback(config={}, monitor=monitor)
        callback.on_train_loss_report({"iteration": 3, "train_loss": "nan?", "learning_rate": 1e-4})
        monitor.record_report(TrainerReport(4, values={"kl": 0.5}))
        samples = parse_exposition(monitor.telemetry.exposition())
        assert monitor.error_counts() == {"invalid_value": 1}
        assert sample(samples, "mlx_train_learning_rate") == 1e-4
        assert sample(samples, "mlx_train_kl") == 0.5 and monitor.steps_logged == 2
    finally:
        monitor.cleanup()


# -- mlx-lm-lora's GRPO observed at its own functions ------------------------------
#: Known rewards of four groups of two: solved, unsolved, tied, and one with spread.
KNOWN_REWARDS = [1.0, 1.0, 0.0, 0.0, 0.25, 0.25, 1.0, 0.0]
MAX_TOKENS = 4


@pytest.fixture(scope="module")
def tiny_grpo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    """mlx-lm-lora's GRPO module and the tiny model of the trainer tests, in this process."""
    grpo = pytest.importorskip("mlx_lm_lora.trainer.grpo_trainer")
    from mlx_lm.utils import load

    from tests.tiny_model import build_model

    model, tokenizer = load(str(build_model(tmp_path_factory.mktemp("tiny") / "model")))
    return grpo, model, tokenizer


def _quick_end(folder: Path) -> dict[str, Any]:
    """A monitor whose end (the callback's close exports) leaves its charts to the chart process."""
    return {"monitoring": {"output_dir": str(folder), "charts_timeout": 0.5}}


def _grpo_functions(grpo: Any) -> tuple[Any, ...]:
    return grpo.generate_grpo, grpo.calculate_rewards_and_advantages, grpo.evaluate_grpo


def _sample_groups(grpo: Any, model: Any, tokenizer: Any) -> tuple[Any, list[str], list[int]]:
    """The trainer's generation: four prompts, two completions each (a real tiny model)."""
    prompts = [tokenizer.encode(f"user : what is {a} plus 2 ? assistant :") for a in range(4)]
    return grpo.generate_grpo(  # type: ignore[no-any-return]
        model=model, tokenizer=tokenizer, prompt_tokens=prompts, max_tokens=MAX_TOKENS,
        group_size=2, batch_size=4, end_token="", temperature=0.8, top_p=0.95, top_k=20,
        min_p=0.0,
    )  # fmt: skip


def _score(grpo: Any, texts: list[str], indices: list[int]) -> Any:
    """The trainer's reward step: a weighted function and one that never applies."""

    def halves(prompts: Any, completions: list[str], answer: Any, types: Any = None) -> list:
        return [reward / 2 for reward in KNOWN_REWARDS]

    def never(prompts: Any, completions: list[str], answer: Any, types: Any = None) -> list:
        return [None] * len(completions)

    n = len(texts)
    return grpo.calculate_rewards_and_advantages(
        reward_funcs=[halves, never], expanded_prompts=[""] * n, all_completion_texts=texts,
        expanded_answers=[""] * n, expanded_types=[None] * n, batch_indices=indices,
        unique_prompt_indices=sorted(set(indices)), reward_weights=[2.0, 1.0],
    )  # fmt: skip


def _validate(grpo: Any, model: Any, tokenizer: Any) -> Any:
    """The trainer's validation: two prompts, two completions each, rewarded 0.75."""

    def three_quarters(prompts: Any, completions: list[str], answer: Any, types: Any = None) -> Any:
        return [0.75] * len(completions)

    prompt = tokenizer.encode("user : what is 1 plus 2 ? assistant :")
    dataset = [(prompt, tokenizer.encode("3"), "what is 1 plus 2 ?", "3")] * 2
    return grpo.evaluate_grpo(
        model=model, ref_model=None, dataset=dataset, tokenizer=tokenizer, batch_size=2,
        num_batches=1, beta=0.0, epsilon=1e-4, epsilon_high=None, group_size=2,
        max_seq_length=64, max_tokens=MAX_TOKENS, temperature=0.8, top_p=0.95, top_k=20,
        min_p=0.0, reward_funcs=[three_quarters], end_answer_token="",
    )  # fmt: skip


def test_grpo_completions_and_phases_ride_with_the_next_report(
    tmp_path: Path, tiny_grpo: tuple[Any, Any, Any]
) -> None:
    """A validation, then an iteration: rewards of known groups, the real completions' lengths,
    the validation's mean reward, and the phases of each."""
    grpo, model, tokenizer = tiny_grpo
    originals = _grpo_functions(grpo)
    monitor = TrainingMonitor(_quick_end(tmp_path), run_id="hooked", serve=False)
    try:
        callback = MlxLmLoraCallback(config={"train_mode": "grpo"}, monitor=monitor)
        assert grpo.generate_grpo is not originals[0]
        _validate(grpo, model, tokenizer)  # its completions are not the training's
        callback.on_val_loss_report({"iteration": 1, "val_loss": 0.25, "val_time": 0.5})
        completions, texts, indices = _sample_groups(grpo, model, tokenizer)
        advantages, _ = _score(grpo, texts, indices)
        callback.on_train_loss_report({"iteration": 1, "train_loss": 0.5})
        samples = parse_exposition(monitor.telemetry.exposition())
        callback.close()
    finally:
        monitor.cleanup()
    assert _grpo_functions(grpo) == originals  # restored at the end
    # The trainer's own computation is untouched: the last group has spread.
    assert advantages.tolist()[:6] == [0.0] * 6 and advantages.tolist()[6] > 0

    def value(series: str, /, **labels: str) -> float:
        return sample(samples, series, run_id="hooked", **labels)

    for phase in ("evaluate", "generate", "reward", "update"):
        assert value("mlx_train_phase_duration_seconds_count", phase=phase) == 1, phase
    assert value("mlx_train_validation_reward") == 0.75  # the trainer's own mean
    assert value("mlx_train_phase_duration_seconds_sum", phase="generate") > 0
    lengths = [c.size for c in completions]
    assert value("mlx_train_completion_length_tokens_count") == 8
    assert value("mlx_train_completion_length_tokens_sum") == sum(lengths)
    assert value("mlx_train_hit_max_tokens_ratio") == sum(n >= MAX_TOKENS for n in lengths) / 8
    for outcome in ("solved", "unsolved", "tied"):
        assert value("mlx_train_zero_std_groups_ratio", outcome=outcome) == 0.25, outcome


def test_grpo_observation_that_fails_warns_once_and_trains_on(
    tmp_path: Path, tiny_grpo: tuple[Any, Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Rewards for completions the hooks never saw sampled: the originals come back."""
    grpo, model, tokenizer = tiny_grpo
    originals = _grpo_functions(grpo)
    monitor = TrainingMonitor(_quick_end(tmp_path), serve=False)
    try:
        callback = MlxLmLoraCallback(config={"train_mode": "grpo"}, monitor=monitor)
        texts = ["1", "2", "3", "4", "5", "6", "7", "8"]
        advantages, metrics = _score(grpo, texts, [0, 0, 1, 1, 2, 2, 3, 3])
        assert _grpo_functions(grpo) == originals  # the run goes on unobserved
        _score(grpo, texts, [0, 0, 1, 1, 2, 2, 3, 3])
        callback.on_train_loss_report({"iteration": 1, "train_loss": 0.5})
        samples = parse_exposition(monitor.telemetry.exposition())
        callback.close()
    finally:
        monitor.cleanup()
        names = ("generate_grpo", "calculate_rewards_and_advantages", "evaluate_grpo")
        for name, original in zip(names, originals, strict=True):
            setattr(grpo, name, original)
    assert metrics["total_rewards_mean"].item() == pytest.approx(sum(KNOWN_REWARDS) / 8)
    assert advantages.shape == (8,)
    assert caplog.text.count("observing mlx_lm_lora.trainer.grpo_trainer") == 1
    assert not [name for name, _ in samples if name.startswith("mlx_train_zero_std")]


def test_a_grpo_version_whose_functions_changed_trains_unobserved(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generate_grpo without max_tokens: nothing is wrapped, one warning says so."""
    import sys
    import types

    from mlx_otel.integrations.trainer_hooks import GrpoHooks

    changed = types.ModuleType("changed_grpo")

    def generate_grpo(model: Any, tokenizer: Any, prompt_tokens: Any) -> None: ...

    def calculate_rewards_and_advantages(reward_funcs: Any, batch_indices: Any) -> None: ...

    def evaluate_grpo(model: Any) -> None: ...

    for function in (generate_grpo, calculate_rewards_and_advantages, evaluate_grpo):
        setattr(changed, function.__name__, function)
    monkeypatch.setitem(sys.modules, "changed_grpo", changed)
    monkeypatch.setattr(GrpoHooks, "module_name", "changed_grpo")
    hooks = GrpoHooks()
    assert hooks.install() is False and not hooks.active
    assert changed.generate_grpo is generate_grpo
    assert "cannot observe changed_grpo" in caplog.text
    assert "max_tokens" in caplog.text and "reward_weights" in caplog.text
