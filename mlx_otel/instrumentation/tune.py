"""mlx-tune: its SFT and RL trainers report to mlx_otel with no change to the user's code.

mlx-tune's ``SFTTrainer`` trains through mlx-lm's ``train`` (without a
callback): :class:`~mlx_otel.instrumentation.MlxLmInstrumentor` monitors it.
Its RL trainers (``DPOTrainer``, ``ORPOTrainer``, ``GRPOTrainer``,
``KTOTrainer``, ``SimPOTrainer`` of ``mlx_tune.rl_trainers``) take no
callback: each prints its step every ``logging_steps`` iterations,

    Step 4/8 | Loss: 0.6931 | batch_size: 1         (DPO, ORPO, KTO, SimPO)
    Step 4/8 | Loss: 0.0123 | Reward: 0.600         (GRPO; "(skipped, equal rewards)")

so this instrumentor observes what they print: each class's ``train`` is
wrapped to open one monitored run per call, and the module's name ``print``
is given a pass-through that also reads the step lines (the loss, GRPO's
mean reward) into the run. GRPO scores each completion with the trainer's
``reward_fn``, ``num_generations`` per prompt: for the run the instance's
``reward_fn`` is wrapped too, so each report carries its groups of rewards
(the reward histogram, ``zero_std_groups_ratio``: the groups GRPO skips for
want of a learning signal). Nothing of the trainer is copied;
``uninstrument()`` restores the classes and the module.

A trainer whose internals changed trains unmonitored after one warning: a
class or attribute gone, a step line in a format not known here.

    opentelemetry-instrument python train_grpo.py
    mlx-otel run --run-id grpo_001 -- python train_grpo.py
"""

from __future__ import annotations

import builtins
import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from mlx_otel.instrumentation.base import TrainerInstrumentor
from mlx_otel.integrations.trainer_hooks import FunctionHooks
from mlx_otel.records import Completions, to_number
from mlx_otel.trainers import MlxLmCallback

__all__ = ["MlxTuneCallback", "MlxTuneInstrumentor"]

log = logging.getLogger("mlx_otel")

#: The RL trainers, with the attributes each run reads beyond ``iters`` and ``logging_steps``.
TRAINERS: Mapping[str, tuple[str, ...]] = {
    "DPOTrainer": (),
    "ORPOTrainer": (),
    "KTOTrainer": (),
    "SimPOTrainer": (),
    "GRPOTrainer": ("reward_fn", "num_generations"),
}
_REQUIRED = ("iters", "logging_steps")
#: A step line: step, iterations, loss, then GRPO's mean reward or the batch size.
STEP_LINE = re.compile(
    r"^\s*Step (\d+)/(\d+) \| Loss: (\S+)"
    r"(?: \| (?:Reward: (\S+)(?: \(skipped, equal rewards\))?|batch_size: \d+))?\s*$"
)
_STEP_START = re.compile(r"^\s*Step \d")


class RewardLog(FunctionHooks):
    """The rewards the trainer's ``reward_fn`` gave since the last report, groups contiguous."""

    def __init__(self, phase: Any = None) -> None:
        super().__init__(phase)
        self.rewards: list[Any] = []
        self.group_size: int | None = None

    def install(self, *, import_module: bool = False) -> bool:
        return False  # the reward function is the instance's, wrapped per run

    def take(self) -> Completions | None:
        if not self.rewards:
            return None
        rewards, self.rewards = self.rewards, []
        return Completions(rewards, group_size=self.group_size)


class MlxTuneCallback(MlxLmCallback):
    """One run of an mlx-tune RL trainer: its step lines as reports, its rewards by group."""

    def _make_hooks(self, phase: Any) -> FunctionHooks:
        return RewardLog(phase)

    def step_line(self, match: re.Match[str]) -> None:
        """A step line the trainer printed, as mlx-lm's report of the same numbers."""
        info: dict[str, Any] = {"iteration": int(match[1]), "train_loss": float(match[3])}
        if match[4] is not None:
            info["train_total_rewards_mean"] = float(match[4])
        self.on_train_loss_report(info)


def _should_have_printed(instance: Any) -> bool:
    """Whether the trainer ran long enough to print a step (``logging_steps`` iterations)."""
    try:
        return bool(instance.iters >= instance.logging_steps)
    except Exception:
        return False


def _nothing() -> None:
    """Nothing to undo."""


class _Run:
    """What one ``train`` call changed and saw."""

    def __init__(self, callback: MlxTuneCallback) -> None:
        self.callback = callback
        self.lines = 0
        self.active = True
        self.restore: Any = _nothing


class MlxTuneInstrumentor(TrainerInstrumentor):
    """Monitors mlx-tune's RL trainers (its SFT goes through mlx-lm's ``train``).

    ``MlxTuneInstrumentor().instrument()`` before mlx-tune is imported, then train as usual.
    """

    requirement = "mlx-tune >= 0.6.0, < 1"
    module = "mlx_tune.rl_trainers"
    function = "train"
    callback = MlxTuneCallback

    _classes: list[str]
    _run: _Run | None = None
    _had_print = False
    _saved_print: Any = None
    _printer: Any = None

    def _wrap(self, module: Any) -> None:
        if not self._active or self._wrapped_in is not None:
            return
        self._classes = []
        try:
            for name in TRAINERS:
                if not callable(getattr(getattr(module, name, None), "train", None)):
                    self._warn(f"{self.module}.{name}.train is gone")
                    continue
                wrapper = functools.partial(self._train, name)  # subclasses are that trainer
                wrapt.wrap_function_wrapper(module, f"{name}.train", wrapper)
                self._classes.append(name)
            self._had_print = "print" in vars(module)
            self._saved_print = vars(module).get("print")
            self._printer = self._print  # one bound method: identity tells ours apart
            module.print = self._printer
        except Exception as exc:  # runs inside the trainer's import: never raise there
            self._warn(f"{self.module} is not what mlx_otel knows ({exc!r})")
        self._wrapped_in = module

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False
        module, self._wrapped_in = self._wrapped_in, None
        if module is None:
            return
        for name in self._classes:
            unwrap(getattr(module, name), "train")
        if vars(module).get("print") is self._printer:
            if self._had_print:
                module.print = self._saved_print
            else:
                del module.print

    # -- each run --------------------------------------------------------------------
    def _train(self, trainer: str, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._run is not None or not self._active:
            return wrapped(*args, **kwargs)  # a train inside a train: the outer one is the run
        try:
            run = self._start(trainer, instance)
        except Exception as exc:  # never into the trainer
            self._warn(f"cannot monitor {type(instance).__name__} ({exc!r})")
            run = None
        if run is None:
            return wrapped(*args, **kwargs)
        self._run = run
        returned = False
        try:
            result = wrapped(*args, **kwargs)
            returned = True
            return result
        finally:
            self._run = None
            self._end(instance, run, returned)

    def _start(self, trainer: str, instance: Any) -> _Run | None:
        """The run of this ``train`` call, observing the instance; None to train unmonitored."""
        name = type(instance).__name__
        missing = [a for a in (*_REQUIRED, *TRAINERS[trainer]) if not hasattr(instance, a)]
        if missing:
            self._warn(f"{name} has no {', '.join(missing)} any more")
            return None
        if getattr(instance, "use_native", True) is False:
            self._warn(f"{name} trains in an mlx_lm.lora subprocess (use_native=False)")
            return None
        config = {"iters": instance.iters, "steps_per_report": instance.logging_steps}
        callback = self._open_run(config)
        if not isinstance(callback, MlxTuneCallback):
            return None
        run = _Run(callback)
        try:
            run.restore = self._observe_rewards(instance, run)
        except Exception:
            callback.close()
            raise
        return run

    def _end(self, instance: Any, run: _Run, returned: bool) -> None:
        """``train`` is over: the instance as it was; the run ended as the settings say."""
        try:
            run.restore()
            if returned and run.active and run.lines == 0 and _should_have_printed(instance):
                self._warn(f"{type(instance).__name__} printed no step line mlx_otel knows")
        except Exception:  # never into the trainer
            log.exception("mlx_otel: ending the monitoring of %s failed", type(instance).__name__)
        finally:
            self._close_run(run.callback)

    def _observe_rewards(self, instance: Any, run: _Run) -> Any:
        """GRPO: the instance's ``reward_fn`` records each score; returns what undoes it."""
        reward_fn = getattr(instance, "reward_fn", None)
        hooks = run.callback.hooks
        if not callable(reward_fn) or not isinstance(hooks, RewardLog):
            return _nothing
        hooks.group_size = getattr(instance, "num_generations", None)
        own = "reward_fn" in vars(instance)

        def observed(*args: Any, **kwargs: Any) -> Any:
            reward = reward_fn(*args, **kwargs)
            if run.active:
                number = to_number(reward)
                hooks.rewards.append(reward if number is None else number)
            return reward

        instance.reward_fn = observed

        def restore() -> None:
            if vars(instance).get("reward_fn") is observed:
                if own:
                    instance.reward_fn = reward_fn
                else:
                    del instance.reward_fn

        return restore

    def _print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` for mlx-tune's RL module: prints, then reads a step line into the run."""
        (self._saved_print or builtins.print)(*args, **kwargs)
        run = self._run
        if run is None or not run.active or len(args) != 1 or not isinstance(args[0], str):
            return
        try:
            match = STEP_LINE.match(args[0])
            if match is None:
                if _STEP_START.match(args[0]):
                    run.active = False
                    self._warn(f"mlx-tune printed a step line mlx_otel does not know: {args[0]!r}")
                return
            run.lines += 1
            run.callback.step_line(match)
        except Exception as exc:  # never into the trainer
            run.active = False
            self._warn(f"cannot read mlx-tune's step line ({exc!r})")
