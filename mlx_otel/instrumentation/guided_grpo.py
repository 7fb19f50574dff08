"""mlx-guided-grpo: every call of ``mlx_grpo.train.run`` (the ``mlx-grpo`` command) reports.

mlx-guided-grpo is mlx-lm-lora's GRPO with a curriculum: its ``run(args,
training_callback=None)`` has mlx-lm-lora's shape, and its trainer reports
mlx-lm-lora GRPO's keys (``train_total_rewards_mean``, ``train_kl``, per
reward function ``train_<fn>_mean``...), so
:class:`~mlx_otel.trainers.MlxLmLoraCallback` maps them onto the same
series. It validates without reporting to the callback: no validation
series. Its trainer reads ``mx.metal.device_info()``'s working-set size,
supplied on MLX's Linux CPU build like mlx-lm-lora's.

    opentelemetry-instrument mlx-grpo --model ... --train --data ...
"""

from __future__ import annotations

from mlx_otel.instrumentation.base import TrainerInstrumentor
from mlx_otel.trainers import MlxLmLoraCallback

__all__ = ["MlxGuidedGrpoInstrumentor"]


class MlxGuidedGrpoInstrumentor(TrainerInstrumentor):
    """Monitors mlx-guided-grpo's ``run``.

        MlxGuidedGrpoInstrumentor().instrument()
    """

    requirement = "mlx-guided-grpo >= 2.1.1, < 3"
    module = "mlx_grpo.train"
    function = "run"
    callback = MlxLmLoraCallback
