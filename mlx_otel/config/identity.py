"""Which run and which rank this process is, from the caller or the environment.

Every series carries ``run_id`` (and ``rank`` in a distributed job), so a
launcher must be able to name the run without touching the training script:
``MLX_OTEL_RUN_ID`` does that, and the rank comes from the variables the
usual launchers set (``mlx.launch``, MPI, torchrun-style ``RANK``). An
argument given in code always wins over the environment.

    >>> resolve_run_id("run_001")
    'run_001'
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["RUN_ID_VARIABLE", "env_rank", "local_rank", "resolve_run_id"]

#: The environment variable that names the run when the code does not.
RUN_ID_VARIABLE = "MLX_OTEL_RUN_ID"


def resolve_run_id(run_id: str | None = None) -> str:
    """``run_id`` if given, else ``$MLX_OTEL_RUN_ID`` if set, else a fresh id.

    A fresh id reads ``run_<date>_<time>_<6 hex digits>``.
    """
    if run_id:
        return run_id
    from_env = os.environ.get(RUN_ID_VARIABLE, "").strip()
    if from_env:
        return from_env
    return time.strftime("run_%Y%m%d_%H%M%S_") + uuid.uuid4().hex[:6]


def env_rank() -> int | None:
    """The rank a launcher gave this process (``MLX_RANK``, MPI's, ``RANK``), if any."""
    for name in ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "RANK"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return None


def local_rank(rank: int | None) -> int | None:
    """This process's rank on its host (the launcher's local rank), else ``rank``."""
    local = os.environ.get("MLX_LOCAL_RANK", os.environ.get("LOCAL_RANK"))
    if rank is not None and local and local.isdigit():
        return int(local)
    return rank
