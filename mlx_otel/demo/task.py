"""The demo's verifiable toy task: write digits that sum to a target.

Everything here is plain Python and NumPy, so the task, its vocabulary and
its reward can be read and tested without MLX.

A prompt is ``#NN?``: the target ``NN`` (0..``max_target``, two digits). The
policy answers with some "thinking" tokens, the answer delimiter ``=``, one to
three answer digits and the end-of-sequence token ``$``::

    prompt     #12?
    completion ..7=93$      thinking "..7", answer "=93$", 9 + 3 = 12

Example:
    >>> from mlx_otel.demo.task import encode, score_completion
    >>> score_completion(12, encode("..7=93$"))
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ANSWER",
    "EOS",
    "PAD",
    "PROMPT_LENGTH",
    "VOCAB",
    "VOCAB_SIZE",
    "REWARD_FUNCTIONS",
    "CompletionStats",
    "completion_stats",
    "count_tokens",
    "decode",
    "encode",
    "is_correct",
    "make_prompts",
    "reference_answer",
    "reward_parts",
    "score_batch",
    "score_completion",
]

# One character per token keeps samples readable in a table. Digits are
# tokens 0..9 so a digit token *is* its value.
VOCAB = "0123456789.=$#?_"
VOCAB_SIZE = len(VOCAB)
THINK = VOCAB.index(".")  # a filler "thinking" token; any token before "=" thinks
ANSWER = VOCAB.index("=")  # answer delimiter
EOS = VOCAB.index("$")
PROMPT_START = VOCAB.index("#")
PROMPT_END = VOCAB.index("?")
PAD = VOCAB.index("_")  # fills a completion after EOS; never sampled
PROMPT_LENGTH = 4  # "#", two target digits, "?"
MAX_ANSWER_DIGITS = 3

# Reward parts. Format credit mirrors R1-style "think, then answer" rewards;
# most of the reward is for the answer's digit sum, with partial credit so
# that a near miss still gives the policy gradient a direction.
_DELIMITER_CREDIT = 0.1
_THOUGHT_CREDIT = 0.1
_EOS_CREDIT = 0.1
_ANSWER_CREDIT = 0.7
_SUM_TOLERANCE = 9.0  # a sum this far off the target earns no answer credit


def encode(text: str) -> list[int]:
    """Turn a string of vocabulary characters into token ids.

    Example:
        >>> encode("#07?")
        [13, 0, 7, 14]
    """
    try:
        return [VOCAB.index(ch) for ch in text]
    except ValueError:
        raise ValueError(f"{text!r} has characters outside the vocabulary {VOCAB!r}") from None


def decode(tokens: Sequence[int] | np.ndarray, *, strip_padding: bool = True) -> str:
    """Turn token ids back into text, dropping padding after EOS by default.

    Example:
        >>> decode([10, 11, 9, 3, 12, 15, 15])
        '.=93$'
    """
    text = "".join(VOCAB[int(t)] for t in tokens)
    return text.replace(VOCAB[PAD], "") if strip_padding else text


def make_prompts(targets: np.ndarray) -> np.ndarray:
    """Encode targets as prompts ``#NN?``, shape ``(len(targets), PROMPT_LENGTH)``.

    Example:
        >>> make_prompts(np.array([12, 3])).tolist()
        [[13, 1, 2, 14], [13, 0, 3, 14]]
    """
    targets = np.asarray(targets, dtype=np.int64)
    if targets.ndim != 1 or targets.min(initial=0) < 0 or targets.max(initial=0) > 99:
        raise ValueError(f"targets must be a 1-d array of integers in 0..99, got {targets!r}")
    prompts = np.empty((targets.shape[0], PROMPT_LENGTH), dtype=np.int32)
    prompts[:, 0] = PROMPT_START
    prompts[:, 1] = targets // 10
    prompts[:, 2] = targets % 10
    prompts[:, 3] = PROMPT_END
    return prompts


def reference_answer(target: int) -> str:
    """A readable reference: the target and one shortest correct completion.

    Example:
        >>> reference_answer(12)
        'digits summing to 12, e.g. .=93$'
    """
    digits = []
    remaining = int(target)
    while remaining > 9:
        digits.append(9)
        remaining -= 9
    digits.append(remaining)
    return f"digits summing to {target}, e.g. .={''.join(map(str, digits))}$"


def _generated(tokens: Sequence[int] | np.ndarray) -> list[int]:
    """The tokens the policy actually produced: up to and including EOS."""
    out: list[int] = []
    for token in tokens:
        token = int(token)
        if token == PAD:
            break
        out.append(token)
        if token == EOS:
            break
    return out


#: The reward's parts, as a trainer's reward functions: their sum is the reward.
REWARD_FUNCTIONS: tuple[str, ...] = ("format", "answer")


def reward_parts(target: int, tokens: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """The format and answer parts of a completion's reward (see :func:`score_completion`).

    Example:
        >>> reward_parts(12, encode("..7=94$"))
        (0.3, 0.622222)
    """
    generated = _generated(tokens)
    if ANSWER not in generated:
        return 0.0, 0.0
    delimiter = generated.index(ANSWER)
    after = generated[delimiter + 1 :]
    terminated = EOS in after
    answer = after[: after.index(EOS)] if terminated else after
    form = _DELIMITER_CREDIT
    form += _THOUGHT_CREDIT if delimiter > 0 else 0.0
    form += _EOS_CREDIT if terminated else 0.0
    credit = 0.0
    if 1 <= len(answer) <= MAX_ANSWER_DIGITS and all(t <= 9 for t in answer):
        miss = abs(sum(answer) - int(target))
        credit = _ANSWER_CREDIT * max(0.0, 1.0 - miss / _SUM_TOLERANCE)
    return round(form, 6), round(credit, 6)


def score_completion(target: int, tokens: Sequence[int] | np.ndarray) -> float:
    """Reward in [0, 1] for one completion (trailing padding is ignored).

    0.1 for an answer delimiter, 0.1 for at least one thinking token before
    it, 0.1 for ending with EOS, and up to 0.7 when the answer is one to
    three digits, falling linearly from 0.7 at the exact sum to 0 at nine
    off.

    Example:
        >>> score_completion(5, encode("=5$"))  # no thinking
        0.9
        >>> score_completion(5, encode("...5"))  # never answers
        0.0
    """
    form, credit = reward_parts(target, tokens)
    return round(form + credit, 6)


def is_correct(target: int, tokens: Sequence[int] | np.ndarray) -> bool:
    """Whether the answer is right: one to three digits summing exactly to ``target``.

    The verifiable check, apart from the format: a right answer that never
    writes ``$`` is still right (its reward lacks the end credit).

    Example:
        >>> is_correct(12, encode("..=93$")), is_correct(12, encode("..=94$"))
        (True, False)
    """
    return reward_parts(target, tokens)[1] >= _ANSWER_CREDIT - 1e-9


def score_batch(targets: np.ndarray, completions: np.ndarray) -> np.ndarray:
    """Rewards for a batch: ``targets`` shape ``(B,)``, ``completions`` ``(B, T)``.

    Example:
        >>> score_batch(np.array([3]), np.array([encode("..=3$_")])).tolist()
        [1.0]
    """
    return np.array(
        [score_completion(int(t), row) for t, row in zip(targets, completions, strict=True)],
        dtype=np.float32,
    )


def count_tokens(completions: np.ndarray) -> tuple[int, int]:
    """Thinking and answer tokens summed over a batch of completions.

    Tokens before the first delimiter are thinking; the delimiter and
    everything after it up to and including EOS are answer. A completion
    without a delimiter is all thinking.

    Example:
        >>> count_tokens(np.array([encode("..=93$"), encode("4..5._")]))
        (7, 4)
    """
    completions = np.asarray(completions)
    generated = completions != PAD  # PAD only ever follows EOS
    is_delimiter = (completions == ANSWER) & generated
    # True from the first delimiter on: a cumulative "seen a delimiter" flag.
    in_answer = np.cumsum(is_delimiter, axis=1) > 0
    answer = int(np.sum(in_answer & generated))
    thinking = int(np.sum(generated)) - answer
    return thinking, answer


@dataclass(frozen=True)
class CompletionStats:
    """Per-completion numbers of a batch, one entry per completion (row).

    ``lengths`` counts the generated tokens (up to and including EOS);
    ``truncated`` marks completions that reached the maximum length without
    EOS; ``thinking``/``answer`` split each length at the first delimiter;
    ``correct`` is :func:`is_correct`; ``rewards`` has one row per reward
    function of :data:`REWARD_FUNCTIONS`.
    """

    lengths: np.ndarray
    truncated: np.ndarray
    correct: np.ndarray
    thinking: np.ndarray
    answer: np.ndarray
    rewards: np.ndarray


def completion_stats(targets: np.ndarray, completions: np.ndarray) -> CompletionStats:
    """Lengths, truncation, correctness, token split and reward parts of a batch.

    Example:
        >>> rows = np.array([encode("..=3$_"), encode("......")])
        >>> stats = completion_stats(np.array([3, 3]), rows)
        >>> stats.lengths.tolist(), stats.truncated.tolist(), stats.correct.tolist()
        ([5, 6], [False, True], [True, False])
        >>> stats.thinking.tolist(), stats.answer.tolist(), stats.rewards.tolist()
        ([2, 6], [3, 0], [[0.3, 0.0], [0.7, 0.0]])
    """
    completions = np.asarray(completions)
    generated = completions != PAD
    lengths = generated.sum(axis=1)
    ended = ((completions == EOS) & generated).any(axis=1)
    in_answer = np.cumsum((completions == ANSWER) & generated, axis=1) > 0
    answer = (in_answer & generated).sum(axis=1)
    parts = np.array(
        [reward_parts(int(t), row) for t, row in zip(targets, completions, strict=True)],
        dtype=np.float64,
    ).reshape(-1, len(REWARD_FUNCTIONS))
    return CompletionStats(
        lengths=lengths.astype(np.int64),
        truncated=~ended & (lengths == completions.shape[1]),
        correct=parts[:, 1] >= _ANSWER_CREDIT - 1e-9,
        thinking=(lengths - answer).astype(np.int64),
        answer=answer.astype(np.int64),
        rewards=parts.T.copy(),
    )
