"""On-disk caching of built datasets, shared by all DataModules of the project.

A cached dataset lives in ``<cache_dir>/<name>-<hash>``, where the hash covers every parameter that
affects the content, so changing a parameter builds a new folder and never reuses a stale one. The
folder is written to a temporary sibling and renamed into place, so a crashed or concurrent build
never leaves a half-written folder under the final name; the temporary folders of killed builds are removed
when the next build starts. Every file's size and CRC-32 are recorded when the folder is written and checked
when it is loaded, so that a file corrupted in place (same size) is reported rather than fed to the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import datasets
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from gram_lightning.atomic import _host, atomic_write_text, pid_alive
from gram_lightning.errors import GramError

log = logging.getLogger(__name__)

PARAMS_FILE = "params.json"
CHECKSUM_FILE = "checksums.json"  # {file: [size, crc32]} of every other file of the folder
# `<final>.tmp-<host>-<pid>-<hex>`; folders of older versions lack the host.
_TMP_NAME = re.compile(r"^(?P<final>.+)\.tmp-(?:(?P<host>[A-Za-z0-9_-]+)-)?(?P<pid>\d+)-[0-9a-f]+$")


class CacheError(GramError, RuntimeError):
    """A cache folder exists but cannot be loaded (corrupted, or written by an incompatible version)."""


def params_hash(params: dict[str, Any]) -> str:
    """Short, stable hash of ``params`` (key order does not matter)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path(cache_dir: str | Path, name: str, params: dict[str, Any]) -> Path:
    """The folder that holds (or will hold) the dataset built from ``params``."""
    return Path(cache_dir) / f"{name}-{params_hash(params)}"


def cached_dataset(
    cache_dir: str | Path,
    name: str,
    params: dict[str, Any],
    build: Callable[[], datasets.Dataset],
) -> datasets.Dataset:
    """Load the dataset cached for ``params``, building and saving it first when there is none.

    Args:
        cache_dir: Folder holding all cached datasets.
        name: Human-readable prefix of the cache folder (e.g. ``"sudoku9-train"``).
        params: Everything that affects the content; must be JSON-serializable.
        build: Called without arguments to build the dataset when it is not cached yet.

    Raises:
        CacheError: The cache folder exists but cannot be loaded; deleting it rebuilds it.
    """
    final = cache_path(cache_dir, name, params)
    if final.exists():
        return _load(final)

    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(final.parent)
    start = time.perf_counter()
    dataset = build()
    build_s = time.perf_counter() - start

    # Write next to the final folder (same file system, so the rename is atomic).
    tmp = final.with_name(f"{final.name}.tmp-{_host()}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        dataset.save_to_disk(str(tmp))
        (tmp / PARAMS_FILE).write_text(json.dumps({"name": name, **params}, indent=2, sort_keys=True, default=str))
        (tmp / CHECKSUM_FILE).write_text(json.dumps(_checksums(tmp), indent=1, sort_keys=True))
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise
        # Another process finished the same build first: use its copy so that all agree.
        _info("cache %s was written concurrently by another process; using that copy", final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    _info("built %s: %d rows in %.1f s, %s on disk", final, len(dataset), build_s, _human_size(_folder_size(final)))
    return _load(final)


def remove_stale_builds(cache_dir: str | Path) -> list[Path]:
    """Remove the temporary folders of builds killed before their rename (written on this host by a process that
    no longer runs); those of running builds and of other hosts sharing the folder stay. Returns the removed."""
    removed = []
    host = _host()
    for entry in Path(cache_dir).iterdir():
        match = _TMP_NAME.match(entry.name)
        if match and match["host"] in (host, None) and not pid_alive(int(match["pid"])) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        _info("removed %d unfinished cache build(s) of killed processes from %s", len(removed), cache_dir)
    return removed


def _checksums(folder: Path) -> dict[str, list[int]]:
    """[size, CRC-32] of every file under `folder` but the checksum file and hidden files (another process's
    temporary checksum file), by relative path."""
    sums = {}
    for file in sorted(f for f in folder.rglob("*") if f.is_file() and f.name != CHECKSUM_FILE
                       and not f.name.startswith(".")):
        crc = 0
        with open(file, "rb") as f:
            while chunk := f.read(1 << 22):
                crc = zlib.crc32(chunk, crc)
        sums[file.relative_to(folder).as_posix()] = [file.stat().st_size, crc]
    return sums


def _verify(folder: Path) -> None:
    """Raise CacheError when a file of `folder` differs from what was written. A folder written before checksums
    were recorded gets them now: later corruption is caught, corruption before this load is not."""
    recorded = folder / CHECKSUM_FILE
    if not recorded.is_file():
        try:
            atomic_write_text(recorded, json.dumps(_checksums(folder), indent=1, sort_keys=True))
        except OSError:  # a read-only cache: it stays unchecked
            pass
        return
    try:
        expected = json.loads(recorded.read_text())
    except (OSError, ValueError) as err:
        raise CacheError(f"the cached dataset in {folder} has an unreadable {CHECKSUM_FILE} ({err}); delete the "
                         f"folder to rebuild it") from None
    actual = _checksums(folder)
    for file, (size, crc) in expected.items():
        if file not in actual:
            problem = "is missing"
        elif actual[file][0] != size:
            problem = f"has {actual[file][0]} bytes, {size} when written"
        elif actual[file][1] != crc:
            problem = "was changed since it was written (checksum mismatch)"
        else:
            continue
        raise CacheError(f"the cached dataset in {folder} is corrupt: {file} {problem}; delete the folder to "
                         f"rebuild it")


def _load(folder: Path) -> datasets.Dataset:
    _verify(folder)
    try:
        dataset = datasets.load_from_disk(str(folder))
    except Exception as err:  # pyarrow / json / file errors: the message below is what the user needs
        raise CacheError(
            f"cannot load the cached dataset in {folder} ({type(err).__name__}: {err}); "
            f"it is probably corrupted or from an older version: delete the folder to rebuild it"
        ) from None
    if not isinstance(dataset, datasets.Dataset):
        raise CacheError(f"{folder} does not hold a single datasets.Dataset; delete the folder to rebuild it")
    return dataset


@rank_zero_only
def _info(msg: str, *args: Any) -> None:
    log.info(msg, *args)


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _human_size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024:
            return f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"
