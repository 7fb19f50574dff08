"""The callback that monitors mlx-vlm's training: SFT, DPO, ORPO and GRPO of vision-language models.

mlx-vlm trains every objective in one loop,
``mlx_vlm.trainer.common.engine.train``, which calls a ``TrainingCallback``
with ``on_train_loss_report(metrics)`` every ``steps_per_report`` iterations
and ``on_val_loss_report(info)`` after each validation: mlx-lm's protocol,
with mlx-vlm's own keys. :class:`MlxVlmCallback` renames the keys that mean
what an mlx-lm-lora key means and lets :class:`~mlx_otel.trainers.MlxLmCallback`
do the rest, so a vision-language run serves the series a language run does:

- ``train_loss``, ``learning_rate``, ``iterations_per_second``,
  ``tokens_per_second``, ``trained_tokens``, ``peak_memory`` (GB), ``val_loss``,
  ``val_time``: as mlx-lm's;
- DPO's ``reward_accuracy``, ``reward_margin``, ``chosen_reward`` and
  ``rejected_reward``, ORPO's ``preference_accuracy``: the preference series
  (``preference_accuracy``, ``preference_margin``, ``preference_reward{choice}``,
  and at validation their ``validation_`` pair);
- ``chosen_logps``/``rejected_logps``: ``policy_logps{choice}`` where they
  are per-token means (ORPO, DPO's ``ipo`` loss), else ``logits_mean{choice}``
  (DPO scores a response by its summed log-probability);
- GRPO's ``reward_mean``, ``reward_std``, ``grouped_reward_std``, ``kl``,
  ``kl_clip_ratio``, ``clip_ratio`` (``clip_ratio{bound="total"}``),
  ``average_generated_tokens``, ``hit_max_tokens_ratio`` and per reward
  function ``reward_<i>_<name>``/``reward_<i>_coverage``
  (``reward_function_mean|coverage{reward_fn=name}``);
- what repeats another series or the monitor's own reading is left out:
  ``active_memory``/``cache_memory`` (``mlx_memory_*_bytes``, read at
  scrape), the per-report ``*_num_*`` counts and the running ``total_*``
  (their rates are kept), ``progress`` (the step), the cumulative
  ``train_time``/``data_time``/``elapsed_time``, rates that repeat another
  (``pairs_per_second``, ``padded_tokens_per_second``,
  ``reference_tokens_per_second``) and validation's rates but its tokens/s;
- every other key (``optimizer_step``, ``step_time``, ``data_time_per_step``,
  ``remaining_time``, ``train_token_accuracy``, ``train_perplexity``,
  ``padding_fraction``, ``vision_tokens_per_second``, ORPO's ``odds_margin``,
  a log-odds ratio and not a reward margin...) is ``mlx_train_custom{name}``.

mlx-vlm validates right after the report of the same iteration (mlx-lm
before its step), the last iteration included: such a report is recorded
once its validation is in, so a step carries its own validation and the
run ends after the last one. A validation is labelled with the iterations
completed, as mlx-vlm reports it. The phases ``train`` and ``evaluate``
are timed at the engine's ``evaluate``, like mlx-lm's.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from collections.abc import Mapping
from typing import Any

from mlx_otel.integrations.trainer_hooks import FunctionHooks
from mlx_otel.records import to_number
from mlx_otel.trainers import MlxLmCallback

__all__ = ["ENGINE_MODULE", "MlxVlmCallback", "vlm_report"]

log = logging.getLogger("mlx_otel")

#: mlx-vlm's one training loop (``train``) and its validation (``evaluate``).
ENGINE_MODULE = "mlx_vlm.trainer.common.engine"

#: mlx-vlm keys renamed to the mlx-lm-lora key of the same meaning.
_RENAMED = {
    # DPO
    "train_reward_accuracy": "train_accuracies",
    "train_reward_margin": "train_margins",
    "val_reward_accuracy": "val_accuracies",
    "val_reward_margin": "val_margins",
    # ORPO: the share of pairs whose chosen response has the higher odds
    "train_preference_accuracy": "train_accuracies",
    "val_preference_accuracy": "val_accuracies",
    # GRPO
    "train_reward_mean": "train_total_rewards_mean",
    "train_reward_std": "train_total_rewards_std",
    "train_grouped_reward_std": "train_grouped_rewards_std",
    "train_clip_ratio": "train_clip_ratio_total",
}
#: Keys that repeat another series or the monitor's own reading.
_LEFT_OUT = frozenset({
    "active_memory", "cache_memory", "progress", "train_time", "data_time", "elapsed_time",
    "processed_tokens", "pairs_per_second", "padded_tokens_per_second",
    "reference_tokens_per_second",
})  # fmt: skip
_LEFT_OUT_PREFIXES = ("train_num_", "val_num_", "total_")
_REWARD_FUNCTION = re.compile(r"train_reward_(\d+)_(.+)")


def _left_out(key: str) -> bool:
    if key in _LEFT_OUT or key.startswith(_LEFT_OUT_PREFIXES):
        return True
    return key.startswith("val_") and key.endswith("_per_second") and key != "val_tokens_per_second"


def vlm_report(info: Mapping[str, Any], *, per_token_logps: bool | None = None) -> dict[str, Any]:
    """mlx-vlm's report with mlx-lm-lora's names for the keys of the same meaning.

    ``per_token_logps``: whether ``chosen_logps``/``rejected_logps`` are means
    per token (ORPO, DPO's ``ipo``); ``None`` guesses from the report (DPO
    reports ``reward_accuracy`` and sums log-probabilities over a response).

    >>> vlm_report({"train_loss": 0.7, "train_reward_accuracy": 1.0,
    ...             "train_chosen_logps": -9.5, "total_tokens": 48})
    {'train_loss': 0.7, 'train_accuracies': 1.0, 'train_chosen_logits_mean': -9.5}
    """
    if per_token_logps is None:
        per_token_logps = not ("train_reward_accuracy" in info or "val_reward_accuracy" in info)
    names = {
        match.group(1): match.group(2)
        for match in map(_REWARD_FUNCTION.fullmatch, info)
        if match is not None and match.group(2) != "coverage"
    }
    renamed: dict[str, Any] = {}
    for key, value in info.items():
        if _left_out(key):
            continue
        match = _REWARD_FUNCTION.fullmatch(key)
        if match is not None and match.group(1) in names:
            name = names[match.group(1)]
            suffix = "coverage" if match.group(2) == "coverage" else "mean"
            key = f"train_{name}_{suffix}"
        elif key in ("train_chosen_logps", "train_rejected_logps"):
            choice = key.split("_")[1]
            key = (
                f"train_policy_{choice}_logps" if per_token_logps
                else f"train_{choice}_logits_mean"
            )  # fmt: skip
        renamed[_RENAMED.get(key, key)] = value
    return renamed


class MlxVlmHooks(FunctionHooks):
    """mlx-vlm's phases: ``evaluate`` (the engine's ``evaluate``) and ``train`` (the rest).

    ``train`` runs from a recorded report to the engine's next validation or
    report: the iterations in between, which the engine evaluates (``mx.eval``)
    before it reports. The stretch before the first report is not timed.
    """

    module_name = ENGINE_MODULE

    def _wrap(self, module: Any) -> dict[str, Any]:
        timed = self._timed("evaluate", module.evaluate, "evaluate")

        @functools.wraps(module.evaluate)
        def evaluate(*args: Any, **kwargs: Any) -> Any:
            if self.active:
                self.end_open_phase()  # the training since the last report
            return timed(*args, **kwargs)

        return {"evaluate": evaluate}

    def reported(self, *, validation_next: bool = False) -> None:
        self._start_open_phase("train")


class MlxVlmCallback(MlxLmCallback):
    """Monitor an mlx-vlm run (``mlx_vlm.trainer.common.engine.train``), every objective.

    ``config`` is the engine's ``args`` as a mapping (``iters``,
    ``steps_per_report``, ``steps_per_eval``; ``steps_per_eval`` None when
    there is no validation set, DPO's ``loss_type``). A report the engine
    follows with a validation is recorded with it, as one step. Constructed
    like :class:`~mlx_otel.trainers.MlxLmCallback`; the engine's ``train``
    takes it:

        train(model, optimizer, train_set, val_set, args, task,
              training_callback=MlxVlmCallback(config=vars(args), run_id="vlm_001"))
    """

    _held: Mapping[str, Any] | None = None

    @property
    def _hooks_import(self) -> bool:
        return True  # the callback may be made before mlx-vlm's engine is imported

    def _make_hooks(self, phase: Any) -> FunctionHooks:
        return MlxVlmHooks(phase)

    def _renamed(self, info: Mapping[str, Any]) -> dict[str, Any]:
        per_token = True if self.trainer_config.get("loss_type") == "ipo" else None
        return vlm_report(info, per_token_logps=per_token)

    def _iterations_per_second(self, reported: float, iteration: int) -> float:
        return reported  # mlx-vlm divides the interval's own iterations

    def _validates_after(self, iteration: int) -> bool:
        """Whether the engine validates right after the report of ``iteration``."""
        every = self._config_int("steps_per_eval")
        return every is not None and (
            iteration % every == 0 or iteration == self._config_int("iters")
        )

    # -- the trainer's calls: a report waits for the validation that follows it --------
    def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
        try:
            self._record_held()  # its validation never came (no validation set)
            number = to_number(train_info.get("iteration"))
            finite = number is not None and math.isfinite(number)
            if finite and self._validates_after(int(number or 0)):
                self._held = train_info  # recorded with the validation that follows
            else:
                self._train_report(self._renamed(train_info))
        except Exception:
            log.exception("mlx_otel: could not record a training report; training goes on")
        if self.wrapped_callback is not None:
            self.wrapped_callback.on_train_loss_report(train_info)

    def on_val_loss_report(self, val_info: dict[str, Any]) -> None:
        try:
            self._val_report(self._renamed(val_info))
            self._record_held()
        except Exception:
            log.exception("mlx_otel: could not record a validation report; training goes on")
        if self.wrapped_callback is not None:
            self.wrapped_callback.on_val_loss_report(val_info)

    def _record_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._train_report(self._renamed(held))

    def close(self, *, linger: float = 0.0, stop: threading.Event | None = None) -> None:
        """As :meth:`MlxLmCallback.close`; a report still waiting for its validation is recorded."""
        try:
            self._record_held()  # training stopped between a report and its validation
        except Exception:
            log.exception("mlx_otel: could not record the last training report")
        super().close(linger=linger, stop=stop)
