"""A tiny llama, a word-level tokenizer and small data sets, built in code (no download).

Shared by the trainer tests and the trainer-end benchmark: a two-layer
model with a chat template, saved like a Hugging Face repository, that
``mlx_lm.lora`` and ``mlx_lm_lora.train`` load as they would any other.

    model = build_model(tmp_path / "model")
    write_sum_data(tmp_path)      # sft/{train,valid}.jsonl, grpo/{train,valid}.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["REWARD_FUNCTIONS", "SUMS", "build_model", "write_jsonl", "write_preference_data",
           "write_sum_data"]  # fmt: skip

#: The sums every data set is made of: (a, b), "what is a plus b ?".
SUMS = [(i % 7, (i * 3) % 5) for i in range(16)]

#: The GRPO reward functions of ``rewards.py`` (``--reward-functions-file``).
REWARD_FUNCTIONS = ("digit_reward", "length_reward")
_REWARDS_FILE = '''
from mlx_lm_lora.trainer.grpo_reward_functions import register_reward_function


@register_reward_function()
def digit_reward(prompts, completions, answer, types=None):
    return [sum(w.isdigit() for w in c.split()) / max(1, len(c.split())) for c in completions]


@register_reward_function()
def length_reward(prompts, completions, answer, types=None):
    return [min(1.0, len(c.split()) / 8) for c in completions]
'''


def build_model(folder: Path) -> Path:
    """A tiny llama and a word-level tokenizer with a chat template, saved like an HF repo."""
    import mlx.core as mx
    from mlx_lm.models import llama
    from mlx_lm.utils import save_config, save_model
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<s>", "</s>", "system", "user", "assistant", ":", "what", "is",
             "plus", "?", *map(str, range(20))]  # fmt: skip
    words += [f"w{i}" for i in range(64 - len(words))]
    vocab = {w: i for i, w in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="</s>",
    )  # fmt: skip
    wrapped.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    args = llama.ModelArgs(
        model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=len(vocab),
        max_position_embeddings=256,
    )  # fmt: skip
    mx.random.seed(0)
    model = llama.Model(args)
    mx.eval(model.parameters())
    folder.mkdir(parents=True)
    save_model(folder, model)
    config = {k: v for k, v in vars(args).items() if v is not None}
    save_config({**config, "eos_token_id": vocab["</s>"]}, folder / "config.json")
    wrapped.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def write_sum_data(root: Path) -> None:
    """Small SFT (``root/sft``) and GRPO (``root/grpo``) data sets of sums, and ``rewards.py``."""
    for name, rows in (("train", SUMS), ("valid", SUMS[:4])):
        write_jsonl(root / "sft" / f"{name}.jsonl",
                    [{"text": f"what is {a} plus {b} ? {a + b} </s>"} for a, b in rows])  # fmt: skip
        write_jsonl(root / "grpo" / f"{name}.jsonl",
                    [{"prompt": f"what is {a} plus {b} ?", "answer": str(a + b)}
                     for a, b in rows[:8]])  # fmt: skip
    (root / "rewards.py").write_text(_REWARDS_FILE)


def write_preference_data(root: Path) -> None:
    """Pairs of sums, the right answer chosen, a wrong one rejected (``root/dpo``)."""
    rows = [{"prompt": f"what is {a} plus {b} ?", "chosen": f"{a + b} </s>",
             "rejected": f"{(a + b + 3) % 20} </s>"} for a, b in SUMS[:8]]  # fmt: skip
    write_jsonl(root / "dpo" / "train.jsonl", rows)
    write_jsonl(root / "dpo" / "valid.jsonl", rows[:4])
