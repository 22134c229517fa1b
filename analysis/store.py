"""The MLflow store under HYBRIDLAB_HOME: its absolute sqlite URI and a client on it.

Lives in ``analysis`` because both the readers here and the writers in ``sweeps`` need it, and imports
flow ``analysis <- sweeps`` (design.md, "Layout").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["home_dir", "tracking_uri", "client"]


def home_dir() -> Path:
    """The absolute HYBRIDLAB_HOME (``./runs`` when unset)."""
    return Path(os.path.abspath(os.path.expanduser(os.environ.get("HYBRIDLAB_HOME") or "runs")))


def tracking_uri(home: Path | None = None) -> str:
    """The absolute sqlite URI of ``HYBRIDLAB_HOME/mlflow.db``."""
    return f"sqlite:///{(home or home_dir()) / 'mlflow.db'}"


def client(home: Path | None = None) -> MlflowClient:
    """An MlflowClient on the store under ``home``; the first use creates the database (2-5 s)."""
    for name in ("mlflow.store.db.utils", "alembic", "mlflow.store.db.db_types"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(home))
