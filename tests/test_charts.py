"""ChartGenerator: every seed chart is written under its seed name and is not blank."""

from __future__ import annotations

import gc
import math
import threading
from pathlib import Path

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mlx_otel.config import ChartStyle, ConfigError, load_config
from mlx_otel.integrations.charts import ChartBatch, ChartGenerator, VisualizationConfig
from mlx_otel.numbers.stats import ComprehensiveStatsCollector

STEP = 7


def assert_chart(path: Path, *, min_width: int = 200, min_ink: float = 0.002) -> None:
    """The file is a real PNG with data drawn on it.

    Pixel variance rules out a flat image; but empty styled axes (grey
    background, black text) vary too, so also require a share of coloured
    pixels: only the palette-coloured data (lines, bars, cells) has chroma.
    """
    assert path.exists(), path
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[1] >= min_width
    rgb = image[..., :3]
    assert float(rgb.var()) > 1e-3, f"{path.name} is one flat colour"
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    ink = float((chroma > 0.25).mean())
    assert ink > min_ink, f"{path.name} has no data drawn ({ink:.4%} coloured pixels)"


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture
def charts(tmp_path: Path) -> ChartGenerator:
    # Low dpi keeps the suite fast; the seed example below uses dpi=150.
    return ChartGenerator(output_dir=tmp_path / "charts", dpi=60)


@pytest.fixture
def curves() -> dict[str, list[float]]:
    rng = np.random.default_rng(7)
    steps = np.arange(120)
    return {
        "loss": list(2 * np.exp(-steps / 40) + 0.1 * rng.normal(size=120)),
        "reward": list(1 - np.exp(-steps / 50) + 0.05 * rng.normal(size=120)),
        "grad_norm": list(np.abs(1 + 0.3 * rng.normal(size=120))),
        "learning_rate": list(np.minimum(steps / 20, 1) * 2e-6 + 1e-9),
        "memory_active_mb": list(800 + 2 * steps + 5 * rng.normal(size=120)),
        "thinking_tokens": list(150 + 10 * rng.normal(size=120)),
        "answer_tokens": list(40 + 3 * rng.normal(size=120)),
    }


# ---------------------------------------------------- seed file names, not blank


def test_every_chart_is_written_under_its_seed_name(charts, curves) -> None:
    rng = np.random.default_rng(0)
    out = charts.output_dir
    written = {
        charts.plot_training_curves(curves, step=STEP),
        charts.plot_reward_distribution(rng.uniform(0, 1, size=(4, 16)), step=STEP),
        charts.plot_token_distribution(rng.poisson(150, 64), rng.poisson(40, 64), step=STEP),
        charts.plot_correlation_matrix(curves),
        charts.plot_gradient_flow(
            {f"layers.{i}": list(rng.uniform(0.01, 1, 12)) for i in range(6)}, step=STEP
        ),
        charts.plot_memory_usage(
            {"active_mb": curves["memory_active_mb"], "peak_mb": curves["memory_active_mb"]},
            threshold_mb=900,
            step=STEP,
        ),
        charts.create_dashboard(curves, step=STEP),
    }

    assert written == {
        out / f"training_curves_step_{STEP}.png",
        out / f"reward_dist_step_{STEP}.png",
        out / f"token_dist_step_{STEP}.png",
        out / "correlation_matrix.png",
        out / f"gradient_flow_step_{STEP}.png",
        out / f"memory_step_{STEP}.png",
        out / f"dashboard_step_{STEP}.png",
    }
    for path in written:
        assert_chart(path)
    assert leftovers(out) == []


def test_without_step_or_filename_charts_use_the_base_name(charts) -> None:
    curves = {"loss": [0.5, 0.4, 0.35], "reward": [0.1, 0.3, 0.2]}
    out = charts.output_dir
    assert charts.plot_training_curves(curves) == out / "training_curves.png"
    assert charts.plot_reward_distribution([0.1, 0.5, 0.9]) == out / "reward_dist.png"
    assert charts.plot_token_distribution([10, 12], [3, 4]) == out / "token_dist.png"
    assert charts.plot_gradient_flow({"a": 0.1, "b": 1.0}) == out / "gradient_flow.png"
    assert charts.plot_memory_usage({"active_mb": [1.0, 2.0]}) == out / "memory.png"
    assert charts.create_dashboard(curves) == out / "dashboard.png"
    assert charts.plot_correlation_matrix(curves, filename=None) == out / "correlation_matrix.png"


def test_filename_overrides_the_name_and_gets_a_png_suffix(charts) -> None:
    curves = {"loss": [0.5, 0.4, 0.35], "reward": [0.1, 0.3, 0.2]}
    assert charts.plot_training_curves(curves, filename="curves.png", step=3).name == "curves.png"
    path = charts.create_dashboard(curves, filename="overview")
    assert path.name == "overview.png"
    assert_chart(path)


def test_gradient_flow_with_latest_norms_only_and_bad_layers(charts) -> None:
    norms = {"embed": 0.02, "layers.0": 0.1, "layers.1": math.nan, "layers.2": 0.0, "head": 3.0}
    assert_chart(charts.plot_gradient_flow(norms, step=1))


# ------------------------------------------------------------- data handling


def test_nan_points_are_skipped_not_fatal(charts, curves) -> None:
    curves["loss"][10] = math.nan
    curves["reward"] = [math.nan] * 120  # one empty panel among good ones
    assert_chart(charts.plot_training_curves(curves, step=1))
    assert_chart(charts.create_dashboard(curves, step=1))
    assert_chart(charts.plot_reward_distribution([0.2, math.nan, 0.4, math.inf, 0.9]))
    assert_chart(charts.plot_memory_usage({"active_mb": [1.0, math.nan, 3.0]}, threshold_mb=2))


def test_single_points_and_constant_values_draw(charts) -> None:
    assert_chart(charts.plot_training_curves({"loss": [0.5]}), min_ink=5e-5)  # one marker
    assert_chart(charts.plot_reward_distribution([1.0, 1.0, 1.0]))  # no KDE, no warning
    assert_chart(charts.plot_token_distribution([100, 100], []))
    assert_chart(charts.create_dashboard({"loss": [0.5], "reward": [0.8]}), min_ink=5e-5)


def test_collector_frames_feed_the_charts(charts, curves) -> None:
    stats = ComprehensiveStatsCollector(output_dir=charts.output_dir.parent / "stats")
    for step in range(0, 240, 2):  # x axis follows the frame's step column
        stats.record_step(step, {name: values[step // 2] for name, values in curves.items()})
    frame = stats.to_dataframe()

    assert_chart(charts.plot_correlation_matrix(stats.get_correlation_matrix()))

    batch = charts.generate_checkpoint_charts(
        frame,
        step=240,
        rewards=[0.1, 0.4, 0.8, 0.9],
        thinking_tokens=[120, 150, 160],
        answer_tokens=[30, 42, 35],
        layer_norms={"layers.0": [0.1, 0.2], "layers.1": [0.3, 0.2]},
        memory_threshold_mb=1000,
    )
    assert isinstance(batch, ChartBatch)
    assert batch.errors == {}
    assert sorted(batch.paths) == [
        "correlation_matrix",
        "dashboard",
        "gradient_flow",
        "memory",
        "reward_dist",
        "token_dist",
        "training_curves",
    ]
    assert batch.paths["memory"].name == "memory_step_240.png"
    for path in batch.paths.values():
        assert_chart(path)


def test_checkpoint_batch_reports_failures_and_goes_on(charts) -> None:
    curves = {"loss": [0.5, 0.4, 0.35], "memory_active_mb": [900.0, 950.0, 990.0]}
    batch = charts.generate_checkpoint_charts(curves, step=2, rewards=[])
    assert "reward_dist" in batch.errors and "rewards" in str(batch.errors["reward_dist"])
    assert "dashboard" in batch.paths and "memory" in batch.paths


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda c: c.plot_training_curves({}), "data"),
        (lambda c: c.plot_training_curves({"loss": [math.nan, math.nan]}), "data"),
        (lambda c: c.plot_training_curves({"loss": ["a", "b"]}), "data['loss']"),
        (lambda c: c.plot_training_curves({"loss": [1.0, 2.0]}, steps=[1]), "steps"),
        (lambda c: c.create_dashboard({}), "data"),
        (lambda c: c.create_dashboard([1, 2, 3]), "data"),
        (lambda c: c.plot_reward_distribution([]), "rewards"),
        (lambda c: c.plot_reward_distribution([math.nan]), "rewards"),
        (lambda c: c.plot_token_distribution([], []), "thinking_tokens and answer_tokens"),
        (lambda c: c.plot_token_distribution([-1, 5], [3]), "thinking_tokens"),
        (lambda c: c.plot_correlation_matrix({"loss": [1.0, 2.0]}), "data"),
        (lambda c: c.plot_correlation_matrix({"a": [1.0, 1.0], "b": [1.0, 1.0]}), "data"),
        (lambda c: c.plot_gradient_flow({}), "layer_norms"),
        (lambda c: c.plot_gradient_flow({"a": 0.0, "b": math.nan}), "layer_norms"),
        (lambda c: c.plot_memory_usage({}), "memory"),
        (lambda c: c.plot_memory_usage({"active_mb": [1.0]}, threshold_mb=-5), "threshold_mb"),
    ],
)
def test_bad_input_raises_valueerror_naming_the_argument(charts, call, argument) -> None:
    with pytest.raises(ValueError) as raised:
        call(charts)
    assert str(raised.value).startswith(argument)
    assert not charts.output_dir.exists() or not any(charts.output_dir.iterdir())


def test_failed_render_keeps_the_previous_chart(charts, curves, monkeypatch) -> None:
    path = charts.create_dashboard(curves, step=1)
    before = path.read_bytes()

    def fail(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(OSError):
        charts.create_dashboard(curves, step=1)

    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


# --------------------------------------------------- no global side effects


def test_rendering_leaves_pyplot_backend_and_rcparams_alone(charts, curves) -> None:
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    user_figure = plt.figure()
    facecolor = matplotlib.rcParams["axes.facecolor"]
    gc.collect()

    charts.plot_training_curves(curves, step=1)
    charts.plot_correlation_matrix(curves)
    charts.plot_gradient_flow({"a": [0.1, 0.2], "b": [0.3, 0.4]}, step=1)

    assert plt.get_fignums() == [user_figure.number]
    assert matplotlib.get_backend() == backend
    assert matplotlib.rcParams["axes.facecolor"] == facecolor
    plt.close(user_figure)
    del user_figure
    gc.collect()
    # Figures are freed once written: rendering does not accumulate memory.
    assert not [o for o in gc.get_objects() if isinstance(o, Figure)]


def test_threads_can_render_at_the_same_time(tmp_path, curves) -> None:
    dark = ChartGenerator(tmp_path / "dark", style="darkgrid", dpi=50)
    white = ChartGenerator(tmp_path / "white", style="whitegrid", dpi=50, palette="deep")
    errors: list[BaseException] = []

    def render(generator: ChartGenerator) -> None:
        try:
            for step in range(3):
                generator.plot_training_curves({"loss": curves["loss"]}, step=step)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=render, args=(g,)) for g in (dark, white)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(list((tmp_path / "dark").glob("*.png"))) == 3
    assert len(list((tmp_path / "white").glob("*.png"))) == 3


# --------------------------------------------------------------- configuration


def test_visualization_config_validates_and_sets_defaults() -> None:
    config = VisualizationConfig()
    assert config.output_dir == Path("./charts")
    assert (config.style, config.palette, config.dpi) == ("darkgrid", "husl", 150)
    assert config.generate_every_n_steps == 100
    assert config.smoothing_window == 10
    with pytest.raises(ValueError, match="style"):
        VisualizationConfig(style="neon")
    with pytest.raises(ValueError, match="palette"):
        VisualizationConfig(palette="no-such-palette")
    with pytest.raises(ValueError, match="dpi"):
        VisualizationConfig(dpi=0)
    with pytest.raises(ValueError, match="smoothing_window"):
        VisualizationConfig(smoothing_window=0)


def test_explicit_arguments_override_the_config(tmp_path) -> None:
    config = VisualizationConfig(output_dir=tmp_path / "cfg", style="white", dpi=80)
    from_config = ChartGenerator(config=config)
    assert (from_config.output_dir, from_config.style, from_config.dpi) == (
        tmp_path / "cfg",
        "white",
        80,
    )
    mixed = ChartGenerator(tmp_path / "mine", dpi=120, palette="deep", config=config)
    assert (mixed.output_dir, mixed.style, mixed.dpi, mixed.palette) == (
        tmp_path / "mine",
        "white",
        120,
        "deep",
    )


def test_should_generate_follows_generate_every_n_steps(tmp_path) -> None:
    charts = ChartGenerator(config=VisualizationConfig(tmp_path, generate_every_n_steps=50))
    assert [s for s in range(0, 201, 25) if charts.should_generate(s)] == [0, 50, 100, 150, 200]
    never = ChartGenerator(config=VisualizationConfig(tmp_path, generate_every_n_steps=0))
    assert not never.should_generate(100)


def test_a_monitor_config_has_a_charts_section_from_yaml_and_environment(tmp_path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        "monitoring:\n  generate_charts_every: 50\n"
        "charts:\n  style: whitegrid\n  palette: colorblind\n  dpi: 80\n  figsize: [10, 5]\n"
    )
    config = load_config(path, env={"MLX_OTEL_CHARTS__DPI": "50"})
    assert (config.charts.style, config.charts.palette) == ("whitegrid", "colorblind")
    assert (config.charts.dpi, config.charts.figsize) == (50, (10.0, 5.0))  # environment wins
    assert load_config({}, env={}).charts == ChartStyle()
    # What the monitor's charts are drawn with: that style, its folder, its one cadence.
    drawn = VisualizationConfig.from_style(config.charts, tmp_path / "charts", 50)
    assert (drawn.style, drawn.dpi, drawn.output_dir) == ("whitegrid", 50, tmp_path / "charts")
    assert ChartGenerator(config=drawn).should_generate(100) and drawn.generate_every_n_steps == 50


def test_the_charts_section_has_no_second_cadence_or_folder() -> None:
    # monitoring.generate_charts_every is the cadence, monitoring.output_dir the folder.
    for key in ("generate_every_n_steps", "output_dir"):
        with pytest.raises(ConfigError, match=f"unknown key 'charts.{key}'.*allowed here: .*dpi"):
            load_config({"charts": {key: 10}}, env={})
    with pytest.raises(ConfigError, match="charts.dpi"):
        load_config({}, env={"MLX_OTEL_CHARTS__DPI": "0"})


# ------------------------------------------------------------------ seed usage


def test_seed_visualization_config_example_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    viz_config = VisualizationConfig(
        output_dir=Path("./charts"),
        style="darkgrid",
        palette="husl",
        dpi=150,
        generate_every_n_steps=100,
    )
    assert ChartGenerator(config=viz_config).output_dir == Path("./charts")


def test_seed_chart_generation_example_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)

    # Initialize
    charts = ChartGenerator(output_dir=Path("./charts"), style="darkgrid", dpi=150)

    # Plot training curves
    data = {
        "loss": [0.5, 0.4, 0.3, 0.28, 0.25, 0.22],
        "reward": [0.6, 0.7, 0.8, 0.78, 0.85, 0.88],
        "grad_norm": [0.1, 0.15, 0.12, 0.11, 0.09, 0.1],
    }
    charts.plot_training_curves(data, filename="curves.png")

    # Plot reward distribution
    rewards = [0.6, 0.7, 0.8, 0.75, 0.82, 0.64, 0.91, 0.77]
    charts.plot_reward_distribution(rewards)

    # Create dashboard
    charts.create_dashboard(data)

    # Plot correlation matrix
    charts.plot_correlation_matrix(data)

    out = tmp_path / "charts"
    assert sorted(p.name for p in out.iterdir()) == [
        "correlation_matrix.png",
        "curves.png",
        "dashboard.png",
        "reward_dist.png",
    ]
    for path in out.iterdir():
        assert_chart(path, min_width=800)


def test_data_frame_with_unused_columns_is_accepted(charts) -> None:
    frame = pd.DataFrame(
        {"step": [10, 20, 30], "run_id": ["r"] * 3, "timestamp": [1.0, 2.0, 3.0], "loss": [3, 2, 1]}
    )
    assert_chart(charts.plot_training_curves(frame))
