"""The exceptions mlx_otel raises; all derive from :class:`MlxOtelError`."""

from __future__ import annotations

__all__ = ["ConfigError", "MlxOtelError", "PortInUseError"]


class MlxOtelError(Exception):
    """Base class of every error mlx_otel raises on purpose."""


class ConfigError(MlxOtelError, ValueError):
    """A configuration file, mapping or environment variable is invalid."""


class PortInUseError(MlxOtelError, OSError):
    """The metrics endpoint's port is taken by another process."""
