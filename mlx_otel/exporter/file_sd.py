"""Self-registration for Prometheus' file-based service discovery.

With ``exporter.file_sd_dir`` set, each rank writes its own target file
there once its endpoint serves, and removes it at a clean end, so Prometheus
finds every rank of every run without a hand-edited target list and forgets
a run that finished. A killed process leaves its file behind: Prometheus
keeps scraping the dead target, ``up`` is 0 and ``MLXExporterDown`` fires, as
it should for a crash.

The file is a file_sd target group, written atomically::

    [{"targets": ["node-a:9465"],
      "labels": {"run_id": "grpo-7b", "rank": "1", "hostname": "node-a"}}]

and Prometheus reads the folder with::

    file_sd_configs:
      - files: ["targets/*.json"]

    registration = TargetFile(Path("targets"), run_id="grpo-7b", rank=1,
                              host="127.0.0.1", port=9465)
    registration.write()     # targets/grpo-7b-rank1.json
    registration.remove()
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

from mlx_otel.fileio import atomic_write_text

__all__ = ["TargetFile", "target_address"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def target_address(host: str, port: int) -> str:
    """``host:port`` as another machine's Prometheus reaches this endpoint.

    A wildcard bind (0.0.0.0, ::) is registered under the machine's name;
    an IPv6 address is bracketed.
    """
    if host in ("0.0.0.0", "", "::"):
        host = socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class TargetFile:
    """One rank's file_sd target file: ``<dir>/<run_id>[-rank<r>].json``."""

    def __init__(
        self, directory: Path, *, run_id: str, rank: int | None, host: str, port: int
    ) -> None:
        self.directory = Path(directory)
        stem = _UNSAFE.sub("_", run_id) + ("" if rank is None else f"-rank{rank}")
        self.path = self.directory / f"{stem}.json"
        labels = {"run_id": run_id, "hostname": socket.gethostname()}
        if rank is not None:
            labels["rank"] = str(rank)
        self.address = target_address(host, port)
        self.group = [{"targets": [self.address], "labels": labels}]

    def write(self) -> Path:
        """Write the target file atomically (Prometheus never reads half of it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(self.path, json.dumps(self.group, indent=2) + "\n")

    def remove(self) -> None:
        """Remove the target file; a file already gone is fine."""
        self.path.unlink(missing_ok=True)
