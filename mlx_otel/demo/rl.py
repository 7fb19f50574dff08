"""A real, small reinforcement-learning run in MLX, trained GRPO-style.

A two-layer GRU policy over a 16-token vocabulary learns the toy task of
:mod:`mlx_otel.demo.task` (write digits that sum to a target). Each step
samples a group of completions per prompt, scores them with a verifiable
reward, turns rewards into group-relative advantages and takes one Adam step
on the policy-gradient loss. It exists to feed the monitor real numbers:
loss, rewards, gradient trees, token counts, MLX memory and step times, and
the RL health signals a GRPO user watches: per-completion lengths,
truncation and correctness, the policy's token entropy, its KL divergence
from a frozen copy of the initial policy, and a validation reward on a fixed
set of prompts no update uses. Each step runs in phases (generate, reward,
update) that a caller can time: each phase ends by evaluating what it built,
so its time is MLX's real work, not the building of a lazy graph.

Example:
    >>> trainer = DemoTrainer(DemoSettings(steps=200))
    >>> for step in range(trainer.settings.steps):
    ...     result = trainer.train_step(step)
    >>> result.reward_mean > 0.5
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_map

from mlx_otel.demo import task
from mlx_otel.demo.settings import DemoSettings

__all__ = [
    "DemoSettings",
    "DemoTrainer",
    "GRUPolicy",
    "PhaseTimer",
    "StepResult",
    "ValidationResult",
    "describe_task",
]

#: Times a named phase: ``phase("generate", sync=True)`` is a context manager
#: (``TrainingMonitor.phase`` has this shape).
PhaseTimer = Callable[..., AbstractContextManager[Any]]

_BYTES_PER_MB = 1024 * 1024
# Added to the PAD logit so the policy never samples it: PAD marks "after
# EOS" unambiguously. Large but finite, so entropy stays free of inf * 0.
_MASKED_LOGIT = -1e9


def _no_phase(name: str, **_: Any) -> AbstractContextManager[Any]:
    """The phase timer of a step nobody times."""
    return nullcontext()


def describe_task() -> str:
    """One paragraph describing what the demo policy learns.

    Example:
        >>> "sum" in describe_task()
        True
    """
    return (
        "The demo trains a small two-layer GRU language model from scratch with "
        "GRPO-style reinforcement learning on a verifiable toy task. Its vocabulary "
        f"has {task.VOCAB_SIZE} tokens ({task.VOCAB!r}). A prompt such as '#12?' asks "
        "for digits that sum to the target 12; the policy writes some free-form "
        "'thinking' tokens, the answer delimiter '=', one to three answer digits and "
        "the end token '$' (for example '..7=93$'). The reward, between 0 and 1, "
        "checks the format (0.1 each for the delimiter, for thinking before it and "
        "for ending with '$') and the answer (up to 0.7, full when the digits sum "
        "exactly to the target, less the further off they are). For every prompt the "
        "trainer samples a group of completions, scores each against the target, "
        "normalises rewards within the group into advantages, and takes one Adam "
        "step on the policy-gradient loss with a small entropy bonus under a "
        "warmup-then-cosine learning-rate schedule. Tokens before '=' count as "
        "thinking tokens, '=' and everything after it as answer tokens."
    )


@dataclass
class StepResult:
    """What one training step produced, as plain Python and NumPy values.

    Example:
        >>> result = DemoTrainer(DemoSettings()).train_step(0)
        >>> result.rewards.shape
        (64,)
    """

    step: int
    loss: float
    reward_mean: float
    rewards: np.ndarray  # per-sample rewards, shape (prompts_per_step * group_size,)
    grad_norm: float  # global L2 norm of the gradient, before clipping
    learning_rate: float
    thinking_tokens: int  # tokens before the delimiter, summed over the step's samples
    answer_tokens: int  # the delimiter and everything after it up to EOS, summed
    grads: dict[str, Any]  # the gradient tree from nn.value_and_grad
    prompts: list[str]
    generations: list[str]
    references: list[str]
    sample_rewards: list[float]
    step_time: float  # wall seconds of train_step
    generated_tokens: int = 0  # thinking_tokens + answer_tokens, counted independently
    group_size: int = 1
    # One entry per completion, groups contiguous (see task.completion_stats).
    completion_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    correct: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    thinking_per_completion: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    answer_per_completion: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: Reward function name -> its per-completion rewards (they sum to ``rewards``).
    reward_functions: dict[str, np.ndarray] = field(default_factory=dict)
    entropy: float = math.nan  # mean token entropy of the policy on the sampled completions
    kl: float = math.nan  # mean token KL(policy || initial policy) on the sampled completions


@dataclass(frozen=True)
class ValidationResult:
    """Greedy completions of the validation prompts, scored; no update uses them.

    ``loss`` is the policy's mean negative log-likelihood per token of the
    reference completions (:func:`task.reference_answer`).
    """

    reward_mean: float
    correct_ratio: float
    loss: float
    duration: float
    prompts: int


class GRUPolicy(nn.Module):
    """A token-level policy: embedding, stacked GRUs, a linear head.

    Returns logits for every position and each layer's last hidden state,
    so sampling can continue one token at a time from that state.

    Example:
        >>> policy = GRUPolicy(vocab_size=16, hidden_size=32, num_layers=2)
        >>> logits, hidden = policy(mx.zeros((3, 4), dtype=mx.int32))
        >>> logits.shape, len(hidden)
        ((3, 4, 16), 2)
    """

    def __init__(self, *, vocab_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.layers = [nn.GRU(hidden_size, hidden_size) for _ in range(num_layers)]
        self.head = nn.Linear(hidden_size, vocab_size)

    def __call__(
        self, tokens: mx.array, hidden: list[mx.array] | None = None
    ) -> tuple[mx.array, list[mx.array]]:
        x = self.embedding(tokens)
        last_hidden = []
        for index, layer in enumerate(self.layers):
            x = layer(x, None if hidden is None else hidden[index])
            last_hidden.append(x[:, -1, :])
        return self.head(x), last_hidden


class DemoTrainer:
    """Trains :class:`GRUPolicy` on the digit-sum task, one call per step.

    ``train_step`` samples ``prompts_per_step * group_size`` completions
    (vectorised over the whole batch at each token position), scores them,
    and updates the policy; everything is evaluated in one ``mx.eval`` at the
    end of the step. With ``leak_mb_per_step > 0`` each step also keeps that
    many MB of fresh MLX arrays alive, a real leak for the memory alerts.

    Example:
        >>> trainer = DemoTrainer(DemoSettings(steps=10, seed=1))
        >>> result = trainer.train_step(0)
        >>> result.thinking_tokens + result.answer_tokens == result.generated_tokens
        True
    """

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        # Parameter initialisation draws from MLX's global generator; sampling
        # uses explicit keys drawn from the NumPy generator, so a run is
        # reproducible whatever else uses mx.random in between.
        mx.random.seed(settings.seed)
        self._rng = np.random.default_rng(settings.seed)
        self.model: nn.Module = GRUPolicy(
            vocab_size=task.VOCAB_SIZE,
            hidden_size=settings.hidden_size,
            num_layers=settings.num_layers,
        )
        # A frozen copy of the initial policy: KL to it tells how far training moved.
        self.reference = GRUPolicy(
            vocab_size=task.VOCAB_SIZE,
            hidden_size=settings.hidden_size,
            num_layers=settings.num_layers,
        )
        self.reference.update(tree_map(mx.array, self.model.parameters()))
        self.reference.freeze()
        self.optimizer = optim.Adam(learning_rate=settings.learning_rate)
        self.optimizer.init(self.model.trainable_parameters())
        mx.eval(self.model.parameters(), self.reference.parameters(), self.optimizer.state)
        # Every target once: a fixed validation set, scored greedily.
        self._validation_targets = np.arange(settings.max_target + 1)
        self._value_and_grad = nn.value_and_grad(self.model, self._loss)
        self._pad_mask = mx.where(mx.arange(task.VOCAB_SIZE) == task.PAD, _MASKED_LOGIT, 0.0)
        self._leaked: list[mx.array] = []
        self._leaking = settings.leak_mb_per_step > 0

    @property
    def leaked_bytes(self) -> int:
        """Bytes currently held by the simulated leak."""
        return sum(array.nbytes for array in self._leaked)

    def release_leak(self, *, stop: bool = True) -> None:
        """Drop the leaked arrays so MLX can reuse their memory.

        With ``stop=True`` (the default) later steps leak no more; with
        ``stop=False`` the leak starts again from zero.
        """
        self._leaked.clear()
        if stop:
            self._leaking = False

    def train_step(self, step: int, *, phase: PhaseTimer = _no_phase) -> StepResult:
        """Sample, score and update once; returns the step's numbers.

        ``step`` counts from 0 and sets the learning rate of the schedule.
        ``phase`` times the step's phases ``generate``, ``reward`` and
        ``update`` (e.g. ``monitor.phase``); each ends with the MLX work it
        built evaluated, and ``sync=True`` asks the timer to wait for MLX too.
        """
        started = time.perf_counter()
        s = self.settings
        targets = self._rng.integers(0, s.max_target + 1, size=s.prompts_per_step)
        sample_seed = int(self._rng.integers(0, 2**31 - 1))
        targets_per_sample = np.repeat(targets, s.group_size)  # groups are contiguous
        prompts = task.make_prompts(targets_per_sample)

        with phase("generate", sync=True):
            # _sample evaluates the completions: rewards are scored in NumPy.
            completions = np.array(self._sample(mx.array(prompts), key=mx.random.key(sample_seed)))
        with phase("reward"):
            stats = task.completion_stats(targets_per_sample, completions)
            # The reward is the sum of its parts, as task.score_completion adds them.
            rewards = np.round(stats.rewards.sum(axis=0), 6).astype(np.float32)
            grouped = rewards.reshape(s.prompts_per_step, s.group_size)
            advantages = (grouped - grouped.mean(axis=1, keepdims=True)) / (
                grouped.std(axis=1, keepdims=True) + s.advantage_eps
            )

        learning_rate = s.learning_rate_at(step)
        self.optimizer.learning_rate = learning_rate
        with phase("update", sync=True):
            tokens = mx.array(np.concatenate([prompts, completions], axis=1))
            (loss, (entropy, kl)), grads = self._value_and_grad(
                tokens,
                mx.array(completions != task.PAD),
                mx.array(advantages.reshape(-1).astype(np.float32)),
            )
            clipped, grad_norm = optim.clip_grad_norm(grads, s.max_grad_norm)
            self.optimizer.update(self.model, clipped)
            leaked = self._leak(step)
            # The update's synchronisation point: everything above is lazy.
            mx.eval(
                loss, entropy, kl, grad_norm, grads, self.model.parameters(),
                self.optimizer.state, leaked,
            )  # fmt: skip

        thinking, answer = int(stats.thinking.sum()), int(stats.answer.sum())
        shown = min(s.samples_to_show, len(rewards))
        return StepResult(
            step=step,
            loss=loss.item(),
            reward_mean=float(rewards.mean()),
            rewards=rewards,
            grad_norm=grad_norm.item(),
            learning_rate=learning_rate,
            thinking_tokens=thinking,
            answer_tokens=answer,
            grads=grads,
            prompts=[task.decode(row) for row in prompts[:shown]],
            generations=[task.decode(row) for row in completions[:shown]],
            references=[task.reference_answer(int(t)) for t in targets_per_sample[:shown]],
            sample_rewards=[float(r) for r in rewards[:shown]],
            step_time=time.perf_counter() - started,
            generated_tokens=int(np.sum(completions != task.PAD)),
            group_size=s.group_size,
            completion_lengths=stats.lengths,
            truncated=stats.truncated,
            correct=stats.correct,
            thinking_per_completion=stats.thinking,
            answer_per_completion=stats.answer,
            reward_functions=dict(zip(task.REWARD_FUNCTIONS, stats.rewards, strict=True)),
            entropy=entropy.item(),
            kl=kl.item(),
        )

    def validation_due(self, step: int) -> bool:
        """Whether the validation runs after ``step``: every ``validation_every`` steps
        and after the last one."""
        every = self.settings.validation_every
        if every == 0:
            return False
        return (step + 1) % every == 0 or step + 1 == self.settings.steps

    def validate(self) -> ValidationResult:
        """Score greedy completions of the validation prompts; the policy is not updated."""
        started = time.perf_counter()
        targets = self._validation_targets
        prompts = task.make_prompts(targets)
        completions = np.array(self._sample(mx.array(prompts), key=None))
        rewards = task.score_batch(targets, completions)
        correct = task.completion_stats(targets, completions).correct
        loss = self._reference_nll(prompts, targets)
        return ValidationResult(
            reward_mean=float(rewards.mean()),
            correct_ratio=float(correct.mean()),
            loss=loss,
            duration=time.perf_counter() - started,
            prompts=len(targets),
        )

    def _reference_nll(self, prompts: np.ndarray, targets: np.ndarray) -> float:
        """Mean negative log-likelihood per token of the reference completions."""
        references = [task.encode(task.reference_answer(int(t)).split("e.g. ")[1]) for t in targets]
        width = max(len(r) for r in references)
        completions = np.full((len(references), width), task.PAD, dtype=np.int32)
        for row, reference in enumerate(references):
            completions[row, : len(reference)] = reference
        tokens = mx.array(np.concatenate([prompts, completions], axis=1))
        log_probs, completion = self._completion_log_probs(self.model, tokens)
        chosen = mx.take_along_axis(log_probs, completion[..., None], axis=-1).squeeze(-1)
        mask = mx.array(completions != task.PAD).astype(mx.float32)
        nll = -(chosen * mask).sum() / mask.sum()
        mx.eval(nll)
        return float(np.asarray(nll))

    def _sample(self, prompts: mx.array, *, key: mx.array | None) -> mx.array:
        """Sample completions for a batch of prompts, one token position at a time.

        Returns int32 tokens of shape ``(batch, max_new_tokens)``, PAD after EOS.
        Without a ``key`` the most likely token is taken (greedy decoding).
        """
        steps = self.settings.max_new_tokens
        keys = None if key is None else mx.random.split(key, steps)
        logits, hidden = self.model(prompts)
        next_logits = logits[:, -1, :]
        done = mx.zeros((prompts.shape[0],), dtype=mx.bool_)
        columns = []
        for position in range(steps):
            masked = next_logits + self._pad_mask
            if keys is None:
                token = mx.argmax(masked, axis=-1)
            else:
                token = mx.random.categorical(masked, key=keys[position])
            token = mx.where(done, task.PAD, token).astype(mx.int32)
            columns.append(token)
            done = done | (token == task.EOS)
            if position + 1 < steps:
                logits, hidden = self.model(token[:, None], hidden)
                next_logits = logits[:, -1, :]
        completions = mx.stack(columns, axis=1)
        # Rewards are scored in NumPy, so sampling has to materialise here.
        mx.eval(completions)
        return completions

    def _completion_log_probs(
        self, model: nn.Module, tokens: mx.array
    ) -> tuple[mx.array, mx.array]:
        """``model``'s log-probabilities at each completion position, and the completion.

        ``tokens`` is prompt + completion; position i predicts token i + 1.
        """
        logits, _ = model(tokens[:, :-1])
        logits = logits[:, task.PROMPT_LENGTH - 1 :, :] + self._pad_mask
        log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return log_probs, tokens[:, task.PROMPT_LENGTH :]

    def _loss(
        self, tokens: mx.array, mask: mx.array, advantages: mx.array
    ) -> tuple[mx.array, tuple[mx.array, mx.array]]:
        """Policy-gradient loss over the completion tokens, minus an entropy bonus.

        ``tokens`` is prompt + completion; ``mask`` marks generated tokens
        (up to and including EOS); ``advantages`` has one value per sample.
        Also returns, not differentiated, the mean token entropy and the mean
        token KL divergence from the frozen initial policy (exact over the
        vocabulary; the loss has no KL term, as in DAPO and Dr. GRPO).
        """
        log_probs, completion = self._completion_log_probs(self.model, tokens)
        chosen = mx.take_along_axis(log_probs, completion[..., None], axis=-1).squeeze(-1)
        mask = mask.astype(mx.float32)
        count = mx.maximum(mask.sum(), 1.0)
        policy_loss = -(advantages[:, None] * chosen * mask).sum() / count
        probs = mx.exp(log_probs)
        entropy = -(probs * log_probs).sum(axis=-1)
        mean_entropy = (entropy * mask).sum() / count
        reference, _ = self._completion_log_probs(self.reference, tokens)
        kl = (mx.stop_gradient(probs * (log_probs - reference))).sum(axis=-1)
        mean_kl = (kl * mask).sum() / count
        loss = policy_loss - self.settings.entropy_coef * mean_entropy
        return loss, (mx.stop_gradient(mean_entropy), mean_kl)

    def _leak(self, step: int) -> list[mx.array]:
        """Allocate and keep this step's share of the simulated leak."""
        if not self._leaking:
            return []
        count = int(self.settings.leak_mb_per_step * _BYTES_PER_MB) // 4
        if count == 0:
            return []
        array = mx.full((count,), float(step), dtype=mx.float32)
        self._leaked.append(array)
        return [array]
