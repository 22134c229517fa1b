"""Where hybridlab keeps its runs on disk (design.md, "Runs on disk").

``HYBRIDLAB_HOME`` (default ``./runs``, always made absolute) holds ``mlflow.db``, ``artifacts/``,
``ray/``, ``optuna.db`` and ``cache/`` (tokenized corpora, ``cache/triton``: compiled Triton kernels
with fla's autotuning results, and ``cache/inductor``: torch.compile's, shared by every run and trial under
this home).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HOME_ENV", "hybridlab_home", "cache_dir", "share_kernel_cache"]

HOME_ENV = "HYBRIDLAB_HOME"


def hybridlab_home() -> Path:
    """The absolute ``HYBRIDLAB_HOME`` (``./runs`` when unset), user and relative paths resolved.

    It is read from the environment on every call, so a test or a Ray worker that sets the
    variable sees its own value. The folder is not created here.
    """
    raw = os.environ.get(HOME_ENV) or "runs"
    return Path(os.path.abspath(os.path.expanduser(raw)))


def cache_dir() -> Path:
    """``HYBRIDLAB_HOME/cache``, created if missing."""
    path = hybridlab_home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def share_kernel_cache(home: Path | None = None) -> dict[str, str]:
    """Point Triton's cache (compiled kernels and fla's autotune results, ``FLA_CACHE_RESULTS`` is on by
    default) at ``HOME/cache/triton`` and inductor's (FlexAttention, ``train.compile``) at
    ``HOME/cache/inductor``, unless the user chose others, and return the variables to hand to other
    processes (Ray trials on other nodes). fla's kernels autotune for minutes on first use
    (shared/gpu/README.md); with one cache per home, only the first run of a shape pays for it."""
    cache = (home or hybridlab_home()) / "cache"
    os.environ.setdefault("TRITON_CACHE_DIR", str(cache / "triton"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
    env = {name: os.environ[name] for name in ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")}
    for path in env.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    return env
