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

from mlx_otel.catalog import METRICS, Source
from mlx_otel.config import load_config
from mlx_otel.monitor import TrainingMonitor

__all__ = ["MlxLmCallback", "MlxLmLoraCallback", "train_info_values"]

log = logging.getLogger("mlx_otel")

#: Trainer keys that map one to one onto a catalogue key (log_training_step keyword).
_SCALARS = {
    "train_loss": "loss",
    "learning_rate": "learning_rate",
    "tokens_per_second": "tokens_per_second",
    "iterations_per_second": "iterations_per_second",
    "trained_tokens": "trained_tokens",
    # GRPO and the other RL trainers of mlx-lm-lora
    "train_total_rewards_mean": "reward",
    "train_total_rewards_std": "reward_std",
    "train_grouped_rewards_mean": "grouped_reward_mean",
    "train_grouped_rewards_std": "grouped_reward_std",
    "train_kl": "kl",
    "train_kl_clip_ratio": "kl_clip_ratio",
    "train_hit_max_tokens_ratio": "hit_max_tokens_ratio",
    "train_clip_ratio_low": "clip_ratio/low",
    "train_clip_ratio_high": "clip_ratio/high",
    "train_clip_ratio_total": "clip_ratio/total",
    "train_average_generated_tokens": "generated_tokens/mean",
    "train_max_generated_tokens": "generated_tokens/max",
    "train_min_generated_tokens": "generated_tokens/min",
}
_VAL_SCALARS = {"val_loss": "validation_loss", "val_time": "validation_duration"}
#: Per reward function: train_<name>_mean|std|coverage.
_REWARD_FN_SUFFIXES = {
    "_mean": "reward_function_mean",
    "_std": "reward_function_std",
    "_coverage": "reward_function_coverage",
}
_HANDLED_ELSEWHERE = frozenset({"iteration", "peak_memory"})
_TRAINER_METRICS = {m.key: m for m in METRICS if m.source is Source.TRAINER}


def _number(value: Any) -> Any:
    """A Python number from MLX/NumPy scalars and 0-d arrays; anything else unchanged."""
    if value.__class__ in (float, int):
        return value
    try:
        if hasattr(value, "item") and getattr(value, "size", 1) == 1:
            return value.item()
    except Exception:  # not convertible: the monitor counts it as an invalid value
        return value
    return value


def train_info_values(
    info: Mapping[str, Any], *, reward_functions: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """Map a trainer's report onto ``log_training_step`` keywords.

    Known keys become catalogue metrics; per-reward-function keys
    (``train_<fn>_mean``) become ``reward_function_mean/<fn>``; any other key
    is passed under its own name and so becomes a custom metric.

    >>> sorted(train_info_values({"train_loss": 1.5, "train_kl": 0.1, "x": 2}).items())
    [('loss', 1.5), ('mlx_train_kl', 0.1), ('x', 2)]
    """
    values: dict[str, Any] = {}
    for key, value in info.items():
        if key in _HANDLED_ELSEWHERE:
            continue
        value = _number(value)
        target = _SCALARS.get(key) or _VAL_SCALARS.get(key)
        if target is None and key.startswith("train_"):
            for suffix, metric in _REWARD_FN_SUFFIXES.items():
                name = key[len("train_") : -len(suffix)]
                if key.endswith(suffix) and name in reward_functions:
                    target = f"{metric}/{name}"
                    break
        values[target or key] = value
    return {_keyword(key): value for key, value in values.items()}


def _keyword(key: str) -> str:
    """The log_training_step keyword of a catalogue key (trainer metrics by Prometheus name)."""
    base, sep, label = key.partition("/")
    metric = _TRAINER_METRICS.get(base)
    return key if metric is None else f"{metric.prometheus_name}{sep}{label}"


def _reward_function_names(info: Mapping[str, Any]) -> set[str]:
    """Names of reward functions in a GRPO report (keys train_<fn>_mean/_std/_coverage)."""
    known = set(_SCALARS)
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
        self._reward_functions: set[str] | None = None
        self._exported_at = 0
        self.monitor = monitor if monitor is not None else self._make_monitor(monitor_config, run_id)
        if self._owns_monitor:
            atexit.register(self.close)

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

    def _iterations_per_second(self, reported: Any, iteration: int) -> Any:
        # mlx-lm divides steps_per_report (not the iterations of the interval)
        # by the interval's time, overstating a short last interval.
        steps_per_report = self._config_int("steps_per_report")
        previous = self._last_iteration or 0
        if (
            steps_per_report is not None
            and isinstance(reported, (int, float))
            and 0 < iteration - previous < steps_per_report
        ):
            return reported * (iteration - previous) / steps_per_report
        return reported

    def _train_report(self, info: Mapping[str, Any]) -> None:
        iteration = int(_number(info.get("iteration", -1)))
        if self._reward_functions is None:
            self._reward_functions = _reward_function_names(info)
        values = train_info_values(info, reward_functions=self._reward_functions)
        speed = _keyword("iterations_per_second")
        if speed in values:
            values[speed] = self._iterations_per_second(values[speed], iteration)
        peak = _number(info.get("peak_memory"))
        if isinstance(peak, (int, float)):
            # The trainers report GB (1e9 bytes).
            values[_keyword("trainer_peak_memory")] = peak * 1e9
        steps_per_report = self._config_int("steps_per_report")
        if steps_per_report is not None:
            values[_keyword("steps_per_report")] = steps_per_report
        # Validation reported since the last report rides along (the trainers
        # validate just before a training iteration, so it is never far behind).
        values.update(self._pending_validation)
        self._pending_validation = {}
        self._last_iteration = iteration
        self.monitor.log_training_step(iteration, **values)
        iters = self._config_int("iters")
        if iters is not None and iteration >= iters:  # the trainer's last report
            self._end_of_training()

    def _val_report(self, info: Mapping[str, Any]) -> None:
        values = train_info_values(info)
        iteration = _number(info.get("iteration"))
        if isinstance(iteration, (int, float)) and math.isfinite(iteration):
            values[_keyword("validation_step")] = int(iteration) - self.val_iteration_offset
        self._pending_validation.update(values)

    def _flush_validation(self) -> None:
        """A validation after the last training report is recorded at close."""
        if self._pending_validation and self._last_iteration is not None:
            values, self._pending_validation = self._pending_validation, {}
            self.monitor.log_training_step(self._last_iteration, **values)


class MlxLmLoraCallback(MlxLmCallback):
    """Monitor an mlx-lm-lora (``mlx_lm_lora.train``) run: SFT, GRPO, DPO, ORPO...

    Like :class:`MlxLmCallback`; GRPO's rewards, KL, clip ratios, completion
    lengths and per-reward-function statistics become their catalogue
    metrics, other trainers' keys custom metrics. ``mlx_lm_lora.train.run``
    honours a callback:

        run(args, training_callback=MlxLmLoraCallback(config=vars(args)))
    """

    # mlx-lm-lora reports validation before iteration `it` as `it`.
    val_iteration_offset = 1

    def _iterations_per_second(self, reported: Any, iteration: int) -> Any:
        return reported  # mlx-lm-lora divides the interval's own iterations

