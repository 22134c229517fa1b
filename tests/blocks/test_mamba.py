"""Mamba-1 (``M``) specifics: the chunked reference scan against a plain loop, the module against its
per-token ``naive_forward``, mamba_ssm parameter names and init, Δ diagnostics and config errors.

The generic mixer contract (shapes, causality, registry) is tested in test_mixer_contract.py.
"""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from blocks.diagnostics import capture
from blocks.mixers.base import ConfigError, apply_overrides, linear_flops
from blocks.mixers.mamba import Mamba, MambaConfig
from blocks.ops.selective_scan import reference

SEED = 42
ATOL = 1e-9


def loop_scan(u, delta, A, B, C, D):
    """The recurrence one token at a time, through plain autograd (the scan's ground truth)."""
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = (
            torch.exp(delta[:, :, t, None] * A) * h
            + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        )
        y = (h * C[:, None, :, t]).sum(-1)
        ys.append(y if D is None else y + D * u[:, :, t])
    return torch.stack(ys, dim=-1)


def scan_inputs(batch, d, L, n, dtype=torch.float64, seed=SEED):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, d, L, generator=g, dtype=dtype)
    delta = F.softplus(torch.randn(batch, d, L, generator=g, dtype=dtype) - 1.0)
    A = -torch.exp(torch.randn(d, n, generator=g, dtype=dtype))
    B = torch.randn(batch, n, L, generator=g, dtype=dtype)
    C = torch.randn(batch, n, L, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    return [t.requires_grad_(True) for t in (u, delta, A, B, C, D)]


def perturbed(module: Mamba, seed: int = SEED) -> Mamba:
    """Move every parameter off its init (A_log, D, conv bias are structured there) in float64."""
    module = module.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# ---------------------------------------------------------------- the reference scan


@pytest.mark.parametrize(
    ("L", "chunk"),
    [(37, 8), (37, 32), (64, 32), (1, 32), (5, 32), (37, 1), (2, 1)],
    ids=lambda v: str(v),
)
@pytest.mark.parametrize("with_D", [True, False], ids=["D", "noD"])
def test_scan_matches_loop(L: int, chunk: int, with_D: bool) -> None:
    u, delta, A, B, C, D = scan_inputs(2, 6, L, 5)
    D = D if with_D else None
    y = reference.selective_scan(u, delta, A, B, C, D, chunk=chunk)
    y_ref = loop_scan(u, delta, A, B, C, D)
    torch.testing.assert_close(y, y_ref, atol=ATOL, rtol=0)

    dy = torch.randn_like(y)
    named = {
        k: t for k, t in zip("u delta A B C D".split(), (u, delta, A, B, C, D), strict=True) if t is not None
    }
    grads = torch.autograd.grad((y * dy).sum(), list(named.values()))
    grads_ref = torch.autograd.grad((y_ref * dy).sum(), list(named.values()))
    for name, got, want in zip(named, grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=lambda m, n=name: f"d{n}: {m}")


def test_scan_gradcheck() -> None:
    inputs = scan_inputs(2, 3, 7, 2)
    assert torch.autograd.gradcheck(lambda *xs: reference.selective_scan(*xs, chunk=3), inputs)


def test_scan_noncontiguous_inputs() -> None:
    u, delta, A, B, C, D = scan_inputs(2, 6, 11, 4)
    u_t = u.detach().transpose(1, 2).contiguous().transpose(1, 2)  # same values, (B, L, D) storage
    torch.testing.assert_close(
        reference.selective_scan(u_t, delta, A, B, C, D), loop_scan(u, delta, A, B, C, D), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_scan_low_precision_accumulates_in_fp32(dtype: torch.dtype) -> None:
    xs64 = scan_inputs(2, 8, 40, 4)
    xs = [t.detach().to(dtype).requires_grad_(True) for t in xs64]
    y = reference.selective_scan(*xs)
    assert y.dtype == dtype
    y.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == dtype for t in xs)
    y_ref = loop_scan(*[t.detach().to(dtype).double() for t in xs64])
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(y.double(), y_ref, atol=tol * y_ref.abs().max().item(), rtol=tol)


# ---------------------------------------------------------------- the module


@pytest.mark.parametrize(
    "cfg",
    [
        MambaConfig(d_state=5),
        MambaConfig(expand=1, d_state=3, d_conv=2, dt_rank=3),
        MambaConfig(d_state=4, d_conv=1),
    ],
    ids=["N5", "E1-N3-K2-R3", "N4-K1"],
)
@pytest.mark.parametrize("T", [37, 1, 5])
@pytest.mark.parametrize("chunked", [False, True], ids=["chunk-auto", "chunk4"])
def test_forward_matches_naive(
    cfg: MambaConfig, T: int, chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chunked:  # auto_chunk gives its minimum, 4: T=37 runs 10 chunks, the last one partial
        monkeypatch.setattr(reference, "_CHUNK_ELEMENTS", 1)
    torch.manual_seed(SEED)
    m = perturbed(Mamba(40, cfg))
    x = torch.randn(2, T, 40, dtype=torch.float64, requires_grad=True)
    out = m(x)
    out_naive = m.naive_forward(x)
    assert out.shape == (2, T, 40)
    torch.testing.assert_close(out, out_naive, atol=ATOL, rtol=0)

    dy = torch.randn_like(out)
    params = [x, *m.parameters()]
    grads = torch.autograd.grad((out * dy).sum(), params)
    grads_naive = torch.autograd.grad((out_naive * dy).sum(), params)
    names = ["x", *(n for n, _ in m.named_parameters())]
    for name, got, want in zip(names, grads, grads_naive, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=lambda msg, n=name: f"d{n}: {msg}")


def test_conv_equals_conv1d_module() -> None:
    m = perturbed(Mamba(40, MambaConfig(d_conv=3)))
    x = torch.randn(2, 13, m.d_inner, dtype=torch.float64)
    want = m.conv1d(x.transpose(1, 2))[..., :13].transpose(1, 2)
    torch.testing.assert_close(m._causal_conv(x), want, atol=ATOL, rtol=0)


MAMBA_SSM_KEYS = {
    "in_proj.weight": lambda d, di, r, n, k: (2 * di, d),
    "conv1d.weight": lambda d, di, r, n, k: (di, 1, k),
    "conv1d.bias": lambda d, di, r, n, k: (di,),
    "x_proj.weight": lambda d, di, r, n, k: (r + 2 * n, di),
    "dt_proj.weight": lambda d, di, r, n, k: (di, r),
    "dt_proj.bias": lambda d, di, r, n, k: (di,),
    "A_log": lambda d, di, r, n, k: (di, n),
    "D": lambda d, di, r, n, k: (di,),
    "out_proj.weight": lambda d, di, r, n, k: (d, di),
}


@pytest.mark.parametrize(("d_model", "dt_rank"), [(40, 3), (1536, 96), (2304, 144)])
def test_state_dict_matches_mamba_ssm(d_model: int, dt_rank: int) -> None:
    m = Mamba(d_model, MambaConfig())
    di, n, k = 2 * d_model, 16, 4
    assert m.dt_rank == dt_rank  # ceil(d / 16), samba-facts.md §2.2
    sd = m.state_dict()
    assert set(sd) == set(MAMBA_SSM_KEYS)
    for key, shape in MAMBA_SSM_KEYS.items():
        assert tuple(sd[key].shape) == shape(d_model, di, dt_rank, n, k), key
    expected = (
        2 * di * d_model
        + di * k
        + di
        + di * (dt_rank + 2 * n)
        + dt_rank * di
        + di
        + di * n
        + di
        + di * d_model
    )
    assert sum(p.numel() for p in m.parameters()) == expected


def test_init() -> None:
    torch.manual_seed(SEED)
    cfg = MambaConfig(d_state=7, dt_min=2e-3, dt_max=5e-2)
    m = Mamba(64, cfg)
    dt = F.softplus(m.dt_proj.bias.detach().double())
    assert dt.min() >= cfg.dt_min * (1 - 1e-6) and dt.max() <= cfg.dt_max * (1 + 1e-6)
    assert dt.std() > 0
    assert getattr(m.dt_proj.bias, "_no_reinit", False) is True
    assert m.dt_proj.weight.abs().max() <= m.dt_rank**-0.5
    torch.testing.assert_close(m.A_log.exp(), torch.arange(1.0, 8.0).repeat(m.d_inner, 1))
    assert m.A_log.dtype == torch.float32
    torch.testing.assert_close(m.D.detach(), torch.ones(m.d_inner))
    assert m.output_projections() == [m.out_proj]


def test_dt_init_floor() -> None:
    m = Mamba(64, MambaConfig(dt_min=1e-6, dt_max=2e-6, dt_init_floor=1e-3))
    torch.testing.assert_close(
        F.softplus(m.dt_proj.bias.detach().double()), torch.full((128,), 1e-3, dtype=torch.float64)
    )


def test_delta_diagnostics() -> None:
    m = Mamba(40, MambaConfig(d_state=5))
    x = torch.randn(2, 37, 40)
    with capture(m) as cap:
        out = m(x)
    (rec,) = cap.get("delta")
    assert rec.value.shape == (2, m.d_inner, 37)
    assert (rec.value > 0).all()
    torch.testing.assert_close(out, m(x))
    assert m.diagnostics is None


def test_state_size_and_flops() -> None:
    m = Mamba(40, MambaConfig(d_state=5, d_conv=3))
    di = 80
    assert m.state_size(1) == m.state_size(4096) == di * 5 + di * 2
    linear = linear_flops(m.in_proj, m.x_proj, m.dt_proj, m.out_proj)
    assert m.flops(256) == linear + 2 * di * 3 + 7 * di * 5 + 8 * di


def test_kernel_status_names_the_fix() -> None:
    status = Mamba.kernel_status()
    if status is not None:
        assert "pip install mamba-ssm causal-conv1d" in status


def _silu_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """SiLU(causal depthwise conv) on (B, D, T) with weight (D, K): the semantics of causal-conv1d."""
    K = weight.shape[-1]
    y = F.conv1d(F.pad(x, (K - 1, 0)), weight[:, None, :], bias, groups=x.shape[1])
    return F.silu(y)


@pytest.fixture
def fake_mamba_ssm(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """A stand-in ``mamba_ssm.ops.selective_scan_interface`` on CPU that checks the kernels' argument
    contract (one dtype for u, delta, B, C and z; fp32 A, D and delta bias; unit stride along L) and
    computes what mamba_ssm documents (``selective_scan_ref``, ``mamba_inner_ref``) with the reference
    scan. Without causal-conv1d (``causal_conv1d_fwd_function`` None), as on a machine lacking it."""
    from blocks.ops.selective_scan import kernel

    calls: list[dict] = []

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        assert u.dtype == delta.dtype == B.dtype == C.dtype and u.dtype != torch.float64
        assert z is None or z.dtype == u.dtype
        assert A.dtype == torch.float32 and (D is None or D.dtype == torch.float32)
        assert delta_bias is None or delta_bias.dtype == torch.float32
        calls.append({"fn": "selective_scan_fn", "dtype": u.dtype, "fused": z is not None})
        if delta_bias is not None:
            delta = delta.float() + delta_bias[:, None]
        if delta_softplus:
            delta = F.softplus(delta.float())
        y = reference.selective_scan(u.float(), delta.float(), A, B.float(), C.float(), D)
        if z is not None:
            y = y * F.silu(z.float())
        return y.to(u.dtype)

    def mamba_inner_fn(xz, conv_w, conv_b, x_proj_w, dt_proj_w, out_proj_w, out_proj_b, A, B=None, C=None,
                       D=None, delta_bias=None, delta_softplus=True):
        assert xz.stride(-1) == 1 and conv_w.dim() == 3 and conv_w.shape[1] == 1
        assert B is None and C is None and out_proj_b is None and delta_softplus
        calls.append({"fn": "mamba_inner_fn", "dtype": xz.dtype})
        batch, _, L = xz.shape
        rank, n = dt_proj_w.shape[1], A.shape[1]
        x, z = xz.chunk(2, dim=1)  # (B, d_inner, L)
        x = _silu_conv(x, conv_w[:, 0, :], conv_b)
        x_dbl = F.linear(x.transpose(1, 2).reshape(batch * L, -1), x_proj_w)  # (B·L, rank + 2N)
        delta = (dt_proj_w @ x_dbl[:, :rank].t()).view(-1, batch, L).transpose(0, 1)  # (B, d_inner, L)
        Bm = x_dbl[:, rank : rank + n].view(batch, L, n).transpose(1, 2)  # (B, N, L)
        Cm = x_dbl[:, -n:].view(batch, L, n).transpose(1, 2)  # (B, N, L)
        y = selective_scan_fn(x, delta, A, Bm, Cm, D, z=z, delta_bias=delta_bias, delta_softplus=True)
        return F.linear(y.transpose(1, 2), out_proj_w)

    names = ["mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.selective_scan_interface"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    iface = sys.modules[names[-1]]
    iface.selective_scan_fn = selective_scan_fn
    iface.mamba_inner_fn = mamba_inner_fn
    iface.causal_conv1d_fwd_function = None
    monkeypatch.setitem(sys.modules, "fla", None)  # no fla: the conv is the mixer's own
    kernel.fused_impl.cache_clear()
    kernel._fla_conv.cache_clear()
    yield calls
    kernel.fused_impl.cache_clear()
    kernel._fla_conv.cache_clear()


def test_kernel_wrapper_contract(fake_mamba_ssm: list[dict]) -> None:
    from blocks.ops.selective_scan import kernel

    xs = [t.detach() for t in scan_inputs(2, 6, 9, 4)]
    torch.testing.assert_close(
        kernel.selective_scan(*xs), reference.selective_scan(*xs), atol=1e-5, rtol=1e-5
    )
    u_bf16 = xs[0].to(torch.bfloat16)
    y = kernel.selective_scan(u_bf16, xs[1].float(), *xs[2:])
    assert y.dtype == torch.bfloat16
    assert [c["dtype"] for c in fake_mamba_ssm] == [
        torch.float32,
        torch.float32,
    ]  # delta is never rounded down


def _kernel_vs_reference(d_model: int = 40, d_state: int = 5) -> None:
    """The Mamba kernel path (on the stand-in kernels) computes the reference output and gradients."""
    torch.manual_seed(SEED)
    ref = Mamba(d_model, MambaConfig(d_state=d_state))
    ker = Mamba(d_model, MambaConfig(d_state=d_state))
    ker.load_state_dict(ref.state_dict())
    ker.set_backend("kernel")
    x = torch.randn(2, 11, d_model)
    w = torch.randn(2, 11, d_model)
    outs = []
    for m in (ref, ker):
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        (y * w).sum().backward()
        outs.append((y, xi.grad, {n: p.grad for n, p in m.named_parameters()}))
    (y_ref, dx_ref, g_ref), (y_ker, dx_ker, g_ker) = outs
    torch.testing.assert_close(y_ker, y_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dx_ker, dx_ref, atol=1e-5, rtol=1e-4)
    for name in g_ref:
        torch.testing.assert_close(g_ker[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_kernel_path_without_causal_conv1d_runs_the_gated_scan(fake_mamba_ssm: list[dict]) -> None:
    from blocks.ops.selective_scan import kernel

    assert kernel.fused_impl() == "selective_scan_fn" and kernel.conv_impl() == "torch"
    m = Mamba(16, MambaConfig())
    assert m.kernel_route() is None
    m.set_backend("kernel")
    assert m.kernel_route() == "selective_scan_fn after the torch causal conv"  # the fallback is named
    _kernel_vs_reference()
    assert [c["fn"] for c in fake_mamba_ssm] == ["selective_scan_fn"]
    assert fake_mamba_ssm[0]["fused"]  # bias, softplus and the SiLU(z) gate inside the kernel


def test_kernel_path_with_fla_conv(fake_mamba_ssm: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    from blocks.ops.selective_scan import kernel

    seen = []

    def causal_conv1d(x, weight, bias, activation=None):
        assert activation == "silu" and x.shape[-1] == weight.shape[0]  # (B, T, D), (D, K)
        seen.append(x.shape)
        return _silu_conv(x.transpose(1, 2), weight, bias).transpose(1, 2), None

    for name in ["fla", "fla.modules", "fla.modules.causal_conv1d"]:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["fla.modules.causal_conv1d"].causal_conv1d = causal_conv1d
    kernel._fla_conv.cache_clear()
    assert kernel.conv_impl() == "fla"
    _kernel_vs_reference()
    assert len(seen) == 1 and [c["fn"] for c in fake_mamba_ssm] == ["selective_scan_fn"]


def test_kernel_path_with_causal_conv1d_runs_mamba_inner_fn(fake_mamba_ssm: list[dict]) -> None:
    from blocks.ops.selective_scan import kernel

    sys.modules["mamba_ssm.ops.selective_scan_interface"].causal_conv1d_fwd_function = object()
    kernel.fused_impl.cache_clear()
    assert kernel.fused_impl() == "mamba_inner_fn"
    m = Mamba(16, MambaConfig())
    m.set_backend("kernel")
    assert m.kernel_route() == "mamba_inner_fn"
    _kernel_vs_reference()
    assert [c["fn"] for c in fake_mamba_ssm] == ["mamba_inner_fn", "selective_scan_fn"]


def test_kernel_path_with_a_diagnostic_capture_keeps_delta(fake_mamba_ssm: list[dict]) -> None:
    torch.manual_seed(SEED)
    m = Mamba(40, MambaConfig(d_state=5))
    x = torch.randn(2, 11, 40)
    want = m(x)
    m.set_backend("kernel")
    with capture(m, {"delta"}) as cap:
        got = m(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert [c["fused"] for c in fake_mamba_ssm] == [False] and len(cap.get("delta")) == 1


@pytest.mark.gpu
@pytest.mark.skipif(Mamba.kernel_status() is not None, reason="needs CUDA and mamba_ssm")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kernel_matches_reference(dtype: torch.dtype) -> None:
    from blocks.ops.selective_scan import kernel

    xs = [t.detach().cuda() for t in scan_inputs(2, 60, 63, 16, dtype=torch.float32)]
    xs = [t.to(dtype) if i in (0, 1, 3, 4) else t for i, t in enumerate(xs)]
    xs_ref = [t.detach().clone().requires_grad_(True) for t in xs]
    xs_ker = [t.detach().clone().requires_grad_(True) for t in xs]
    y_ref = reference.selective_scan(*xs_ref)
    y_ker = kernel.selective_scan(*xs_ker)
    dy = torch.randn_like(y_ref)
    (y_ref * dy).sum().backward()
    (y_ker * dy).sum().backward()
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    scale = y_ref.abs().max().item()
    torch.testing.assert_close(y_ker.float(), y_ref.float(), atol=tol * scale, rtol=tol)
    for a, b in zip(xs_ker, xs_ref, strict=True):
        torch.testing.assert_close(
            a.grad.float(), b.grad.float(), atol=tol * b.grad.abs().max().item(), rtol=tol
        )


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("d_state", 0, "field 'd_state' must be >= 1; got 0"),
        ("expand", -1, "field 'expand' must be >= 1; got -1"),
        ("d_conv", 0, "field 'd_conv' must be >= 1; got 0"),
        ("dt_rank", 0, "field 'dt_rank' must be 'auto' or an int >= 1; got 0"),
        ("dt_rank", "full", "field 'dt_rank' must be 'auto' or an int >= 1; got 'full'"),
        ("dt_min", 0.0, "field 'dt_min' must be > 0; got 0.0"),
        ("dt_max", 1e-4, "field 'dt_max' must be > dt_min"),
        ("dt_min", 0.1, "field 'dt_max' must be > dt_min"),
        ("dt_init_floor", -1.0, "field 'dt_init_floor' must be >= 0; got -1.0"),
        ("dt_max", math.inf, "field 'dt_max' must be a finite float"),
    ],
)
def test_config_errors(field: str, value: object, match: str) -> None:
    cfg = MambaConfig(**{field: value})
    with pytest.raises(ConfigError, match="^mamba: " + match.replace("(", r"\(")):
        cfg.validate()
    with pytest.raises(ConfigError):
        Mamba(32, cfg)


def test_config_overrides() -> None:
    cfg = apply_overrides(MambaConfig(), {"d_state": 8, "dt_rank": 4}, "model.mixers.M", d_model=64)
    assert (cfg.d_state, cfg.dt_rank) == (8, 4)
    with pytest.raises(ConfigError, match="unknown key 'dstate'.*d_state"):
        apply_overrides(MambaConfig(), {"dstate": 8}, "model.mixers.M")
    with pytest.raises(ConfigError, match="d_state"):
        apply_overrides(MambaConfig(), {"d_state": 0}, "model.mixers.M", d_model=64)


def test_kernel_path_compiles_around_the_fused_kernel(fake_mamba_ssm: list[dict]) -> None:
    """Under torch.compile the fused kernel stays one opaque call (a graph break), run once per forward."""
    from blocks.model import HybridBlock
    from blocks.ops.selective_scan import kernel

    sys.modules["mamba_ssm.ops.selective_scan_interface"].causal_conv1d_fwd_function = object()
    kernel.fused_impl.cache_clear()
    torch.manual_seed(SEED)
    eager = HybridBlock(40, [Mamba(40, MambaConfig(d_state=5))], 1e-5)
    compiled = HybridBlock(40, [Mamba(40, MambaConfig(d_state=5))], 1e-5)
    compiled.load_state_dict(eager.state_dict())
    for block in (eager, compiled):
        block.mixers[0].set_backend("kernel")
    compiled.compile(backend="aot_eager", dynamic=False)
    x = torch.randn(2, 11, 40)
    for _ in range(2):
        torch.testing.assert_close(compiled(x, x), eager(x, x), atol=1e-6, rtol=1e-6)
    assert [c["fn"] for c in fake_mamba_ssm].count("mamba_inner_fn") == 4
