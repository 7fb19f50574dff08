"""Layer-wise gradient norms: computed once, served, and handed to the sinks.

``TrainingMonitor.log_gradients`` takes the tree ``mlx.nn.value_and_grad``
returns. All norms come from one MLX evaluation
(:func:`~mlx_otel.numbers.gradients.layer_grad_norms`); beyond
``max_series`` layers they are grouped by module prefix, so the
``mlx_train_layer_grad_norm{layer}`` series stay bounded. The global norm
is served as ``mlx_train_grad_norm`` (a ``grad_norm=`` logged later wins),
and the per-layer norms reach WandB and the charts as a
:class:`~mlx_otel.records.GradientRecord` on the background worker.

    gradients = GradientLog(recorder, ledger=ledger, max_series=64, forward=None)
    norms = gradients.log(step, grads)      # GradientNorms, or None if grads are not a tree
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlx_otel.errors import ErrorLedger
from mlx_otel.numbers.gradients import GradientNorms, layer_grad_norms
from mlx_otel.pipeline.recorder import StepRecorder
from mlx_otel.records import GradientRecord

__all__ = ["GradientLog"]


class GradientLog:
    """Serves a step's layer gradient norms and forwards them to the sinks."""

    def __init__(
        self,
        recorder: StepRecorder,
        *,
        ledger: ErrorLedger,
        max_series: int,
        forward: Callable[[GradientRecord], None] | None,
        strict: bool = False,
    ) -> None:
        self._recorder = recorder
        self._ledger = ledger
        self._max_series = max_series
        self._forward = forward
        self._strict = strict

    def log(self, step: int, grads: Any) -> GradientNorms | None:
        """The norms of ``grads``, served; ``None`` (counted) when they cannot be read."""
        try:
            norms = layer_grad_norms(grads, max_series=self._max_series)
        except Exception as exc:
            self._ledger.report_exception("invalid_value", "log_gradients", exc)
            if self._strict:
                raise
            return None
        self._recorder.set_series("layer_grad_norm", norms.per_layer)
        # The global norm is mlx_train_grad_norm (a grad_norm= logged later wins).
        self._recorder.set_latest("grad_norm", norms.global_norm)
        if self._forward is not None:
            self._forward(GradientRecord(step, norms.per_layer))
        return norms
