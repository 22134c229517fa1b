"""Training throughput measurement (``hybridlab bench train``) on CPU: what it reports and how."""

from __future__ import annotations

import json

import pytest

from analysis.bench import bench_train, build_train_step, device_peak_flops
from blocks import ModelConfig
from sweeps.cli import main


def test_bench_train_reports_throughput_memory_and_the_paths_taken() -> None:
    cfg = ModelConfig(pattern="M-F-A[window=8]-F", d_model=32, mixers={"A": {"heads": 2}})
    r = bench_train(cfg, vocab_size=50, seq_len=32, batch=2, backend="auto", steps=2, warmup=1, device="cpu")
    assert r.backend == {"M": "reference", "F": "reference", "A": "reference"} and r.kernel_routes == {}
    assert r.tokens_per_s == pytest.approx(2 * 32 / (r.step_ms / 1000))
    assert r.step_ms > 0 and r.peak_mem_gb > 0 and not r.compiled
    assert r.mfu is None and device_peak_flops(__import__("torch").device("cpu")) is None  # no peak known for CPUs
    assert r.flops_per_token_train > 0 and r.params > 0
    assert r.loss_last < r.loss_first  # three steps on one fixed batch


def test_a_run_whose_loss_turns_nan_gives_no_figures(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Kernels run at other speeds on NaNs (a broken kernel option once read as 18% faster): no timing is reported."""
    from analysis.bench import NonFiniteLoss
    from blocks.model import HybridLM

    plain = HybridLM.loss
    monkeypatch.setattr(HybridLM, "loss", lambda self, idx, tgt: plain(self, idx, tgt) * float("nan"))
    cfg = ModelConfig(pattern="A[window=8]-F", d_model=32, mixers={"A": {"heads": 2}})
    with pytest.raises(NonFiniteLoss, match=r"went from nan to nan over 3 steps.*not valid.*parity tests"):
        bench_train(cfg, vocab_size=50, seq_len=16, batch=2, steps=2, warmup=1, device="cpu")
    rc = main(["bench", "train", "--pattern", "A[window=8]-F", "--d-model", "32", "--vocab", "40", "--seq-len", "16",
               "--batch", "2", "--steps", "1", "--warmup", "0", "--json"])
    captured = capsys.readouterr()
    assert rc == 1 and captured.out == "" and "bench train: the loss of A[window=8]-F went from nan" in captured.err


def test_the_benchmark_step_trains_the_model_it_built_and_is_seeded() -> None:
    """``build_train_step`` is the step ``bench_train`` times and ``benchmarks/profile_step.py`` profiles."""
    import torch

    cfg = ModelConfig(pattern="A[window=8]-F", d_model=32, mixers={"A": {"heads": 2}})
    a = build_train_step(cfg, vocab_size=50, seq_len=16, batch=2, device="cpu", loss_chunk=8)
    b = build_train_step(cfg, vocab_size=50, seq_len=16, batch=2, device="cpu")
    assert a.backends == {"A": "reference", "F": "reference"} and a.device.type == "cpu" and a.model.loss_chunk == 8
    before = [p.detach().clone() for p in a.model.parameters()]
    assert all(torch.equal(p, q) for p, q in zip(before, b.model.parameters(), strict=True))  # same seed
    a.step()
    assert all(p.grad is None for p in a.model.parameters())  # the optimizer step cleared them
    assert any(not torch.equal(p, q) for p, q in zip(before, a.model.parameters(), strict=True))


def test_bench_train_cli_prints_one_json_row_per_backend(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "train", "--pattern", "A[window=8]-F", "--d-model", "32", "--vocab", "40", "--seq-len", "16",
               "--batch", "2", "--steps", "1", "--warmup", "1", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["pattern"] for row in rows] == ["A[window=8]-F"]  # no reference contrast without CUDA
    assert rows[0]["seq_len"] == 16 and rows[0]["device"] == "cpu"


def test_bench_train_needs_a_preset_or_a_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "train"]) == 2
    assert "needs --preset NAME or --pattern PATTERN" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "expected"), [("--steps", "0", ">= 1"), ("--warmup", "-1", ">= 0"),
                                                         ("--steps", "many", ">= 1")])
def test_bench_train_step_counts_are_checked_before_anything_is_built(
    flag: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "train", "--pattern", "F", flag, value])
    assert exc.value.code == 2
    assert f"argument {flag}: expected an integer {expected}; got {value!r}" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_a_kernel_training_step_never_waits_on_the_host(compile: bool) -> None:
    """Issue 6's "no host syncs in the step": after warm-up (FlexAttention's block mask, compilation), a kernel-path
    step of an M/F/A model runs under ``torch.cuda.set_sync_debug_mode("error")``, which raises on any
    synchronising call (``.item()``, device-to-host copies, ``nonzero``)."""
    import torch

    cfg = ModelConfig(pattern="M-F-A[window=32]-F", d_model=64, mixers={"A": {"heads": 2}})
    built = build_train_step(cfg, vocab_size=128, seq_len=96, batch=2, backend="kernel", device="cuda",
                             compile=compile)
    for _ in range(2):
        built.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            built.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert all(p.isfinite().all() for p in built.model.parameters())
