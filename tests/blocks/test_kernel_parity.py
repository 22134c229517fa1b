"""GPU kernel paths against the reference paths: forward outputs and every gradient, fp32 and bf16.

Marked ``gpu`` (skipped with a reason on CPU). Each case builds one mixer, runs it on the ``reference``
path in fp32 (the ground truth) and on the ``kernel`` path in the case's dtype, with the same parameters
and input, and compares the output and the gradients of the input and of every parameter by the
relative RMS error (fla's ``assert_close`` ratio) and the max abs error. Odd shapes throughout: T not a
multiple of any chunk or block size, a window larger than T, GQA and MQA. Set HYBRIDLAB_PARITY_JSON to
a path to append every comparison as a JSON line (docs/BENCHMARKS.md quotes that file).
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from blocks import HybridLM, ModelConfig, registry
from blocks.mixers.base import apply_overrides

pytestmark = pytest.mark.gpu

# (id, symbol, d_model, config overrides)
CASES = [
    ("M-d64", "M", 64, {}),
    ("M-d96-state5", "M", 96, {"d_state": 5}),
    ("A-w5-H4", "A", 64, {"heads": 4, "window": 5}),
    ("A-w48-gqa2", "A", 128, {"heads": 4, "kv_heads": 2, "window": 48}),
    ("A-w100gtT-mqa", "A", 128, {"heads": 4, "kv_heads": 1, "window": 100}),
    ("A-full-H2", "A", 128, {"heads": 2, "window": None}),
    ("A-nope-w16", "A", 64, {"heads": 2, "window": 16, "rope": False}),
    ("G-d384", "G", 384, {}),
    ("G-H2-d128", "G", 128, {"heads": 2}),
    ("R-d256", "R", 256, {}),
    ("R-H2-d128", "R", 128, {"heads": 2}),
    ("F-d64", "F", 64, {}),
]
# Relative RMS error bounds: fp32 kernels differ from the reference only by summation order;
# bf16 kernels round inputs and intermediates to 8 mantissa bits.
TOL = {torch.float32: 2e-3, torch.bfloat16: 3e-2}
RECORDS: list[dict] = []


def _record(entry: dict) -> None:
    RECORDS.append(entry)
    path = os.environ.get("HYBRIDLAB_PARITY_JSON")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-12)).item()


def _run(mixer: torch.nn.Module, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    mixer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = mixer(x)
    (y.float() * w).sum().backward()
    grads = {"input": x.grad.float()}
    grads.update({n: p.grad.float() for n, p in mixer.named_parameters()})
    return y.float(), grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("case", "symbol", "d_model", "over"), CASES, ids=[c[0] for c in CASES])
def test_kernel_matches_reference(case: str, symbol: str, d_model: int, over: dict, dtype: torch.dtype) -> None:
    spec = registry.get(symbol)
    status = spec.module.kernel_status()
    if status is not None:
        pytest.skip(status)
    torch.manual_seed(42)
    cfg = apply_overrides(spec.config(), over, case, d_model)
    ref = spec.module(d_model, cfg).cuda()
    ker = spec.module(d_model, cfg).cuda()
    ker.load_state_dict(ref.state_dict())
    ker.set_backend("kernel")
    B, T = 2, 63
    x = torch.randn(B, T, d_model, device="cuda")
    w = torch.randn(B, T, d_model, device="cuda")
    y_ref, g_ref = _run(ref, x, w)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        y_ker, g_ker = _run(ker, x, w)
    failures = []
    for name, a, b in [("output", y_ker, y_ref)] + [(f"grad {n}", g_ker[n], g_ref[n]) for n in g_ref]:
        err = _rel_rms(a, b)
        _record({"case": case, "dtype": str(dtype).split(".")[-1], "tensor": name, "rel_rms": err,
                        "max_abs": (a - b).abs().max().item()})
        if not err <= TOL[dtype]:
            failures.append(f"{name}: rel RMS {err:.2e} > {TOL[dtype]:.0e}")
    assert not failures, f"{case} {dtype}: " + "; ".join(failures)


def test_weights_trained_on_cpu_give_the_same_loss_on_the_gpu_kernels() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(pattern="(M-F-A[window=16]-F)*1-G-R", d_model=128, mixers={"A": {"heads": 2}})
    model = HybridLM(cfg, vocab_size=64)
    model.set_backend("reference", "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = torch.randint(0, 64, (2, 65))
    for _ in range(3):
        loss = model.loss(batch[:, :-1], batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        cpu_loss = model.loss(batch[:, :-1], batch[:, 1:]).item()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    gpu = HybridLM(cfg, vocab_size=64).cuda()
    gpu.load_state_dict(state)
    backends = gpu.set_backend("auto", "cuda")
    with torch.no_grad():
        gpu_loss = gpu.loss(batch[:, :-1].cuda(), batch[:, 1:].cuda()).item()
    _record({"case": "portability", "backends": backends, "cpu_loss": cpu_loss, "gpu_loss": gpu_loss})
    assert abs(gpu_loss - cpu_loss) < 1e-3 * abs(cpu_loss), (cpu_loss, gpu_loss, backends)
