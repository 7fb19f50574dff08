"""Checkpoint charts tell the truth about sparse metrics and units: a metric
logged on some steps only is not "non-finite" on the others, the loss panel
shows losses (not their spike scores), memory is in MiB and a resumed run's
repeated steps render in bounded time."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mlx_otel.config.visualization import ChartStyle, VisualizationConfig
from mlx_otel.integrations.chart_process import chart_inputs, render_checkpoint_charts
from mlx_otel.integrations.charts import ChartGenerator
from mlx_otel.integrations.charts.dashboard import dashboard_panel
from mlx_otel.integrations.charts.panels import dashboard_panels, panel_unit
from mlx_otel.numbers.stats import ComprehensiveStatsCollector

MIB = 2.0**20


def _axes() -> Axes:
    figure = Figure()
    FigureCanvasAgg(figure)
    return figure.subplots()


def _run(tmp_path: Path, *, nan_loss_at: tuple[int, ...] = (), steps: int = 60):
    """A GRPO-like run's statistics: validation every 10 steps, spike scores and
    anomaly counts from step 20, phase timings, memory in bytes and MiB, tokens."""
    stats = ComprehensiveStatsCollector(output_dir=tmp_path / "stats")
    rng = np.random.default_rng(0)
    for step in range(steps):
        values = {
            "loss": np.nan if step in nan_loss_at else 1.0 / (1 + step),
            "reward_mean": 0.1 + step / steps,
            "timing/reward": 0.02 + 0.001 * rng.random(),
            "timing/generate": 0.5 + 0.01 * rng.random(),
            "trainer_peak_memory": (5000.0 + step) * MIB,
            "mlx_active_mb": 4000.0 + step,
            "thinking_tokens": 120.0 + step,
            "tokens_per_second": 900.0 + rng.random(),
            "trained_tokens": 150.0 * (step + 1),
            "hit_max_tokens_ratio": 0.1,
            "generated_tokens/mean": 5.0 + rng.random(),  # per completion, not per step
            "generated_tokens/max": 8.0,
            "completion_length_mean/correct": 4.0 + rng.random(),
        }
        if step % 10 == 0:
            values["validation_loss"] = 1.2 / (1 + step)
        if step >= 20:
            values["anomaly_score/loss"] = float(rng.normal())
            values["anomalies/loss"] = float(step // 30)
        stats.record_step(step, values)
    return stats


def _texts(path: Path) -> list[str]:
    """Every text of a chart, as matplotlib writes it (as comments) into an SVG."""
    return re.findall(r"<!-- (.*?) -->", path.read_text())


def test_a_metric_logged_on_some_steps_is_not_counted_as_non_finite(tmp_path: Path) -> None:
    data, arguments = chart_inputs(_run(tmp_path).histories(), {"step": 59})
    charts = ChartGenerator(tmp_path / "charts", dpi=40)
    steps = arguments.get("steps")
    dashboard = _texts(charts.create_dashboard(data, filename="d.svg", steps=steps))
    curves = _texts(charts.plot_training_curves(data, filename="c.svg", steps=steps))
    assert "Loss" in dashboard and "validation_loss (last 0.02353)" in curves
    assert not [text for text in dashboard + curves if "non-finite" in text]

    # Validation is drawn at the steps it was logged at.
    ax = _axes()
    dashboard_panel(ax, ChartStyle(), "Loss", ["loss", "validation_loss"], data, steps=steps)
    (validation,) = [line for line in ax.get_lines() if line.get_label() == "validation_loss"]
    assert list(validation.get_xdata()) == [0, 10, 20, 30, 40, 50]

    # The monitor's path (statistics histories in, PNG files out): every chart,
    # the correlation aligned step by step.
    config = VisualizationConfig(tmp_path / "png", dpi=40)
    paths, errors = render_checkpoint_charts(config, _run(tmp_path).histories(), {"step": 59})
    assert errors == {}
    assert {"training_curves", "dashboard", "correlation_matrix", "memory"} <= set(paths)


def test_a_nan_loss_is_still_counted(tmp_path: Path) -> None:
    stats = _run(tmp_path, nan_loss_at=(33, 47))
    data, arguments = chart_inputs(stats.histories(), {"step": 59})
    charts = ChartGenerator(tmp_path / "charts", dpi=40)
    steps = arguments.get("steps")
    dashboard = _texts(charts.create_dashboard(data, filename="d.svg", steps=steps))
    curves = _texts(charts.plot_training_curves(data, filename="c.svg", steps=steps))
    assert "Loss · 2 non-finite" in dashboard
    assert [t for t in curves if "non-finite" in t] == [
        "loss (last 0.01667) · 2 non-finite skipped"
    ]


def test_the_dashboard_groups_series_by_what_they_are(tmp_path: Path) -> None:
    data, _ = chart_inputs(_run(tmp_path).histories(), {"step": 59})
    panels = {panel.title: panel.names for panel in dashboard_panels(list(data))}
    assert panels["Loss"] == ["loss", "validation_loss"]
    assert panels["Reward"] == ["reward_mean"]  # not timing/reward, a duration
    assert panels["Spike scores"] == ["anomaly_score/loss"]
    assert panels["Anomalous steps (cumulative)"] == ["anomalies/loss"]
    assert panels["Step phases"] == ["timing/reward", "timing/generate"]
    assert panels["Memory [MiB]"] == ["trainer_peak_memory", "mlx_active_mb"]
    assert panels["Tokens"] == ["thinking_tokens"]  # per step: hundreds of tokens
    assert panels["Completion length"] == [  # per completion: a few tokens, an axis of their own
        "generated_tokens/mean", "generated_tokens/max", "completion_length_mean/correct"]
    # A throughput, a cumulative count and a ratio are panels of their own.
    for name in ("tokens_per_second", "trained_tokens", "hit_max_tokens_ratio"):
        assert panels[name] == [name]
    # No two units on one axis.
    for panel in dashboard_panels(list(data)):
        assert {panel_unit(name) for name in panel.names} == {panel.unit}, panel
    assert panel_unit("timing/reward") == "s" and panel_unit("tokens_per_second") == "tokens/s"


def test_the_dashboard_memory_panel_is_in_mib() -> None:
    series = {
        "trainer_peak_memory": np.array([5120.0, 5200.0]) * MIB,  # bytes
        "mlx_active_mb": np.array([4000.0, 4100.0]),
    }
    ((title, names),) = [(p.title, p.names) for p in dashboard_panels(list(series))]
    ax = _axes()
    dashboard_panel(ax, ChartStyle(), title, names, series)
    plotted = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert plotted == {"trainer_peak_memory": [5120.0, 5200.0], "mlx_active_mb": [4000.0, 4100.0]}
    assert ax.get_ylabel() == "Memory [MiB]"


@pytest.mark.timeout(300)
def test_a_resumed_run_with_repeated_steps_renders_in_bounded_time(tmp_path: Path) -> None:
    # Steps 0..9999, then a resumed run logs 5000..14999 again: 20,000 points a metric.
    stats = ComprehensiveStatsCollector(output_dir=tmp_path / "stats", max_history=20_000)
    rng = np.random.default_rng(1)
    steps = np.concatenate([np.arange(10_000), np.arange(5_000, 15_000)])
    for metric in ("loss", "reward_mean", "grad_norm", "mlx_active_mb"):
        for step, value in zip(steps.tolist(), rng.random(steps.size).tolist(), strict=True):
            stats.record_metric(metric, value, step=step)
    assert len(stats.get_history("loss")) == 20_000
    config = VisualizationConfig(tmp_path / "charts", dpi=60)
    started = time.perf_counter()
    paths, errors = render_checkpoint_charts(config, stats.histories(), {"step": 14_999})
    elapsed = time.perf_counter() - started
    assert errors == {}
    assert {"training_curves", "dashboard", "correlation_matrix", "memory"} <= set(paths)
    assert elapsed < 60.0, f"rendering took {elapsed:.1f} s"
