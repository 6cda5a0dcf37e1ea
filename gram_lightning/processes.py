"""Child processes that end with the process that forked them.

`datasets.Dataset.map(num_proc=...)` forks a pool of workers, and a manager process for its queue, and offers no
initialiser. When the parent is killed with SIGKILL it cannot stop them, and they would go on generating data for
nobody (the workers) or wait forever (the manager). Inside `children_die_with_parent()` every process forked
arms itself right after the fork: on Linux the kernel kills it when its parent dies (PR_SET_PDEATHSIG);
elsewhere a daemon thread watches the parent pid and exits the child when it changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from typing import Iterator

_PR_SET_PDEATHSIG = 1
_depth = 0  # > 0 inside children_die_with_parent(); a forked child inherits the value of the moment
_forking_pid = 0  # the parent's pid, recorded just before each fork
_registered = False
_prctl = None  # libc's prctl, looked up in the parent: a fork hook should not load libraries


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _after_fork_in_child() -> None:
    if _depth > 0:
        arm(_forking_pid)


@contextlib.contextmanager
def children_die_with_parent() -> Iterator[None]:
    """Processes forked inside this block (by this process, from any thread) die when this process dies.

    The kernel's signal follows the thread that forked: a child forked by a thread that ends before the process
    does is killed then too, which suits pools created and closed within the block.
    """
    global _depth, _registered, _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            pass
    if not _registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        _registered = True
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1


def arm(parent: int, poll_s: float = 1.0) -> None:
    """Make this process exit when process `parent` (its parent) has ended.

    Args:
        parent: The parent's pid: the child exits at once if it is no longer its parent (it died before this call).
        poll_s: Where the kernel cannot do it (not Linux), how often a watcher thread checks the parent pid.
    """
    if sys.platform.startswith("linux") and _prctl_pdeathsig(signal.SIGKILL):
        if os.getppid() != parent:  # the parent died before the call: the signal will never come
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(parent, poll_s), name="die-with-parent", daemon=True).start()


def _prctl_pdeathsig(sig: int) -> bool:
    return _prctl is not None and _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _watch_parent(parent: int, poll_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(1)
