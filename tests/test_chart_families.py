"""Each chart family draws what a user reads off it: equal memory series both
visible, one memory unit, a short run's correlation skipped without noise,
and a monitor's `charts:` style in the PNGs it writes."""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image

from mlx_otel.config.visualization import ChartStyle
from mlx_otel.integrations.charts import ChartGenerator, NotEnoughData
from mlx_otel.integrations.charts.dashboard import dashboard_panel
from mlx_otel.integrations.charts.figure import colours
from mlx_otel.integrations.charts.memory import draw_memory
from tests import processes

REPO = Path(__file__).resolve().parent.parent


def _axes() -> Axes:
    figure = Figure()
    FigureCanvasAgg(figure)
    return figure.subplots()


def _equal_memory() -> dict[str, np.ndarray]:
    active = 800 + 2.0 * np.arange(60)
    return {
        "memory_allocated_mb": active,  # what users pass: the same reading as MLX's active
        "mlx_active_mb": active.copy(),
        "mlx_cache_mb": 200 + 0.5 * np.arange(60),
    }


def _looks(ax: Axes, name: str) -> tuple[str, str, str]:
    (line,) = [
        line for line in ax.get_lines() if line.get_label().split(" (=")[0] == name
    ]
    return to_hex(line.get_color()), line.get_linestyle(), line.get_marker()


def _assert_both_visible(ax: Axes) -> None:
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "memory_allocated_mb" in legend
    assert "mlx_active_mb (= memory_allocated_mb)" in legend
    allocated, active = _looks(ax, "memory_allocated_mb"), _looks(ax, "mlx_active_mb")
    # Drawn over each other, the two lines differ in colour, line style and marker.
    assert allocated[0] != active[0]
    assert allocated[1] != active[1]
    assert allocated[2] != active[2]


def test_equal_memory_series_are_both_visible_on_the_memory_chart() -> None:
    ax = _axes()
    series = _equal_memory()
    draw_memory(ax, series, colours(ChartStyle(), len(series)), threshold=1000.0)
    ax.legend()
    _assert_both_visible(ax)
    assert ax.get_ylabel() == "memory [MiB]"


def test_equal_memory_series_are_both_visible_on_the_dashboard() -> None:
    ax = _axes()
    series = _equal_memory()
    dashboard_panel(ax, ChartStyle(), "Memory [MiB]", list(series), series)
    _assert_both_visible(ax)


def test_memory_is_in_mib_everywhere(tmp_path: Path) -> None:
    ax = _axes()
    peak_name, peak, _ = draw_memory(
        ax, {"rss_bytes": np.array([512.0, 1024.0]) * 2**20}, colours(ChartStyle(), 1),
        threshold=2048.0,
    )  # fmt: skip
    assert (peak_name, peak) == ("rss_bytes", 1024.0)  # bytes drawn as MiB
    labels = [line.get_label() for line in ax.get_lines()]
    assert "threshold 2,048 MiB" in labels

    charts = ChartGenerator(tmp_path, dpi=40)
    frame = {"loss": [1.0, 0.5, 0.2], "mlx_active_mb": [1.0, 2.0, 3.0]}
    charts.create_dashboard(frame, step=2)
    charts.plot_training_curves(frame, step=2)
    charts.plot_memory_usage({"mlx_active_mb": [1.0, 2.0, 3.0]}, threshold_mb=2, step=2)
    # Every chart's text, as matplotlib wrote it into the SVG twin of the PNG.
    for render in (charts.create_dashboard, charts.plot_training_curves):
        svg = render(frame, filename="check.svg").read_text()
        assert "MiB" in svg and " MB" not in svg and "[MB]" not in svg
    svg = charts.plot_memory_usage({"mlx_active_mb": [1.0, 2.0]}, 2, filename="m.svg").read_text()
    assert "MiB" in svg and " MB" not in svg


def test_a_correlation_over_one_step_is_skipped_quietly(tmp_path: Path, caplog) -> None:
    charts = ChartGenerator(tmp_path, dpi=40)
    one_step = {"loss": [0.5], "mlx_active_mb": [10.0], "mlx_cache_mb": [1.0]}
    with caplog.at_level(logging.WARNING, logger="mlx_otel"):
        batch = charts.generate_checkpoint_charts(one_step, step=0)
    assert batch.errors == {}
    assert "correlation_matrix" in batch.skipped and "two or more" in batch.skipped["correlation_matrix"]
    assert sorted(batch.paths) == ["dashboard", "memory", "training_curves"]
    assert not (tmp_path / "correlation_matrix.png").exists()
    assert caplog.records == []
    # Asked for directly, too little data is still an error naming the argument.
    with pytest.raises(NotEnoughData, match="^data: need at least two metrics"):
        charts.plot_correlation_matrix(one_step)
    with pytest.raises(ValueError, match="^data: need at least two metrics"):
        charts.plot_correlation_matrix({"a": [1.0, 1.0], "b": [2.0, 2.0]})


@pytest.mark.integration
def test_a_monitor_draws_its_charts_in_its_charts_style_and_quietly(tmp_path: Path) -> None:
    # One step, as the README's gradients example: charts are written at the
    # end, in the configured style, and nothing is reported on stderr.
    script = textwrap.dedent(
        f"""
        from mlx_otel import TrainingMonitor
        config = {{"exporter": {{"port": 0}},
                  "monitoring": {{"output_dir": {str(tmp_path)!r}, "generate_charts_every": 0,
                                  "charts_timeout": 240}},  # a busy machine renders slowly
                  "charts": {{"dpi": 50, "figsize": [8, 4]}}}}
        with TrainingMonitor(config, run_id="styled") as monitor:
            monitor.log_training_step(step=0, loss=0.5, reward=0.2, rewards=[0.1, 0.3])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLX_OTEL_CHARTS__STYLE": "whitegrid"}
    result = processes.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "chart" not in result.stderr and "failed" not in result.stderr, result.stderr
    charts = tmp_path / "charts"
    written = sorted(p.name for p in charts.glob("*.png"))
    assert "memory_step_0.png" in written and "reward_dist_step_0.png" in written, written
    for name in written:
        with Image.open(charts / name) as image:
            assert [round(d) for d in image.info["dpi"]] == [50, 50], name
    with Image.open(charts / "reward_dist_step_0.png") as image:
        assert image.size == (8 * 50, 4 * 50)  # figsize x dpi
    summary = json.loads((tmp_path / "monitoring_summary.json").read_text())
    assert summary  # the run's files are there as well


def test_a_threshold_far_above_the_data_leaves_the_data_readable() -> None:
    # 8,000 MiB (the default) drawn over a run of ~100 MiB flattened every line.
    ax = _axes()
    draw_memory(ax, {"mlx_active_mb": np.array([90.0, 110.0, 100.0])},
                colours(ChartStyle(), 1), threshold=8000.0)  # fmt: skip
    assert ax.get_ylim()[1] < 1000.0
    labels = [line.get_label() for line in ax.get_lines()]
    assert "threshold 8,000 MiB (above the axis)" in labels
    # Near the data, the line is drawn where it is.
    ax = _axes()
    draw_memory(ax, {"mlx_active_mb": np.array([900.0, 1100.0])},
                colours(ChartStyle(), 1), threshold=2000.0)  # fmt: skip
    assert ax.get_ylim()[1] >= 2000.0
    assert "threshold 2,000 MiB" in [line.get_label() for line in ax.get_lines()]


def test_checkpoint_charts_show_the_headline_metrics_of_a_wide_run() -> None:
    from mlx_otel.integrations.charts.curves import HEADLINE_LIMIT, headline_metrics

    # A GRPO run reports about sixty values a step: sixty panels were unreadable
    # and took seconds to draw at every checkpoint.
    frame = pd.DataFrame({"step": [0, 1], "run_id": ["r", "r"]}
                         | {f"timing/p{i}": [0.1, 0.2] for i in range(50)}
                         | {"loss": [1.0, 0.5], "entropy": [2.0, 1.9]})  # fmt: skip
    chosen = headline_metrics(frame)
    metrics = [c for c in chosen.columns if c not in ("step", "run_id")]
    assert len(metrics) == HEADLINE_LIMIT
    assert {"loss", "entropy"} <= set(metrics)
    assert "step" in chosen.columns  # still the x axis
    narrow = frame[["step", "loss", "entropy"]]
    assert headline_metrics(narrow) is narrow
