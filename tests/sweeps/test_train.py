"""The training loop on a tiny model: metric names, determinism on CPU, resume, and divergence."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from sweeps.config import load_config
from sweeps.train import Diverged, Hooks, lr_at, run_training

TINY = [
    "model.pattern=M-F-A-F",
    "model.d_model=32",
    "model.mixers.A.window=16",
    "data.seq_len=32",
    "data.eval_lengths=[32,64,128]",
    "data.max_bytes=300000",
    "train.steps=6",
    "train.batch_size=4",
    "train.eval_every=3",
    "train.log_every=2",
    "train.eval_batches=1",
    "train.eval_batch_size=2",
]


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDLAB_HOME", str(tmp_path / "home"))


class Recorder(Hooks):
    def __init__(self) -> None:
        self.logs: list[tuple[int, dict[str, float]]] = []
        self.evals: list[tuple[int, dict[str, float], bool]] = []
        self.checkpoints: dict[int, dict[str, Any]] = {}
        self.info: dict[str, Any] = {}
        self.artifacts: dict[str, dict[str, Any]] = {}

    def on_artifact(self, path, data):  # type: ignore[no-untyped-def]
        self.artifacts[path] = data

    def on_start(self, model, info):  # type: ignore[no-untyped-def]
        self.info = info

    def on_log(self, metrics, step):  # type: ignore[no-untyped-def]
        self.logs.append((step, metrics))

    def on_eval(self, metrics, step, final, checkpoint):  # type: ignore[no-untyped-def]
        self.evals.append((step, metrics, final))
        self.checkpoints[step] = copy.deepcopy(checkpoint())  # the state refers to live tensors


def test_the_first_log_says_where_the_start_up_time_went() -> None:
    """perf/startup_s runs from ``origin`` to the end of the first step; its phases add up to it."""
    rec = Recorder()
    origin = time.time() - 2.0  # a process that started two seconds before training
    run_training(load_config(None, TINY), rec, origin=origin)
    first = rec.logs[0][1]
    phases = {k: v for k, v in first.items() if k.startswith("startup/")}
    assert set(phases) == {f"startup/{p}_s" for p in ("process", "data", "model", "tracking", "eval_data", "first_step")}
    assert phases["startup/process_s"] >= 2.0 and all(v >= 0 for v in phases.values())
    assert sum(phases.values()) == pytest.approx(first["perf/startup_s"], abs=0.05)


def test_a_chunked_head_trains_the_same_run() -> None:
    """train.loss_chunk changes how the head's loss is computed, not what: the same run, to fp32 rounding."""
    runs = []
    for extra in ([], ["train.loss_chunk=16"]):
        rec = Recorder()
        run_training(load_config(None, [*TINY, *extra]), rec)
        runs.append([m["train/loss"] for _, m in rec.logs] + [rec.evals[-1][1]["val/loss"]])
    assert runs[1] == pytest.approx(runs[0], rel=1e-4)


def test_logs_the_design_metric_names() -> None:
    rec = Recorder()
    run_training(load_config(None, TINY), rec)
    assert [s for s, _ in rec.logs] == [1, 2, 4, 6]
    assert "perf/startup_s" in rec.logs[0][1] and all("perf/startup_s" not in m for _, m in rec.logs[1:])
    assert [(s, f) for s, _, f in rec.evals] == [(3, False), (6, True)]
    m = rec.evals[-1][1]
    for key in ["train/loss", "val/loss", "val/ppl", "val/ppl_len32", "val/ppl_len64", "val/ppl_len128",
                "entropy/attn/layer2", "entropy/attn/mean", "entropy/s6/layer0", "entropy/s6/mean",
                "perf/tokens_per_s", "perf/step_ms", "perf/peak_mem_mb", "model/params", "model/flops_per_token"]:
        assert key in m and math.isfinite(m[key]), key
    assert m["val/ppl"] == pytest.approx(math.exp(m["val/loss"]))
    assert m["val/ppl_len32"] == pytest.approx(m["val/ppl"])
    assert rec.info["backends"] == {"M": "reference", "F": "reference", "A": "reference"}
    assert rec.info["kernel_routes"] == {} and rec.info["kernel_warmup"] is None  # CPU: nothing to warm
    curve = rec.artifacts["eval/loss_by_position.json"]["buckets"]
    assert len(curve) == 16 and curve[0]["start"] == 0 and curve[-1]["end"] == 128
    assert all(math.isfinite(b["mean_loss"]) for b in curve)


def test_deterministic_on_cpu() -> None:
    a, b = Recorder(), Recorder()
    run_training(load_config(None, TINY), a)
    run_training(load_config(None, TINY), b)
    assert a.evals[-1][1]["val/loss"] == b.evals[-1][1]["val/loss"]
    assert [m["train/loss"] for _, m in a.logs] == [m["train/loss"] for _, m in b.logs]


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run() -> None:
    full = Recorder()
    run_training(load_config(None, TINY), full)
    resumed = Recorder()
    run_training(load_config(None, TINY), resumed, resume=full.checkpoints[3])
    assert [s for s, _, _ in resumed.evals] == [6]
    torch.testing.assert_close(resumed.evals[-1][1]["val/loss"], full.evals[-1][1]["val/loss"])


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    cfg = load_config(None, ["train.steps=100", "train.warmup=0.1", "train.lr=1.0", "train.min_lr_ratio=0.1"])
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_divergence_is_detected() -> None:
    with pytest.raises(Diverged, match="training loss became"):
        run_training(load_config(None, [*TINY, "train.lr=1.0e6", "train.grad_clip=0", "train.warmup=0"]), Recorder())
