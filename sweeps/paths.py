"""Where hybridlab keeps its runs on disk (design.md, "Runs on disk").

``HYBRIDLAB_HOME`` (default ``./runs``, always made absolute) holds ``mlflow.db``, ``artifacts/``,
``ray/``, ``optuna.db`` and ``cache/`` (tokenized corpora).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HOME_ENV", "hybridlab_home", "cache_dir"]

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
