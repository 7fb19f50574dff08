"""*Preference optimisation*: is the policy learning to prefer the chosen completion?

For DPO-style training (mlx-lm-lora's dpo, cpo, orpo, online_dpo, xpo, ppo):
the implicit reward of the chosen and of the rejected completions, their
margin, the share of pairs ranked right (accuracy; 0.5 is chance), and the
log-probabilities the policy gives each. A healthy run shows the margin and
the accuracy rising, with the chosen reward above the rejected one; both
log-probabilities falling together (the rejected faster) is the usual DPO
picture, the chosen one falling steeply a sign of over-optimisation. The online
modes with a judge add their own: PPO's and REINFORCE's loss, KL penalty
and advantage, XPO's exploration bonus and per-choice KL.

    python -m mlx_otel dashboards   # writes mlx_preference.json beside this file
"""

from __future__ import annotations

from . import common

NAME = "mlx_preference"


def accuracy_now() -> common.Panel:
    return common.stat(
        1,
        "Preference accuracy now",
        [common.target(common.series("preference_accuracy"))],
        unit=common.unit("preference_accuracy"),
        description=common.describe("preference_accuracy", trainer_only=True),
        thresholds=((None, "red"), (0.55, "orange"), (0.7, "green")),
    )


def margin_now() -> common.Panel:
    return common.stat(
        2,
        "Reward margin now",
        [common.target(common.series("preference_margin"))],
        unit=common.unit("preference_margin"),
        description=common.describe("preference_margin", trainer_only=True),
    )


def rewards() -> common.Panel:
    return common.timeseries(
        3,
        "Chosen vs rejected reward",
        [common.target(common.series("preference_reward"), common.legend("choice"))],
        unit=common.unit("preference_reward"),
        description=common.describe(
            "preference_reward", "The chosen line should rise above the rejected one.",
            trainer_only=True,
        ),  # fmt: skip
    )


def margin() -> common.Panel:
    return common.timeseries(
        4,
        "Reward margin",
        [
            common.target(common.series("preference_margin"), f"train {common.RUN_LEGEND}"),
            common.target(
                common.series("validation_preference_margin"), f"validation {common.RUN_LEGEND}"
            ),
        ],
        unit=common.unit("preference_margin"),
        description=common.describe(
            "preference_margin", "validation_preference_margin", trainer_only=True
        ),
    )


def accuracy() -> common.Panel:
    return common.timeseries(
        5,
        "Preference accuracy",
        [
            common.target(common.series("preference_accuracy"), f"train {common.RUN_LEGEND}"),
            common.target(
                common.series("validation_preference_accuracy"), f"validation {common.RUN_LEGEND}"
            ),
        ],
        unit=common.unit("preference_accuracy"),
        description=common.describe(
            "preference_accuracy", "validation_preference_accuracy",
            "Stuck near 0.5 well after warm-up, the margin not growing: the policy does not "
            "separate the pairs (MLXPreferenceNotLearning).",
            trainer_only=True,
        ),  # fmt: skip
        min_zero=True,
    )


def log_probabilities() -> common.Panel:
    return common.timeseries(
        6,
        "Policy and reference log-probabilities",
        [
            common.target(common.series("policy_logps"), f"policy {common.legend('choice')}"),
            common.target(
                common.series("reference_logps"), f"reference {common.legend('choice')}"
            ),
        ],
        unit=common.unit("policy_logps"),
        description=common.describe("policy_logps", "reference_logps", trainer_only=True),
    )


def scores() -> common.Panel:
    return common.timeseries(
        7,
        "Sequence scores",
        [common.target(common.series("logits_mean"), common.legend("choice"))],
        unit=common.unit("logits_mean"),
        description=common.describe("logits_mean", trainer_only=True),
    )


def policy_gradient() -> common.Panel:
    return common.timeseries(
        8,
        "PPO and REINFORCE: loss, KL penalty, advantage",
        [
            common.target(common.series("policy_loss"), f"policy loss {common.RUN_LEGEND}"),
            common.target(common.series("kl_penalty"), f"KL penalty {common.RUN_LEGEND}"),
            common.target(common.series("advantage_mean"), f"mean advantage {common.RUN_LEGEND}"),
            common.target(
                common.series("importance_ratio_mean"), f"mean ratio {common.RUN_LEGEND}"
            ),
        ],
        unit="short",
        description=common.describe(
            "policy_loss", "kl_penalty", "advantage_mean", "importance_ratio_mean",
            trainer_only=True,
        ),  # fmt: skip
    )


def exploration() -> common.Panel:
    return common.timeseries(
        9,
        "XPO: exploration bonus and KL by choice",
        [
            common.target(common.series("exploration_bonus"), f"bonus {common.RUN_LEGEND}"),
            common.target(common.series("preference_kl"), f"KL {common.legend('choice')}"),
        ],
        unit="short",
        description=common.describe("exploration_bonus", "preference_kl", trainer_only=True),
    )


dashboard = common.dashboard(
    "Preference optimisation",
    uid="mlx-preference",
    description=(
        "Chosen vs rejected rewards, margin, accuracy and log-probabilities of preference "
        "training (mlx-lm-lora dpo, cpo, orpo, online_dpo, xpo, ppo) monitored by mlx_otel."
    ),
    rows=[
        [accuracy_now(), margin_now()],
        [rewards(), margin()],
        [accuracy(), log_probabilities()],
        [scores(), policy_gradient()],
        [exploration()],
    ],
)
