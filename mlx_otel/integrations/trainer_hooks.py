"""What the trainers' reports leave out, observed at the trainers' own functions.

mlx-lm and mlx-lm-lora report aggregates every ``steps_per_report``
iterations: a GRPO report has the mean and spread of the rewards, not which
groups had no spread, and neither trainer says where an iteration's time
went. Both look their helpers up by module-level name at every iteration,
so wrapping the narrowest public function that sees the data, for the
run's duration, observes it without copying the trainers' code:

- ``mlx_lm_lora.trainer.grpo_trainer.generate_grpo`` samples the
  completions: their token counts (and whether they reached
  ``max_tokens``), timed as the ``generate`` phase;
- ``...grpo_trainer.calculate_rewards_and_advantages`` calls every reward
  function on every completion, with the completions' group indices: each
  function's values (weighted as the trainer weighs them, checked against
  the mean it reports) are the completion's reward; timed as ``reward``;
  from its return to the trainer's next generation, validation or report
  the trainer computes the loss and gradients, updates and evaluates the
  model: the ``update`` phase;
- ``...grpo_trainer.evaluate_grpo`` and ``mlx_lm.tuner.trainer.evaluate``
  validate: the ``evaluate`` phase (completions sampled there are not the
  training's and are left out); mlx-lm-lora's returns the validation's mean
  reward, which its report leaves out: ``validation_reward``.

A wrapper never changes what the trainer computes, and never raises into
it: if observing fails (a trainer version whose functions changed), one
warning is logged, the originals are put back, and the run trains on with
its reports only. :meth:`FunctionHooks.uninstall` restores them at the end.

    hooks = GrpoHooks(phase=monitor.phase)
    hooks.install()            # False when mlx-lm-lora's GRPO is not importable
    ...                        # the trainer runs
    report.completions = hooks.take()
    hooks.uninstall()
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from mlx_otel.records import Completions, to_number

__all__ = ["FunctionHooks", "GrpoHooks", "MlxLmHooks", "PhaseFactory"]

log = logging.getLogger("mlx_otel")

#: ``monitor.phase``: a phase name -> a context manager timing it.
PhaseFactory = Callable[[str], AbstractContextManager[Any]]

GRPO_MODULE = "mlx_lm_lora.trainer.grpo_trainer"
MLX_LM_MODULE = "mlx_lm.tuner.trainer"


def _no_phase(name: str) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


class HookError(Exception):
    """What a trainer handed a wrapper is not what this module was written for."""


class FunctionHooks:
    """Module-level functions of a trainer, wrapped for a run and restored after.

    Subclasses name the module and build each wrapper; a wrapper calls
    :meth:`failed` when observing goes wrong, which restores every original
    (the trainer looks the functions up again at its next call).
    """

    module_name = ""

    def __init__(self, phase: PhaseFactory | None = None) -> None:
        self.phase: PhaseFactory = phase or _no_phase
        self.active = False
        self._open: AbstractContextManager[Any] | None = None
        self._module: Any = None
        self._originals: dict[str, Any] = {}
        self._wrappers: dict[str, Any] = {}

    def install(self, *, import_module: bool = False) -> bool:
        """Wrap the functions; ``False`` (and nothing changed) when they cannot be.

        The trainer's module is taken from those already imported (a trainer
        that runs has imported it), or imported when ``import_module``.
        """
        if self.active:
            return True
        try:
            module = self._find_module(import_module)
            if module is None:
                return False
            wrappers = self._wrap(module)
        except Exception as exc:  # a version whose functions changed: train on
            log.warning(
                "mlx_otel: cannot observe %s (%s); the run is monitored from its reports only",
                self.module_name, exc,
            )  # fmt: skip
            return False
        self._module = module
        for name, wrapper in wrappers.items():
            self._originals[name] = getattr(module, name)
            self._wrappers[name] = wrapper
            setattr(module, name, wrapper)
        self.active = True
        return True

    def _find_module(self, import_module: bool) -> Any:
        module = sys.modules.get(self.module_name)
        if module is None and import_module:
            try:
                module = importlib.import_module(self.module_name)
            except ImportError:
                return None
        return module

    def _wrap(self, module: Any) -> dict[str, Any]:
        raise NotImplementedError

    def uninstall(self) -> None:
        """Put the trainer's functions back (a function wrapped again since is left)."""
        self.end_open_phase()
        self.active = False  # a wrapper still in someone's chain passes straight through
        for name, original in self._originals.items():
            if getattr(self._module, name, None) is self._wrappers[name]:
                setattr(self._module, name, original)
        self._originals.clear()
        self._wrappers.clear()

    def failed(self, what: str, exc: BaseException) -> None:
        """Observing failed: one warning, the originals back, the run trains on."""
        if not self.active:
            return  # already failed (or ended): said once
        log.warning(
            "mlx_otel: observing %s.%s failed (%r); the rest of the run is monitored "
            "from the trainer's reports only",
            self.module_name, what, exc,
        )  # fmt: skip
        self.uninstall()

    # -- a phase that runs until the trainer's next call -------------------------------
    def _start_open_phase(self, name: str) -> None:
        """Start ``name``, timed until :meth:`end_open_phase` (a report, a validation...)."""
        self.end_open_phase()
        if not self.active:
            return
        try:
            timer = self.phase(name)
            timer.__enter__()
        except Exception as exc:
            self.failed(name, exc)
            return
        self._open = timer

    def end_open_phase(self) -> None:
        """End the phase started by :meth:`_start_open_phase`, if it runs."""
        timer, self._open = self._open, None
        if timer is not None:
            try:
                timer.__exit__(None, None, None)
            except Exception as exc:
                self.failed("open phase", exc)

    def reported(self, *, validation_next: bool = False) -> None:
        """The trainer reported and trains on; ``validation_next``: it validates first.

        The callback's call, after it recorded the report.
        """

    def take(self) -> Completions | None:
        """Per-completion data observed since the last call (none here)."""
        return None

    def take_validation(self) -> dict[str, float]:
        """Values of the last validation the trainer does not report, by catalogue key."""
        return {}

    def _timed(self, name: str, function: Any, phase: str) -> Any:
        """``function`` timed as ``phase`` while the hooks are active."""

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return function(*args, **kwargs)
            with self._phase_of(name, phase):
                return function(*args, **kwargs)

        return timed

    @contextlib.contextmanager
    def _phase_of(self, what: str, phase: str) -> Iterator[None]:
        try:
            timer = self.phase(phase)
            timer.__enter__()
        except Exception as exc:
            self.failed(what, exc)
            yield
            return
        try:
            yield  # the trainer's own error passes through untouched
        finally:
            try:
                timer.__exit__(None, None, None)
            except Exception as exc:
                self.failed(what, exc)


class MlxLmHooks(FunctionHooks):
    """mlx-lm's phases: ``evaluate`` (its validation) and ``train`` (the rest).

    mlx-lm's training step is compiled inside its ``train`` function and its
    steps are timed together, so ``train`` is the wall time of the training
    iterations between a validation or report and the next one: the
    trainer evaluates every iteration (``mx.eval``) before it validates or
    reports, so the time is the work's own. The stretch before the first
    validation (mlx-lm validates at the first iteration) is not timed.
    """

    module_name = MLX_LM_MODULE

    def _wrap(self, module: Any) -> dict[str, Any]:
        timed = self._timed("evaluate", module.evaluate, "evaluate")

        @functools.wraps(module.evaluate)
        def evaluate(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return timed(*args, **kwargs)
            self.end_open_phase()
            self._validates = True
            try:
                return timed(*args, **kwargs)
            finally:
                self._start_open_phase("train")

        return {"evaluate": evaluate}

    def reported(self, *, validation_next: bool = False) -> None:
        # A report just before a validation: no iteration runs in between.
        if not (validation_next and self._validates):
            self._start_open_phase("train")


class GrpoHooks(FunctionHooks):
    """mlx-lm-lora's GRPO: completions, rewards and the phases of each iteration.

    :meth:`take` hands the completions observed since the last call as one
    :class:`~mlx_otel.records.Completions` (groups contiguous);
    :meth:`end_open_phase` ends the ``update`` phase (at a report).
    """

    module_name = GRPO_MODULE

    def __init__(self, phase: PhaseFactory | None = None) -> None:
        super().__init__(phase)
        self._evaluating = False
        self._validation: dict[str, float] = {}
        self._sampled: tuple[list[int], list[bool]] | None = None
        self._rewards: list[float] = []
        self._lengths: list[int] = []
        self._truncated: list[bool] = []
        self._group_sizes: set[int] = set()

    # -- the wrappers ------------------------------------------------------------
    def _wrap(self, module: Any) -> dict[str, Any]:
        generate = module.generate_grpo
        rewards = module.calculate_rewards_and_advantages
        evaluate = module.evaluate_grpo
        generate_signature = inspect.signature(generate)
        rewards_signature = inspect.signature(rewards)
        missing = {"max_tokens"} - set(generate_signature.parameters)
        missing |= {"reward_funcs", "batch_indices", "reward_weights"} - set(
            rewards_signature.parameters
        )
        if missing:
            raise HookError(f"parameters {sorted(missing)} are gone")
        return {
            "generate_grpo": self._wrap_generate(generate, generate_signature),
            "calculate_rewards_and_advantages": self._wrap_rewards(rewards, rewards_signature),
            "evaluate_grpo": self._wrap_evaluate(evaluate),
        }

    def _wrap_generate(self, generate: Any, signature: inspect.Signature) -> Any:
        @functools.wraps(generate)
        def generate_grpo(*args: Any, **kwargs: Any) -> Any:
            if not self.active or self._evaluating:
                return generate(*args, **kwargs)
            self.end_open_phase()
            with self._phase_of("generate_grpo", "generate"):
                result = generate(*args, **kwargs)
            if self.active:
                try:
                    self._sampled = _sampled(signature, args, kwargs, result)
                except Exception as exc:
                    self.failed("generate_grpo", exc)
            return result

        return generate_grpo

    def _wrap_rewards(self, calculate: Any, signature: inspect.Signature) -> Any:
        @functools.wraps(calculate)
        def calculate_rewards_and_advantages(*args: Any, **kwargs: Any) -> Any:
            if not self.active or self._evaluating:
                return calculate(*args, **kwargs)
            values: dict[int, Any] = {}
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                functions = list(bound.arguments["reward_funcs"] or ())
                bound.arguments["reward_funcs"] = [
                    _recording(function, values, i) for i, function in enumerate(functions)
                ]
            except Exception as exc:
                self.failed("calculate_rewards_and_advantages", exc)
                return calculate(*args, **kwargs)
            with self._phase_of("calculate_rewards_and_advantages", "reward"):
                result = calculate(*bound.args, **bound.kwargs)
            if self.active:
                try:
                    self._add_rewards(len(functions), values, bound.arguments, result)
                except Exception as exc:
                    self.failed("calculate_rewards_and_advantages", exc)
            self._start_open_phase("update")
            return result

        return calculate_rewards_and_advantages

    def _wrap_evaluate(self, evaluate: Any) -> Any:
        timed = self._timed("evaluate_grpo", evaluate, "evaluate")

        @functools.wraps(evaluate)
        def evaluate_grpo(*args: Any, **kwargs: Any) -> Any:
            if not self.active:
                return evaluate(*args, **kwargs)
            self.end_open_phase()
            self._evaluating = True  # its completions are not the training's
            try:
                result = timed(*args, **kwargs)
            finally:
                self._evaluating = False
            if self.active:
                try:
                    self._validation = _validation_reward(result)
                except Exception as exc:
                    self.failed("evaluate_grpo", exc)
            return result

        return evaluate_grpo

    # -- the completions ---------------------------------------------------------
    def _add_rewards(
        self, functions: int, values: dict[int, Any], arguments: dict[str, Any], result: Any
    ) -> None:
        sampled, self._sampled = self._sampled, None
        indices = [int(i) for i in arguments["batch_indices"]]
        if sampled is None or len(sampled[0]) != len(indices):
            raise HookError("the rewards are not for the completions last sampled")
        totals = _weighted_total(functions, values, arguments["reward_weights"], len(indices))
        reported = to_number(result[1]["total_rewards_mean"])
        if reported is None or not np.isclose(totals.mean(), reported, rtol=1e-4, atol=1e-5):
            raise HookError(
                f"the weighted rewards average {totals.mean()!r}, the trainer's {reported!r}"
            )
        order = np.argsort(indices, kind="stable")  # groups side by side, as sampled
        counts = np.unique(np.asarray(indices), return_counts=True)[1]
        self._group_sizes.update(int(c) for c in counts)
        lengths, truncated = sampled
        self._rewards.extend(float(totals[i]) for i in order)
        self._lengths.extend(lengths[i] for i in order)
        self._truncated.extend(truncated[i] for i in order)

    def take_validation(self) -> dict[str, float]:
        """The mean reward of the last validation's completions (``validation_reward``)."""
        values, self._validation = self._validation, {}
        return values

    def take(self) -> Completions | None:
        """The completions observed since the last call (``None`` if there were none)."""
        if not self._rewards:
            return None
        sizes = self._group_sizes
        completions = Completions(
            rewards=self._rewards,
            group_size=next(iter(sizes)) if len(sizes) == 1 else None,
            lengths=self._lengths,
            truncated=self._truncated,
        )
        self._rewards, self._lengths, self._truncated = [], [], []
        self._group_sizes = set()
        return completions


def _sampled(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
) -> tuple[list[int], list[bool]]:
    """Token counts of generate_grpo's completions and whether each reached max_tokens.

    A completion holds its sampled tokens, the stop token included; the
    trainer's own ``hit_max_tokens_ratio`` counts the same ``length >= max_tokens``.
    """
    bound = signature.bind(*args, **kwargs)
    max_tokens = int(bound.arguments["max_tokens"])
    completions = result[0]
    lengths = [int(completion.size) for completion in completions]
    return lengths, [length >= max_tokens for length in lengths]


def _validation_reward(result: Any) -> dict[str, float]:
    """evaluate_grpo's mean reward, which the trainer computes and does not report.

    It returns (loss, tokens, metrics); ``metrics["total_rewards_mean"]`` is
    the mean reward of the validation's completions (weighted by tokens over
    its batches, as its loss is).
    """
    given = result[2]["total_rewards_mean"]
    reward = to_number(given)
    if reward is None:
        raise HookError(f"evaluate_grpo's total_rewards_mean is {given!r}")
    return {"validation_reward": reward}


def _recording(function: Any, values: dict[int, Any], position: int) -> Any:
    """``function``, keeping what it returns (its name stays: the trainer reports by it)."""

    @functools.wraps(function)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        values[position] = result
        return result

    return recorded


def _weighted_total(
    functions: int, values: dict[int, Any], weights: Any, completions: int
) -> np.ndarray:
    """Each completion's reward: the weighted sum of its reward functions' values.

    As mlx-lm-lora documents it: a function's ``None`` (or NaN) does not
    apply to that completion and adds nothing; weights default to 1.
    """
    columns = np.zeros((completions, functions))
    for position in range(functions):
        raw = values.get(position)
        if raw is None:
            continue
        column = np.asarray([np.nan if r is None else float(r) for r in raw], dtype=np.float64)
        columns[:, position] = np.nan_to_num(column, nan=0.0)
    factors = np.ones(functions) if weights is None else np.asarray(weights, dtype=np.float64)
    total: np.ndarray = (columns * factors).sum(axis=1)
    return total
