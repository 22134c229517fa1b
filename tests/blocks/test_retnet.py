"""RetNet (``R``): the chunked reference op against the per-token recurrence (values and gradients, odd
sizes, a remainder chunk, T=1, very strong decay), the fixed decays (and fla's formula), RoPE's
convention, the module against its naive forward, Samba's default sizes and config errors.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch

from blocks.mixers.base import ConfigError, apply_overrides
from blocks.mixers.retnet import RetNet, RetNetConfig, retention_log_decay
from blocks.ops.retention import reference
from blocks.ops.rope import rope

F64 = torch.float64


def check_against_recurrence(B, T, H, K, V, chunk_size, log_decay, atol=1e-9):
    g = torch.Generator().manual_seed(42)
    q, k = (torch.randn(B, T, H, K, generator=g, dtype=F64, requires_grad=True) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=g, dtype=F64, requires_grad=True)
    ld = log_decay.clone().requires_grad_()
    w = torch.randn(B, T, H, V, generator=g, dtype=F64)
    results = []
    for fn in (
        lambda *a: reference.chunk_retention(*a, K**-0.5, chunk_size),
        lambda *a: reference.recurrent_retention(*a, K**-0.5),
    ):
        out = fn(q, k, v, ld)
        grads = torch.autograd.grad((out * w).sum(), (q, k, v, ld))
        results.append((out, grads))
    (o, g), (o_ref, g_ref) = results
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, o_ref, atol=atol, rtol=atol)
    for name, a, b in zip(["q", "k", "v", "log_decay"], g, g_ref, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=atol, rtol=atol, msg=lambda s, n=name: f"grad of {n}: {s}")


@pytest.mark.parametrize(
    "B,T,H,K,V,C",
    [
        (2, 37, 3, 10, 20, 8),
        (2, 37, 2, 12, 7, 16),
        (1, 40, 4, 6, 5, 64),
        (2, 1, 2, 10, 20, 8),
        (1, 33, 2, 4, 4, 5),
    ],
    ids=["B2-T37-H3-K10-V20-C8", "B2-T37-H2-K12-V7-C16", "B1-T40-C64", "T1", "B1-T33-C5"],
)
def test_chunk_equals_recurrence_values_and_gradients(B, T, H, K, V, C) -> None:
    check_against_recurrence(B, T, H, K, V, C, retention_log_decay(H))


def test_strong_decay_stays_finite_and_exact() -> None:
    check_against_recurrence(2, 37, 2, 6, 5, 16, torch.tensor([-50.0, -800.0], dtype=F64))


def test_fixed_decays() -> None:
    gamma = retention_log_decay(4).exp()
    torch.testing.assert_close(
        gamma, torch.tensor([1 - 1 / 32, 1 - 1 / 64, 1 - 1 / 128, 1 - 1 / 256], dtype=F64)
    )
    # fla 0.6.0 ops/retention/chunk.py, the decay its kernel hard-codes (in float32)
    H = 9
    fla = (1 - 2.0 ** (-5.0 - torch.arange(H, dtype=torch.float))).log()
    torch.testing.assert_close(retention_log_decay(H).float(), fla, atol=0, rtol=1e-6)


def test_the_shared_rope_retnet_uses_is_half_split_and_relative() -> None:
    x = torch.zeros(1, 3, 1, 4, dtype=F64)
    x[..., 0] = 1.0
    y = rope(x)
    for t in range(3):  # channel 0 rotates with channel 2 (= 0 + D/2) at frequency base^0 = 1
        torch.testing.assert_close(y[0, t, 0], torch.tensor([math.cos(t), 0, math.sin(t), 0], dtype=F64))
    q, k = torch.randn(2, 1, 6, 1, 8, dtype=F64).unbind(0)
    qr, kr = rope(q), rope(k)
    dots = qr[0, :, 0] @ kr[0, :, 0].T  # (T, T)
    shifted_q, shifted_k = rope(torch.cat([q[:, :1], q], 1)), rope(torch.cat([k[:, :1], k], 1))
    torch.testing.assert_close(shifted_q[0, 1:, 0] @ shifted_k[0, 1:, 0].T, dots)


def randomized(m: torch.nn.Module) -> torch.nn.Module:
    """Weights far from the tiny fla init, so that 1e-9 comparisons are not trivially met."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
    return m


@pytest.mark.parametrize(
    "d_model,over",
    [
        (40, {"heads": 2, "chunk_size": 8}),
        (48, {"heads": 4, "chunk_size": 16}),
        (48, {"heads": 3, "rope": False, "key_expand": 0.5, "chunk_size": 8}),
        (40, {}),
    ],
)
def test_module_forward_equals_naive_forward(d_model: int, over: dict) -> None:
    m = randomized(RetNet(d_model, RetNetConfig(**over)).to(F64))
    x = torch.randn(2, 37, d_model, dtype=F64, requires_grad=True)
    y = m(x)
    y_ref = m.naive_forward(x)
    assert y.abs().mean() > 0.1
    torch.testing.assert_close(y, y_ref, atol=1e-9, rtol=1e-9)
    (gx,) = torch.autograd.grad(y.sum(), x)
    (gx_ref,) = torch.autograd.grad(y_ref.sum(), x)
    torch.testing.assert_close(gx, gx_ref, atol=1e-9, rtol=1e-9)


def test_single_token() -> None:
    m = randomized(RetNet(40, RetNetConfig(heads=2, chunk_size=8)).to(F64))
    x = torch.randn(3, 1, 40, dtype=F64)
    torch.testing.assert_close(m(x), m.naive_forward(x), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("d_model,heads", [(1536, 6), (2304, 9)])
def test_samba_default_sizes(d_model: int, heads: int) -> None:
    with torch.device("meta"):
        m = RetNet(d_model, RetNetConfig())
    assert (m.heads, m.head_k_dim, m.head_v_dim) == (heads, 256, 512)
    assert (m.key_dim, m.value_dim) == (d_model, 2 * d_model)
    assert m.state_size(4096) == heads * 256 * 512
    d = d_model
    assert sum(p.numel() for p in m.parameters()) == 2 * d * d + 3 * d * 2 * d + 512
    assert m.output_projections() == [m.o_proj]


@pytest.mark.parametrize(
    "over,d_model,message",
    [
        ({"heads": 0}, None, r"retnet: field 'heads' must be a positive int or null"),
        (
            {"heads": 3},
            40,
            r"retnet: field 'heads' must divide key_dim=40 and value_dim=80 at d_model=40; "
            r"got heads=3\. Use heads in \{1, 2, 4, 5, 8, 10, 20, 40\}",
        ),
        (
            {"heads": 8},
            40,
            r"retnet: field 'rope' needs an even head_k_dim; key_dim=40 / heads=8 gives 5 .*"
            r"set rope=false",
        ),
        ({"key_expand": -1.0}, None, r"retnet: field 'key_expand' must be a positive number"),
        ({"value_expand": 0.001}, 40, r"retnet: field 'value_expand'=0.001 gives a width of .* = 0"),
        ({"chunk_size": 0}, None, r"retnet: field 'chunk_size' must be a positive int"),
    ],
)
def test_config_errors_name_the_field_and_fix(over: dict, d_model: int | None, message: str) -> None:
    cfg = apply_overrides(RetNetConfig(), over, "test")
    with pytest.raises(ConfigError, match=message):
        cfg.validate(d_model)
    RetNetConfig(heads=8, rope=False).validate(40)


def test_kernel_status_on_cpu_and_lazy_import() -> None:
    assert "fla" not in sys.modules or torch.cuda.is_available()
    if not torch.cuda.is_available():
        status = RetNet.kernel_status()
        assert isinstance(status, str) and "CUDA" in status


def test_flops_count_projections_rope_and_chunks() -> None:
    m = RetNet(48, RetNetConfig(heads=2, chunk_size=16))
    proj = sum(2 * p.numel() for p in m.parameters() if p.dim() == 2)
    assert m.flops(1) > proj
    assert m.flops(16) == m.flops(4096) > m.flops(8)
    assert RetNet(48, RetNetConfig(heads=2, rope=False)).flops(16) == m.flops(16) - 6 * m.key_dim


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.gpu
@pytest.mark.skipif(RetNet.kernel_status() is not None, reason=str(RetNet.kernel_status()))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 5e-3), (torch.bfloat16, 3e-2)], ids=["fp32", "bf16"])
@pytest.mark.parametrize("T", [1, 263])
def test_kernel_matches_reference(dtype: torch.dtype, tol: float, T: int) -> None:
    from blocks.ops.retention import kernel

    torch.manual_seed(42)
    B, H, K, V = 2, 3, 64, 128
    q, k = (torch.randn(B, T, H, K, device="cuda", dtype=dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, device="cuda", dtype=dtype)
    ld = retention_log_decay(H, "cuda").float()
    w = torch.randn(B, T, H, V, device="cuda")
    outs = []
    for fn in (reference.chunk_retention, kernel.chunk_retention):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        o = fn(*inputs, ld, K**-0.5, 64)
        (o.float() * w).sum().backward()
        outs.append([o] + [t.grad for t in inputs])
    for name, a, b in zip(["o", "dq", "dk", "dv"], outs[1], outs[0], strict=True):
        assert rel_err(a, b) < tol, f"{name}: relative error {rel_err(a, b):.2e}"


@pytest.mark.gpu
@pytest.mark.skipif(RetNet.kernel_status() is not None, reason=str(RetNet.kernel_status()))
def test_module_kernel_backend_matches_reference() -> None:
    torch.manual_seed(0)
    m = RetNet(256, RetNetConfig(heads=2)).cuda()
    x = torch.randn(2, 200, 256, device="cuda")
    y_ref = m(x)
    m.set_backend("kernel")
    assert rel_err(m(x), y_ref) < 5e-3
