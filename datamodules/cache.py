"""On-disk caching of built datasets, shared by all DataModules of the project.

A cached dataset lives in ``<cache_dir>/<name>-<hash>``, where the hash covers every parameter that
affects the content, so changing a parameter builds a new folder and never reuses a stale one. The
folder is written to a temporary sibling and renamed into place, so a crashed or concurrent build
never leaves a half-written folder under the final name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import datasets
from lightning.pytorch.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)

PARAMS_FILE = "params.json"


class CacheError(RuntimeError):
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
    start = time.perf_counter()
    dataset = build()
    build_s = time.perf_counter() - start

    # Write next to the final folder (same file system, so the rename is atomic).
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        dataset.save_to_disk(str(tmp))
        (tmp / PARAMS_FILE).write_text(json.dumps({"name": name, **params}, indent=2, sort_keys=True, default=str))
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


def _load(folder: Path) -> datasets.Dataset:
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
