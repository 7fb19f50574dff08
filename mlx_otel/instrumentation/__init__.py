"""OpenTelemetry instrumentors for the MLX trainers: monitoring with no change to their code.

``opentelemetry-instrument`` loads every instrumentor registered under the
entry point group ``opentelemetry_instrumentor``; mlx_otel registers one per
trainer (``pyproject.toml``), and ``mlx-otel run`` loads the same ones
without the launcher:

    opentelemetry-instrument mlx_lm.lora --model ... --train --data ...
    mlx-otel run --metrics-port 9464 -- mlx_lm_lora.train --train-mode dpo ...

From Python, instrument before the trainer is imported:

    from mlx_otel.instrumentation import MlxLmInstrumentor
    MlxLmInstrumentor().instrument(run_id="sft_001")
"""

from __future__ import annotations

from mlx_otel.instrumentation.base import TrainerInstrumentor, is_monitored
from mlx_otel.instrumentation.device import working_set_supplied
from mlx_otel.instrumentation.guided_grpo import MlxGuidedGrpoInstrumentor
from mlx_otel.instrumentation.lm import MlxLmInstrumentor
from mlx_otel.instrumentation.lm_lora import MlxLmLoraInstrumentor
from mlx_otel.instrumentation.tune import MlxTuneInstrumentor
from mlx_otel.instrumentation.vlm import MlxVlmInstrumentor

__all__ = [
    "INSTRUMENTORS",
    "MlxGuidedGrpoInstrumentor",
    "MlxLmInstrumentor",
    "MlxLmLoraInstrumentor",
    "MlxTuneInstrumentor",
    "MlxVlmInstrumentor",
    "TrainerInstrumentor",
    "is_monitored",
    "working_set_supplied",
]

#: Every trainer instrumentor, by its entry point name (``opentelemetry_instrumentor``).
INSTRUMENTORS: dict[str, type[TrainerInstrumentor]] = {
    "mlx_lm": MlxLmInstrumentor,
    "mlx_lm_lora": MlxLmLoraInstrumentor,
    "mlx_guided_grpo": MlxGuidedGrpoInstrumentor,
    "mlx_tune": MlxTuneInstrumentor,
    "mlx_vlm": MlxVlmInstrumentor,
}
