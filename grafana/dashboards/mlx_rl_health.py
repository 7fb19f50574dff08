"""*MLX RL Health*: is the policy still learning?

GRPO-style training fails quietly: groups whose completions all score the
same give no gradient, entropy collapses or explodes, completions run into
the length limit, wrong answers grow longer than right ones, thinking never
closes into an answer, KL blows up with a reward jump (reward hacking).
Each row shows one of these signals, with the step-indexed anomaly scores
the process computes (median and MAD of the run's own recent steps) beside
the metrics they judge. The demo (``mlx-otel demo``) and mlx-lm-lora's GRPO
runs fill every panel.

    python -m mlx_otel dashboards   # writes mlx_rl_health.json beside this file
"""

from __future__ import annotations

from . import common

NAME = "mlx_rl_health"

# The anomaly score a step must exceed to count (rl.anomaly_threshold's default).
ANOMALY_THRESHOLD = 6


def _by(*labels: str) -> str:
    return ", ".join(("run_id", "rank", *labels))


def no_signal_now() -> common.Panel:
    ratio = common.series("zero_std_groups_ratio")
    return common.stat(
        1,
        "Groups without signal now",
        [common.target(f"sum by ({_by()}) ({ratio})")],
        unit=common.unit("zero_std_groups_ratio"),
        description=common.describe(
            "Share of the last step's groups whose completions all got the same reward "
            "(solved, unsolved and tied together): they contribute no gradient."
        ),
        thresholds=((None, "green"), (0.5, "orange"), (0.9, "red")),
    )


def entropy_now() -> common.Panel:
    return common.stat(
        2,
        "Entropy now",
        [common.target(common.series("entropy"))],
        unit=common.unit("entropy"),
        description=common.describe("entropy"),
    )


def kl_now() -> common.Panel:
    return common.stat(
        3,
        "KL now",
        [common.target(common.series("kl"))],
        unit=common.unit("kl"),
        description=common.describe("kl"),
    )


def truncated_now() -> common.Panel:
    return common.stat(
        4,
        "Truncated now",
        [common.target(common.series("hit_max_tokens_ratio"))],
        unit=common.unit("hit_max_tokens_ratio"),
        description=common.describe("hit_max_tokens_ratio"),
        thresholds=((None, "green"), (0.2, "orange")),
    )


def validation_reward_now() -> common.Panel:
    return common.stat(
        5,
        "Validation reward now",
        [common.target(common.series("validation_reward"))],
        unit=common.unit("validation_reward"),
        description=common.describe("validation_reward"),
    )


def group_size() -> common.Panel:
    return common.stat(
        6,
        "Group size",
        [common.target(common.series("group_size"))],
        unit=common.unit("group_size"),
        description=common.describe("group_size"),
    )


def groups_without_signal() -> common.Panel:
    return common.timeseries(
        7,
        "Groups without learning signal, by outcome",
        [common.target(common.series("zero_std_groups_ratio"), common.legend("outcome"))],
        unit=common.unit("zero_std_groups_ratio"),
        description=common.describe(
            "zero_std_groups_ratio",
            "Stacked: the top is the share of groups without signal. Solved groups are too "
            "easy, unsolved ones too hard, tied ones score alike for another reason. "
            "MLXNoLearningSignal fires when most groups stay so.",
        ),
        stacked=True,
        min_zero=True,
    )


def train_vs_validation_reward() -> common.Panel:
    return common.timeseries(
        8,
        "Reward: training vs validation",
        [
            common.target(common.series("reward_mean"), f"train {common.RUN_LEGEND}"),
            common.target(common.series("validation_reward"), f"validation {common.RUN_LEGEND}"),
        ],
        unit=common.unit("validation_reward"),
        description=common.describe(
            "validation_reward",
            "A training reward that climbs while the validation reward stays flat is "
            "overfitting or reward hacking.",
        ),
    )


def _with_score(panel_id: int, title: str, key: str, score: str, text: str) -> common.Panel:
    scores = common.series("anomaly_score", matchers=f'metric="{score}"')
    return common.timeseries(
        panel_id,
        title,
        [
            common.target(common.series(key), f"{key} {common.RUN_LEGEND}"),
            common.target(scores, f"anomaly score {common.RUN_LEGEND}"),
        ],
        unit=common.unit(key),
        description=common.describe(key, text, "anomaly_score"),
        right_axis=("^anomaly score",),
        right_unit=common.unit("anomaly_score"),
    )


def entropy() -> common.Panel:
    return _with_score(
        9, "Entropy and its anomaly score", "entropy", "entropy",
        "A healthy run's entropy declines slowly; a fall to a small fraction of its early "
        "level is collapse (MLXEntropyCollapsed), a sustained rise is explosion "
        "(MLXEntropyExploding).",
    )  # fmt: skip


def kl() -> common.Panel:
    return _with_score(
        10, "KL and its anomaly score", "kl", "kl",
        "KL grows steadily in healthy runs; a jump far above its recent median, often with a "
        "reward jump, is reward hacking (MLXKLDivergenceExploding).",
    )  # fmt: skip


def completion_lengths() -> common.Panel:
    buckets = common.series("completion_length", suffix="_bucket")
    return common.heatmap(
        11,
        "Completion length distribution",
        common.target(
            f"sum by (le) (rate({buckets}[$__rate_interval]))", "{{le}}", format="heatmap"
        ),
        unit="suffix: tokens",
        cell_unit="suffix: completions/s",
        description=common.describe(
            "completion_length",
            "Each column is the histogram of the completions of that interval; a band at the "
            "top bucket is completions cut at the maximum length.",
        ),
        log_colors=True,
    )


def length_by_correctness() -> common.Panel:
    return common.timeseries(
        12,
        "Completion length: right vs wrong answers",
        [
            common.target(
                common.series("completion_length_mean"),
                f"correct={{{{correct}}}} {common.RUN_LEGEND}",
            )
        ],
        unit=common.unit("completion_length_mean"),
        description=common.describe(
            "completion_length_mean",
            "Wrong answers growing longer than right ones is the length bias Dr. GRPO "
            "describes (a loss divided by the completion length).",
        ),
        min_zero=True,
    )


def truncation() -> common.Panel:
    return common.timeseries(
        13,
        "Completions cut at the maximum length",
        [common.target(common.series("hit_max_tokens_ratio"))],
        unit=common.unit("hit_max_tokens_ratio"),
        description=common.describe(
            "hit_max_tokens_ratio",
            "Truncated completions carry a noisy reward (DAPO's overlong shaping); "
            "MLXCompletionsTruncated fires on a sustained share.",
        ),
        min_zero=True,
    )


def unclosed_thinking() -> common.Panel:
    return common.timeseries(
        14,
        "Thinking never closed into an answer",
        [common.target(common.series("unclosed_thinking_ratio"))],
        unit=common.unit("unclosed_thinking_ratio"),
        description=common.describe(
            "unclosed_thinking_ratio",
            "Completions that think but give no answer tokens: the reasoning form of truncation.",
        ),
        min_zero=True,
    )


def anomaly_scores() -> common.Panel:
    return common.timeseries(
        15,
        "Anomaly scores by metric",
        [common.target(common.series("anomaly_score"), common.legend("metric"))],
        unit=common.unit("anomaly_score"),
        description=common.describe(
            "anomaly_score",
            f"A step counts as anomalous beyond ±{ANOMALY_THRESHOLD} (rl.anomaly_threshold). "
            "Judged per step, so a slow or stalled run does not distort it.",
        ),
    )


def anomalies() -> common.Panel:
    counter = common.series("anomalies")
    return common.timeseries(
        16,
        "Anomalous steps per metric",
        [
            common.target(
                f"sum by ({_by('metric')}) (increase({counter}[$__rate_interval]))",
                common.legend("metric"),
            )
        ],
        unit="short",
        description=common.describe(
            "anomalies",
            "Repeated anomalous steps (three in ten minutes) fire MLXTrainingAnomaly; "
            "zero while the run is steady.",
        ),
        min_zero=True,
    )


def reward_by_function() -> common.Panel:
    return common.timeseries(
        17,
        "Mean reward by reward function",
        [common.target(common.series("reward_function_mean"), common.legend("reward_fn"))],
        unit=common.unit("reward_function_mean"),
        description=common.describe(
            "reward_function_mean",
            "One reward rising while the correctness reward stays flat is the classic "
            "reward-hacking pattern.",
        ),
    )


def grad_norm() -> common.Panel:
    return _with_score(
        18, "Gradient norm and its anomaly score", "grad_norm", "grad_norm",
        "Spikes precede divergence; one spike is noted, repeated spikes alert.",
    )  # fmt: skip


dashboard = common.dashboard(
    "MLX RL Health",
    uid="mlx-rl-health",
    description="Whether an RL (GRPO-style) run is still learning: group signal, entropy, KL, "
    "completion lengths and truncation, anomalies (mlx_otel).",
    rows=[
        [
            no_signal_now(),
            entropy_now(),
            kl_now(),
            truncated_now(),
            validation_reward_now(),
            group_size(),
        ],  # fmt: skip
        [groups_without_signal(), train_vs_validation_reward()],
        [entropy(), kl()],
        [completion_lengths(), length_by_correctness()],
        [truncation(), unclosed_thinking()],
        [anomaly_scores(), anomalies()],
        [reward_by_function(), grad_norm()],
    ],
)
