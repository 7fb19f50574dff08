"""mlx-lm: every call of ``mlx_lm.tuner.trainer.train`` reports to mlx_otel.

``train`` is where every mlx-lm fine-tune goes through, whoever calls it:
``mlx_lm.lora`` (``mlx_lm.lora ...``, ``python -m mlx_lm lora ...``), a
script of the user's, or another trainer built on it (mlx-tune's SFT calls
it without a callback). Its ``training_callback`` gets
:class:`~mlx_otel.trainers.MlxLmCallback` in front of the one it was given.
The trainer's configuration is its ``args`` (a ``TrainingArgs``): ``iters``
marks the last report, ``steps_per_report`` the report interval. mlx-lm
has no run name: the run is ``MLX_OTEL_RUN_ID`` or a fresh id.

    opentelemetry-instrument mlx_lm.lora --model ... --train --data ...
"""

from __future__ import annotations

from mlx_otel.instrumentation.base import TrainerInstrumentor
from mlx_otel.trainers import MlxLmCallback

__all__ = ["MlxLmInstrumentor"]


class MlxLmInstrumentor(TrainerInstrumentor):
    """Monitors mlx-lm's ``train`` (LoRA, DoRA, full fine-tuning).

        MlxLmInstrumentor().instrument()      # then train as usual
    """

    requirement = "mlx-lm >= 0.32.2, < 1"
    module = "mlx_lm.tuner.trainer"
    function = "train"
    callback = MlxLmCallback
