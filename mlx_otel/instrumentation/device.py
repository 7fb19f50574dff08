"""Let a trainer ask MLX's Linux CPU build for a working-set size it does not report.

mlx-lm-lora's trainers (and mlx-guided-grpo's) start with
``mx.set_wired_limit(mx.device_info()["max_recommended_working_set_size"])``.
On Apple silicon the key is there; MLX's Linux CPU build (``mlx[cpu]``)
reports only ``architecture`` and ``device_name``, so those trainers stop
with ``KeyError`` before their first step, and a pipeline tested in Linux CI
never trains. While a monitored run executes, and only when MLX lacks the
key, ``device_info()`` answers with it set to 0: ``set_wired_limit(0)``
changes nothing (there is no wired memory to limit on the CPU). Said once
in the log.

    with working_set_supplied():
        train_dpo(...)
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["WORKING_SET_KEY", "working_set_supplied"]

log = logging.getLogger("mlx_otel")

#: The key the trainers index in ``mx.device_info()``.
WORKING_SET_KEY = "max_recommended_working_set_size"

_lock = threading.Lock()
_depth = 0
_restore: list[tuple[Any, Callable[[], Any]]] = []
_said = False


def _supplying(original: Callable[[], Any]) -> Callable[[], dict[str, Any]]:
    def device_info() -> dict[str, Any]:
        global _said
        info = dict(original())
        if WORKING_SET_KEY not in info:
            info[WORKING_SET_KEY] = 0
            if not _said:
                _said = True
                log.info(
                    "mlx_otel: this MLX build (Linux CPU) reports no %s; the trainer is "
                    "given 0 (no wired-limit change) so that it trains",
                    WORKING_SET_KEY,
                )
        return info

    device_info.__doc__ = original.__doc__
    return device_info


def _patch() -> None:
    try:
        import mlx.core as mx
    except ImportError:
        return
    try:
        if WORKING_SET_KEY in mx.device_info():
            return  # Apple silicon: the trainers get MLX's own figure
    except Exception:  # an MLX without device_info: nothing to supply
        return
    for owner in (mx, getattr(mx, "metal", None)):
        original = getattr(owner, "device_info", None)
        if owner is None or original is None:
            continue
        setattr(owner, "device_info", _supplying(original))  # noqa: B010 - an extension module
        _restore.append((owner, original))


@contextlib.contextmanager
def working_set_supplied() -> Iterator[None]:
    """Within the block, ``mx.device_info()`` has the working-set key (0 if MLX lacks it).

    Nested blocks (a monitored trainer inside another) patch once; the last
    to leave restores MLX's own functions.
    """
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            _patch()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                while _restore:
                    owner, original = _restore.pop()
                    setattr(owner, "device_info", original)  # noqa: B010
