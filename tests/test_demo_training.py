"""The demo trainer really learns, is reproducible, counts tokens and leaks only on request."""

from __future__ import annotations

import contextlib
import gc
import math
import urllib.request
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_otel.demo import task
from mlx_otel.demo.rl import DemoSettings, DemoTrainer, StepResult, describe_task

MB = 1024 * 1024

pytestmark = pytest.mark.integration  # real MLX demo runs


@pytest.fixture(scope="module")
def default_run() -> list[StepResult]:
    """One full run with default settings, shared by the tests that read it."""
    trainer = DemoTrainer(DemoSettings())
    results = [trainer.train_step(step) for step in range(trainer.settings.steps)]
    for result in results:
        result.grads = {}  # keep the module-scoped fixture light
    return results


def _run(settings: DemoSettings, steps: int) -> list[StepResult]:
    trainer = DemoTrainer(settings)
    return [trainer.train_step(step) for step in range(steps)]


def test_reward_improves_over_a_default_run(default_run: list[StepResult]) -> None:
    tenth = len(default_run) // 10
    first = np.mean([r.reward_mean for r in default_run[:tenth]])
    last = np.mean([r.reward_mean for r in default_run[-tenth:]])
    assert last - first >= 0.2, (first, last)


def test_default_run_finishes_well_under_a_minute(default_run: list[StepResult]) -> None:
    # Generous bound: about ten seconds on two CPU cores, so only a broken
    # (e.g. unvectorised) sampler gets near it.
    assert sum(r.step_time for r in default_run) < 60.0


def test_learning_rate_warms_up_then_decays(default_run: list[StepResult]) -> None:
    settings = DemoSettings()
    rates = [r.learning_rate for r in default_run]
    peak = rates.index(max(rates))
    assert peak == settings.warmup_steps - 1
    assert max(rates) == pytest.approx(settings.learning_rate)
    assert all(a < b for a, b in zip(rates[:peak], rates[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))
    assert rates[-1] == pytest.approx(settings.learning_rate * settings.min_learning_rate_ratio)


def test_every_step_reports_finite_numbers_of_the_right_shape(
    default_run: list[StepResult],
) -> None:
    settings = DemoSettings()
    for result in default_run:
        assert result.rewards.shape == (settings.prompts_per_step * settings.group_size,)
        assert result.rewards.min() >= 0.0 and result.rewards.max() <= 1.0
        assert result.reward_mean == pytest.approx(float(result.rewards.mean()))
        assert math.isfinite(result.loss) and math.isfinite(result.grad_norm)
        assert result.grad_norm > 0 and result.step_time > 0
        shown = settings.samples_to_show
        assert len(result.prompts) == len(result.generations) == len(result.references) == shown
        assert result.sample_rewards == pytest.approx(result.rewards[:shown].tolist())
    assert [r.step for r in default_run] == list(range(settings.steps))


def test_token_counts_split_every_generated_token(default_run: list[StepResult]) -> None:
    for result in default_run:
        assert result.thinking_tokens > 0 and result.answer_tokens > 0
        assert result.thinking_tokens + result.answer_tokens == result.generated_tokens


def test_token_counts_match_the_generated_text() -> None:
    settings = DemoSettings(steps=5, samples_to_show=64)
    for result in _run(settings, 3):
        assert len(result.generations) == 64
        thinking = sum(len(g.split("=", 1)[0]) for g in result.generations)
        answer = sum(len(g) - len(g.split("=", 1)[0]) for g in result.generations)
        assert (result.thinking_tokens, result.answer_tokens) == (thinking, answer)
        assert sum(len(g) for g in result.generations) == result.generated_tokens
        for generation in result.generations:
            assert "$" not in generation[:-1]  # nothing is generated after EOS


def test_gradients_are_an_mlx_tree_of_the_policy() -> None:
    trainer = DemoTrainer(DemoSettings(steps=5))
    result = trainer.train_step(0)
    grads = result.grads
    assert set(grads) == {"embedding", "layers", "head"}
    assert len(grads["layers"]) == trainer.settings.num_layers
    assert isinstance(grads["head"]["weight"], mx.array)
    squares = sum(float(mx.sum(g * g)) for _, g in _leaves(grads))
    assert math.sqrt(squares) == pytest.approx(result.grad_norm, rel=1e-4)


def _leaves(tree: object, prefix: str = "") -> list[tuple[str, mx.array]]:
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    if isinstance(tree, list):
        return [leaf for i, v in enumerate(tree) for leaf in _leaves(v, f"{prefix}{i}.")]
    assert isinstance(tree, mx.array)
    return [(prefix.rstrip("."), tree)]


def test_same_seed_gives_the_same_run() -> None:
    first = _run(DemoSettings(seed=7), 4)
    second = _run(DemoSettings(seed=7), 4)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.rewards, b.rewards)
        assert a.loss == b.loss and a.grad_norm == b.grad_norm
        assert a.generations == b.generations


def test_different_seeds_give_different_runs() -> None:
    a, b = _run(DemoSettings(seed=1), 1)[0], _run(DemoSettings(seed=2), 1)[0]
    assert a.generations != b.generations


def test_leak_grows_active_memory_by_the_requested_amount() -> None:
    trainer = DemoTrainer(DemoSettings(leak_mb_per_step=8.0))
    trainer.train_step(0)
    before = mx.get_active_memory()
    for step in range(1, 6):
        trainer.train_step(step)
    grown_mb = (mx.get_active_memory() - before) / MB
    assert grown_mb == pytest.approx(5 * 8.0, abs=2.0)
    assert trainer.leaked_bytes == 6 * 8 * MB

    trainer.release_leak()
    assert trainer.leaked_bytes == 0
    assert mx.get_active_memory() < before
    trainer.train_step(6)
    assert trainer.leaked_bytes == 0  # released means stopped


def test_training_without_leak_keeps_active_memory_flat() -> None:
    trainer = DemoTrainer(DemoSettings())
    for step in range(3):
        trainer.train_step(step)
    # Live arrays only: garbage that earlier tests left in reference cycles
    # may be collected in the middle of the run, which is no change of ours.
    gc.collect()
    before = mx.get_active_memory()
    for step in range(3, 25):
        trainer.train_step(step)
    gc.collect()
    assert abs(mx.get_active_memory() - before) < 0.5 * MB


@pytest.mark.parametrize(
    ("text", "target", "reward"),
    [
        ("..7=93$", 12, 1.0),
        ("=93$", 12, 0.9),  # no thinking
        (".=93", 12, 0.9),  # never ends
        (".=3$", 12, 0.3),  # nine off: format credit only
        (".=5$", 2, 0.3 + 0.7 * (6 / 9)),
        (".=1234$", 10, 0.3),  # too many digits
        (".=.$", 0, 0.3),
        ("....", 4, 0.0),  # no answer
        ("$=4$", 4, 0.0),  # EOS before the delimiter
    ],
)
def test_reward_checks_format_and_digit_sum(text: str, target: int, reward: float) -> None:
    assert task.score_completion(target, task.encode(text)) == pytest.approx(reward)


def test_settings_reject_bad_values_by_name() -> None:
    with pytest.raises(ValueError, match="group_size"):
        DemoSettings(group_size=0)
    with pytest.raises(ValueError, match="leak_mb_per_step"):
        DemoSettings(leak_mb_per_step=-1.0)


def test_task_description_names_the_parts_a_reader_sees_on_the_dashboard() -> None:
    text = describe_task()
    for word in ("GRPO", "thinking", "answer", "reward", "group"):
        assert word in text


# --- what the demo reports for RL health and phases ----------------------------


def test_per_completion_lists_agree_with_the_generated_text() -> None:
    settings = DemoSettings(steps=5, samples_to_show=64)
    for result in _run(settings, 3):
        texts = result.generations
        assert result.completion_lengths.tolist() == [len(t) for t in texts]
        assert result.thinking_per_completion.tolist() == [len(t.split("=", 1)[0]) for t in texts]
        assert result.answer_per_completion.sum() == result.answer_tokens
        assert result.truncated.tolist() == [
            not t.endswith("$") and len(t) == settings.max_new_tokens for t in texts
        ]
        # Correct: the answer's digits sum to the prompt's target, whatever the format.
        targets = [int(p[1:3]) for p in result.prompts]
        assert result.correct.tolist() == [
            task.is_correct(target, task.encode(t)) for target, t in zip(targets, texts, strict=True)
        ]
        parts = result.reward_functions
        assert set(parts) == set(task.REWARD_FUNCTIONS)
        np.testing.assert_allclose(parts["format"] + parts["answer"], result.rewards, atol=1e-6)


def test_kl_to_the_initial_policy_starts_at_zero_and_grows(
    default_run: list[StepResult],
) -> None:
    # Step 0 samples and scores with the initial policy itself.
    assert default_run[0].kl == pytest.approx(0.0, abs=1e-6)
    assert all(r.kl >= -1e-6 for r in default_run)
    assert np.mean([r.kl for r in default_run[-20:]]) > 0.1


def test_entropy_falls_as_the_policy_learns(default_run: list[StepResult]) -> None:
    first, last = default_run[0].entropy, np.mean([r.entropy for r in default_run[-20:]])
    # Sixteen tokens, PAD never sampled: at most ln(15) nats per token.
    assert 0 < last < first <= math.log(task.VOCAB_SIZE - 1) + 1e-6


def test_validation_scores_greedy_completions_of_every_target() -> None:
    trainer = DemoTrainer(DemoSettings(steps=30, validation_every=10))
    due = [step for step in range(30) if trainer.validation_due(step)]
    assert due == [9, 19, 29]
    before = trainer.validate()
    assert before.prompts == trainer.settings.max_target + 1
    assert trainer.validate().reward_mean == before.reward_mean  # greedy: deterministic
    for step in range(30):
        trainer.train_step(step)
    after = trainer.validate()
    assert 0 <= before.reward_mean <= 1 and 0 <= after.correct_ratio <= 1
    assert after.reward_mean > before.reward_mean
    assert math.isfinite(after.loss) and after.loss > 0
    assert not DemoTrainer(DemoSettings(validation_every=0)).validation_due(199)


def test_phases_are_timed_in_order_with_their_mlx_work_done() -> None:
    timed: list[tuple[str, dict]] = []

    class Recorder:
        def __call__(self, name: str, **options: object):  # noqa: ANN204
            timed.append((name, options))
            return contextlib.nullcontext()

    DemoTrainer(DemoSettings(steps=3)).train_step(0, phase=Recorder())
    assert [name for name, _ in timed] == ["generate", "reward", "update"]
    assert dict(timed)["update"] == {"sync": True}


def test_settings_reject_a_negative_validation_interval() -> None:
    with pytest.raises(ValueError, match="validation_every"):
        DemoSettings(validation_every=-1)


def test_the_monitored_loop_serves_every_signal_once_per_step(tmp_path: Path) -> None:
    from mlx_otel import TrainingMonitor
    from mlx_otel.demo.loop import train

    config = {"exporter": {"port": 0}, "monitoring": {"output_dir": str(tmp_path)}}
    trainer = DemoTrainer(DemoSettings(steps=10, validation_every=5))
    with TrainingMonitor(config, run_id="demo-loop") as monitor:
        means = train(trainer, monitor)
        monitor.flush()
        text = urllib.request.urlopen(monitor.endpoint, timeout=10).read().decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }

    def value(metric: str, **labels: str) -> float:
        wanted = {**labels, "run_id": "demo-loop"}
        (found,) = [v for k, v in samples.items() if k.split("{")[0] == metric
                    and all(f'{k2}="{v2}"' in k for k2, v2 in wanted.items())]  # fmt: skip
        return found

    assert len(means) == 10
    assert value("mlx_train_steps_total") == 10  # trainer keywords add no steps
    for phase, count in (("generate", 10), ("reward", 10), ("update", 10), ("validation", 2)):
        assert value("mlx_train_phase_duration_seconds_count", phase=phase) == count, phase
    assert value("mlx_train_validation_reward") >= 0
    assert value("mlx_train_validation_step") == 10
    assert value("mlx_train_entropy") > 0 and value("mlx_train_kl") > 0
    assert value("mlx_train_steps_per_report") == 1
    for name in task.REWARD_FUNCTIONS:
        assert 0 <= value("mlx_train_reward_function_mean", reward_fn=name) <= 1
        assert value("mlx_train_reward_function_coverage", reward_fn=name) == 1
    assert value("mlx_train_generated_tokens", stat="max") <= trainer.settings.max_new_tokens
    assert value("mlx_train_custom", name="solved_fraction") >= 0
    assert not any('name="reward_std"' in k for k in samples)  # a trainer value, not custom
