"""Phases of a training step: where the step's time goes.

An RL step is not one thing: generating completions (often most of it),
scoring them, the policy update, evaluation. ``monitor.phase(name)`` times one
of them, as a context manager or a decorator::

    with monitor.phase("generate", sync=True):
        completions = generate(model, prompts)

    @monitor.phase("reward")
    def score(completions): ...

On the training thread a phase costs two clock reads and one tuple appended
to two lists (well under a microsecond, about a third of prometheus-client's
``Histogram.labels(...).time()``). Everything else happens elsewhere:

* :meth:`PhaseTimer.fold` bins the buffered durations into the
  ``mlx_train_phase_duration_seconds{phase}`` histogram with NumPy, before
  each scrape and on the background worker, exactly (a full buffer is folded
  in part on the training thread, as the reward samples are);
* :meth:`PhaseTimer.end_step`, at ``log_training_step``, hands over the
  phases of the step: their summed durations become the step's
  ``timing/<phase>`` values (statistics, CSV/JSON, WandB), and their start
  and end times go to :attr:`PhaseTimer.on_step`, the tracer that makes
  them child spans of the step's trace when tracing is on.

MLX evaluates lazily: a phase that only builds a graph measures nothing, and
the work lands in whichever phase evaluates it. ``sync=True`` waits for MLX's
stream at the end of the phase (``mx.synchronize()``), ``arrays=`` are
evaluated there (``mx.eval``); a mutable container (a model, an optimizer's
state) is evaluated with the contents it has at the end.

Phases nest; each records its own duration (an outer phase includes its inner
ones). Names are tidied as custom metric names are (``[a-z0-9_]``) and capped
at ``exporter.max_custom_metrics``; a name beyond the cap or that is not text
is counted (``custom_metric_cap``, ``invalid_value``) and its phase runs
untimed, never raising unless ``strict``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from mlx_otel.errors import ErrorLedger

__all__ = ["NULL_PHASES", "NullPhases", "Phase", "PhaseEntry", "PhaseTimer", "timing_key"]

#: One finished phase: (phase name, start, end, nesting depth); times are
#: ``time.perf_counter()`` seconds, depth 0 for a phase not inside another.
PhaseEntry = tuple[str, float, float, int]

F = TypeVar("F", bound=Callable[..., Any])

_NAME_RE = re.compile(r"[^a-zA-Z0-9_]+")
#: Phases kept for one step; beyond, the oldest are dropped (counted) until a step is logged.
_MAX_STEP_PHASES = 4096
#: Phase durations folded in one NumPy piece.
_FOLD_CHUNK = 1 << 16


def timing_key(phase: str) -> str:
    """The statistics name, CSV column and WandB key of a phase's time in a step.

    >>> timing_key("generate")
    'timing/generate'
    """
    return f"timing/{phase}"


def _settle(sync: bool, arrays: Any) -> None:
    """Make the phase's MLX work happen now: evaluate ``arrays``, then synchronise."""
    import mlx.core as mx

    if arrays is not None:
        mx.eval(arrays)
    if sync:
        mx.synchronize()


class Phase:
    """One timed phase: a context manager, and a decorator timing each call.

    Made by :meth:`PhaseTimer.phase` (``monitor.phase(name)``). As a context
    manager an instance times one block at a time; as a decorator each call
    of the function is timed on its own, so recursion and threads are safe.
    """

    __slots__ = ("_arrays", "_key", "_start", "_sync", "_timer")

    def __init__(self, timer: PhaseTimer, key: str, sync: bool, arrays: Any) -> None:
        self._timer = timer
        self._key = key  # "" when the name was refused: the block runs untimed
        self._sync = sync
        self._arrays = arrays
        self._start = 0.0

    def __enter__(self) -> Phase:
        self._timer.depth += 1
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if (self._sync or self._arrays is not None) and exc_type is None:
            self._timer.settle(self._sync, self._arrays)
        end = time.perf_counter()
        timer = self._timer
        depth = timer.depth = timer.depth - 1
        if self._key:
            entry = (self._key, self._start, end, depth)
            step = timer.step
            step.append(entry)
            if len(step) > _MAX_STEP_PHASES:  # phases timed, but no step logged
                timer.trim_step()
            samples = timer.samples
            if len(samples) >= timer.max_samples:
                timer.make_room()
            samples.append(entry)

    def __call__(self, func: F) -> F:
        timer, key, sync, arrays = self._timer, self._key, self._sync, self._arrays
        if inspect.iscoroutinefunction(func):  # time the awaited work, not the coroutine's creation

            @functools.wraps(func)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                with Phase(timer, key, sync, arrays):
                    return await func(*args, **kwargs)

            return timed_async  # type: ignore[return-value]

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with Phase(timer, key, sync, arrays):
                return func(*args, **kwargs)

        return timed  # type: ignore[return-value]


class PhaseTimer:
    """The phases of a run: names admitted, the step's phases, durations to fold.

    ``max_phases`` caps the phase names (``exporter.max_custom_metrics``);
    ``max_samples`` bounds the durations waiting to be folded.
    """

    def __init__(
        self, *, ledger: ErrorLedger, max_phases: int, max_samples: int, strict: bool = False
    ) -> None:
        self._ledger = ledger
        self._max_phases = max_phases
        self.max_samples = max(1, max_samples)
        self.strict = strict
        #: Open phases (nesting depth) on the training thread.
        self.depth = 0
        #: Phases finished since the last step was logged.
        self.step: list[PhaseEntry] = []
        #: Phases whose durations are not folded into the histogram yet.
        self.samples: deque[PhaseEntry] = deque()
        # name given -> admitted name, or "" once refused
        self._names: dict[Any, str] = {}
        self._admitted = 0
        self._fold_lock = threading.Lock()
        self._record: Callable[..., None] | None = None
        #: Called with (step, phases) as each step is logged (the tracer), or None.
        self.on_step: Callable[[Any, list[PhaseEntry]], None] | None = None

    def fold_into(self, record: Callable[..., None]) -> None:
        """Where :meth:`fold` records durations: ``record(values, label=phase)``
        (:meth:`~mlx_otel.exporter.histograms.LabelledBulkHistogram.record_many`)."""
        self._record = record

    # -- the training thread ------------------------------------------------------
    def phase(self, name: str, *, sync: bool = False, arrays: Any = None) -> Phase:
        """A :class:`Phase` named ``name`` (see the module's docstring)."""
        try:
            key = self._names.get(name)
        except TypeError:  # not hashable: surely not a name
            key = self._refuse(name)
        if key is None:
            key = self._admit(name)
        return Phase(self, key, sync, arrays)

    def end_step(self, step: Any) -> dict[str, float]:
        """Step ``step`` is logged: its summed seconds by ``timing/<phase>``.

        The phases finished since the last step, in the order they ended, go
        to :attr:`on_step` (the tracer) when it is set.
        """
        entries, self.step = self.step, []
        totals: dict[str, float] = {}
        for key, start, end, _depth in entries:
            column = "timing/" + key
            totals[column] = totals.get(column, 0.0) + (end - start)
        if self.on_step is not None:
            self.on_step(step, entries)
        return totals

    def settle(self, sync: bool, arrays: Any) -> None:
        """Evaluate a phase's arrays and synchronise MLX; a failure is counted."""
        try:
            _settle(sync, arrays)
        except Exception as exc:
            if self.strict:
                raise
            self._ledger.report_exception("invalid_value", "phase arrays", exc)

    def make_room(self) -> None:
        """On the training thread, when the buffer is full: fold a piece now.

        If the worker holds the fold lock, the buffer may grow to twice its
        bound; beyond that the oldest duration is dropped and counted.
        """
        if self._record is not None and self._fold_lock.acquire(blocking=False):
            try:
                self._fold_piece()
            finally:
                self._fold_lock.release()
        elif len(self.samples) >= 2 * self.max_samples:
            self.samples.popleft()
            self._ledger.drop("phase_duration")

    def trim_step(self) -> None:
        """Drop the older half of the phases of a step that is never logged (counted)."""
        drop = len(self.step) // 2
        del self.step[:drop]
        self._ledger.drop("phase_step", drop)

    # -- names (off the fast path) ----------------------------------------------------
    def _admit(self, name: Any) -> str:
        if not isinstance(name, str):
            return self._refuse(name)
        key = _NAME_RE.sub("_", name).strip("_").lower()[:64]
        if not key:
            return self._refuse(name)
        if key not in self._names.values():
            if self._admitted >= self._max_phases:
                message = (
                    f"phase {name!r} not timed: the cap of {self._max_phases} phase names is "
                    "reached (raise exporter.max_custom_metrics)"
                )
                if self.strict:
                    raise ValueError(message)
                self._ledger.report("custom_metric_cap", f"phase/{key}", message)
                self._names[name] = ""
                return ""
            self._admitted += 1
        self._names[name] = key
        return key

    def _refuse(self, name: Any) -> str:
        message = f"phase name {name!r} is not timed: a phase is named by text, e.g. 'generate'"
        if self.strict:
            raise ValueError(message)
        self._ledger.report("invalid_value", "phase", message)
        with contextlib.suppress(TypeError):  # an unhashable name is refused each time
            self._names[name] = ""
        return ""

    # -- off the training thread ------------------------------------------------------
    def fold(self) -> None:
        """Fold the buffered durations into the histogram, in bounded pieces."""
        if self._record is None:
            return
        left = len(self.samples)
        while left > 0:
            with self._fold_lock:
                taken = self._fold_piece(left)
            if not taken:
                break
            left -= taken
            if left:
                time.sleep(0)  # let the training thread run between pieces

    def _fold_piece(self, limit: int | None = None) -> int:
        samples = self.samples
        count = min(len(samples), _FOLD_CHUNK if limit is None else min(limit, _FOLD_CHUNK))
        if not count or self._record is None:
            return 0
        taken = [samples.popleft() for _ in range(count)]
        names = np.array([entry[0] for entry in taken])
        durations = np.fromiter((entry[2] - entry[1] for entry in taken), np.float64, count)
        for name in np.unique(names).tolist():
            self._record(durations[names == name], label=name)
        return count


class NullPhases:
    """Phases of no monitor: the same shape, nothing timed (``sync``/``arrays`` still apply).

    For code that times phases with or without a monitor::

        phases = monitor if monitor is not None else NULL_PHASES
        with phases.phase("generate", sync=True): ...
    """

    def __init__(self) -> None:
        self._timer = PhaseTimer(ledger=ErrorLedger(("invalid_value", "custom_metric_cap")),
                                 max_phases=0, max_samples=1)  # fmt: skip

    def phase(self, name: str, *, sync: bool = False, arrays: Any = None) -> Phase:
        """A phase that times nothing."""
        return Phase(self._timer, "", sync, arrays)


#: Phases of no monitor (see :class:`NullPhases`).
NULL_PHASES = NullPhases()
