"""mlx-lm-lora: every call of ``mlx_lm_lora.train.run`` reports to mlx_otel, every mode.

``run(args, training_callback=None)`` builds the model and calls the trainer
of ``args.train_mode`` (sft, grpo, dpo, cpo, orpo, online_dpo, xpo, ppo,
rlhf_reinforce, ftpo, dsla, klpo) with the callback; ``mlx_lm_lora.train``'s
``main`` (the ``mlx_lm_lora.train`` command) calls it without one, and
``--wandb`` wraps what it is given. Wrapping ``run`` sees every mode, the
command line and scripts alike; :class:`~mlx_otel.trainers.MlxLmLoraCallback`
is chained in front. The configuration is ``vars(args)``, kept by reference:
``run`` fills in ``iters`` from ``--epochs`` after the call starts.
mlx-lm-lora has no run name: the run is ``MLX_OTEL_RUN_ID`` or a fresh id.

    opentelemetry-instrument mlx_lm_lora.train --train-mode dpo --model ... --train ...
"""

from __future__ import annotations

from mlx_otel.instrumentation.base import TrainerInstrumentor
from mlx_otel.trainers import MlxLmLoraCallback

__all__ = ["MlxLmLoraInstrumentor"]


class MlxLmLoraInstrumentor(TrainerInstrumentor):
    """Monitors mlx-lm-lora's ``run`` (every ``--train-mode``).

        MlxLmLoraInstrumentor().instrument()
    """

    requirement = "mlx-lm-lora >= 5.10.2, < 6"
    module = "mlx_lm_lora.train"
    function = "run"
    callback = MlxLmLoraCallback
