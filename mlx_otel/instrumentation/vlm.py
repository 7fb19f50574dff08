"""mlx-vlm: every call of ``mlx_vlm.trainer.common.engine.train`` reports to mlx_otel.

mlx-vlm 0.7 trains every objective of a vision-language model (SFT, DPO,
ORPO, GRPO) in that one loop, whoever calls it: the ``mlx_vlm.train``
command and ``Trainer.train`` (through ``mlx_vlm.train.run``), the recipes
``train_dpo``/``train_orpo``/``train_vlm``, or a script with a
``TrainingTask`` of its own. Its ``training_callback`` gets
:class:`~mlx_otel.trainers_vlm.MlxVlmCallback` in front of the one it was
given (mlx-vlm's ``WandBCallback`` among them). The callers import ``train``
from the engine module when they call it, so wrapping the module's
attribute reaches them all; ``mlx_vlm.trainer.runner`` binds it at its own
import, and an already imported mlx-vlm module holding the original is
rebound too (and put back by ``uninstrument()``). The configuration is the
engine's ``args``; without a validation set the engine never validates.
mlx-vlm has no run name: the run is ``MLX_OTEL_RUN_ID`` or a fresh id.
mlx-vlm's older loops (``mlx_vlm.trainer.vlm.sft.trainer.train``, the legacy
``train_orpo``) take no callback and are not monitored.

    mlx-otel run --metrics-port 9464 -- mlx_vlm.train --model ... --dataset ...
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from mlx_otel.instrumentation.base import TrainerInstrumentor, args_config
from mlx_otel.trainers_vlm import ENGINE_MODULE, MlxVlmCallback

__all__ = ["MlxVlmInstrumentor"]


class MlxVlmInstrumentor(TrainerInstrumentor):
    """Monitors mlx-vlm's training engine (every objective).

    MlxVlmInstrumentor().instrument()
    """

    requirement = "mlx-vlm >= 0.7.10, < 1"
    module = ENGINE_MODULE
    function = "train"
    callback = MlxVlmCallback

    _rebound: list[Any] = []

    def trainer_config(self, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        config = args_config(arguments.get("args"))
        if arguments.get("val_dataset") is None:
            config["steps_per_eval"] = None  # the engine validates only with a set
        return config

    def instrument(self, **kwargs: Any) -> Any:
        """Wrap the engine's ``train`` (now, or at its import), and where mlx-vlm bound it."""
        result = super().instrument(**kwargs)
        engine = sys.modules.get(self.module)
        wrapper = getattr(engine, self.function, None)
        original = getattr(wrapper, "__wrapped__", None)
        self._rebound = []
        if original is None:  # not wrapped (yet): modules imported later bind the wrapper
            return result
        for name, other in list(sys.modules.items()):
            if name.startswith("mlx_vlm.") and getattr(other, self.function, None) is original:
                setattr(other, self.function, wrapper)
                self._rebound.append(other)
        return result

    def uninstrument(self, **kwargs: Any) -> Any:
        """Put the original ``train`` back, in the engine and where it was rebound."""
        wrapper = getattr(sys.modules.get(self.module), self.function, None)
        for other in self._rebound:
            if getattr(other, self.function, None) is wrapper:
                setattr(other, self.function, getattr(wrapper, "__wrapped__", wrapper))
        self._rebound = []
        return super().uninstrument(**kwargs)
