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

import numpy as np

__all__ = [
    "ANSWER",
    "EOS",
    "PAD",
    "PROMPT_LENGTH",
    "VOCAB",
    "VOCAB_SIZE",
    "count_tokens",
    "decode",
    "encode",
    "make_prompts",
    "reference_answer",
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
    generated = _generated(tokens)
    if ANSWER not in generated:
        return 0.0
    delimiter = generated.index(ANSWER)
    after = generated[delimiter + 1 :]
    terminated = EOS in after
    answer = after[: after.index(EOS)] if terminated else after
    reward = _DELIMITER_CREDIT
    reward += _THOUGHT_CREDIT if delimiter > 0 else 0.0
    reward += _EOS_CREDIT if terminated else 0.0
    if 1 <= len(answer) <= MAX_ANSWER_DIGITS and all(t <= 9 for t in answer):
        miss = abs(sum(answer) - int(target))
        reward += _ANSWER_CREDIT * max(0.0, 1.0 - miss / _SUM_TOLERANCE)
    return round(reward, 6)


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
