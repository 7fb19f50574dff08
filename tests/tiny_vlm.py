"""A tiny vision-language model and its data, built in code (no download), for mlx-vlm's trainer.

mlx-vlm calls a model as ``model(input_ids, pixel_values, attention_mask)``
and reads its ``config`` (``model_type``, ``image_token_index``). This one
puts a linear projection of each image at the image token's position,
mixes positions causally (running mean) and predicts the next token: small
enough to train in a second, a VLM as far as mlx-vlm's objectives go (its
vision-token counts, media batching and collation all run). The data are
rows as mlx-vlm's processors make them (``input_ids``, ``attention_mask``,
``completion_mask``, ``pixel_values``), so its own recipes train on them:

    from mlx_vlm.trainer.vlm.dpo.trainer import train_dpo
    model, reference = tiny_vlm(), tiny_vlm()
    train_dpo(model, reference, optimizer, preference_rows(8), preference_rows(4), dpo_args(...))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["IMAGE_TOKEN", "dpo_args", "preference_rows", "sft_rows", "tiny_vlm"]

IMAGE_TOKEN, VOCAB, DIM, PIXELS = 3, 32, 32, (3, 4, 4)


def tiny_vlm() -> Any:
    """A new tiny VLM (the same weights for every call: the seed is fixed)."""
    import mlx.core as mx
    import mlx.nn as nn

    class TinyVlm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = {"model_type": "tiny_vlm", "image_token_index": IMAGE_TOKEN,
                           "vocab_size": VOCAB}  # fmt: skip
            self.embed = nn.Embedding(VOCAB, DIM)
            self.vision = nn.Linear(PIXELS[0] * PIXELS[1] * PIXELS[2], DIM)
            self.hidden = nn.Linear(DIM, DIM)
            self.head = nn.Linear(DIM, VOCAB)

        def __call__(
            self, input_ids: Any, pixel_values: Any = None, mask: Any = None, **_: Any
        ) -> Any:
            h = self.embed(input_ids)
            if pixel_values is not None:
                image = self.vision(pixel_values.reshape(pixel_values.shape[0], -1))
                h = mx.where((input_ids == IMAGE_TOKEN)[..., None], image[:, None, :], h)
            steps = mx.arange(1, h.shape[1] + 1).reshape(1, -1, 1)
            return self.head(nn.gelu(self.hidden(mx.cumsum(h, axis=1) / steps)))

    mx.random.seed(0)
    model = TinyVlm()
    mx.eval(model.parameters())
    return model


def _row(prompt: list[int], answer: list[int], seed: int) -> dict[str, Any]:
    import mlx.core as mx

    ids = prompt + answer
    return {
        "input_ids": mx.array([ids]),
        "attention_mask": mx.ones((1, len(ids)), dtype=mx.int32),
        "completion_mask": mx.array([[0] * len(prompt) + [1] * len(answer)]),
        "pixel_values": mx.random.uniform(shape=(1, *PIXELS), key=mx.random.key(seed)),
    }


def preference_rows(count: int) -> list[dict[str, Any]]:
    """Pairs of a chosen and a rejected answer about one image each."""
    rows = []
    for i in range(count):
        prompt = [2, IMAGE_TOKEN, 5 + i % 4, 9]
        rows.append({"chosen": _row(prompt, [10 + i % 4, 20, 1], i),
                     "rejected": _row(prompt, [14 + i % 4, 25, 1], i)})  # fmt: skip
    return rows


def sft_rows(count: int) -> list[dict[str, Any]]:
    """Answers about one image each."""
    return [_row([2, IMAGE_TOKEN, 5 + i % 4, 9], [10 + i % 4, 20, 1], i) for i in range(count)]


def dpo_args(folder: Path, *, kind: str = "dpo", iters: int = 4, report: int = 2,
             **settings: Any) -> Any:  # fmt: skip
    """mlx-vlm's training arguments for ``kind`` (dpo, orpo, sft), adapters saved under ``folder``."""
    from mlx_vlm.trainer.vlm.config import VLMTrainingArgs
    from mlx_vlm.trainer.vlm.dpo.config import DPOTrainingArgs
    from mlx_vlm.trainer.vlm.orpo.config import ORPOTrainingArgs

    cls = {"dpo": DPOTrainingArgs, "orpo": ORPOTrainingArgs, "sft": VLMTrainingArgs}[kind]
    options = {"iters": iters, "steps_per_report": report, "steps_per_eval": report,
               "val_batches": 1, "batch_size": 2, "max_seq_length": 16, "pad_to_multiple": 8,
               "adapter_file": str(folder / f"{kind}_adapters.safetensors"), **settings}  # fmt: skip
    return cls(**options)
