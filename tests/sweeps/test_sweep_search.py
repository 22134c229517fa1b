"""Layout-aware sweeps end to end on a real Ray runtime, Optuna storage and MLflow store: generated
layouts at one parameter budget with two objectives and a constraint, and duplicate samples answered
without training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from test_sweep import _children, _env

pytestmark = pytest.mark.timeout(600)

GENERATED = """
model: {pattern: "M-F", d_model: 32, mixers: {A: {window: 16, heads: 2}, G: {heads: 1}, R: {heads: 1}}}
data: {source: stdlib, seq_len: 32, eval_lengths: [32, 64], max_bytes: 300000}
train: {steps: 4, batch_size: 4, eval_every: 2, log_every: 2, eval_batches: 1, eval_batch_size: 2, lr: 3.0e-3}
sweep:
  name: gen
  num_samples: 4
  max_concurrent: 2
  metric: val/ppl
  scheduler: fifo
  sampler: random
  seed: 3
  layouts: {depth: [2, 4], recurrent: [M, G, R], attention_fraction: [0.0, 0.5, 1.0], placement: [even, first]}
  space: {model.mixers.A.window: {choices: [8, 16]}}
  budget: {params: 60000, tolerance: 0.05, solve: d_model+mlp, multiple_of: 8}
  constraints: {max_attention_layers: 2}
  objectives: {val/ppl: min, perf/tokens_per_s: max}
"""


def _sweep(tmp_path: Path, text: str, name: str) -> tuple[Path, str]:
    """Run ``hybridlab sweep`` on the config ``text``; returns HYBRIDLAB_HOME and the printed summary."""
    home = tmp_path / "home"
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", str(cfg)], env=_env(home),
                          capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home, proc.stdout


def test_generated_layouts_at_one_budget_with_two_objectives(tmp_path: Path) -> None:
    home, stdout = _sweep(tmp_path, GENERATED, "gen")
    assert "Pareto front (val/ppl min, perf/tokens_per_s max" in stdout
    children = _children(home, "gen")
    assert len(children) == 4
    from blocks.pattern import parse
    from search_space.layouts import attention_layers

    for r in children:
        assert r.data.tags["hybridlab.status"] == "ok"
        params = r.data.metrics["model/params"]
        assert abs(params / 60000 - 1) <= 0.05, (r.data.params["pattern"], params)
        pattern = r.data.params["pattern"]
        assert parse(pattern).compact == pattern and attention_layers(pattern) <= 2

    study = optuna.load_study(study_name="gen", storage=f"sqlite:///{home / 'optuna.db'}")
    assert len(study.directions) == 2
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) >= 4 and all(len(t.values) == 2 for t in finished)
    for t in study.trials:
        has_attention = t.user_attrs.get("attention_layers", 0) > 0
        if "infeasible" not in t.user_attrs and t.state == optuna.trial.TrialState.COMPLETE:
            assert ("model.mixers.A.window" in t.params) == has_attention, t.params
    infeasible = [t for t in study.trials if "infeasible" in t.user_attrs]
    assert all(t.state == optuna.trial.TrialState.PRUNED and t.constraints == {"feasible": 1.0} for t in infeasible)

    from analysis.store import client

    c = client(home)
    parent = c.search_runs([c.get_experiment_by_name("gen").experiment_id],
                           filter_string="tags.`hybridlab.role` = 'sweep'")[0]
    assert parent.data.metrics["sweep/infeasible_samples"] == len(infeasible)

    out = subprocess.run([sys.executable, "-m", "sweeps.cli", "compare", "gen", "--json"], env=_env(home),
                         capture_output=True, text=True, timeout=120)
    doc = json.loads(out.stdout)
    assert doc["objectives"] == {"val/ppl": "min", "perf/tokens_per_s": "max"}
    front = [t for t in doc["trials"] if t["pareto"]]
    assert front and {t["run_id"] for t in front} == set(doc["pareto_front"])
    for a in front:  # nothing finished beats a front trial on both objectives
        for b in doc["trials"]:
            assert not (b["val/ppl"] < a["val/ppl"] and b["tokens_per_s"] > a["tokens_per_s"])


DEDUP = """
model: {pattern: "M-F", d_model: 32, mixers: {A: {window: 16, heads: 2}}}
data: {source: stdlib, seq_len: 32, eval_lengths: [32], max_bytes: 300000}
train: {steps: 4, batch_size: 4, eval_every: 2, log_every: 2, eval_batches: 1, eval_batch_size: 2, lr: 3.0e-3}
sweep:
  name: dedup
  num_samples: 2
  max_concurrent: 1
  scheduler: fifo
  patterns: ["(M-F)*2", "M-F-M-F", "A-F"]
"""


def test_a_duplicate_canonical_layout_is_not_retrained(tmp_path: Path) -> None:
    home, stdout = _sweep(tmp_path, DEDUP, "dedup")
    assert "1 duplicate samples answered without training" in stdout
    children = _children(home, "dedup")
    assert sorted(r.data.params["pattern"] for r in children) == ["(M-F)*2", "A-F"]
    study = optuna.load_study(study_name="dedup", storage=f"sqlite:///{home / 'optuna.db'}")
    by_pattern = {t.params["model.pattern"]: t for t in study.trials}
    original, dup = by_pattern["(M-F)*2"], by_pattern["M-F-M-F"]
    assert dup.state == optuna.trial.TrialState.COMPLETE and dup.value == original.value
    assert dup.user_attrs["duplicate_of"]
