"""The dispatcher: every sink gets every record; a drain inside a sink's handle skips that sink.

The chart sink awaits its render for seconds; meanwhile the worker keeps
draining, so a fast loop's steps are not dropped for want of room. A real
monitor with real charts proves it end to end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mlx_otel import TrainingMonitor
from mlx_otel.pipeline.dispatch import Dispatcher


class Source:
    """Records waiting for the worker: numbers, handed out in order."""

    def __init__(self) -> None:
        self.waiting: list[int] = []
        self.folds = 0

    @property
    def pending(self) -> int:
        return len(self.waiting)

    def drain(self, limit: int | None = None) -> Sequence[Any]:
        count = len(self.waiting) if limit is None else limit
        taken, self.waiting = self.waiting[:count], self.waiting[count:]
        return taken

    def fold(self) -> None:
        self.folds += 1


class Sink:
    def __init__(self, name: str, whole_drain: bool, during: Any = None) -> None:
        self.name, self.whole_drain, self.error_kind = name, whole_drain, "worker"
        self.got: list[int] = []
        self.during = during

    def handle(self, batch: Sequence[Any]) -> None:
        self.got.extend(batch)
        if self.during is not None:
            self.during()


def test_a_drain_inside_a_sinks_handle_reaches_every_other_sink_in_order() -> None:
    source = Source()
    wandb, statistics = Sink("wandb", False), Sink("statistics", True)
    arrivals = iter([[5, 6, 7], []])

    def awaiting_a_render() -> None:  # new steps arrive, and the worker drains them
        source.waiting.extend(next(arrivals))
        dispatcher.drain()

    charts = Sink("charts", True, during=awaiting_a_render)
    dispatcher = Dispatcher(source, [wandb, statistics, charts], on_error=pytest.fail, batch=2)
    source.waiting.extend([1, 2, 3, 4])
    dispatcher.drain()
    assert wandb.got == statistics.got == [1, 2, 3, 4, 5, 6, 7]
    assert charts.got == [1, 2, 3, 4]  # busy with its render: it moves on without them
    source.waiting.append(8)
    dispatcher.drain()  # the next cycle: the chart sink is itself again
    assert charts.got == [1, 2, 3, 4, 8] and wandb.got[-1] == 8


@pytest.mark.integration
def test_steps_logged_while_charts_render_are_kept(tmp_path: Path) -> None:
    pytest.importorskip("seaborn")
    config = {
        "exporter": {"port": 0},
        # 512 queued steps: about half a second of this loop, while a render takes seconds.
        "monitoring": {"output_dir": str(tmp_path), "queue_size": 64,
                       "generate_charts_every": 500},
    }  # fmt: skip
    steps = 3_000
    with TrainingMonitor(config, run_id="renders") as monitor:
        for step in range(steps):
            monitor.log_training_step(step=step, loss=1.0 / (step + 1), rewards=[0.5, 1.0])
            time.sleep(0.001)
        monitor.flush()
        dropped = monitor.errors.dropped().get("step_record", 0)
        kept = monitor.statistics.stats.get_history("loss")
    assert dropped == 0
    assert len(kept) == steps and kept.steps[-1] == steps - 1
    assert any((tmp_path / "charts").glob("*.png"))  # charts did render meanwhile
