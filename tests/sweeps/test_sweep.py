"""End-to-end sweeps on a real Ray runtime, real Optuna storage and a real MLflow store.

A 4-trial sweep runs to the end and MLflow holds one parent run and one nested child run per trial with
the design metrics; a sweep whose driver is killed with SIGKILL mid-run resumes with ``--resume`` to
completion with every trial present exactly once.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)

CONFIG = """
model: {pattern: "M-F", d_model: 32, mixers: {A: {window: 16, heads: 2}}}
data: {source: stdlib, seq_len: 32, eval_lengths: [32, 64], max_bytes: 300000}
train: {steps: STEPS, batch_size: 4, eval_every: EVERY, log_every: 5, eval_batches: 1, eval_batch_size: 2, lr: 3.0e-3}
sweep:
  name: NAME
  num_samples: 4
  max_concurrent: 2
  metric: val/loss
  scheduler: SCHED
  patterns: ["M-F", "A-F", "(M|A)-F", "G-F-R-F"]
  space: {train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}}
"""


def _write(tmp: Path, name: str, steps: int, every: int, sched: str) -> Path:
    path = tmp / f"{name}.yaml"
    text = CONFIG.replace("STEPS", str(steps)).replace("EVERY", str(every))
    path.write_text(text.replace("NAME", name).replace("SCHED", sched))
    return path


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, HYBRIDLAB_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _children(home: Path, name: str) -> list:
    from analysis.store import client

    c = client(home)
    exp = c.get_experiment_by_name(name)
    return c.search_runs([exp.experiment_id], filter_string="tags.`hybridlab.role` = 'trial'", max_results=100)


def test_four_trial_sweep_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = _write(tmp_path, "e2e", steps=10, every=5, sched="asha")
    proc = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", "sweep", str(cfg)], env=_env(home), capture_output=True, text=True,
        timeout=500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep e2e: 4 trials" in proc.stdout

    from analysis.store import client

    c = client(home)
    exp = c.get_experiment_by_name("e2e")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.`hybridlab.role` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = _children(home, "e2e")
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert len({r.data.tags["hybridlab.trial_id"] for r in children}) == 4
    patterns = {r.data.params["pattern"] for r in children}
    assert patterns == {"M-F", "A-F", "(M|A)-F", "G-F-R-F"}
    for r in children:
        status = r.data.tags["hybridlab.status"]
        assert status in ("ok", "pruned"), (status, r.data.tags.get("hybridlab.error"))
        m = r.data.metrics
        for key in ("train/loss", "val/loss", "val/ppl", "val/ppl_len64", "perf/tokens_per_s", "model/params"):
            assert key in m, (key, sorted(m))
        assert r.data.params["layout_hash"] and r.data.params["model.d_model"] == "32"
        assert r.data.tags["hybridlab.backend.F"] == "reference"
        assert r.data.tags["hybridlab.sweep"] == "e2e"
        if status == "ok":
            assert r.info.status == "FINISHED"
    attn = [r for r in children if "A" in r.data.params["pattern"]]
    assert all("entropy/attn/mean" in r.data.metrics for r in attn)

    board = subprocess.run([sys.executable, "-m", "sweeps.cli", "compare", "e2e"], env=_env(home),
                           capture_output=True, text=True, timeout=120)
    assert board.returncode == 0 and "(M|A)-F" in board.stdout


def test_reused_trial_processes_skip_the_process_start_and_still_record_every_trial(tmp_path: Path) -> None:
    """``sweep.reuse_actors``: one trial at a time, each later one in the first one's process, so its start-up
    has no process start or imports; every trial still has its own complete run."""
    home = tmp_path / "home"
    cfg = _write(tmp_path, "reuse", steps=10, every=5, sched="fifo")
    proc = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", "sweep", str(cfg), "sweep.reuse_actors=true", "sweep.max_concurrent=1"],
        env=_env(home), capture_output=True, text=True, timeout=500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    children = _children(home, "reuse")
    assert sorted(r.data.params["pattern"] for r in children) == sorted(["M-F", "A-F", "(M|A)-F", "G-F-R-F"])
    assert all(r.data.tags["hybridlab.status"] == "ok" and r.info.status == "FINISHED" for r in children)
    assert all("val/ppl_len64" in r.data.metrics for r in children)
    first, *later = sorted((r.info.start_time, r.data.metrics["startup/process_s"]) for r in children)
    assert first[1] > 1.0  # a new process: Python, torch, Ray and MLflow imports
    assert all(p < first[1] / 2 for _, p in later), (first, later)


def _metric_rows(home: Path) -> int:
    db = home / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("select count(*) from metrics where key = 'val/loss'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkilled_sweep_resumes_without_losing_or_repeating_trials(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = _write(tmp_path, "resume", steps=60, every=10, sched="fifo")
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", str(cfg)]
    driver = subprocess.Popen(cmd, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 300
    while _metric_rows(home) < 3 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert driver.poll() is None, "the sweep finished before it could be interrupted"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(3)
    before = _children(home, "resume")
    assert sum(r.data.tags.get("hybridlab.status") == "ok" for r in before) < 4
    # Ray deletes a trial's previous checkpoint before it saves the experiment state naming the new one; a kill
    # in between leaves the state naming a checkpoint that is gone. Make that happen for the unfinished trial with
    # the most evaluations: at least two (three over at most two running trials), so Ray's state, saved after
    # its first checkpoint, names one of its checkpoints.
    from analysis.store import client

    c = client(home)
    evals = {r.data.tags["hybridlab.trial_id"]: len(c.get_metric_history(r.info.run_id, "val/loss"))
             for r in before if r.data.tags.get("hybridlab.status") != "ok"}
    lost = max(evals, key=evals.__getitem__)
    assert evals[lost] >= 2, evals
    for ckpt in (home / "ray" / "resume" / lost).glob("checkpoint_*"):
        shutil.rmtree(ckpt, ignore_errors=True)  # a trial process may still be finishing a write

    proc = subprocess.run([*cmd, "--resume"], env=_env(home), capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"trial {lost}: its checkpoint" in proc.stderr and "restarted from step 0" in proc.stderr
    children = _children(home, "resume")
    trial_ids = [r.data.tags["hybridlab.trial_id"] for r in children]
    assert len(children) == 4 and len(set(trial_ids)) == 4, trial_ids
    assert sorted(r.data.params["pattern"] for r in children) == sorted(["M-F", "A-F", "(M|A)-F", "G-F-R-F"])
    states = {r.data.params["pattern"]: (r.data.tags["hybridlab.status"], r.info.status, r.data.tags.get("hybridlab.error"))
              for r in children}
    assert all(s[0] == "ok" for s in states.values()), states
    assert all(r.data.metrics.get("val/loss") is not None for r in children)
    restarted = {r.data.tags["hybridlab.trial_id"] for r in children if "hybridlab.restarted" in r.data.tags}
    assert lost in restarted, restarted

    again = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_a_crashing_trial_is_tagged_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = _write(tmp_path, "crash", steps=4, every=2, sched="fifo")
    text = cfg.read_text().replace("num_samples: 4", "num_samples: 2")
    # A valid layout whose MLP needs 128 TB of weights: it passes every check (nothing is allocated before
    # the trial builds it) and crashes inside Ray when the trial allocates it.
    text = text.replace('patterns: ["M-F", "A-F", "(M|A)-F", "G-F-R-F"]', 'patterns: ["M-F", "A-F[hidden=1000000000000]"]')
    cfg.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", str(cfg)], env=_env(home),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 trials (1 failed)" in proc.stdout
    by_pattern = {r.info.run_name.split(" #")[0]: r for r in _children(home, "crash")}
    assert by_pattern["M-F"].data.tags["hybridlab.status"] == "ok"
    failed = by_pattern["A-F[hidden=1000000000000]"]
    assert failed.data.tags["hybridlab.status"] == "failed" and failed.info.status == "FAILED"
    assert "allocate" in failed.data.tags["hybridlab.error"]


def test_a_complete_sweep_reconciles_its_child_runs_with_rays_trials(tmp_path: Path) -> None:
    """Runs of trials Ray no longer knows are deleted; runs a killed driver left ``running`` although Ray knows
    the trial as finished are closed by what was logged, or as failed with Ray's error when Ray could not
    start the trial again (a checkpoint gone from storage)."""
    from mlflow.entities import Metric

    from sweeps.runner import _reconcile
    from sweeps.tracking import client, ensure_experiment, finish_run, start_run

    c = client(tmp_path)
    exp = ensure_experiment(c, "orphans", tmp_path)
    parent = start_run(c, exp, "orphans", {"hybridlab.role": "sweep"})
    runs = {}
    for name, last_step in [("finished", 60), ("stopped", 20), ("closed", 60), ("unknown", 10), ("lost", 30)]:
        tags = {"hybridlab.status": "running", "hybridlab.trial_id": name}
        runs[name] = start_run(c, exp, name, tags, parent_run_id=parent)
        c.log_batch(runs[name], metrics=[Metric("val/loss", 3.0, 0, s) for s in range(10, last_step + 1, 10)])
    finish_run(c, runs["closed"], "ok")
    known = {"finished": None, "stopped": None, "closed": None, "lost": "ValueError: Could not recover from checkpoint"}
    assert _reconcile(c, exp, parent, known, steps=60) == (1, 3)
    tags = {name: c.get_run(rid).data.tags for name, rid in runs.items()}
    assert tags["finished"]["hybridlab.status"] == "ok" and c.get_run(runs["finished"]).info.status == "FINISHED"
    assert tags["stopped"]["hybridlab.status"] == "pruned" and "driver stopped" in tags["stopped"]["hybridlab.error"]
    assert tags["lost"]["hybridlab.status"] == "failed" and "Could not recover" in tags["lost"]["hybridlab.error"]
    assert c.get_run(runs["unknown"]).info.lifecycle_stage == "deleted"
    assert _reconcile(c, exp, parent, known, steps=60) == (0, 0)
