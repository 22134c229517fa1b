"""Kernel warm-up: each kernel signature is run once per cache, under a lock other processes wait on."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from blocks import HybridLM, ModelConfig
from sweeps.config import RunConfig, to_plain
from sweeps.warmup import kernel_signature, kernel_units, needs_warmup, prewarm, warm_dir, warm_kernels


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton"))
    return tmp_path / "triton"


def _run_config(pattern: str = "M-F-A[window=8]-F", **train: object) -> RunConfig:
    cfg = RunConfig()
    cfg.model = ModelConfig(pattern=pattern, d_model=32, vocab_size=40, mixers={"A": {"heads": 2}})
    cfg.data.seq_len, cfg.data.eval_lengths = 16, [16, 32]
    cfg.train = dataclasses.replace(cfg.train, **{"batch_size": 2, "eval_batch_size": 2, **train})
    return cfg


def _model(cfg: RunConfig) -> HybridLM:
    torch.manual_seed(0)
    model = HybridLM(cfg.model)
    model.set_backend("reference", "cpu")
    return model


def test_only_cuda_runs_with_kernels_or_compilation_need_warming() -> None:
    model = _model(_run_config())
    assert not needs_warmup(model, torch.device("cuda"))  # every mixer on its reference path
    model.compile_sublayers(backend="aot_eager")
    assert not needs_warmup(model, torch.device("cpu"))
    assert needs_warmup(model, torch.device("cuda"))


def test_the_signature_changes_with_anything_that_picks_a_kernel_shape() -> None:
    cpu = torch.device("cpu")
    cfg = _run_config()
    base = kernel_signature(_model(cfg), cfg, cpu, use_bf16=True)
    assert kernel_signature(_model(cfg), cfg, cpu, use_bf16=True) == base
    others = [
        (_run_config(batch_size=4), True),
        (_run_config("M-F-A[window=8,heads=4]-F"), True),
        (cfg, False),
    ]
    eval_longer = _run_config()
    eval_longer.data.eval_lengths = [16, 64]
    others.append((eval_longer, True))
    sigs = {kernel_signature(_model(c), c, cpu, use_bf16=bf16) for c, bf16 in others}
    assert base not in sigs and len(sigs) == len(others)


def test_units_are_the_distinct_mixers_and_layouts_share_them() -> None:
    cpu = torch.device("cpu")
    samba = _run_config("(M-F-A[window=8]-F)*2")
    units = kernel_units(_model(samba), samba, cpu, use_bf16=True)
    assert sorted(units.values()) == ["A", "F", "M"]  # eight mixers, three distinct
    llama = _run_config("(A[window=8]-F)*3")
    shared = kernel_units(_model(llama), llama, cpu, use_bf16=True)
    assert set(shared) < set(units)  # its A and F units are the Samba model's
    nope = _run_config("(A[window=8,rope=false]-F)*3")
    assert len(set(kernel_units(_model(nope), nope, cpu, use_bf16=True)) - set(units)) == 1
    compiled = _model(samba)
    compiled.compile_sublayers(backend="aot_eager")
    assert "head" in kernel_units(compiled, samba, cpu, use_bf16=True).values()


def test_a_parallel_sublayer_shares_its_mixers_units_unless_compiled() -> None:
    """Eager, ``(M|A)`` runs the same M and A kernels as M and A alone; compiled, its fused graph is its own."""
    cpu = torch.device("cpu")
    apart, together = _run_config("M-F-A[window=8]-F"), _run_config("(M|A[window=8])-F")
    assert kernel_units(_model(together), together, cpu, True) == kernel_units(_model(apart), apart, cpu, True)
    compiled_apart, compiled_together = _model(apart), _model(together)
    for m in (compiled_apart, compiled_together):
        m.compile_sublayers(backend="aot_eager")
    units = kernel_units(compiled_together, together, cpu, True)
    assert sorted(units.values()) == ["F", "M|A (first)", "head"]
    assert len(set(units) - set(kernel_units(compiled_apart, apart, cpu, True))) == 1  # only M|A is new


def test_a_mixer_unit_runs_the_mixer_after_its_sublayers_norm(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _run_config("(M|A[window=8])-F")
    model = _model(cfg)
    seen: list[str] = []
    for block in model.layers:
        block.norm.register_forward_hook(lambda *a: seen.append("norm"))
        for m in block.mixers:
            m.register_forward_hook(lambda mod, *a: seen.append(mod.symbol))
    r = warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False)
    assert (r.units, r.units_run) == (3, 3)
    # per unit: one training forward and one per evaluation length (16, 32), each the norm then the mixer
    assert seen == ["norm", "M"] * 3 + ["norm", "A"] * 3 + ["norm", "F"] * 3
    progress = capsys.readouterr().err.splitlines()  # minutes per unit on a cold GPU: each one is announced
    assert progress[0] == "kernel warm-up: M (batch 2 x 16, evaluation lengths [16, 32]) ..."
    assert [line.split(" done in ")[0] for line in progress[1::2]] == [f"kernel warm-up: {u}" for u in "MAF"]


def test_the_first_call_warms_and_leaves_the_model_as_it_was(cache: Path) -> None:
    cfg = _run_config()
    model = _model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    first = warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False)
    assert (first.cache, first.units, first.units_run) == ("cold", 3, 3) and first.seconds > 0
    markers = [json.loads(p.read_text())["unit"] for p in warm_dir().glob("*.json")]
    assert sorted(markers) == ["A", "F", "M"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and model.training
    assert torch.equal(torch.get_rng_state(), rng)  # the run's own random stream is untouched
    again = warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False)
    assert (again.cache, again.signature, again.units_run) == ("warm", first.signature, 0)
    other = _run_config("(A[window=8]-F)*2-G")  # shares A and F: only G runs
    more = warm_kernels(_model(other), other, torch.device("cpu"), use_bf16=False)
    assert (more.cache, more.units, more.units_run) == ("cold", 3, 1)
    assert warm_dir().parent == cache


def test_a_compiled_model_warms_its_head_too(cache: Path) -> None:
    cfg = _run_config("A[window=8]-F")
    model = _model(cfg)
    model.compile_sublayers(backend="aot_eager")
    r = warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False)
    assert (r.units, r.units_run) == (3, 3) and all(p.grad is None for p in model.parameters())


def test_a_process_arriving_while_another_warms_waits_instead_of_warming_again(cache: Path) -> None:
    """The test holds the unit's lock (another process warming it); a second process blocks on it and, once
    the marker is written and the lock released, goes on without running the unit itself."""
    cfg = _run_config("F")
    units = kernel_units(_model(cfg), cfg, torch.device("cpu"), use_bf16=False)
    (sig,) = units
    child = textwrap.dedent(
        f"""
        import json, sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_warmup import _model, _run_config
        from sweeps import warmup
        warmup._run_unit = lambda *a: sys.exit("ran the unit again")
        cfg = _run_config("F")
        model = _model(cfg)
        print("ready", flush=True)
        r = warmup.warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False)
        print(json.dumps([r.cache, r.waited_s, r.units_run]))
        """
    )
    with open(warm_dir() / f"{sig}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        assert proc.poll() is None  # blocked on the lock
        (warm_dir() / f"{sig}.json").write_text("{}")
        fcntl.flock(lock, fcntl.LOCK_UN)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    kind, waited, ran = json.loads(out.strip().splitlines()[-1])
    assert (kind, ran) == ("waited", 0) and waited >= 1.0


def test_without_waiting_a_unit_another_process_holds_is_skipped_and_counted(cache: Path) -> None:
    cfg = _run_config("M-F")
    model = _model(cfg)
    held, other = kernel_units(model, cfg, torch.device("cpu"), use_bf16=False)
    with open(warm_dir() / f"{held}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False, wait=False)
        assert (r.cache, r.units_run, r.units_busy) == ("cold", 1, 1)
        assert not (warm_dir() / f"{held}.json").exists() and (warm_dir() / f"{other}.json").exists()
        again = warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False, wait=False)
        assert (again.cache, again.units_run, again.units_busy) == ("busy", 0, 1)
    last = warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False)
    assert (last.cache, last.units_run, last.units_busy) == ("cold", 1, 0)


def test_a_prewarm_worker_starts_at_its_share_of_the_list_and_comes_back_for_units_others_held(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two layouts, worker 1 of 2: it starts on the second layout, skips the unit the test holds (another
    worker running it), and once that lock is free without a marker (the other worker died) runs it itself."""
    import threading

    from sweeps import warmup

    monkeypatch.setattr(warmup, "needs_warmup", lambda *a: True)  # on CPU nothing would need warming
    first, second = _run_config("F-A[window=8]"), _run_config("M-F")
    for c in (first, second):
        c.train.device = "cpu"
    shared = next(s for s, what in kernel_units(_model(second), second, torch.device("cpu"), False).items() if what == "F")
    records: list[dict[str, object]] = []
    with open(warm_dir() / f"{shared}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: records.extend(prewarm([to_plain(first), to_plain(second)], 1, 2)))
        worker.start()
        deadline = time.monotonic() + 120
        while len(list(warm_dir().glob("*.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        assert len(list(warm_dir().glob("*.json"))) == 2 and not records  # M and A; F is held, so it waits
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(timeout=120)
    assert [(r["pattern"], r["cache"], r["units_busy"]) for r in records] == [
        ("M-F", "cold", 1), ("F-A[window=8]", "cold", 1), ("M-F", "cold", 0), ("F-A[window=8]", "warm", 0)
    ]
    assert sum(r["units_run"] for r in records) == 3 and len(list(warm_dir().glob("*.json"))) == 3


def test_each_gpu_node_gets_a_warm_up_worker_per_layout_within_its_cpus() -> None:
    from sweeps.runner import _warm_workers

    assert [_warm_workers(12, 16), _warm_workers(12, 2), _warm_workers(3, 64), _warm_workers(5, 1)] == [8, 1, 3, 1]


def test_prewarm_of_a_reference_config_on_cpu_has_nothing_to_do(cache: Path) -> None:
    cfg = _run_config()
    cfg.model.backend = "reference"
    cfg.train.device = "cpu"
    assert prewarm([to_plain(cfg)]) == [{"pattern": "M-F-A[window=8]-F", "worker": 0, "cache": "none"}]


def test_cpu_sweeps_reference_sweeps_and_opted_out_sweeps_skip_the_pre_warm() -> None:
    from sweeps.runner import _prewarm

    cfg = _run_config()
    assert _prewarm(cfg, quiet=True) == []  # sweep.gpus_per_trial: 0, a CPU sweep
    cfg.sweep.gpus_per_trial = 0.25
    cfg.model.backend = "reference"
    assert _prewarm(cfg, quiet=True) == []  # no kernels and nothing compiled
    cfg.model.backend, cfg.train.warm_kernels = "auto", False
    assert _prewarm(cfg, quiet=True) == []



def test_a_compiled_models_first_sublayer_is_a_unit_run_in_its_own_form(cache: Path) -> None:
    """The first sublayer takes the stream alone (no residual yet), every later one an (output, residual) pair:
    compiled, those are two graphs, so the first sublayer is warmed in its own form (and a later sublayer of the
    same kind in the pair form)."""
    cfg = _run_config("(M-F-A[window=8]-F)*2")
    model = _model(cfg)
    model.compiled = "inductor"  # what compile_sublayers records; which forms run does not depend on the compiler
    calls: list[tuple[int, bool]] = []
    for i, block in enumerate(model.layers):
        block.register_forward_pre_hook(lambda mod, args, i=i: calls.append((i, len(args) == 1 or args[1] is None)))
    units = kernel_units(model, cfg, torch.device("cpu"), False)
    assert list(units.values()) == ["M (first)", "F", "A", "M", "head"]
    r = warm_kernels(model, cfg, torch.device("cpu"), use_bf16=False)
    assert (r.units, r.units_run) == (5, 5)
    # each sublayer unit: a training forward, then one per evaluation length (16, 32); residual None only for the first
    assert calls == [(0, True)] * 3 + [(1, False)] * 3 + [(2, False)] * 3 + [(4, False)] * 3
    calls.clear()
    model.loss(*(torch.randint(0, 40, (2, 16)) for _ in range(2)))
    assert calls[:2] == [(0, True), (1, False)]  # as the training step calls them
