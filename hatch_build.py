"""Put the repository's monitoring files into the wheel, without a committed copy.

``prometheus/``, the Grafana JSON and provisioning, ``docs/runbooks.md`` and
``docker-compose.yml`` live once, at the top of the repository, where people
edit them and where docker compose mounts them. A wheel carries them under
``mlx_otel/assets/`` (the patterns are ``mlx_otel/assets/manifest.py``). An
editable install gets none: ``mlx_otel.assets`` reads the checkout's files,
so an edit shows at once. An sdist holds the whole repository, so a wheel
built from it has them too.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ShippedFilesHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        root = Path(self.root)
        manifest = runpy.run_path(str(root / "mlx_otel" / "assets" / "manifest.py"))
        for pattern in manifest["SHIPPED"]:
            matches = sorted(p for p in root.glob(pattern) if p.is_file())
            if not matches:
                raise FileNotFoundError(f"{pattern} (mlx_otel/assets/manifest.py) matches no file")
            for path in matches:
                relative = path.relative_to(root).as_posix()
                build_data["force_include"][str(path)] = f"mlx_otel/assets/{relative}"
