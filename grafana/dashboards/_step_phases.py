"""Where the step goes: the panels of *MLX Training* on phases and throughput.

In RL fine-tuning a step is generation, scoring, the update, evaluation;
the split decides batch and group sizes and whether generation needs a
faster path. These panels read ``mlx_train_phase_duration_seconds{phase}``
(``monitor.phase``) against the step's own duration, and put the run's
throughput beside its own best, so a quiet slowdown shows as a gap.
"""

from __future__ import annotations

from . import common

# Quantiles of each phase's duration.
PHASE_QUANTILES = (0.5, 0.95)


def phase_share(panel_id: int) -> common.Panel:
    phases = common.series("phase_duration", suffix="_sum")
    steps = common.series("step_duration", suffix="_sum")
    phase_time = f"sum by (run_id, rank, phase) (rate({phases}[$__rate_interval]))"
    all_phases = f"sum by (run_id, rank) (rate({phases}[$__rate_interval]))"
    step_time = f"sum by (run_id, rank) (rate({steps}[$__rate_interval]))"
    return common.timeseries(
        panel_id,
        "Share of step time per phase",
        [
            common.target(
                f"{phase_time} / ignoring(phase) group_left {step_time}", common.legend("phase")
            ),
            common.target(
                f"clamp_min(1 - {all_phases} / {step_time}, 0)", f"untimed {common.RUN_LEGEND}"
            ),
        ],
        unit="percentunit",
        description=common.describe(
            "Seconds spent in each phase per second of training, over the step durations "
            "(the histograms' sums): stacked, the phases and the untimed rest of the step "
            "make up the whole.",
            "phase_duration",
        ),
        stacked=True,
        min_zero=True,
    )


def phase_quantiles(panel_id: int) -> common.Panel:
    buckets = common.series("phase_duration", suffix="_bucket")
    rates = f"sum by (run_id, rank, phase, le) (rate({buckets}[$__rate_interval]))"
    return common.timeseries(
        panel_id,
        "Phase duration p50 and p95",
        [
            common.target(
                f"histogram_quantile({q}, {rates})", f"p{round(q * 100)} {common.legend('phase')}"
            )
            for q in PHASE_QUANTILES
        ],
        unit=common.unit("phase_duration"),
        description=common.describe(
            "phase_duration", "Quantiles are interpolated within histogram buckets."
        ),
        min_zero=True,
    )


def _against_best(expr: str) -> str:
    """The run's own best of ``expr`` over the time range shown."""
    return f"max_over_time(({expr})[$__range:$__interval])"


def steps_against_best(panel_id: int) -> common.Panel:
    rate = f"sum by (run_id, rank) (rate({common.series('steps')}[$__rate_interval]))"
    return common.timeseries(
        panel_id,
        "Steps per second vs the run's best",
        [
            common.target(rate, f"now {common.RUN_LEGEND}"),
            common.target(_against_best(rate), f"best {common.RUN_LEGEND}"),
        ],
        unit=common.unit("steps"),
        description=common.describe(
            "steps",
            "The dashed line is the run's best rate in the time range shown; "
            "MLXThroughputDropped fires when the rate stays below half of its best.",
        ),
        dashed=("^best",),
        min_zero=True,
    )


def tokens_against_best(panel_id: int) -> common.Panel:
    rate = f"sum by (run_id, rank) (rate({common.series('tokens')}[$__rate_interval]))"
    return common.timeseries(
        panel_id,
        "Generated tokens per second vs the run's best",
        [
            common.target(rate, f"now {common.RUN_LEGEND}"),
            common.target(_against_best(rate), f"best {common.RUN_LEGEND}"),
        ],
        unit="suffix: tokens/s",
        description=common.describe(
            "tokens",
            "Thinking and answer tokens together; the dashed line is the run's best "
            "rate in the time range shown.",
        ),  # fmt: skip
        dashed=("^best",),
        min_zero=True,
    )
