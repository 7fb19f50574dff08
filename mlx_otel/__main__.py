"""``python -m mlx_otel`` is the ``mlx-otel`` command."""

from __future__ import annotations

import sys

from mlx_otel.cli import main

sys.exit(main())
