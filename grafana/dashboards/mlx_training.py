"""*MLX Training*: is the run learning, how fast, and is the exporter healthy?

Progress (loss, rewards, gradient norm, learning rate), speed (steps per
second, step-duration quantiles, generated tokens per second) and the
exporter's own errors, for the runs and ranks chosen in the variables.

    python -m mlx_otel dashboards   # writes mlx_training.json beside this file
"""

from __future__ import annotations

import common

NAME = "mlx_training"

# Quantiles of the step duration; p99 shows the stragglers (checkpoints, evals).
STEP_QUANTILES = (0.5, 0.9, 0.99)


def current_step() -> common.Panel:
    return common.stat(
        1,
        "Step",
        [common.target(common.series("step"))],
        unit=common.unit("step"),
        description=common.describe("step"),
    )


def steps_per_second_now() -> common.Panel:
    return common.stat(
        2,
        "Steps per second now",
        [common.target(f"rate({common.series('steps')}[$__rate_interval])")],
        unit=common.unit("steps"),
        description=common.describe("Training speed now.", "steps"),
        thresholds=((None, "red"), (1e-9, "green")),
    )


def loss_now() -> common.Panel:
    return common.stat(
        3,
        "Loss now",
        [common.target(common.series("loss"))],
        unit=common.unit("loss"),
        description=common.describe("loss"),
    )


def reward_mean_now() -> common.Panel:
    return common.stat(
        4,
        "Reward mean now",
        [common.target(common.series("reward_mean"))],
        unit=common.unit("reward_mean"),
        description=common.describe("reward_mean"),
    )


def loss() -> common.Panel:
    return common.timeseries(
        5,
        "Loss",
        [common.target(common.series("loss"))],
        unit=common.unit("loss"),
        description=common.describe("loss", "A gap in the line is a NaN or infinite loss."),
    )


def reward_mean() -> common.Panel:
    return common.timeseries(
        6,
        "Reward mean",
        [common.target(common.series("reward_mean"))],
        unit=common.unit("reward_mean"),
        description=common.describe("reward_mean"),
    )


def reward_distribution() -> common.Panel:
    buckets = common.series("reward", suffix="_bucket")
    return common.heatmap(
        7,
        "Per-sample reward distribution",
        common.target(
            f"sum by (le) (rate({buckets}[$__rate_interval]))", "{{le}}", format="heatmap"
        ),
        unit=common.unit("reward"),
        cell_unit="suffix: samples/s",
        description=common.describe(
            "reward",
            "Each column is the histogram of the samples scored in that interval: a "
            "group collapsing onto one reward shows as a single bright band.",
        ),
        log_colors=True,
    )


def grad_norm() -> common.Panel:
    return common.timeseries(
        8,
        "Gradient norm",
        [common.target(common.series("grad_norm"))],
        unit=common.unit("grad_norm"),
        description=common.describe(
            "grad_norm",
            "Spikes precede divergence; per-layer norms are on the Gradient Flow dashboard.",
        ),
    )


def learning_rate() -> common.Panel:
    return common.timeseries(
        9,
        "Learning rate",
        [common.target(common.series("learning_rate"))],
        unit=common.unit("learning_rate"),
        description=common.describe("learning_rate"),
    )


def steps_per_second() -> common.Panel:
    return common.timeseries(
        10,
        "Steps per second",
        [common.target(f"rate({common.series('steps')}[$__rate_interval])")],
        unit=common.unit("steps"),
        description=common.describe("Rate of", "steps", "Zero means training stalled."),
        min_zero=True,
    )


def step_duration() -> common.Panel:
    buckets = common.series("step_duration", suffix="_bucket")
    rates = f"sum by (run_id, rank, le) (rate({buckets}[$__rate_interval]))"
    return common.timeseries(
        11,
        "Step duration quantiles",
        [
            common.target(
                f"histogram_quantile({q}, {rates})", f"p{round(q * 100)} {common.RUN_LEGEND}"
            )
            for q in STEP_QUANTILES
        ],
        unit=common.unit("step_duration"),
        description=common.describe(
            "step_duration", "Quantiles are interpolated within histogram buckets."
        ),
        min_zero=True,
    )


def tokens_per_second() -> common.Panel:
    tokens = common.series("tokens")
    return common.timeseries(
        12,
        "Thinking vs answer tokens per second",
        [
            common.target(
                f"sum by (run_id, rank, kind) (rate({tokens}[$__rate_interval]))",
                common.legend("kind"),
            )
        ],
        unit="suffix: tokens/s",
        description=common.describe(
            "tokens", "A growing thinking share means the policy reasons longer before answering."
        ),
        min_zero=True,
    )


def custom_metrics() -> common.Panel:
    return common.timeseries(
        13,
        "Custom metrics",
        [common.target(common.series("custom"), common.legend("name"))],
        unit=common.unit("custom"),
        description=common.describe("custom"),
    )


def exporter_errors() -> common.Panel:
    errors = common.series("errors")
    dropped = common.series("dropped_tasks")
    return common.timeseries(
        14,
        "Exporter errors and dropped tasks",
        [
            common.target(
                f"sum by (run_id, rank, kind) (rate({errors}[$__rate_interval])) > 0",
                f"error {{{{kind}}}} {common.RUN_LEGEND}",
            ),
            common.target(
                f"sum by (run_id, rank, task) (rate({dropped}[$__rate_interval])) > 0",
                f"dropped {{{{task}}}} {common.RUN_LEGEND}",
            ),
        ],
        unit="ops",
        # "> 0" keeps the error kinds that happen, not every kind at zero.
        description=common.describe(
            "errors", "dropped_tasks", "Only kinds that occur are shown.", incident_only=True
        ),
        min_zero=True,
    )


dashboard = common.dashboard(
    "MLX Training",
    uid="mlx-training",
    description="Training progress, speed and exporter health of MLX runs (mlx_otel).",
    rows=[
        [current_step(), steps_per_second_now(), loss_now(), reward_mean_now()],
        [loss(), reward_mean()],
        [reward_distribution(), grad_norm()],
        [learning_rate(), steps_per_second()],
        [step_duration(), tokens_per_second()],
        [custom_metrics(), exporter_errors()],
    ],
)
