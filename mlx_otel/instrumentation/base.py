"""What every trainer instrumentor does: chain mlx_otel's callback into the trainer's call.

The MLX trainers report through a callback object handed to one function
(mlx-lm's ``train``, mlx-lm-lora's ``run``...). An instrumentor wraps that
function (``wrapt``, as OpenTelemetry's own instrumentors do) so that each
call gets mlx_otel's callback in front of the one it was given, which still
receives every report. Nothing of the trainer is copied; ``uninstrument()``
puts the original function back.

The wrap is applied when the trainer's module is first imported (a
post-import hook), so ``opentelemetry-instrument`` pays nothing in programs
that never train. Whatever goes wrong on our side never reaches the trainer:
a version outside the supported range, a function whose parameters changed,
or a failure while building the monitor each log one warning and the run
trains unmonitored.

Settings: ``instrument(monitor_config=..., run_id=..., linger=...)``, else
the environment: ``MLX_OTEL_<SECTION>__<KEY>`` (e.g. ``MLX_OTEL_EXPORTER__PORT``),
``MLX_OTEL_RUN_ID`` (else the trainer's run name when it has one, else a
fresh id) and ``MLX_OTEL_METRICS_LINGER`` (seconds to keep serving at the
process's exit, so that Prometheus scrapes a short run's last report).

    from mlx_otel.instrumentation import MlxLmInstrumentor
    MlxLmInstrumentor().instrument()        # before mlx_lm is imported
"""

from __future__ import annotations

import atexit
import dataclasses
import inspect
import logging
import os
import sys
import threading
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import wrapt
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,  # the module is typed "ignore": mypy sees nothing in it
)
from opentelemetry.instrumentation.utils import unwrap

from mlx_otel.config import MonitorConfig, load_config
from mlx_otel.config.identity import RUN_ID_VARIABLE, resolve_run_id
from mlx_otel.errors import ConfigError
from mlx_otel.instrumentation.device import working_set_supplied
from mlx_otel.trainers import MlxLmCallback

__all__ = [
    "LINGER_VARIABLE", "TrainerInstrumentor", "args_config", "is_monitored", "linger_from_env",
]  # fmt: skip

log = logging.getLogger("mlx_otel")

#: The trainers' parameter that takes the callback.
CALLBACK_PARAMETER = "training_callback"
#: Seconds to keep serving at exit: ``--metrics-linger`` where there is no command line.
LINGER_VARIABLE = "MLX_OTEL_METRICS_LINGER"


def linger_from_env() -> float:
    """``$MLX_OTEL_METRICS_LINGER`` in seconds (0 when unset; a bad value is said and ignored)."""
    text = os.environ.get(LINGER_VARIABLE, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        log.error("mlx_otel: %s=%r is not a number of seconds (0 or more); not lingering",
                  LINGER_VARIABLE, text)  # fmt: skip
        return 0.0
    return value


def args_config(args: Any) -> dict[str, Any]:
    """A trainer's ``args`` as a dict: a dataclass's fields, an object's attributes, else empty.

    >>> import argparse
    >>> args_config(argparse.Namespace(iters=10)), args_config(None)
    ({'iters': 10}, {})
    """
    if dataclasses.is_dataclass(args) and not isinstance(args, type):
        return {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    if hasattr(args, "__dict__"):
        return dict(vars(args))
    return {}


def is_monitored(callback: Any) -> bool:
    """Whether ``callback`` is, or wraps, an mlx_otel callback (so a run is not monitored twice).

    >>> is_monitored(None)
    False
    """
    for _ in range(32):  # a chain of wrapped callbacks, never a cycle
        if callback is None:
            return False
        if isinstance(callback, MlxLmCallback):
            return True
        callback = getattr(callback, "wrapped_callback", None)
    return False


class TrainerInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps ``module.function`` so every call trains with mlx_otel's callback chained in.

    Subclasses name the trainer: ``requirement`` (the supported versions),
    ``module``, ``function``, ``callback`` (the callback class), and say how
    to read the trainer's configuration from the call's arguments
    (:meth:`trainer_config`) and its run name (:meth:`run_name`).
    """

    requirement: ClassVar[str]
    module: ClassVar[str]
    function: ClassVar[str]
    callback: ClassVar[type[MlxLmCallback]]

    # Set again by each instrument(); the class is a singleton (BaseInstrumentor).
    _wrapped_in: Any = None
    _open: list[MlxLmCallback]
    _keep_open = False
    _linger = 0.0
    _open_lock = threading.Lock()

    def instrumentation_dependencies(self) -> Collection[str]:
        return (self.requirement,)

    # -- the trainer's side, per subclass ----------------------------------------
    def trainer_config(self, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """The trainer's configuration (``iters``, ``steps_per_report``) from the call:
        its ``args`` (a dataclass or an ``argparse.Namespace``), as the trainers take it."""
        return args_config(arguments.get("args"))

    def run_name(self, arguments: Mapping[str, Any]) -> str | None:
        """The trainer's own name for the run, if it has one."""
        return None

    # -- instrument / uninstrument ----------------------------------------------
    def _instrument(self, **kwargs: Any) -> None:
        self._active = False
        self._warned = False
        self._open = []
        self._run_id: str | None = kwargs.get("run_id")
        # Runs are ended by the caller (`mlx-otel run`), else at the trainer's
        # return, or at exit after a linger.
        self._keep_open = bool(kwargs.get("keep_open", False))
        linger = kwargs.get("linger")
        self._linger = linger_from_env() if linger is None else float(linger)
        conflict = get_dependency_conflicts([self.requirement])
        if conflict is not None:
            if conflict.found:  # installed, in a version we do not know
                self._warn(f"{conflict}; it trains unmonitored")
            else:
                log.debug("mlx_otel: %s", conflict)
            return
        try:
            config = kwargs.get("monitor_config")
            self._config: MonitorConfig = load_config(config)
        except ConfigError as exc:
            log.error("mlx_otel: %s; %s trains unmonitored", exc, self.module)
            return
        self._active = True
        if self.module in sys.modules:
            self._wrap(sys.modules[self.module])
        else:
            wrapt.register_post_import_hook(self._wrap, self.module)

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False  # a hook still pending does nothing
        if self._wrapped_in is not None:
            unwrap(self._wrapped_in, self.function)
            self._wrapped_in = None

    def _wrap(self, module: Any) -> None:
        if not self._active or self._wrapped_in is not None:
            return
        try:
            function = getattr(module, self.function)
            parameters = inspect.signature(function).parameters
            if CALLBACK_PARAMETER not in parameters:
                self._warn(f"{self.module}.{self.function} takes no {CALLBACK_PARAMETER} any more")
                return
            wrapt.wrap_function_wrapper(module, self.function, self._call)
        except Exception as exc:  # runs inside the trainer's import: never raise there
            self._warn(f"{self.module}.{self.function} is not what mlx_otel knows ({exc!r})")
            return
        self._wrapped_in = module

    def _warn(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("mlx_otel: %s; training runs unmonitored", what)

    # -- each call -------------------------------------------------------------------
    def _call(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        with working_set_supplied():
            chained = self._chain(wrapped, args, kwargs)
            if chained is None:
                return wrapped(*args, **kwargs)
            call_args, call_kwargs, callback = chained
            try:
                return wrapped(*call_args, **call_kwargs)
            finally:
                self._close_run(callback)

    def _chain(
        self, wrapped: Any, args: Any, kwargs: Any
    ) -> tuple[tuple[Any, ...], dict[str, Any], MlxLmCallback] | None:
        """The call's arguments with our callback in front of the given one, or None."""
        try:
            bound = inspect.signature(wrapped).bind(*args, **kwargs)
        except (TypeError, ValueError):
            return None  # the trainer raises its own error for a wrong call
        given = bound.arguments.get(CALLBACK_PARAMETER)
        if is_monitored(given):
            return None  # `mlx-otel lora`, or a callback the user made
        try:
            config = self.trainer_config(bound.arguments)
            run_name = self.run_name(bound.arguments)
        except Exception as exc:
            self._warn(f"cannot monitor {self.module}.{self.function} ({exc!r})")
            return None
        callback = self._open_run(config, given, run_name)
        if callback is None:
            return None
        bound.arguments[CALLBACK_PARAMETER] = callback
        return bound.args, bound.kwargs, callback

    def _open_run(
        self, config: Mapping[str, Any], given: Any = None, run_name: str | None = None
    ) -> MlxLmCallback | None:
        """A callback monitoring one run of the trainer, ended as the settings say; or None."""
        try:
            run_id = resolve_run_id(
                self._run_id or os.environ.get(RUN_ID_VARIABLE, "").strip() or run_name
            )
            kept = self._keep_open or self._linger > 0
            callback = self.callback(
                config=config, wrapped_callback=given, monitor_config=self._config,
                run_id=run_id, close_at_end=not kept,
            )  # fmt: skip
        except Exception as exc:
            self._warn(f"cannot monitor {self.module}.{self.function} ({exc!r})")
            return None
        if self._keep_open:
            with self._open_lock:
                self._open.append(callback)
        elif kept:  # after the callback's own exit hook, so this one runs first
            atexit.register(callback.close, linger=self._linger)
        return callback

    def _close_run(self, callback: MlxLmCallback) -> None:
        """The trainer returned: end the run now, unless kept for the caller or a linger."""
        if not (self._keep_open or self._linger > 0):
            callback.close()

    def close_runs(self, *, linger: float = 0.0, stop: threading.Event | None = None) -> None:
        """End the runs kept open (``keep_open=True``): export, serve ``linger`` s more, close."""
        with self._open_lock:
            runs, self._open = getattr(self, "_open", []), []
        for callback in runs:
            callback.close(linger=linger, stop=stop)
