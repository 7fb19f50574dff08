"""The ``mlx-otel`` command: ``mlx-otel demo``, ``stack``, ``dashboards``, ``lora``...

Nothing in the package imports this one; it imports the rest.
"""

from __future__ import annotations

from mlx_otel.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
