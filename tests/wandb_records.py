"""Read back what a WandB run wrote to disk, so tests can assert on files.

wandb 0.31 no longer ships a Python reader for its transaction log; the
service (``wandb-core``) writes ``offline-run-*/run-<id>.wandb`` in the
LevelDB log format with a 7-byte ``:W&B`` header, each record a serialised
``wandb.proto.wandb_internal_pb2.Record``. This module parses that log with
the package's own protobuf classes and returns plain Python values.

Usage::

    run = read_run(tmp_path / "wandb")          # the only run under that dir
    run.by_step()[10]["train/loss"]             # -> 0.5
    run.alerts[0]["title"]                      # -> "High Memory Usage"
    run.table("rl/samples", step=10)["data"]    # rows of the logged wandb.Table
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunRecords", "find_run_files", "read_records", "read_run", "wait_for_run_file"]

# LevelDB log format (https://github.com/google/leveldb/blob/main/doc/log_format.md)
# as used by wandb: 32 KiB blocks, 7-byte chunk headers (crc32, length, type).
_FILE_HEADER = struct.Struct("<4sHB")
_IDENT, _MAGIC, _VERSION = b":W&B", 0xBEE1, 0
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[Any]:
    """Return every ``Record`` protobuf in a ``.wandb`` file, in write order.

    Raises ``ValueError`` on a bad header, a checksum mismatch or a broken
    chunk sequence: a test must not pass on a half-read file.

    >>> records = read_records("wandb/offline-run-x/run-x.wandb")  # doctest: +SKIP
    >>> records[0].WhichOneof("record_type")                        # doctest: +SKIP
    'header'
    """
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, version = _FILE_HEADER.unpack_from(data, 0)
    if (ident, magic, version) != (_IDENT, _MAGIC, _VERSION):
        raise ValueError(f"{path}: not a wandb transaction log (header {data[:7]!r})")

    payloads: list[bytes] = []
    pending: bytes | None = None
    pos = _FILE_HEADER.size
    while pos + _CHUNK_HEADER.size <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _CHUNK_HEADER.size:  # block trailer: zero padding
            pos += room
            continue
        checksum, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        start = pos + _CHUNK_HEADER.size
        chunk = data[start : start + length]
        pos = start + length
        if kind == 0 and length == 0:  # zero padding at the tail of a block
            continue
        if len(chunk) != length:
            raise ValueError(f"{path}: truncated chunk at offset {start}")
        # wandb seeds the crc32 with the chunk type byte, as LevelDB does.
        expected = zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF
        if checksum != expected:
            raise ValueError(f"{path}: checksum mismatch at offset {start}")
        if kind == _FULL:
            payloads.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind in (_MIDDLE, _LAST) and pending is not None:
            pending += chunk
            if kind == _LAST:
                payloads.append(pending)
                pending = None
        else:
            raise ValueError(f"{path}: unexpected chunk type {kind} at offset {start}")

    records = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def _items_to_dict(items: Any) -> dict[str, Any]:
    """Turn HistoryItem/SummaryItem lists (key or nested_key + value_json) into a dict."""
    out: dict[str, Any] = {}
    for item in items:
        keys = list(item.nested_key) or [item.key]
        value = json.loads(item.value_json)
        target = out
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return out


@dataclass
class RunRecords:
    """Everything a run wrote, as plain values.

    ``history`` holds one dict per ``wandb.log`` row (with wandb's own
    ``_step``); media values are the dicts wandb stores (``_type``, ``path``,
    ...), their files live under ``files_dir``.
    """

    path: Path
    records: list[Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    project: str = ""
    exit_code: int | None = None

    @property
    def run_dir(self) -> Path:
        """The ``offline-run-*`` directory holding the log."""
        return self.path.parent

    @property
    def files_dir(self) -> Path:
        """Where wandb copied media (images, table JSON) of this run."""
        return self.run_dir / "files"

    def by_step(self, step_key: str = "train/step") -> dict[Any, dict[str, Any]]:
        """Merge history rows by the value of ``step_key`` (None when absent)."""
        merged: dict[Any, dict[str, Any]] = {}
        for row in self.history:
            merged.setdefault(row.get(step_key), {}).update(row)
        return merged

    def steps_with(self, key: str, step_key: str = "train/step") -> list[Any]:
        """The steps (in log order) of the rows that contain ``key``."""
        return [row.get(step_key) for row in self.history if key in row]

    def table(self, key: str, *, step: Any, step_key: str = "train/step") -> dict[str, Any]:
        """Load the JSON of the table logged under ``key`` at ``step``."""
        for row in self.history:
            if row.get(step_key) == step and key in row:
                return json.loads((self.files_dir / row[key]["path"]).read_text())
        raise KeyError(f"no table {key!r} at {step_key}={step!r}")

    def media_path(self, key: str, *, step: Any, step_key: str = "train/step") -> Path:
        """The file of the media value (image, table) logged under ``key`` at ``step``."""
        for row in self.history:
            if row.get(step_key) == step and key in row:
                return self.files_dir / row[key]["path"]
        raise KeyError(f"no media {key!r} at {step_key}={step!r}")

    def artifact(self, name: str) -> dict[str, Any]:
        """The last artifact record with ``name``."""
        for art in reversed(self.artifacts):
            if art["name"] == name:
                return art
        raise KeyError(f"no artifact {name!r}; have {[a['name'] for a in self.artifacts]}")


def find_run_files(root: str | Path) -> list[Path]:
    """All ``run-*.wandb`` logs under ``root`` (a ``wandb`` dir or its parent)."""
    return sorted(Path(root).rglob("run-*.wandb"))


def _stream_closed(path: Path) -> bool:
    log = path.parent / "logs" / "debug-internal.log"
    try:
        return "stream: all finished" in log.read_text(errors="replace")
    except OSError:
        return False


def wait_for_run_file(path: Path, *, timeout_s: float = 60.0) -> list[Any]:
    """Records of a finished run, once wandb-core has flushed them.

    ``run.finish()`` returns when the exit record is handled, but wandb-core
    closes (and flushes) the log file a little later, on its own goroutine:
    poll until the log holds the exit record and the stream reports closed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            records = read_records(path)
        except ValueError:  # a chunk still being written
            records = []
        done = any(r.WhichOneof("record_type") == "exit" for r in records)
        if done and _stream_closed(path):
            return records
        if time.monotonic() > deadline:
            if done:
                return records
            raise TimeoutError(f"{path}: run not finished after {timeout_s} s")
        time.sleep(0.02)


def read_run(path: str | Path, *, timeout_s: float = 60.0) -> RunRecords:
    """Parse one finished run: a ``.wandb`` file, a run dir or a root with one run."""
    path = Path(path)
    if path.is_dir():
        found = find_run_files(path)
        if len(found) != 1:
            raise ValueError(f"expected one run under {path}, found {found}")
        path = found[0]

    run = RunRecords(path=path, records=wait_for_run_file(path, timeout_s=timeout_s))
    for record in run.records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append(_items_to_dict(record.history.item))
        elif kind == "summary":
            run.summary.update(_items_to_dict(record.summary.update))
        elif kind == "alert":
            alert = record.alert
            run.alerts.append(
                {
                    "title": alert.title,
                    "text": alert.text,
                    "level": alert.level,
                    "wait_duration_s": alert.wait_duration / 1000.0,
                }
            )
        elif kind == "artifact":
            art = record.artifact
            run.artifacts.append(
                {
                    "name": art.name,
                    "type": art.type,
                    "aliases": list(art.aliases),
                    "metadata": json.loads(art.metadata) if art.metadata else {},
                    "files": {c.path: c.size for c in art.manifest.contents},
                }
            )
        elif kind == "files":
            run.files.extend(f.path for f in record.files.files)
        elif kind == "metric":
            metric = record.metric
            run.metrics.append(
                {
                    "name": metric.name,
                    "glob_name": metric.glob_name,
                    "step_metric": metric.step_metric,
                }
            )
        elif kind == "run":
            run.name = record.run.display_name
            run.project = record.run.project
            run.config.update(_items_to_dict(record.run.config.update))
        elif kind == "config":
            run.config.update(_items_to_dict(record.config.update))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run
