"""*MLX Training*: is the run learning, how fast, and is the exporter healthy?

Progress (loss, rewards, gradient norm, learning rate), speed (steps per
second, step-duration quantiles, generated tokens per second), where the
step goes (its phases, throughput against the run's best) and the
exporter's own errors, for the runs and ranks chosen in the variables; then
what trainers report (validation loss, trained tokens and iterations per
second, and for GRPO the reward spread, KL, clipping, per-reward-function
means and completion lengths): mlx-lm and mlx-lm-lora through their
callbacks, the demo and custom loops by the same keys of log_training_step.
Clipping is the one panel only mlx-lm-lora fills.

    python -m mlx_otel dashboards   # writes mlx_training.json beside this file
"""

from __future__ import annotations

from . import _step_phases, common

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


# --- mlx-lm and mlx-lm-lora runs (reported every steps_per_report iterations) ---


def last_step() -> common.Panel:
    return common.stat(
        23,
        "Last step logged",
        [common.target(f"{common.series('last_step_timestamp')} * 1000")],
        unit=common.unit("last_step_timestamp"),
        description=common.describe(
            "last_step_timestamp", "MLXTrainingStalled compares it with the run's rhythm."
        ),
    )


def report_interval() -> common.Panel:
    return common.stat(
        24,
        "Report interval",
        [
            common.target(
                f"{common.series('steps_per_report')} / {common.series('iterations_per_second')}"
            )
        ],
        unit="s",
        description=common.describe(
            "steps_per_report", "divided by the iterations per second: the expected time "
            "between two reports.",
        ),  # fmt: skip
    )


def validation_step() -> common.Panel:
    return common.stat(
        25,
        "Validated after iteration",
        [common.target(common.series("validation_step"))],
        unit=common.unit("validation_step"),
        description=common.describe("validation_step"),
    )


def validation_duration() -> common.Panel:
    return common.stat(
        26,
        "Validation duration",
        [common.target(common.series("validation_duration"))],
        unit=common.unit("validation_duration"),
        description=common.describe("validation_duration"),
    )


def trained_tokens() -> common.Panel:
    return common.stat(
        27,
        "Trained tokens",
        [common.target(common.series("trained_tokens"))],
        unit=common.unit("trained_tokens"),
        description=common.describe("trained_tokens"),
    )


def trainer_peak_memory() -> common.Panel:
    return common.stat(
        28,
        "Trainer's peak memory",
        [common.target(common.series("trainer_peak_memory"))],
        unit=common.unit("trainer_peak_memory"),
        description=common.describe(
            "trainer_peak_memory", "mlx_otel never resets MLX's peak counter in these runs.",
        ),  # fmt: skip
    )



def validation_loss() -> common.Panel:
    return common.timeseries(
        15,
        "Training and validation loss",
        [
            common.target(common.series("loss"), f"train {common.RUN_LEGEND}"),
            common.target(common.series("validation_loss"), f"validation {common.RUN_LEGEND}"),
        ],
        unit=common.unit("validation_loss"),
        description=common.describe(
            "validation_loss",
            "A validation loss that rises while the training loss falls is overfitting. "
            "mlx_train_validation_step tells after how many iterations it was measured.",
        ),
    )


def trained_tokens_per_second() -> common.Panel:
    return common.timeseries(
        16,
        "Trained tokens per second",
        [common.target(common.series("tokens_per_second"))],
        unit=common.unit("tokens_per_second"),
        description=common.describe("tokens_per_second"),
        min_zero=True,
    )


def iterations_per_second() -> common.Panel:
    return common.timeseries(
        17,
        "Iterations per second",
        [common.target(common.series("iterations_per_second"))],
        unit=common.unit("iterations_per_second"),
        description=common.describe(
            "iterations_per_second",
            "The trainer's own rate (iterations, not reports); validation time is left out.",
        ),
        min_zero=True,
    )


def group_rewards() -> common.Panel:
    return common.timeseries(
        18,
        "Group rewards: mean and spread",
        [
            common.target(common.series("grouped_reward_mean"), f"group mean {common.RUN_LEGEND}"),
            common.target(common.series("reward_std"), f"spread, all {common.RUN_LEGEND}"),
            common.target(
                common.series("grouped_reward_std"), f"spread within groups {common.RUN_LEGEND}"
            ),
        ],
        unit=common.unit("reward_std"),
        description=common.describe(
            "grouped_reward_mean", "reward_std", "grouped_reward_std",
            "GRPO learns from differences within a group: a spread at zero gives no signal.",
        ),  # fmt: skip
        min_zero=True,
    )


def kl_divergence() -> common.Panel:
    return common.timeseries(
        19,
        "KL divergence from the reference",
        [common.target(common.series("kl"))],
        unit=common.unit("kl"),
        description=common.describe(
            "kl", "A KL that keeps climbing means the policy drifts away from the reference.",
        ),  # fmt: skip
        min_zero=True,
    )


def clipping() -> common.Panel:
    return common.timeseries(
        20,
        "Clipping and truncation",
        [
            common.target(common.series("clip_ratio"), f"ratio clipped {{{{bound}}}} {common.RUN_LEGEND}"),
            common.target(common.series("kl_clip_ratio"), f"KL clipped {common.RUN_LEGEND}"),
            common.target(
                common.series("hit_max_tokens_ratio"), f"cut at max tokens {common.RUN_LEGEND}"
            ),
        ],
        unit="percentunit",
        description=common.describe(
            "clip_ratio", "kl_clip_ratio", "hit_max_tokens_ratio", trainer_only=True
        ),
        min_zero=True,
    )


def reward_functions() -> common.Panel:
    return common.timeseries(
        21,
        "Rewards by reward function",
        [
            common.target(common.series("reward_function_mean"), f"mean {common.legend('reward_fn')}"),
            common.target(common.series("reward_function_std"), f"std {common.legend('reward_fn')}"),
            common.target(
                common.series("reward_function_coverage"),
                f"coverage {common.legend('reward_fn')}",
            ),
        ],
        unit=common.unit("reward_function_mean"),
        description=common.describe(
            "reward_function_mean", "reward_function_std", "reward_function_coverage",
            "Which reward the policy earns, and which one it games.",
        ),  # fmt: skip
    )


def completion_length() -> common.Panel:
    return common.timeseries(
        22,
        "Completion length",
        [common.target(common.series("generated_tokens"), common.legend("stat"))],
        unit=common.unit("generated_tokens"),
        description=common.describe("generated_tokens"),
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
        # Where the step goes.
        [_step_phases.phase_share(29), _step_phases.phase_quantiles(30)],
        [_step_phases.steps_against_best(31), _step_phases.tokens_against_best(32)],
        [custom_metrics(), exporter_errors()],
        [last_step(), report_interval(), validation_step(), validation_duration(),
         trained_tokens(), trainer_peak_memory()],  # fmt: skip
        [validation_loss(), trained_tokens_per_second()],
        [iterations_per_second(), group_rewards()],
        [kl_divergence(), clipping()],
        [reward_functions(), completion_length()],
    ],
)
