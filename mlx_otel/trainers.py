"""Callbacks that monitor mlx-lm and mlx-lm-lora training runs.

Both trainers call a callback object with ``on_train_loss_report(info)`` every
``steps_per_report`` iterations and ``on_val_loss_report(info)`` at each
validation. These callbacks turn those reports into mlx_otel metrics (served
for Prometheus, with MLX memory) and forward every call to the callback they
wrap, so ``--report-to wandb`` keeps working beside them:

    from mlx_lm.lora import train_model                  # mlx-lm
    train_model(args, model, train_set, valid_set,
                training_callback=MlxLmCallback(config=vars(args)))

    from mlx_lm_lora.train import run                    # mlx-lm-lora
    run(args, training_callback=MlxLmLoraCallback(config=vars(args)))

The reports carry aggregates only. For the run's duration each callback
also wraps the trainer's own functions (:mod:`mlx_otel.integrations.trainer_hooks`):
mlx-lm-lora GRPO's completions, their rewards and groups, and the phases of
an iteration (``generate``, ``reward``, ``update``, ``evaluate``); mlx-lm's
``train`` and ``evaluate``. What they saw rides with the next report.

They are constructed like mlx-lm's own reporting callbacks
(``cls(project_name=, log_dir=, config=, wrapped_callback=)``) and import
neither trainer. Whatever goes wrong in monitoring is logged and counted;
the trainer never sees an exception from here (it would abort the run).

Validation steps are labelled by the iterations completed when the
validation ran, in both trainers (mlx-lm reports ``it - 1``, mlx-lm-lora
``it``, for the same moment). MLX's peak memory counter is never reset: the
trainers report it as their ``peak_memory``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import threading
from collections.abc import Mapping
from typing import Any

from mlx_otel.config import load_config
from mlx_otel.integrations.trainer_hooks import FunctionHooks, GrpoHooks, MlxLmHooks
from mlx_otel.monitor import TrainingMonitor
from mlx_otel.records import TrainerReport, to_number

__all__ = ["MlxLmCallback", "MlxLmLoraCallback", "train_info_report"]

log = logging.getLogger("mlx_otel")

#: Trainer keys that map one to one onto a catalogue key.
_SCALARS = {
    "train_loss": "loss",
    "learning_rate": "learning_rate",
    "tokens_per_second": "tokens_per_second",
    "iterations_per_second": "iterations_per_second",
    "trained_tokens": "trained_tokens",
    # GRPO and the other RL trainers of mlx-lm-lora
    "train_total_rewards_mean": "reward_mean",
    "train_total_rewards_std": "reward_std",
    "train_grouped_rewards_mean": "grouped_reward_mean",
    "train_grouped_rewards_std": "grouped_reward_std",
    "train_kl": "kl",
    "train_kl_clip_ratio": "kl_clip_ratio",
    "train_hit_max_tokens_ratio": "hit_max_tokens_ratio",
    "val_loss": "validation_loss",
    "val_time": "validation_duration",
    # Preference optimisation (dpo, cpo, orpo, online_dpo, xpo, ppo, dsla) and rlhf_reinforce
    "train_margins": "preference_margin",
    "train_accuracies": "preference_accuracy",
    "val_margins": "validation_preference_margin",
    "val_accuracies": "validation_preference_accuracy",
    "train_rewards": "reward_mean",  # rlhf_reinforce: mean judge reward of the samples
    "train_exploration_bonus": "exploration_bonus",  # xpo
    "train_policy_loss": "policy_loss",  # ppo
    "train_kl_penalty": "kl_penalty",  # ppo, rlhf_reinforce
    "train_advantages_mean": "advantage_mean",  # ppo
    "train_advantages": "advantage_mean",  # rlhf_reinforce
    "train_ratios_mean": "importance_ratio_mean",  # ppo
    "train_reward_mean": "reward_mean",  # klpo
    "train_reward_std": "reward_std",
    # ftpo: per chosen token, whether its logit beats the rejected token's, and by how much
    "train_chosen_win": "preference_accuracy",
    "train_mean_delta": "preference_margin",
    "val_chosen_win": "validation_preference_accuracy",
    "val_mean_delta": "validation_preference_margin",
}
#: Trainer keys that map onto a labelled catalogue metric: (key, label value).
_LABELLED = {
    "train_clip_ratio_low": ("clip_ratio", "low"),
    "train_clip_ratio_high": ("clip_ratio", "high"),
    "train_clip_ratio_total": ("clip_ratio", "total"),
    "train_average_generated_tokens": ("generated_tokens", "mean"),
    "train_max_generated_tokens": ("generated_tokens", "max"),
    "train_min_generated_tokens": ("generated_tokens", "min"),
    # Preference optimisation: one series per choice (chosen, rejected)
    "train_chosen_reward": ("preference_reward", "chosen"),
    "train_rejected_reward": ("preference_reward", "rejected"),
    "train_policy_chosen_logps": ("policy_logps", "chosen"),
    "train_policy_rejected_logps": ("policy_logps", "rejected"),
    "train_chosen_logits_mean": ("logits_mean", "chosen"),
    "train_rejected_logits_mean": ("logits_mean", "rejected"),
    "train_clip_fraction": ("clip_ratio", "total"),  # ppo: share of clipped ratios
    "train_reference_chosen_logps": ("reference_logps", "chosen"),  # ppo
    "train_reference_rejected_logps": ("reference_logps", "rejected"),
    "train_policy_logps": ("policy_logps", "sampled"),  # rlhf_reinforce
    "train_ref_logps": ("reference_logps", "sampled"),
    "train_chosen_kl": ("preference_kl", "chosen"),  # xpo
    "train_rejected_kl": ("preference_kl", "rejected"),
}
#: Per reward function: train_<name>_mean|std|coverage.
_REWARD_FN_SUFFIXES = {
    "_mean": "reward_function_mean",
    "_std": "reward_function_std",
    "_coverage": "reward_function_coverage",
}
_HANDLED_ELSEWHERE = frozenset({"iteration", "peak_memory"})


def train_info_report(
    step: Any,
    info: Mapping[str, Any],
    *,
    reward_functions: frozenset[str] | set[str] = frozenset(),
) -> TrainerReport:
    """Map a trainer's report onto a :class:`~mlx_otel.records.TrainerReport`.

    Known keys become catalogue metrics; per-reward-function keys
    (``train_<fn>_mean``) become ``reward_function_mean`` labelled ``<fn>``;
    any other key keeps its own name and so becomes a custom metric. Values
    stay as given (the monitor counts what is not a number).

    >>> train_info_report(5, {"train_loss": 1.5, "train_kl": 0.1,
    ...                       "train_clip_ratio_low": 0.0, "x": 2})
    TrainerReport(step=5, values={'loss': 1.5, 'kl': 0.1}, labelled={'clip_ratio': {'low': 0.0}}, custom={'x': 2})
    """
    report = TrainerReport(step)
    for key, value in info.items():
        if key in _HANDLED_ELSEWHERE:
            continue
        if key in _SCALARS:
            report.values[_SCALARS[key]] = value
            continue
        labelled = _LABELLED.get(key)
        if labelled is None and key.startswith("train_"):
            for suffix, metric in _REWARD_FN_SUFFIXES.items():
                name = key[len("train_") : -len(suffix)]
                if key.endswith(suffix) and name in reward_functions:
                    labelled = (metric, name)
                    break
        if labelled is None:
            report.custom[key] = value
        else:
            report.labelled.setdefault(labelled[0], {})[labelled[1]] = value
    return report


def _reward_function_names(info: Mapping[str, Any]) -> set[str]:
    """Names of reward functions in a GRPO report (keys train_<fn>_mean/_std/_coverage)."""
    known = set(_SCALARS) | set(_LABELLED)
    names = set()
    for key in info:
        if key.startswith("train_") and key.endswith("_coverage") and key not in known:
            name = key[len("train_") : -len("_coverage")]
            if f"train_{name}_mean" in info:
                names.add(name)
    return names


class MlxLmCallback:
    """Monitor an mlx-lm (``mlx_lm.lora``) run: pass it as ``training_callback``.

    ``config`` is the trainer's configuration (``vars(args)``): its ``iters``
    tells which report is the last one (the run is then exported, as at the
    end of a ``with TrainingMonitor()`` block) and its ``steps_per_report``
    corrects the trainer's overstated ``iterations_per_second`` of a short
    last interval. ``monitor`` is a :class:`~mlx_otel.TrainingMonitor` to
    report to; without one, the callback makes its own from
    ``monitor_config`` (a path, mapping or MonitorConfig) and ``run_id``,
    serves it, and closes it at the end of training or at interpreter exit.
    Until then it also times mlx-lm's validation (phase ``evaluate``) and
    the training between validations and reports (phase ``train``).

        callback = MlxLmCallback(config=vars(args), run_id="sft_001",
                                 monitor_config={"exporter": {"port": 9464}})
    """

    #: What the trainer adds to the completed iterations in val_info["iteration"].
    val_iteration_offset = 0

    def __init__(
        self,
        project_name: str | None = None,
        log_dir: str | None = None,
        config: Mapping[str, Any] | None = None,
        wrapped_callback: Any = None,
        *,
        monitor: Any = None,
        monitor_config: Any = None,
        run_id: str | None = None,
        close_at_end: bool = True,
    ) -> None:
        self.wrapped_callback = wrapped_callback
        # Kept by reference: mlx-lm-lora fills in iters (from epochs) after
        # building its callbacks, on the same namespace.
        self.trainer_config = config if config is not None else {}
        self.close_at_end = close_at_end
        self._owns_monitor = monitor is None
        self._lock = threading.Lock()
        self._closed = False
        self._last_iteration: int | None = None
        self._pending_validation: dict[str, Any] = {}
        self._pending_custom: dict[str, Any] = {}
        self._reward_functions: set[str] | None = None
        self._exported_at = 0
        self.monitor = monitor if monitor is not None else self._make_monitor(monitor_config, run_id)
        #: The trainer's own functions, observed for what its reports leave out.
        self.hooks = self._make_hooks(getattr(self.monitor, "phase", None))
        self.hooks.install(import_module=self._hooks_import)
        if self._owns_monitor:
            atexit.register(self.close)

    # -- the trainer's functions -------------------------------------------------
    @property
    def _hooks_import(self) -> bool:
        return False  # mlx-lm's trainer module is imported by whoever runs it

    def _make_hooks(self, phase: Any) -> FunctionHooks:
        return MlxLmHooks(phase)

    # -- the monitor -----------------------------------------------------------
    @staticmethod
    def _make_monitor(monitor_config: Any, run_id: str | None) -> Any:
        config = load_config(monitor_config)
        # The trainers report MLX's process-wide peak as their peak_memory.
        config.trainer.reset_peak_each_step = False
        try:
            return TrainingMonitor(config, run_id=run_id)
        except Exception as exc:  # e.g. the port is taken: train on, unserved
            log.error(
                "mlx_otel: cannot serve metrics (%s); training goes on and the run's files "
                "are still written. Pick another port with --metrics-port or exporter.port.",
                exc,
            )
            return TrainingMonitor(config, run_id=run_id, serve=False)

    def close(self, *, linger: float = 0.0, stop: threading.Event | None = None) -> None:
        """Export the run's files and stop serving (if this callback made the monitor).

        ``linger`` keeps the endpoint up that many seconds after the export so
        Prometheus scrapes the last values (``stop`` or Ctrl-C ends it early).
        An end started at the last report is waited for, not run again. Safe
        to call twice; the first call wins.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.hooks.uninstall()
        if not self._owns_monitor:
            try:
                self._export()
            except Exception:  # never into the trainer, nor into interpreter exit
                log.exception("mlx_otel: exporting the run failed")
            return
        try:
            self._flush_validation()
            lingering = linger > 0 and self.monitor.endpoint
            # The chart process finishes the end-of-run charts on its own.
            self.monitor.finish_run(keep_serving=bool(lingering), leave=True)
            if lingering:
                log.info(
                    "mlx_otel: serving the last values at %s for %.0f s",
                    self.monitor.endpoint, linger,
                )
                with contextlib.suppress(KeyboardInterrupt):
                    (stop or threading.Event()).wait(linger)
        except Exception:  # never into the trainer, nor into interpreter exit
            log.exception("mlx_otel: exporting the run failed")
        finally:
            try:
                self.monitor.cleanup()
            except Exception:
                log.exception("mlx_otel: closing the monitor failed")

    def _export(self) -> None:
        """Write the run's files, unless nothing was logged since the last export."""
        self._flush_validation()
        logged = self.monitor.steps_logged
        if logged and logged != self._exported_at:
            self._exported_at = logged
            self.monitor.export_all()

    def _end_of_training(self) -> None:
        """The trainer's last report: end the run without holding the trainer.

        The files are written on a thread of their own while the trainer saves
        its adapters; the process's exit (or :meth:`close`) waits for them.
        A monitor made by this callback ends there and then (serving goes on
        until :meth:`close` when ``close_at_end`` is false, for a linger); a
        monitor handed in is the caller's: its files are written on its worker.
        """
        self.hooks.uninstall()
        self._flush_validation()
        if not self._owns_monitor:
            logged = self.monitor.steps_logged
            if logged and logged != self._exported_at:
                self._exported_at = logged
                self.monitor.submit("export", self.monitor.export_all)
            return
        self.monitor.finish_run(wait=False, keep_serving=not self.close_at_end, leave=True)

    # -- the trainer's calls -------------------------------------------------
    def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
        try:
            self._train_report(train_info)
        except Exception:
            log.exception("mlx_otel: could not record a training report; training goes on")
        if self.wrapped_callback is not None:
            self.wrapped_callback.on_train_loss_report(train_info)

    def on_val_loss_report(self, val_info: dict[str, Any]) -> None:
        try:
            self._val_report(val_info)
        except Exception:
            log.exception("mlx_otel: could not record a validation report; training goes on")
        if self.wrapped_callback is not None:
            self.wrapped_callback.on_val_loss_report(val_info)

    # -- mapping ---------------------------------------------------------------
    def _config_int(self, key: str) -> int | None:
        value = self.trainer_config.get(key)
        return value if isinstance(value, int) and value > 0 else None

    def _validates_at(self, iteration: int) -> bool:
        """Whether the trainer validates before ``iteration`` (both trainers' schedule)."""
        every = self._config_int("steps_per_eval")
        last = self._config_int("iters")
        return iteration == 1 or iteration == last or (every is not None and iteration % every == 0)

    def _iterations_per_second(self, reported: float, iteration: int) -> float:
        # mlx-lm divides steps_per_report (not the iterations of the interval)
        # by the interval's time, overstating a short last interval.
        steps_per_report = self._config_int("steps_per_report")
        previous = self._last_iteration or 0
        if (
            steps_per_report is not None
            and 0 < iteration - previous < steps_per_report
        ):
            return reported * (iteration - previous) / steps_per_report
        return reported

    def _train_report(self, info: Mapping[str, Any]) -> None:
        number = to_number(info.get("iteration"))
        iteration = int(number) if number is not None and math.isfinite(number) else -1
        if self._reward_functions is None:
            self._reward_functions = _reward_function_names(info)
        report = train_info_report(iteration, info, reward_functions=self._reward_functions)
        values = report.values
        speed = to_number(values.get("iterations_per_second"))
        if speed is not None:
            values["iterations_per_second"] = self._iterations_per_second(speed, iteration)
        peak = to_number(info.get("peak_memory"))
        if peak is not None:
            # The trainers report GB (1e9 bytes).
            values["trainer_peak_memory"] = peak * 1e9
        steps_per_report = self._config_int("steps_per_report")
        if steps_per_report is not None:
            values["steps_per_report"] = steps_per_report
        # Validation reported since the last report rides along (the trainers
        # validate just before a training iteration, so it is never far behind).
        self._add_validation(report)
        self._add_observed(report)
        self._last_iteration = iteration
        self.monitor.record_report(report)
        iters = self._config_int("iters")
        if iters is not None and iteration >= iters:  # the trainer's last report
            self._end_of_training()
        else:
            self.hooks.reported(validation_next=self._validates_at(iteration + 1))

    def _add_observed(self, report: TrainerReport) -> None:
        """What the hooks saw since the last report rides along with it."""
        self.hooks.end_open_phase()  # the trainer evaluated its step before it reports
        completions = self.hooks.take()
        if completions is not None:
            report.completions = completions

    def _val_report(self, info: Mapping[str, Any]) -> None:
        report = train_info_report(None, info)
        report.values.update(self.hooks.take_validation())
        iteration = to_number(info.get("iteration"))
        if iteration is not None and math.isfinite(iteration):
            report.values["validation_step"] = int(iteration) - self.val_iteration_offset
        self._pending_validation.update(report.values)
        self._pending_custom.update(report.custom)

    def _add_validation(self, report: TrainerReport) -> None:
        report.values.update(self._pending_validation)
        report.custom.update(self._pending_custom)
        self._pending_validation = {}
        self._pending_custom = {}

    def _flush_validation(self) -> None:
        """A validation after the last training report is recorded at close."""
        if (self._pending_validation or self._pending_custom) and self._last_iteration is not None:
            report = TrainerReport(self._last_iteration)
            self._add_validation(report)
            self.monitor.record_report(report)


class MlxLmLoraCallback(MlxLmCallback):
    """Monitor an mlx-lm-lora (``mlx_lm_lora.train``) run: SFT, GRPO, DPO, ORPO...

    Like :class:`MlxLmCallback`; GRPO's rewards, KL, clip ratios, completion
    lengths and per-reward-function statistics become their catalogue
    metrics, other trainers' keys custom metrics. In GRPO mode
    (``config["train_mode"] == "grpo"``, or whenever mlx-lm-lora's GRPO
    module is imported) each completion's reward, length and truncation, and
    the phases of each iteration, are observed at the trainer's functions.
    ``mlx_lm_lora.train.run`` honours a callback:

        run(args, training_callback=MlxLmLoraCallback(config=vars(args)))
    """

    # mlx-lm-lora reports validation before iteration `it` as `it`.
    val_iteration_offset = 1

    @property
    def _hooks_import(self) -> bool:
        return self.trainer_config.get("train_mode") == "grpo"

    def _make_hooks(self, phase: Any) -> FunctionHooks:
        return GrpoHooks(phase)

    def _iterations_per_second(self, reported: float, iteration: int) -> float:
        return reported  # mlx-lm-lora divides the interval's own iterations

