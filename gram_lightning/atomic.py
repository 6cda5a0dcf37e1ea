"""Write files so that a crash leaves either the old file or the new one, never half of one.

The new content goes to a temporary file in the target's own folder (a rename within one file system is atomic;
across file systems a "move" is a copy that a kill can cut short), is flushed to disk, and replaces the target
with os.replace. The temporary name starts with a dot and ends in `.tmp`, never in the target's suffix, so a
glob for `*.ckpt` or `*.json` never sees one; it holds the writer's host and pid, so that the temporary files of
a killed writer can be told from those of a live one and removed (`remove_stale_temp_files`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

TEMP_SUFFIX = ".tmp"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _temp_prefix(name: str) -> str:
    return f".{name}.{_host()}-{os.getpid()}."


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file to write `path`'s new content to; on a clean exit it replaces `path` atomically and durably
    (the data and the folder entry are fsync'ed), on an exception it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself survive a power loss; not possible on every platform / file system.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (one of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files `atomic_writer` left in `folder` when its process was killed (written on this
    host by a pid that no longer runs); those of live writers and of other hosts stay. Returns the removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    host = _host()
    for entry in folder.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if match and match["host"] == host and not pid_alive(int(match["pid"])) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Rows of dicts as CSV; the columns are every key, in order of first appearance."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())
