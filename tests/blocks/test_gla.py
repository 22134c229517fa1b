"""GLA (``G``): the chunked reference op against the per-token recurrence (values and gradients, odd
sizes, a remainder chunk, T=1, gates strong enough to overflow the naive chunk form), the module
against its naive forward, Samba's default sizes, config errors and the ``log_forget`` diagnostic.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from blocks.diagnostics import capture
from blocks.mixers.base import ConfigError, apply_overrides
from blocks.mixers.gla import GLA, GLAConfig
from blocks.ops.gla import reference

F64 = torch.float64


def make_inputs(B: int, T: int, H: int, K: int, V: int, gate_shift: float = 0.0, dtype=F64, seed: int = 42):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g, dtype=dtype)
    gk = F.logsigmoid(torch.randn(B, T, H, K, generator=g, dtype=dtype) * 3 + gate_shift)
    return [t.requires_grad_() for t in (q, k, v, gk)]


def grads(fn, inputs, w):
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    (out * w).sum().backward()
    return out.detach(), [t.grad.clone() for t in inputs]


def check_against_recurrence(B, T, H, K, V, chunk_size, gate_shift=0.0, atol=1e-9):
    inputs = make_inputs(B, T, H, K, V, gate_shift)
    w = torch.randn(B, T, H, V, dtype=F64)
    scale = K**-0.5
    o, g = grads(lambda *a: reference.chunk_gla(*a, scale, chunk_size), inputs, w)
    o_ref, g_ref = grads(lambda *a: reference.recurrent_gla(*a, scale), inputs, w)
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, o_ref, atol=atol, rtol=atol)
    for name, a, b in zip("q k v gk".split(), g, g_ref, strict=True):
        assert torch.isfinite(a).all(), f"grad of {name} is not finite"
        torch.testing.assert_close(a, b, atol=atol, rtol=atol, msg=lambda s, n=name: f"grad of {n}: {s}")


@pytest.mark.parametrize(
    "B,T,H,K,V,C",
    [
        (2, 37, 2, 10, 20, 8),
        (2, 37, 3, 12, 7, 16),
        (1, 77, 2, 6, 5, 32),
        (2, 1, 2, 10, 20, 8),
        (1, 40, 1, 4, 4, 24),
    ],
    ids=["B2-T37-H2-K10-V20-C8", "B2-T37-H3-K12-V7-C16", "B1-T77-C32", "T1", "B1-T40-C24"],
)
def test_chunk_equals_recurrence_values_and_gradients(B, T, H, K, V, C) -> None:
    check_against_recurrence(B, T, H, K, V, C)


@pytest.mark.parametrize("C", [8, 24, 32, 48])
def test_subchunked_path_equals_recurrence(C: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference, "SPAN_LIMIT", -1.0)  # force the any-gate-strength path
    check_against_recurrence(2, 77, 2, 6, 5, C)


@pytest.mark.parametrize("shift", [-40.0, -400.0])
def test_strong_gates_stay_finite_and_exact(shift: float) -> None:
    # log-gates around -40 (-400) per token: a 64-token chunk spans ~e^-2560 (e^-25600), far past float64's
    # e^-745, so exp(-cumsum) of the naive chunk form is inf; forgetting is near total but not exactly.
    check_against_recurrence(2, 77, 2, 6, 5, 64, gate_shift=shift)


def test_strong_gates_in_float32() -> None:
    q, k, v, gk = make_inputs(2, 130, 2, 8, 8, gate_shift=-30.0)
    o32 = reference.chunk_gla(*(t.detach().float().requires_grad_() for t in (q, k, v, gk)), 8**-0.5, 64)
    assert torch.isfinite(o32).all()
    o64 = reference.recurrent_gla(q, k, v, gk, 8**-0.5)
    torch.testing.assert_close(o32.double(), o64.detach(), atol=1e-4, rtol=1e-4)
    o32.sum().backward()


def test_output_keeps_low_precision_dtype() -> None:
    q, k, v, gk = (t.detach().to(torch.bfloat16) for t in make_inputs(1, 19, 2, 8, 8))
    o = reference.chunk_gla(q, k, v, gk.float(), 8**-0.5, 8)
    assert o.dtype == torch.bfloat16
    ref = reference.recurrent_gla(q.float(), k.float(), v.float(), gk.float(), 8**-0.5)
    torch.testing.assert_close(o.float(), ref, atol=3e-2, rtol=3e-2)


def randomized(m: torch.nn.Module) -> torch.nn.Module:
    """Weights far from the tiny fla init, so that 1e-9 comparisons are not trivially met."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
    return m


@pytest.mark.parametrize("d_model,heads,chunk", [(40, 2, 8), (48, 4, 16), (48, None, 64)])
def test_module_forward_equals_naive_forward(d_model: int, heads: int | None, chunk: int) -> None:
    m = randomized(GLA(d_model, GLAConfig(heads=heads, chunk_size=chunk)).to(F64))
    x = torch.randn(2, 37, d_model, dtype=F64, requires_grad=True)
    y = m(x)
    y_ref = m.naive_forward(x)
    assert y.abs().mean() > 0.1
    torch.testing.assert_close(y, y_ref, atol=1e-9, rtol=1e-9)
    (gx,) = torch.autograd.grad(y.sum(), x)
    (gx_ref,) = torch.autograd.grad(y_ref.sum(), x)
    torch.testing.assert_close(gx, gx_ref, atol=1e-9, rtol=1e-9)


def test_single_token() -> None:
    m = randomized(GLA(40, GLAConfig(heads=2, chunk_size=8)).to(F64))
    x = torch.randn(3, 1, 40, dtype=F64)
    torch.testing.assert_close(m(x), m.naive_forward(x), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("d_model,heads,head_k,head_v", [(1536, 4, 192, 384), (2304, 6, 192, 384)])
def test_samba_default_sizes(d_model: int, heads: int, head_k: int, head_v: int) -> None:
    with torch.device("meta"):
        m = GLA(d_model, GLAConfig())
    assert (m.heads, m.key_dim, m.value_dim) == (heads, heads * head_k, heads * head_v)
    assert (m.head_k_dim, m.head_v_dim) == (head_k, head_v)
    assert m.key_dim == d_model // 2 and m.value_dim == d_model
    assert m.state_size(4096) == heads * head_k * head_v
    d, k, r = d_model, d_model // 2, 16
    expected = 2 * d * k + 3 * d * d + (d * r + r * k + k) + head_v
    assert sum(p.numel() for p in m.parameters()) == expected
    assert m.output_projections() == [m.o_proj]


def test_small_width_defaults_to_one_head() -> None:
    m = GLA(40, GLAConfig())
    assert (m.heads, m.head_k_dim, m.head_v_dim) == (1, 20, 40)


@pytest.mark.parametrize(
    "over,d_model,message",
    [
        ({"heads": 0}, None, r"gla: field 'heads' must be a positive int or null"),
        (
            {"heads": 3},
            40,
            r"gla: field 'heads' must divide key_dim=20 and value_dim=40 at d_model=40; "
            r"got heads=3\. Use heads in \{1, 2, 4, 5, 10, 20\}",
        ),
        ({}, 1000 + 384, r"gla: field 'heads' must divide .* got heads=null \(-> 3\)"),
        ({"key_expand": 0.0}, None, r"gla: field 'key_expand' must be a positive number; got 0.0"),
        ({"value_expand": float("nan")}, None, r"gla: field 'value_expand' must be a positive number"),
        (
            {"key_expand": 0.01},
            40,
            r"gla: field 'key_expand'=0.01 gives a width of .* = 0 at d_model=40; raise",
        ),
        ({"gate_rank": 0}, None, r"gla: field 'gate_rank' must be a positive int"),
        ({"gate_normalizer": -1.0}, None, r"gla: field 'gate_normalizer' must be a positive number"),
        ({"chunk_size": 0}, None, r"gla: field 'chunk_size' must be a positive int"),
    ],
)
def test_config_errors_name_the_field_and_fix(over: dict, d_model: int | None, message: str) -> None:
    cfg = apply_overrides(GLAConfig(), over, "test")
    with pytest.raises(ConfigError, match=message):
        cfg.validate(d_model)


def test_config_type_errors_come_from_the_base() -> None:
    with pytest.raises(ConfigError, match=r"field 'heads' must be int or null; got 'four'"):
        apply_overrides(GLAConfig(), {"heads": "four"}, "model.mixers.G")


def test_log_forget_diagnostic() -> None:
    m = GLA(48, GLAConfig(heads=2, chunk_size=8))
    x = torch.randn(2, 13, 48)
    with capture(m) as cap:
        m(x)
    (rec,) = cap.get("log_forget")
    assert rec.value.shape == (2, 13, 2, 12)
    assert (rec.value <= 0).all()
    expected = F.logsigmoid(m.gk_proj(x)) / 16
    torch.testing.assert_close(rec.value, expected.view(2, 13, 2, 12))


def test_kernel_status_on_cpu_and_lazy_import() -> None:
    assert "fla" not in sys.modules or torch.cuda.is_available()
    if not torch.cuda.is_available():
        status = GLA.kernel_status()
        assert isinstance(status, str) and "CUDA" in status


def test_flops_count_projections_and_chunks() -> None:
    m = GLA(48, GLAConfig(heads=2, chunk_size=16))
    proj = sum(2 * p.numel() for p in m.parameters() if p.dim() == 2) + m.key_dim
    assert m.flops(1) > proj
    assert m.flops(16) == m.flops(4096) > m.flops(8)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.gpu
@pytest.mark.skipif(GLA.kernel_status() is not None, reason=str(GLA.kernel_status()))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 5e-3), (torch.bfloat16, 3e-2)], ids=["fp32", "bf16"])
@pytest.mark.parametrize("T", [1, 263])
def test_kernel_matches_reference(dtype: torch.dtype, tol: float, T: int) -> None:
    from blocks.ops.gla import kernel

    torch.manual_seed(42)
    B, H, K, V = 2, 3, 64, 96
    q, k = (torch.randn(B, T, H, K, device="cuda", dtype=dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, device="cuda", dtype=dtype)
    gk = F.logsigmoid(torch.randn(B, T, H, K, device="cuda")) / 16
    w = torch.randn(B, T, H, V, device="cuda")
    outs = []
    for fn in (reference.chunk_gla, kernel.chunk_gla):
        inputs = [t.clone().requires_grad_() for t in (q, k, v, gk)]
        o = fn(*inputs, K**-0.5, 64)
        (o.float() * w).sum().backward()
        outs.append([o] + [t.grad for t in inputs])
    scale = max(t.float().norm().item() for t in outs[0])
    for name, a, b in zip(["o", "dq", "dk", "dv", "dgk"], outs[1], outs[0], strict=True):
        if not b.any():
            # at T=1 the gate cancels (exp(g_t - g_t)), so the reference dgk is exactly 0 and a relative
            # error is undefined; the kernel's rounding noise must be negligible next to the other tensors
            assert a.float().norm().item() < tol * 1e-3 * scale, f"{name}: |kernel| {a.float().norm():.2e} for a zero reference"
            continue
        assert rel_err(a, b) < tol, f"{name}: relative error {rel_err(a, b):.2e}"


@pytest.mark.gpu
@pytest.mark.skipif(GLA.kernel_status() is not None, reason=str(GLA.kernel_status()))
def test_module_kernel_backend_matches_reference() -> None:
    torch.manual_seed(0)
    m = GLA(256, GLAConfig(heads=2)).cuda()
    x = torch.randn(2, 200, 256, device="cuda")
    y_ref = m(x)
    m.set_backend("kernel")
    assert rel_err(m(x), y_ref) < 5e-3
