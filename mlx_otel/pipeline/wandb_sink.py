"""The WandB sink: the same step values, reward distributions, gradients and charts in WandB.

Every call goes to a :class:`~mlx_otel.integrations.wandb_thread.BackgroundWandB`
(or any logger with the same methods), which queues it for WandB's own
thread, so neither the worker nor the run's end waits for the WandB
server. Closing finishes the WandB run, waiting at most
``monitoring.wandb_finish_timeout`` and never past the run's deadline: what
is not uploaded by then stays in the run's local folder for ``wandb sync``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlx_otel.catalog import METRICS, Source, by_key, wandb_key
from mlx_otel.pipeline.sink import Record, seconds_left, step_values
from mlx_otel.records import GradientRecord, to_numbers

__all__ = ["WandBSink"]

#: Keys of the trainer metrics among a step's values (named after the catalogue).
_TRAINER_KEYS = frozenset(m.key for m in METRICS if m.source is Source.TRAINER)


class WandBSink:
    """Forwards step values, reward distributions, gradients and charts to WandB."""

    name = "wandb"
    error_kind = "wandb"
    whole_drain = False

    def __init__(
        self,
        logger: Any,
        *,
        log_samples_every: int,
        log_memory: bool = True,
        finish_timeout: float = 10.0,
    ) -> None:
        self.logger = logger
        self._every = max(1, log_samples_every)
        self._log_memory = log_memory
        self._finish_timeout = finish_timeout

    def handle(self, batch: Sequence[Record]) -> None:
        for record in batch:
            if isinstance(record, GradientRecord):
                self.logger.log_gradients(dict(record.per_layer), step=record.step)
                continue
            values = step_values(record, memory=self._log_memory)
            for key, series in record.labelled.items():  # rl/clip_ratio/low
                metric = by_key(key)
                for label in series:
                    values[metric.wandb_name(label)] = values.pop(metric.column(label))
            for key in _TRAINER_KEYS.intersection(values):
                values[wandb_key(key)] = values.pop(key)  # rl/kl, beside the user's custom/kl
            self.logger.log_metrics(values, step=record.step)
            # A histogram costs four times a row of scalars in wandb.log:
            # send the distribution at the sample-table cadence.
            if record.rewards is not None and record.step % self._every == 0:
                rewards = to_numbers(record.rewards)
                rewards = None if rewards is None else rewards[np.isfinite(rewards)]
                if rewards is not None and rewards.size:
                    self.logger.log_distribution("rewards", rewards, step=record.step)

    def log_charts(self, paths: Mapping[str, Path], step: int | None) -> None:
        for kind, path in paths.items():
            self.logger.log_chart(kind, path, step=step)

    def close(self, deadline: float) -> None:
        """Finish the WandB run, waiting at most the finish timeout and never past ``deadline``."""
        timeout = min(self._finish_timeout, seconds_left(deadline))
        try:
            self.logger.finish(timeout=timeout)
        except TypeError:  # a plain EnhancedWandBLogger finishes synchronously
            self.logger.finish()
