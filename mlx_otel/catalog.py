"""The one list of metrics that mlx_otel serves.

Every other artefact is derived from this list or checked against it by a
test: the OpenTelemetry instruments, the Prometheus names the dashboards and
alert rules query, the WandB keys and the CSV columns. Renaming a metric here
therefore fails the build where it is used instead of leaving an empty panel.

    >>> from mlx_otel.catalog import METRICS, by_key
    >>> by_key("loss").prometheus_name
    'mlx_train_loss'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "METRICS",
    "RESOURCE_LABELS",
    "Kind",
    "Metric",
    "Source",
    "by_key",
    "by_prometheus_name",
    "custom_key",
    "display_unit",
    "is_memory_field",
    "markdown_table",
    "wandb_group",
    "wandb_group_by_name",
    "wandb_key",
]

#: Labels that come from the OpenTelemetry resource and so are on every series.
RESOURCE_LABELS: tuple[str, ...] = ("run_id", "rank")


class Kind(str, Enum):
    """How a metric aggregates; maps onto an OpenTelemetry instrument."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


class Source(str, Enum):
    """Which part holds a metric's value; the instruments read it there at collection time."""

    STEP = "step"  # stored by log_training_step (the step recorder)
    MEMORY = "memory"  # read from MLX / psutil at collection time (memory readings)
    GRADIENTS = "gradients"  # stored by log_gradients (the step recorder)
    EXPORTER = "exporter"  # the exporter's own health (the error ledger, the run's lifecycle)
    TRAINER = "trainer"  # a trainer integration's report (the step recorder)


@dataclass(frozen=True)
class Metric:
    """One metric: its names in every system that shows it.

    ``key`` is the short name used in Python (statistics, CSV columns, the
    key of a trainer report); ``otel_name`` and ``unit`` are given to
    OpenTelemetry, and ``prometheus_name`` is what the Prometheus exporter
    makes of them (a test checks the two agree).

    ``read_from`` names the value the instrument reads in the part its
    ``source`` names, multiplied by ``scale`` (``memory_allocated_mb`` times
    2**20 for ``mlx_train_memory_allocated_bytes``); left empty it is the
    metric's own key. ``None`` means the part serves the instrument itself
    (the run's lifecycle serves ``mlx_otel_run_finished``). A labelled metric
    reads a mapping of label values to numbers; a histogram reads a buffer of
    samples folded in bulk.
    """

    key: str
    otel_name: str
    prometheus_name: str
    kind: Kind
    unit: str
    description: str
    source: Source
    wandb_group: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    #: Unit shown on dashboards (Grafana unit id).
    grafana_unit: str = "short"
    read_from: str | None = ""
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.read_from == "":
            object.__setattr__(self, "read_from", self.key)

    @property
    def wandb_key(self) -> str:
        """The key this metric is logged under in WandB (``train/loss``)."""
        return f"{self.wandb_group}/{self.key}"

    def column(self, label: str | None = None) -> str:
        """The statistics name and CSV column of a value (``kl``, ``clip_ratio/low``).

        >>> by_key("clip_ratio").column("low")
        'clip_ratio/low'
        """
        return self.key if label is None else f"{self.key}/{label}"

    def wandb_name(self, label: str | None = None) -> str:
        """The WandB key of a value (``rl/kl``, ``rl/clip_ratio/low``).

        >>> by_key("clip_ratio").wandb_name("low"), by_key("kl").wandb_name()
        ('rl/clip_ratio/low', 'rl/kl')
        """
        return f"{self.wandb_group}/{self.column(label)}"


# Rewards of RL fine-tuning are mostly in [0, 1]: fine buckets there, coarse
# ones above. The first bound is 0, not negative: Prometheus' client drops
# _count and _sum from a histogram with negative buckets (a _sum that can fall
# breaks rate()), so rewards at or below zero all land in the le="0" bucket.
REWARD_BUCKETS: tuple[float, ...] = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0, 5.0, 10.0,
)  # fmt: skip
# A training step of an MLX model takes milliseconds to minutes.
STEP_DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

# A phase of a step (generation, scoring, the update) takes about a millisecond
# to ten minutes (long generations of a large model).
PHASE_DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

# Completions run from a few tokens to tens of thousands (DAPO: 20,480 at
# most): powers of two.
COMPLETION_LENGTH_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(4, 16))

_G, _C, _H = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM

METRICS: tuple[Metric, ...] = (
    # MLX and process memory, read when Prometheus scrapes.
    Metric("memory_active", "mlx.memory.active", "mlx_memory_active_bytes", _G, "By",
           "MLX active memory: bytes held by live arrays.", Source.MEMORY, "memory",
           grafana_unit="bytes"),
    Metric("memory_cache", "mlx.memory.cache", "mlx_memory_cache_bytes", _G, "By",
           "MLX cache memory: freed buffers kept for reuse.", Source.MEMORY, "memory",
           grafana_unit="bytes"),
    Metric("memory_peak", "mlx.memory.peak", "mlx_memory_peak_bytes", _G, "By",
           "MLX peak active memory since the last reset (per step by default).",
           Source.MEMORY, "memory", grafana_unit="bytes"),
    Metric("memory_limit", "mlx.memory.limit", "mlx_memory_limit_bytes", _G, "By",
           "MLX memory limit: allocations beyond it wait or fail.", Source.MEMORY,
           "memory", grafana_unit="bytes"),
    Metric("memory_threshold", "mlx_otel.memory.threshold", "mlx_otel_memory_threshold_bytes",
           _G, "By", "Configured memory safety threshold (trainer.memory_safety_threshold_mb).",
           Source.MEMORY, "memory", grafana_unit="bytes"),
    Metric("system_memory_available", "mlx.system.memory.available",
           "mlx_system_memory_available_bytes", _G, "By",
           "System memory available to new processes.", Source.MEMORY, "memory",
           grafana_unit="bytes"),
    Metric("system_memory_total", "mlx.system.memory.total", "mlx_system_memory_total_bytes",
           _G, "By", "Total system memory.", Source.MEMORY, "memory", grafana_unit="bytes"),
    Metric("process_resident_memory", "mlx.process.resident_memory",
           "mlx_process_resident_memory_bytes", _G, "By",
           "Resident set size of the training process.", Source.MEMORY, "memory",
           grafana_unit="bytes"),
    Metric("memory_leak_slope", "mlx.memory.leak_slope", "mlx_memory_leak_slope_bytes_per_second",
           _G, "By/s", "Least-squares slope of MLX active memory over the leak window.",
           Source.MEMORY, "memory", grafana_unit="Bps"),
    Metric("memory_leak_slope_per_step", "mlx.memory.leak_slope_per_step",
           "mlx_memory_leak_slope_per_step_bytes", _G, "By",
           "Slope of MLX active memory per training step over the leak window.",
           Source.MEMORY, "memory", grafana_unit="bytes"),
    Metric("memory_block_delta", "mlx.memory.block.delta", "mlx_memory_block_delta_bytes", _G,
           "By", "Change of MLX active memory across the last run of a monitored block.",
           Source.MEMORY, "memory", labels=("block",), grafana_unit="bytes",
           read_from="block_delta"),
    Metric("memory_block_peak", "mlx.memory.block.peak", "mlx_memory_block_peak_bytes", _G,
           "By", "MLX peak active memory during the last run of a monitored block.",
           Source.MEMORY, "memory", labels=("block",), grafana_unit="bytes",
           read_from="block_peak"),
    # Training progress, stored by log_training_step.
    Metric("steps", "mlx.train.steps", "mlx_train_steps_total", _C, "{step}",
           "Training steps logged.", Source.STEP, "train", grafana_unit="ops"),
    Metric("step", "mlx.train.step", "mlx_train_step", _G, "{step}",
           "Index of the last logged training step.", Source.STEP, "train"),
    Metric("last_step_timestamp", "mlx.train.last_step_timestamp",
           "mlx_train_last_step_timestamp_seconds", _G, "s",
           "Unix time of the last logged step (the monitor's start before the first).",
           Source.STEP, "train", grafana_unit="dateTimeFromNow", read_from="step_timestamp"),
    Metric("loss", "mlx.train.loss", "mlx_train_loss", _G, "1",
           "Training loss of the last step (NaN and inf are exported as they are).",
           Source.STEP, "train"),
    Metric("reward_mean", "mlx.train.reward_mean", "mlx_train_reward_mean", _G, "1",
           "Mean reward of the last step.", Source.STEP, "rl"),
    Metric("grad_norm", "mlx.train.grad_norm", "mlx_train_grad_norm", _G, "1",
           "Global L2 norm of the gradient of the last step.", Source.STEP, "train"),
    Metric("learning_rate", "mlx.train.learning_rate", "mlx_train_learning_rate", _G, "1",
           "Learning rate of the last step.", Source.STEP, "train", grafana_unit="sci"),
    Metric("memory_allocated", "mlx.train.memory_allocated", "mlx_train_memory_allocated_bytes",
           _G, "By", "Memory the training loop reported (memory_allocated_mb).",
           Source.STEP, "memory", grafana_unit="bytes", read_from="memory_allocated_mb",
           scale=float(1 << 20)),
    Metric("reward", "mlx.train.reward", "mlx_train_reward", _H, "1",
           "Per-sample rewards (the rewards= argument), non-finite ones left out.",
           Source.STEP, "rl", buckets=REWARD_BUCKETS, read_from="rewards"),
    Metric("tokens", "mlx.train.tokens", "mlx_train_tokens_total", _C, "{token}",
           "Generated tokens by kind: thinking (before the answer delimiter) or answer.",
           Source.STEP, "rl", labels=("kind",), grafana_unit="short"),
    Metric("step_duration", "mlx.train.step.duration", "mlx_train_step_duration_seconds", _H,
           "s", "Wall time of a training step (interval between calls unless step_time= is given).",
           Source.STEP, "train", buckets=STEP_DURATION_BUCKETS, grafana_unit="s",
           read_from="durations"),
    Metric("phase_duration", "mlx.train.phase.duration", "mlx_train_phase_duration_seconds",
           _H, "s", "Wall time of each timed phase of a step (monitor.phase), by phase name.",
           Source.STEP, "timing", labels=("phase",), buckets=PHASE_DURATION_BUCKETS,
           grafana_unit="s", read_from="phases"),
    Metric("custom", "mlx.train.custom", "mlx_train_custom", _G, "1",
           "Custom values passed to log_training_step as keywords, by sanitised name.",
           Source.STEP, "custom", labels=("name",)),
    # Reported by trainer integrations (mlx_otel.trainers) once every
    # steps_per_report iterations, as a TrainerReport keyed by these keys
    # (labelled ones as a mapping of label values to numbers).
    Metric("validation_loss", "mlx.train.validation_loss", "mlx_train_validation_loss", _G, "1",
           "Validation loss of the last evaluation.", Source.TRAINER, "val"),
    Metric("validation_step", "mlx.train.validation_step", "mlx_train_validation_step", _G,
           "{step}", "Training iterations completed when the last validation ran.",
           Source.TRAINER, "val"),
    Metric("validation_duration", "mlx.train.validation_duration",
           "mlx_train_validation_duration_seconds", _G, "s",
           "Wall time of the last validation.", Source.TRAINER, "val", grafana_unit="s"),
    Metric("tokens_per_second", "mlx.train.tokens_per_second", "mlx_train_tokens_per_second", _G,
           "{token}/s", "Trained tokens per second over the last report interval.",
           Source.TRAINER, "train", grafana_unit="suffix: tokens/s"),
    Metric("iterations_per_second", "mlx.train.iterations_per_second",
           "mlx_train_iterations_per_second", _G, "{step}/s",
           "Training iterations per second over the last report interval.", Source.TRAINER,
           "train", grafana_unit="suffix: it/s"),
    Metric("trained_tokens", "mlx.train.trained_tokens", "mlx_train_trained_tokens_total", _C,
           "{token}", "Tokens trained on since the start of the run.", Source.TRAINER, "train",
           grafana_unit="short"),
    Metric("steps_per_report", "mlx.train.steps_per_report", "mlx_train_steps_per_report", _G,
           "{step}", "Iterations between two reports of the trainer (steps_per_report).",
           Source.TRAINER, "train"),
    Metric("trainer_peak_memory", "mlx.train.trainer_peak_memory",
           "mlx_train_trainer_peak_memory_bytes", _G, "By",
           "Peak MLX memory the trainer reported (its peak_memory, read from MLX's counter).",
           Source.TRAINER, "memory", grafana_unit="bytes"),
    Metric("reward_std", "mlx.train.reward_std", "mlx_train_reward_std", _G, "1",
           "Standard deviation of the rewards of the last report interval.", Source.TRAINER,
           "rl"),
    Metric("grouped_reward_mean", "mlx.train.grouped_reward_mean", "mlx_train_grouped_reward_mean",
           _G, "1", "Mean of the per-group mean rewards (GRPO) of the last report interval.",
           Source.TRAINER, "rl"),
    Metric("grouped_reward_std", "mlx.train.grouped_reward_std", "mlx_train_grouped_reward_std",
           _G, "1", "Mean within-group standard deviation of rewards (GRPO); 0 means no signal.",
           Source.TRAINER, "rl"),
    Metric("kl", "mlx.train.kl", "mlx_train_kl", _G, "1",
           "KL divergence of the policy from the reference model.", Source.TRAINER, "rl"),
    Metric("kl_clip_ratio", "mlx.train.kl_clip_ratio", "mlx_train_kl_clip_ratio", _G, "1",
           "Share of tokens whose KL term was clipped (saturated).", Source.TRAINER, "rl",
           grafana_unit="percentunit"),
    Metric("clip_ratio", "mlx.train.clip_ratio", "mlx_train_clip_ratio", _G, "1",
           "Share of tokens whose importance ratio was clipped, by bound (low, high, total).",
           Source.TRAINER, "rl", labels=("bound",), grafana_unit="percentunit"),
    Metric("generated_tokens", "mlx.train.generated_tokens", "mlx_train_generated_tokens", _G,
           "{token}", "Length of generated completions, by statistic (mean, max, min).",
           Source.TRAINER, "rl", labels=("stat",), grafana_unit="suffix: tokens"),
    Metric("hit_max_tokens_ratio", "mlx.train.hit_max_tokens_ratio",
           "mlx_train_hit_max_tokens_ratio", _G, "1",
           "Share of completions cut at the maximum completion length.", Source.TRAINER, "rl",
           grafana_unit="percentunit"),
    Metric("reward_function_mean", "mlx.train.reward_function_mean",
           "mlx_train_reward_function_mean", _G, "1", "Mean reward of each reward function.",
           Source.TRAINER, "rl", labels=("reward_fn",)),
    Metric("reward_function_std", "mlx.train.reward_function_std", "mlx_train_reward_function_std",
           _G, "1", "Standard deviation of the rewards of each reward function.", Source.TRAINER,
           "rl", labels=("reward_fn",)),
    Metric("reward_function_coverage", "mlx.train.reward_function_coverage",
           "mlx_train_reward_function_coverage", _G, "1",
           "Share of completions each reward function scored (not None), 0 to 1.",
           Source.TRAINER, "rl", labels=("reward_fn",)),
    # RL health, stored by log_training_step (or a report's Completions) and
    # computed from its per-completion lists off the training thread
    # (mlx_otel.numbers.rl_health, mlx_otel.numbers.anomaly).
    Metric("zero_std_groups_ratio", "mlx.train.zero_std_groups_ratio",
           "mlx_train_zero_std_groups_ratio", _G, "1",
           "Share of the last step's groups whose rewards are all equal (no learning signal), "
           "by outcome: solved, unsolved or tied; the three add up to the share without signal.",
           Source.STEP, "rl", labels=("outcome",), grafana_unit="percentunit"),
    Metric("entropy", "mlx.train.entropy", "mlx_train_entropy", _G, "1",
           "Mean token entropy of the policy on the last step's completions (entropy=).",
           Source.STEP, "rl"),
    Metric("completion_length", "mlx.train.completion_length_tokens",
           "mlx_train_completion_length_tokens", _H, "{token}",
           "Tokens of each completion (the completion_lengths= argument).",
           Source.STEP, "rl", buckets=COMPLETION_LENGTH_BUCKETS, grafana_unit="suffix: tokens",
           read_from="completion_lengths"),
    Metric("completion_length_mean", "mlx.train.completion_length_mean_tokens",
           "mlx_train_completion_length_mean_tokens", _G, "{token}",
           "Mean length of the last step's completions, by correctness (correct= true or false).",
           Source.STEP, "rl", labels=("correct",), grafana_unit="suffix: tokens"),
    Metric("unclosed_thinking_ratio", "mlx.train.unclosed_thinking_ratio",
           "mlx_train_unclosed_thinking_ratio", _G, "1",
           "Share of the last step's completions with thinking tokens and no answer tokens.",
           Source.STEP, "rl", grafana_unit="percentunit"),
    Metric("group_size", "mlx.train.group_size", "mlx_train_group_size", _G, "{completion}",
           "Completions per prompt of the last step (group_size= or rl.group_size).",
           Source.STEP, "rl"),
    Metric("anomaly_score", "mlx.train.anomaly_score", "mlx_train_anomaly_score", _G, "1",
           "Robust z-score of the last value of a watched metric against its previous "
           "rl.anomaly_window steps (median and MAD).", Source.STEP, "rl", labels=("metric",)),
    Metric("anomalies", "mlx.train.anomalies", "mlx_train_anomalies_total", _C, "{step}",
           "Steps whose anomaly score's magnitude exceeded rl.anomaly_threshold, by metric.",
           Source.STEP, "rl", labels=("metric",), grafana_unit="short"),
    Metric("validation_reward", "mlx.train.validation_reward", "mlx_train_validation_reward",
           _G, "1", "Mean reward on held-out prompts at the last validation (validation_reward=).",
           Source.STEP, "rl"),
    # Gradients, stored by log_gradients.
    Metric("layer_grad_norm", "mlx.train.layer_grad_norm", "mlx_train_layer_grad_norm", _G, "1",
           "L2 norm of each layer's gradient (layers grouped by prefix beyond the cap).",
           Source.GRADIENTS, "gradients", labels=("layer",)),
    # The exporter's own health.
    Metric("errors", "mlx_otel.errors", "mlx_otel_errors_total", _C, "{error}",
           "Values or operations mlx_otel rejected or failed on, by kind.",
           Source.EXPORTER, "exporter", labels=("kind",)),
    Metric("dropped_tasks", "mlx_otel.worker.dropped", "mlx_otel_worker_dropped_total", _C,
           "{task}", "Background tasks dropped because the worker queue was full.",
           Source.EXPORTER, "exporter", labels=("task",)),
    Metric("run_finished", "mlx_otel.run.finished", "mlx_otel_run_finished", _G, "1",
           "1 once the run has ended cleanly (cleanup, with, end of training), else 0.",
           Source.EXPORTER, "exporter", read_from=None),  # served by the run's lifecycle
    # Preference optimisation: mlx-lm-lora's dpo, cpo, orpo, online_dpo, xpo, ppo,
    # dsla and ftpo (and, for some, rlhf_reinforce) report these for each pair of a
    # chosen and a rejected completion (mlx_otel.trainers maps their keys). "choice"
    # is chosen or rejected.
    Metric("preference_reward", "mlx.train.preference_reward", "mlx_train_preference_reward",
           _G, "1", "Implicit reward of the chosen and of the rejected completions "
           "(beta times the policy's log-probability ratio to the reference), by choice.",
           Source.TRAINER, "preference", labels=("choice",)),
    Metric("preference_margin", "mlx.train.preference_margin", "mlx_train_preference_margin",
           _G, "1", "Mean reward margin, chosen minus rejected (ftpo: the chosen minus the "
           "rejected next-token logit); it grows while the policy learns the preference.",
           Source.TRAINER, "preference"),
    Metric("preference_accuracy", "mlx.train.preference_accuracy",
           "mlx_train_preference_accuracy", _G, "1",
           "Share of pairs whose chosen completion out-rewards the rejected one (0.5 is chance; "
           "ftpo: chosen tokens whose logit beats the rejected token's).",
           Source.TRAINER, "preference", grafana_unit="percentunit"),
    Metric("policy_logps", "mlx.train.policy_logps", "mlx_train_policy_logps", _G, "1",
           "Mean per-token log-probability the policy gives each choice's completions, by choice.",
           Source.TRAINER, "preference", labels=("choice",)),
    Metric("logits_mean", "mlx.train.logits_mean", "mlx_train_logits_mean", _G, "1",
           "Mean sequence score (summed log-probability) of each choice's completions, by choice "
           "(mlx-lm-lora's *_logits_mean; cpo reports 0 for rejected).",
           Source.TRAINER, "preference", labels=("choice",)),
    Metric("validation_preference_margin", "mlx.train.validation_preference_margin",
           "mlx_train_validation_preference_margin", _G, "1",
           "Mean reward margin, chosen minus rejected, at the last validation.",
           Source.TRAINER, "preference"),
    Metric("validation_preference_accuracy", "mlx.train.validation_preference_accuracy",
           "mlx_train_validation_preference_accuracy", _G, "1",
           "Share of held-out pairs whose chosen completion out-rewards the rejected one.",
           Source.TRAINER, "preference", grafana_unit="percentunit"),
    # The online modes with a judge (xpo, ppo, rlhf_reinforce) add these.
    Metric("reference_logps", "mlx.train.reference_logps", "mlx_train_reference_logps", _G, "1",
           "Mean log-probability the reference model gives each choice's completions, by choice "
           "(chosen, rejected; sampled for rlhf_reinforce).", Source.TRAINER, "preference",
           labels=("choice",)),
    Metric("preference_kl", "mlx.train.preference_kl", "mlx_train_preference_kl", _G, "1",
           "KL divergence of the policy from the reference on each choice's completions (xpo), "
           "by choice.", Source.TRAINER, "preference", labels=("choice",)),
    Metric("exploration_bonus", "mlx.train.exploration_bonus", "mlx_train_exploration_bonus", _G,
           "1", "XPO's exploration bonus (alpha times the policy's log-ratio on its own samples).",
           Source.TRAINER, "preference"),
    Metric("policy_loss", "mlx.train.policy_loss", "mlx_train_policy_loss", _G, "1",
           "Clipped policy-gradient loss of the last report interval (ppo).", Source.TRAINER,
           "preference"),
    Metric("kl_penalty", "mlx.train.kl_penalty", "mlx_train_kl_penalty", _G, "1",
           "KL penalty added to the loss (beta times the log-ratio to the reference; ppo, "
           "rlhf_reinforce).", Source.TRAINER, "preference"),
    Metric("advantage_mean", "mlx.train.advantage_mean", "mlx_train_advantage_mean", _G, "1",
           "Mean advantage of the trained completions (ppo, rlhf_reinforce).", Source.TRAINER,
           "preference"),
    Metric("importance_ratio_mean", "mlx.train.importance_ratio_mean",
           "mlx_train_importance_ratio_mean", _G, "1",
           "Mean policy-to-reference probability ratio (ppo); far from 1 means drastic updates.",
           Source.TRAINER, "preference"),
)  # fmt: skip

_BY_KEY = {m.key: m for m in METRICS}
_BY_PROMETHEUS = {m.prometheus_name: m for m in METRICS}
if len(_BY_KEY) != len(METRICS) or len(_BY_PROMETHEUS) != len(METRICS):
    raise RuntimeError("mlx_otel.catalog: metric keys and Prometheus names must be unique")
if any(len(m.labels) > 1 for m in METRICS):
    # A labelled value is read as {label value: number}: one label per metric.
    raise RuntimeError("mlx_otel.catalog: a metric has at most one label besides the resource's")

#: The kinds of ``mlx_otel_errors_total`` (a fixed set keeps its cardinality bounded).
ERROR_KINDS: tuple[str, ...] = (
    "invalid_value",  # None, a string, an object that is not a number
    "negative_count",  # a negative token count
    "non_finite",  # NaN/inf left out of a histogram or statistics
    "custom_metric_cap",  # a custom metric beyond exporter.max_custom_metrics
    "collection",  # reading memory or another value at scrape time failed
    "worker",  # a background task (WandB, charts, exports) failed
    "wandb",
    "export",
    "otlp",  # an OTLP export the collector did not accept (the SDK retried first)
)


def by_key(key: str) -> Metric:
    """Return the metric with this short key; ``KeyError`` names the known keys."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no metric {key!r} in the catalogue; known: {sorted(_BY_KEY)}") from None


def by_prometheus_name(name: str) -> Metric:
    """Return the metric that Prometheus knows as ``name`` (without histogram suffixes)."""
    try:
        return _BY_PROMETHEUS[name]
    except KeyError:
        raise KeyError(
            f"no metric named {name!r} in the catalogue; known: {sorted(_BY_PROMETHEUS)}"
        ) from None


#: Values a step record carries besides the served metrics' own keys (their
#: WandB section and the unit drawn on charts); statistics, CSV columns and
#: WandB keys use these names.
RECORD_FIELDS: dict[str, tuple[str, str]] = {
    "memory_allocated_mb": ("memory", "MiB"),
    "mlx_active_mb": ("memory", "MiB"),
    "mlx_cache_mb": ("memory", "MiB"),
    "mlx_peak_mb": ("memory", "MiB"),
    "thinking_tokens": ("rl", "tokens"),
    "answer_tokens": ("rl", "tokens"),
    "rewards": ("rl", ""),  # the per-sample distribution
    "step_time": ("train", "s"),
    "step_duration_seconds": ("train", "s"),  # the step duration, as loops often name it
}

#: How an OpenTelemetry unit reads on a chart axis.
_DISPLAY_UNITS = {"By": "bytes", "s": "s", "{token}": "tokens", "1": ""}


def _field(key: str) -> tuple[str, str] | None:
    """(WandB group, display unit) of a catalogued key, or None for other names."""
    if key in RECORD_FIELDS:
        return RECORD_FIELDS[key]
    metric = _BY_KEY.get(key)
    if metric is None:
        return None
    return metric.wandb_group, _DISPLAY_UNITS.get(metric.unit, metric.unit.strip("{}"))


def _looks_like_memory(key: str) -> bool:
    lowered = key.lower()
    return "memory" in lowered or lowered.endswith(("_mb", "_bytes"))


def wandb_group(key: str) -> str:
    """WandB section of a value: the catalogue's, else :func:`wandb_group_by_name`.

    >>> wandb_group("loss"), wandb_group("rss_bytes"), wandb_group("my_metric")
    ('train', 'memory', 'custom')
    """
    field = _field(key)
    if field is not None:
        return field[0]
    return wandb_group_by_name(key)


def wandb_group_by_name(key: str) -> str:
    """WandB section of a name the catalogue does not know: ``memory`` or ``custom``."""
    return "memory" if _looks_like_memory(key) else "custom"


def custom_key(name: str) -> str:
    """The statistics name, CSV column and WandB key of a custom metric (``custom/kl``)."""
    return f"custom/{name}"


def wandb_key(key: str) -> str:
    """The WandB key of a value (``train/loss``); keys with a ``/`` are kept as given."""
    return key if "/" in key else f"{wandb_group(key)}/{key}"


def display_unit(key: str) -> str:
    """Unit shown on a chart axis for a value ('' when it has none).

    The catalogue's unit for catalogued keys; for other names the naming
    conventions of the catalogue (``_mb``, ``_bytes``, ``_seconds``, tokens).
    """
    field = _field(key)
    if field is not None:
        return field[1]
    lowered = key.lower()
    if lowered.endswith("_mb"):
        return "MiB"
    if lowered.endswith("_bytes"):
        return "bytes"
    if "memory" in lowered:
        return "MiB"
    if "tokens" in lowered:
        return "tokens"
    if lowered.endswith(("_seconds", "_time", "_s")) or "duration" in lowered:
        return "s"
    return ""


def is_memory_field(key: str) -> bool:
    """Whether a value belongs on the memory chart (its WandB section is memory)."""
    return wandb_group(key) == "memory"


def markdown_table() -> str:
    """The metric table of the README, generated so it cannot drift."""
    rows = [
        "| Prometheus name | type | labels | description |",
        "|---|---|---|---|",
    ]
    for m in METRICS:
        labels = ", ".join(("run_id", *m.labels))
        rows.append(f"| `{m.prometheus_name}` | {m.kind.value} | {labels} | {m.description} |")
    return "\n".join(rows)
