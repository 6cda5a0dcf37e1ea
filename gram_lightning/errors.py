"""Errors whose message says everything a user needs: the `gram` command prints them as one line, no traceback.

Anything else (a bug) keeps its full traceback. `GRAM_DEBUG=1` shows the traceback of these too.
"""

from __future__ import annotations


class GramError(Exception):
    """A failure the message fully explains; `gram` prints `gram: <message>` and exits with status 1."""


class GramUserError(GramError, ValueError):
    """Bad input: a data file in the wrong format, a corrupt cache, a checkpoint that does not fit, a
    configuration that cannot work. A ValueError, so that code catching ValueError catches it too."""


class NonFiniteError(GramError, FloatingPointError):
    """Training produced a NaN or infinite loss or gradient, or a checkpoint holds non-finite weights."""


def first_nonfinite(tensors: dict[str, object], limit: int = 3) -> list[str]:
    """Names of up to `limit` floating-point tensors of `tensors` holding a NaN or an infinity."""
    import torch

    bad = []
    for name, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad.append(name)
            if len(bad) == limit:
                break
    return bad


def checkpoint_nonfinite(checkpoint: dict[str, object]) -> list[str]:
    """Names of up to 3 weights holding a NaN or an infinity in a checkpoint's trained and averaged
    (`current_model_state`, written by weight averaging) state dicts."""
    for key in ("state_dict", "current_model_state"):
        bad = first_nonfinite(checkpoint.get(key) or {})
        if bad:
            return bad
    return []
