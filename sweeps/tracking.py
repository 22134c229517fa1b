"""MLflow tracking: the sqlite store under HYBRIDLAB_HOME, experiments, runs and the fixed names.

Runs are written through ``MlflowClient`` with explicit run ids (no fluent "active run" state), from
the process that trains, with an absolute tracking URI and an explicit artifact root (stack-notes.md
§3: a relative URI or a default artifact location silently lands in a Ray trial's throwaway cwd).
Names follow design.md "MLflow record": flattened config params, ``pattern``, ``layout_hash``, the
metric names of the training loop, and the tags ``hybridlab.sweep``, ``hybridlab.backend.<symbol>``,
``hybridlab.status`` (ok, pruned, diverged, failed) and ``hybridlab.error``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.store import client, tracking_uri
from sweeps.paths import HOME_ENV, hybridlab_home
from sweeps.train import Checkpoint, Hooks

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from blocks.model import HybridLM

__all__ = [
    "tracking_uri",
    "client",
    "ensure_experiment",
    "flatten",
    "MLflowHooks",
    "start_run",
    "finish_run",
    "set_home",
    "STATUS_TAG",
    "ROLE_TAG",
]

STATUS_TAG = "hybridlab.status"
ERROR_TAG = "hybridlab.error"
SWEEP_TAG = "hybridlab.sweep"
ROLE_TAG = "hybridlab.role"  # sweep | trial | train
TRIAL_TAG = "hybridlab.trial_id"
MAX_PARAM_CHARS = 500
_MLFLOW_STATUS = {"ok": "FINISHED", "pruned": "FINISHED", "diverged": "FAILED", "failed": "FAILED", "killed": "KILLED"}


def set_home(home: str | None) -> Path:
    """Make ``home`` (or the current HYBRIDLAB_HOME) absolute, export it for child processes, create it."""
    if home:
        os.environ[HOME_ENV] = os.path.abspath(os.path.expanduser(home))
    path = hybridlab_home()
    os.environ[HOME_ENV] = str(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_experiment(c: MlflowClient, name: str, home: Path | None = None) -> str:
    """The id of experiment ``name``, created with an absolute artifact root if missing."""
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = (home or hybridlab_home()) / "artifacts" / name
    try:
        return c.create_experiment(name, artifact_location=root.as_uri())
    except Exception:
        exp = c.get_experiment_by_name(name)  # created concurrently by another process
        if exp is None:
            raise
        return exp.experiment_id


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"d_model": 64}}`` -> ``{"model.d_model": 64}``; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def start_run(
    c: MlflowClient,
    experiment_id: str,
    run_name: str,
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> str:
    """Create a run (nested under ``parent_run_id`` when given) and return its id."""
    all_tags = dict(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return c.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id


def finish_run(c: MlflowClient, run_id: str, status: str, error: str | None = None) -> None:
    """Tag ``hybridlab.status`` (and ``hybridlab.error``) and end the run with the matching MLflow status."""
    c.set_tag(run_id, STATUS_TAG, status)
    if error:
        c.set_tag(run_id, ERROR_TAG, error[:5000])
    c.set_terminated(run_id, _MLFLOW_STATUS[status])


def log_config(c: MlflowClient, run_id: str, plain: dict[str, Any]) -> None:
    """Log the flattened resolved config as params and the whole as ``config.yaml``."""
    from mlflow.entities import Param
    from omegaconf import OmegaConf

    params = []
    for key, value in flatten(plain).items():
        text = "null" if value is None else str(value)
        if len(text) > MAX_PARAM_CHARS:
            c.set_tag(run_id, f"long.{key}", text[:5000])
            text = text[: MAX_PARAM_CHARS - 3] + "..."
        params.append(Param(key, text))
    for i in range(0, len(params), 100):
        c.log_batch(run_id, params=params[i : i + 100])
    c.log_text(run_id, OmegaConf.to_yaml(OmegaConf.create(plain)), "config.yaml")


class MLflowHooks(Hooks):
    """Training-loop hooks that log to one MLflow run (params, tags, metrics)."""

    def __init__(self, c: MlflowClient, run_id: str, plain_config: dict[str, Any], log_config_params: bool = True) -> None:
        self.c, self.run_id, self.plain, self.log_config_params = c, run_id, plain_config, log_config_params
        self.info: dict[str, Any] = {}

    def on_start(self, model: HybridLM, info: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.info = info
        if self.log_config_params:
            log_config(self.c, self.run_id, self.plain)
            pattern = info["pattern"]
            if len(pattern) > MAX_PARAM_CHARS:
                self.c.set_tag(self.run_id, "pattern", pattern[:5000])
                self.c.log_text(self.run_id, pattern, "pattern.txt")
                pattern = pattern[: MAX_PARAM_CHARS - 3] + "..."
            self.c.log_batch(self.run_id, params=[Param("pattern", pattern), Param("layout_hash", info["layout_hash"])])
        tags = {f"hybridlab.backend.{s}": b for s, b in info["backends"].items()}
        tags.update({f"hybridlab.kernel_route.{s}": r for s, r in info.get("kernel_routes", {}).items()})
        tags.update({"hybridlab.device": info["device"], "hybridlab.precision": info["precision"]})
        warm = info.get("kernel_warmup")
        if warm is not None:
            tags.update({"hybridlab.kernel_cache": warm["cache"], "hybridlab.kernel_signature": warm["signature"]})
        for k, v in tags.items():
            self.c.set_tag(self.run_id, k, v)
        first = {"model/params": float(info["params"]), "model/flops_per_token": float(info["flops_per_token"])}
        if warm is not None:
            first["startup/kernel_warmup_s"] = float(warm["seconds"])
        self._log(first, 0)

    def _log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 500):
            self.c.log_batch(self.run_id, metrics=batch[i : i + 500])

    def on_log(self, metrics: dict[str, float], step: int) -> None:
        self._log(metrics, step)

    def on_artifact(self, path: str, data: dict[str, Any]) -> None:
        self.c.log_dict(self.run_id, data, path)

    def on_eval(self, metrics: dict[str, float], step: int, final: bool, checkpoint: Checkpoint) -> None:
        self._log(metrics, step)
