"""A small real sweep store for the report and UI tests, built without Ray.

It has the shape of a ``hybridlab sweep`` record (design.md, "MLflow record"; sweeps/tracking.py): one
experiment, a parent run tagged ``hybridlab.role=sweep`` and nested child runs tagged
``hybridlab.role=trial`` that the project's training loop (``sweeps.train.run_training`` with
``MLflowHooks``) filled by training tiny models on the stdlib corpus for a few steps. Two children
share the layout ``A-F`` with different seeds, so mean +- std over seeds has something to average.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SWEEP = "mini"
TINY = [
    "model.d_model=32",
    "model.mixers.A.window=16",
    "model.mixers.A.heads=2",
    "data.seq_len=32",
    "data.eval_lengths=[32,64,128]",
    "data.max_bytes=100000",
    "train.steps=6",
    "train.batch_size=4",
    "train.log_every=2",
    "train.eval_every=3",
    "train.eval_batches=1",
    "train.eval_batch_size=2",
    f"sweep.name={SWEEP}",
    f"tracking.experiment={SWEEP}",
]
TRIALS: list[tuple[str, int]] = [("M-F-A-F", 0), ("A-F", 0), ("A[window=null]-F", 0), ("A-F", 1)]


@dataclass
class SmallSweep:
    """Where the store is and what it holds."""

    home: Path
    name: str
    experiment_id: str
    parent_run_id: str
    child_run_ids: list[str] = field(default_factory=list)
    child_run_names: list[str] = field(default_factory=list)
    build_s: float = 0.0


@pytest.fixture(scope="session")
def small_sweep_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallSweep]:
    from sweeps.config import load_config, to_plain
    from sweeps.tracking import MLflowHooks, client, ensure_experiment, finish_run, start_run
    from sweeps.train import run_training

    home = tmp_path_factory.mktemp("hybridlab_home")
    saved = os.environ.get("HYBRIDLAB_HOME")
    os.environ["HYBRIDLAB_HOME"] = str(home)
    t0 = time.perf_counter()
    try:
        c = client(home)
        exp_id = ensure_experiment(c, SWEEP, home)
        sweep_tags = {"hybridlab.role": "sweep", "hybridlab.sweep": SWEEP}
        parent = start_run(c, exp_id, SWEEP, sweep_tags)
        out = SmallSweep(home, SWEEP, exp_id, parent)
        for pattern, seed in TRIALS:
            cfg = load_config(None, [f"model.pattern={pattern}", f"train.seed={seed}", *TINY])
            name = f"{pattern} seed{seed}"
            tags = {"hybridlab.role": "trial", "hybridlab.sweep": SWEEP}
            run_id = start_run(c, exp_id, name, tags, parent_run_id=parent)
            run_training(cfg, MLflowHooks(c, run_id, to_plain(cfg)))
            finish_run(c, run_id, "ok")
            out.child_run_ids.append(run_id)
            out.child_run_names.append(name)
        finish_run(c, parent, "ok")
        out.build_s = time.perf_counter() - t0
    finally:
        if saved is None:
            os.environ.pop("HYBRIDLAB_HOME", None)
        else:
            os.environ["HYBRIDLAB_HOME"] = saved
    yield out
