"""How a WandB run starts: the optional import, credentials, mode and notices.

WandB is an optional extra and a run may be online, offline or off. What
decides it (an explicit mode, ``WANDB_MODE``/``WANDB_DISABLED``, whether
credentials exist) and what the user is told about it (once per process, not
once per logger) lives here, apart from the logging itself in
:mod:`mlx_otel.integrations.wandb_bridge`.
"""

from __future__ import annotations

import logging
import netrc
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "announce_offline",
    "has_wandb_credentials",
    "import_wandb",
    "logger_settings",
    "resolve_mode",
]

# One logger for every WandB module, so a user silences or raises them at once.
logger = logging.getLogger("mlx_otel.integrations.wandb_bridge")

_INSTALL_HINT = "pip install 'mlx-otel[wandb]'"

# Process-wide "say it once" flags: a training script may build several
# loggers (one per run or rank) and the advice is the same for all of them.
_notice_lock = threading.Lock()
_notices_given: set[str] = set()


def _notice_once(key: str, level: int, message: str, *args: Any) -> None:
    with _notice_lock:
        if key in _notices_given:
            return
        _notices_given.add(key)
    logger.log(level, message, *args)


def import_wandb() -> ModuleType | None:
    """Import wandb lazily, so the package stays an optional extra."""
    try:
        import wandb
    except ImportError:
        _notice_once(
            "missing",
            logging.WARNING,
            "The 'wandb' package is not installed, so WandB logging is off. Install it with: %s",
            _INSTALL_HINT,
        )
        return None
    return wandb


def has_wandb_credentials() -> bool:
    """Whether wandb would find credentials without prompting.

    Looks at ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE`` and a netrc
    entry (``$NETRC`` or ``~/.netrc``) for the host of ``WANDB_BASE_URL``
    (default ``api.wandb.ai``), as wandb itself does.

    >>> has_wandb_credentials()  # doctest: +SKIP
    False
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        entry = netrc.netrc(str(path)).authenticators(host or "api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def resolve_mode(mode: str | None) -> str:
    """Explicit mode, else WANDB_MODE / WANDB_DISABLED, else online iff credentials.

    >>> resolve_mode("disabled")
    'disabled'
    """
    if mode is None:
        if os.environ.get("WANDB_DISABLED", "").lower() in {"1", "true", "yes"}:
            return "disabled"
        env_mode = os.environ.get("WANDB_MODE", "").lower()
        mode = {"dryrun": "offline", "run": "online"}.get(env_mode, env_mode) or None
    if mode is None:
        return "online" if has_wandb_credentials() else "offline"
    if mode not in {"online", "offline", "disabled"}:
        raise ValueError(f"mode must be 'online', 'offline' or 'disabled', not {mode!r}")
    return mode


def logger_settings(monitoring: Any) -> dict[str, Any]:
    """The logger's arguments from the seed's ``monitoring:`` keys (a mapping or an object).

    >>> logger_settings({"use_wandb": False, "wandb_project": "p"})["mode"]
    'disabled'
    """

    def get(key: str, default: Any = None) -> Any:
        if isinstance(monitoring, Mapping):
            return monitoring.get(key, default)
        return getattr(monitoring, key, default)

    return {
        "project": get("wandb_project") or "mlx-rl-trainer",
        "name": get("wandb_run_name"),
        "entity": get("wandb_entity"),
        "mode": get("wandb_mode") if get("use_wandb", True) else "disabled",
        "dir": get("wandb_dir"),
        "log_samples_every": get("log_samples_every", 5),
        "max_logged_samples": get("max_logged_samples", 20),
    }


def announce_offline(where: Path | None, *, asked: bool) -> None:
    """Say where an offline run is written and how to upload it.

    A run that is offline because it was ``asked`` to be gets an info line;
    one that is offline for lack of credentials gets one warning per process
    saying how to log in.
    """
    if asked or has_wandb_credentials():
        logger.info("WandB is logging offline to %s; upload it with: wandb sync %s", where, where)
        return
    _notice_once(
        "offline",
        logging.WARNING,
        "No WandB credentials found (run `wandb login` or set WANDB_API_KEY), "
        "so WandB is logging offline to %s. Upload it later with: wandb sync %s",
        where,
        where,
    )
