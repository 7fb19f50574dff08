"""Atomic file writing: a reader sees the old file or the new one, never half.

Exports (CSV, JSON) and charts (PNG) are rewritten while a run goes on, and a
dashboard, a notebook or ``tail`` may read them at any moment; a crash or a
full disk in the middle of a write must not leave a truncated file behind.
Every writer in mlx_otel therefore writes to a temporary file in the target's
directory, flushes it to disk and renames it over the target with
:func:`os.replace`, which is atomic on POSIX and Windows within one file
system.

Example::

    from mlx_otel.fileio import atomic_path, atomic_write_text

    atomic_write_text("out/summary.json", '{"ok": true}')
    with atomic_path("out/metrics.csv") as tmp:
        frame.to_csv(tmp, index=False)   # renamed over out/metrics.csv on success
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _current_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, rather
    # than on every write from a background thread.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself; best effort (not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` when the block succeeds.

    The temporary file lives in the target's directory (so the final rename
    stays on one file system) and keeps the target's suffix, so libraries
    that infer the format from the name (``Figure.savefig``,
    ``DataFrame.to_csv(compression="infer")``) behave as for the target.
    Parent directories are created. If the block raises, the temporary file
    is removed, the previous target is left untouched and the exception
    propagates.

    Example::

        with atomic_path("charts/dashboard.png") as tmp:
            figure.savefig(tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot keeps half-written files out of globs like "*.png".
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the mode a plain open()
        # would have given it, so exports stay readable by other users.
        os.chmod(tmp, 0o666 & ~_UMASK)
        # Data must reach the disk before the rename, or a power loss can
        # leave a renamed but empty file.
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_directory(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the target path.

    Example::

        atomic_write_bytes("charts/raw.bin", b"\\x00\\x01")
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the target path.

    Example::

        atomic_write_text("stats/summary.json", json.dumps(summary, indent=2))
    """
    return atomic_write_bytes(path, text.encode(encoding))
