"""Specification tests of the ``A`` mixer (``blocks/mixers/swa.py``) and its ops (attention, RoPE).

The window convention under test: ``window=W`` lets query ``t`` see tokens ``t-W+1 .. t`` (W keys,
itself included); ``None`` is full causal attention. Sizes are odd on purpose (T=37, head size 10).
"""

from __future__ import annotations

import math

import pytest
import torch

from blocks.diagnostics import capture
from blocks.mixers.base import ConfigError
from blocks.mixers.swa import SWA, SWAConfig, mean_keys
from blocks.ops.attention import reference
from blocks.ops.rope import rope

B, T, D, H = 2, 37, 40, 4
WINDOWS = [1, 2, 5, 16, 36, 37, 100, None]
KV_HEADS = [None, 2, 1]


def make(window: int | None = 16, kv_heads: int | None = None, rope: bool = True, seed: int = 42) -> SWA:
    torch.manual_seed(seed)
    return SWA(D, SWAConfig(heads=H, kv_heads=kv_heads, window=window, rope=rope)).double()


def inputs(t: int = T, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, t, D, generator=g, dtype=torch.float64)


def explicit(m: SWA, x: torch.Tensor) -> torch.Tensor:
    """The mixer written out from its weights alone: RoPE as complex rotation, an explicit mask per row."""
    Bx, Tx, _ = x.shape
    hd, hk = m.head_dim, m.kv_heads
    q = (x @ m.q_proj.weight.T).view(Bx, Tx, H, hd)
    k = (x @ m.k_proj.weight.T).view(Bx, Tx, hk, hd)
    v = (x @ m.v_proj.weight.T).view(Bx, Tx, hk, hd)
    if m.config.rope:
        half = hd // 2
        theta = m.config.rope_base ** (-torch.arange(half, dtype=torch.float64) * 2 / hd)
        phase = torch.polar(torch.ones(Tx, half, dtype=torch.float64), torch.arange(Tx)[:, None] * theta)

        def rot(t: torch.Tensor) -> torch.Tensor:
            z = torch.complex(t[..., :half], t[..., half:]) * phase[:, None, :]
            return torch.cat((z.real, z.imag), dim=-1)

        q, k = rot(q), rot(k)
    kv_of_head = [h // (H // hk) for h in range(H)]
    k, v = k[:, :, kv_of_head], v[:, :, kv_of_head]  # (B, T, H, hd)
    w = m.window or Tx
    rows = []
    for t in range(Tx):
        keys = list(range(max(0, t - w + 1), t + 1))
        s = (q[:, t, None] * k[:, keys]).sum(-1) / math.sqrt(hd)  # (B, keys, H)
        rows.append((s.softmax(1)[..., None] * v[:, keys]).sum(1))  # (B, H, hd)
    return m.o_proj(torch.stack(rows, 1).reshape(Bx, Tx, H * hd))


@pytest.mark.parametrize("kv_heads", KV_HEADS, ids=lambda v: f"kv{v}")
@pytest.mark.parametrize("window", WINDOWS, ids=lambda v: f"W{v}")
def test_forward_matches_naive(window: int | None, kv_heads: int | None) -> None:
    m = make(window, kv_heads)
    x = inputs()
    ref = m.naive_forward(x)
    torch.testing.assert_close(m(x), ref, atol=1e-9, rtol=0)
    torch.testing.assert_close(m.step_forward(x), ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kv_heads", KV_HEADS, ids=lambda v: f"kv{v}")
@pytest.mark.parametrize("window", [1, 5, None], ids=lambda v: f"W{v}")
def test_naive_matches_explicit_weights(window: int | None, kv_heads: int | None) -> None:
    m = make(window, kv_heads)
    x = inputs(t=13)
    torch.testing.assert_close(m.naive_forward(x), explicit(m, x), atol=1e-9, rtol=0)


@pytest.mark.parametrize("window", [1, 5, None], ids=lambda v: f"W{v}")
def test_nope_matches_unrotated_explicit(window: int | None) -> None:
    m = make(window, kv_heads=2, rope=False)
    x = inputs(t=13)
    y = explicit(m, x)
    torch.testing.assert_close(m(x), y, atol=1e-9, rtol=0)
    torch.testing.assert_close(m.naive_forward(x), y, atol=1e-9, rtol=0)


@pytest.mark.parametrize("seq_len", [1, 15, 16, 17, 48, 50])
def test_lengths_around_window_multiples(seq_len: int) -> None:
    m = make(window=16, kv_heads=2)
    x = inputs(t=seq_len)
    torch.testing.assert_close(m(x), m.naive_forward(x), atol=1e-9, rtol=0)


def test_window_one_attends_only_to_itself() -> None:
    m = make(window=1)
    x = inputs()
    with capture(m) as cap:
        y = m(x)
    (rec,) = cap.get("attn_probs")
    torch.testing.assert_close(rec.value, torch.eye(T).expand(B, H, T, T), atol=0, rtol=0)
    v = m.v_proj(x).view(B, T, H, m.head_dim)
    torch.testing.assert_close(y, m.o_proj(v.reshape(B, T, D)), atol=1e-12, rtol=0)
    x2 = x.clone()
    x2[:, 10] += 1.0
    y2 = m(x2)
    changed = (y2 - y).abs().amax(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == [10]


@pytest.mark.parametrize("kv_heads", [None, 1], ids=lambda v: f"kv{v}")
@pytest.mark.parametrize("window", [1, 2, 5, 16, 36, None], ids=lambda v: f"W{v}")
def test_window_boundary(window: int | None, kv_heads: int | None) -> None:
    """Perturbing token s changes exactly the outputs t with 0 <= t - s < window."""
    m = make(window, kv_heads)
    x = inputs()
    y = m(x)
    w = window or T
    for s in (0, 3, 17, T - 1):
        x2 = x.clone()
        x2[:, s] += 0.5
        changed = ((m(x2) - y).abs().amax(dim=(0, 2)) > 1e-12).nonzero().flatten().tolist()
        assert changed == list(range(s, min(T, s + w))), f"perturbed token {s}"


def test_rope_is_relative() -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 9, 2, 10, generator=g, dtype=torch.float64)
    k = torch.randn(1, 9, 2, 10, generator=g, dtype=torch.float64)

    def scores(offset: int) -> torch.Tensor:
        return torch.einsum("bihd,bjhd->bhij", rope(q, offset=offset), rope(k, offset=offset))

    torch.testing.assert_close(scores(0), scores(1000), atol=1e-9, rtol=0)
    torch.testing.assert_close(rope(q)[:, :1], q[:, :1], atol=0, rtol=0)
    assert not torch.allclose(rope(q)[:, 1:], q[:, 1:])
    torch.testing.assert_close(rope(q).norm(dim=-1), q.norm(dim=-1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("fn", ["rope", "rope_qk"])
def test_compiled_rope_reads_its_tables_from_one_opaque_op(fn: str) -> None:
    """Compiled, the cos/sin tables come from one ``hybridlab::rope_cos_sin`` call (``rope_qk``: one for q and k),
    not from trigonometry inlined into the rotation of every element; the results equal eager RoPE."""
    from blocks.ops import rope as rope_module

    graphs: list[torch.fx.GraphModule] = []

    def record(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> torch.fx.GraphModule:
        graphs.append(gm)
        return gm

    torch._dynamo.reset()
    q, k = torch.randn(2, 11, 4, 10), torch.randn(2, 11, 2, 10)
    args = (q,) if fn == "rope" else (q, k)
    eager = getattr(rope_module, fn)(*args)
    compiled = torch.compile(getattr(rope_module, fn), backend=record, dynamic=False)(*args)
    torch.testing.assert_close(compiled, eager, atol=0, rtol=0)
    targets = [str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count("hybridlab.rope_cos_sin.default") == 1, targets
    assert not any("cos" in t or "sin" in t for t in targets if not t.startswith("hybridlab.")), targets


def test_diagnostics_attn_probs() -> None:
    window = 5
    m = make(window, kv_heads=2)
    x = inputs()
    with capture(m) as cap:
        y = m(x)
    (rec,) = cap.get("attn_probs")
    p = rec.value
    assert p.shape == (B, H, T, T) and p.dtype == torch.float32
    torch.testing.assert_close(p.sum(-1), torch.ones(B, H, T), atol=1e-6, rtol=0)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    outside = (j > i) | (i - j >= window)
    assert (p[..., outside] == 0).all()
    assert (p[..., ~outside] > 0).all()
    torch.testing.assert_close(y, m(x), atol=0, rtol=0)
    assert m.diagnostics is None
    with capture(m, names={"delta"}) as cap:
        m(x)
    assert cap.records == []


@pytest.mark.parametrize("kv_heads", [None, 1], ids=lambda v: f"kv{v}")
@pytest.mark.parametrize("window", [1, 5, 36, None], ids=lambda v: f"W{v}")
def test_gradients_match_naive(window: int | None, kv_heads: int | None) -> None:
    m = make(window, kv_heads)
    x = inputs().requires_grad_(True)
    g = torch.randn(B, T, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def grads(fn) -> list[torch.Tensor]:
        m.zero_grad(set_to_none=True)
        x.grad = None
        (fn(x) * g).sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in m.parameters()]

    for a, b in zip(grads(m.forward), grads(m.naive_forward), strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


def test_reference_accumulates_low_precision_in_fp32() -> None:
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 40, 4, 16, generator=g) for _ in range(3))
    for window in (8, None):
        ref = reference.naive_attention(q, k, v, window, 0.25)
        out = reference.attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), window, 0.25)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


def test_state_dict_and_sizes() -> None:
    m = SWA(40, SWAConfig(heads=4, kv_heads=2, window=16))
    assert set(m.state_dict()) == {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"}
    assert m.q_proj.weight.shape == (40, 40) and m.k_proj.weight.shape == (20, 40)
    assert m.output_projections() == [m.o_proj]
    assert m.state_size(100) == 2 * 2 * 10 * 16
    assert m.state_size(7) == 2 * 2 * 10 * 7
    full = SWA(40, SWAConfig(heads=4, window=None))
    assert full.state_size(100) == 2 * 4 * 10 * 100
    assert mean_keys(4, 2) == (1 + 2 + 2 + 2) / 4
    assert mean_keys(5, None) == 3.0 == mean_keys(5, 99)
    proj = 2 * 40 * (40 + 20 + 20 + 40)
    assert m.flops(4) == proj + round(4 * 4 * 10 * mean_keys(4, 16))
    assert m.flops(1000) == proj + round(4 * 4 * 10 * (16 * 17 / 2 + 984 * 16) / 1000)
    assert SWA(40, SWAConfig(heads=4, head_dim=6)).o_proj.in_features == 24


def test_kernel_status() -> None:
    status = SWA.kernel_status()
    if torch.cuda.is_available():
        assert status is None
    else:
        assert status == "the attention kernel path needs a CUDA device"


def test_kernel_route_names_the_attention_implementation_per_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded per run as hybridlab.kernel_route.A; flash-attn takes bf16/fp16 only, so with it installed an
    fp32 run's attention is FlexAttention and the route says both."""
    from blocks.ops.attention import kernel

    m = SWA(64, SWAConfig(heads=4, window=8))
    assert m.kernel_route() is None  # the reference path has no route
    m.set_backend("kernel")  # the wiring only: nothing runs here
    monkeypatch.setattr(kernel, "_flash_attn_func", lambda: None)
    assert m.kernel_route() == "flex_attention"  # torch ships FlexAttention
    monkeypatch.setattr(kernel, "_flash_attn_func", lambda: object())
    assert m.kernel_route() == "flash_attn (bf16/fp16), flex_attention (fp32)"
    assert kernel.kernel_impl(torch.bfloat16, 264) == "flex_attention"  # flash-attn takes head sizes <= 256


def test_the_kernel_path_calls_flash_attn_as_the_official_samba_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatch only (a stand-in for flash_attn_func records its call): a window of W keys is flash-attn's
    ``window_size=(W-1, 0)``, full causal attention ``(-1, -1)``."""
    from blocks.ops.attention import kernel

    calls: list[dict] = []

    def flash_attn_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> torch.Tensor:
        calls.append(kw)
        return q

    monkeypatch.setattr(kernel, "_flash_attn_func", lambda: flash_attn_func)
    q = torch.randn(1, 5, 2, 8, dtype=torch.bfloat16)
    for window in (3, None):
        assert kernel.attention(q, q, q, window, 0.5) is q
    assert calls == [{"causal": True, "softmax_scale": 0.5, "window_size": (2, 0)},
                     {"causal": True, "softmax_scale": 0.5, "window_size": (-1, -1)}]


@pytest.mark.parametrize(
    ("fields", "d_model", "fragment"),
    [
        ({"heads": 5}, 128, "swa: field 'heads'=5 must divide d_model=128 (head size would be 25.6); use heads in {1, 2, 4, 8"),
        ({"heads": 0}, None, "swa: field 'heads' must be a positive int; got 0"),
        ({"heads": 4, "kv_heads": 3}, None, "swa: field 'kv_heads'=3 must divide heads=4"),
        ({"heads": 4, "kv_heads": 0}, None, "use kv_heads in {1, 2, 4}"),
        ({"window": 0}, None, "swa: field 'window' must be a positive int"),
        ({"window": -3}, 64, "or null for full causal attention; got -3"),
        ({"heads": 8}, 40, "head size d_model/heads = 40/8 = 5 must be even for RoPE"),
        ({"head_dim": 7}, None, "field 'head_dim'=7 must be even for RoPE"),
        ({"rope_base": 0.0}, None, "field 'rope_base' must be positive"),
    ],
)
def test_config_errors(fields: dict, d_model: int | None, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        SWAConfig(**fields).validate(d_model)
    assert fragment in str(err.value)


def test_config_accepts() -> None:
    SWAConfig().validate(128)
    SWAConfig(heads=8, rope=False).validate(40)
    SWAConfig(heads=3, head_dim=16).validate(128)
    SWAConfig(heads=12, kv_heads=4, window=2048).validate(1536)
    SWAConfig(heads=12, kv_heads=1, window=None).validate(1536)
    with pytest.raises(ConfigError):
        SWA(128, SWAConfig(heads=5))


def assert_close_ratio(name: str, ref: torch.Tensor, out: torch.Tensor, ratio: float) -> None:
    """RMS of the difference relative to the RMS of the reference (fla ``assert_close`` style)."""
    err = (out.double() - ref.double()).pow(2).mean().sqrt().item()
    base = ref.double().pow(2).mean().sqrt().item()
    assert err <= ratio * base, f"{name}: rms error {err:.3g} > {ratio} x rms {base:.3g}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kv_heads", [None, 1], ids=lambda v: f"kv{v}")
@pytest.mark.parametrize("window", [1, 5, 64, None], ids=lambda v: f"W{v}")
def test_kernel_matches_reference(window: int | None, kv_heads: int | None, dtype: torch.dtype) -> None:
    torch.manual_seed(42)
    m = SWA(128, SWAConfig(heads=4, kv_heads=kv_heads, window=window)).cuda()
    x = torch.randn(2, 200, 128, device="cuda")
    outs, grads = [], []
    for backend in ("reference", "kernel"):
        m.set_backend(backend)
        m.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y = m(xx)
        y.float().square().sum().backward()
        outs.append(y.float())
        grads.append([xx.grad] + [p.grad for p in m.parameters()])
    ratio = 2e-2 if dtype == torch.bfloat16 else 1e-3
    assert_close_ratio("out", outs[0], outs[1], ratio)
    names = ["dx"] + [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, grads[0], grads[1], strict=True):
        if window == 1 and name in ("q_proj.weight", "k_proj.weight"):
            continue  # a softmax over one key: q and k get no gradient, both sides hold rounding noise
        assert_close_ratio(name, a, b, ratio)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("impl", ["flash_attn", "flex_attention"])
@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=lambda v: f"kv{v}")
@pytest.mark.parametrize("window", [1, 37, 128, 400, None], ids=lambda v: f"W{v}")
def test_each_attention_implementation_matches_the_fp32_reference(impl: str, kv_heads: int, window: int | None) -> None:
    """Every implementation of the kernel path, called directly on bf16 inputs: T=300 is no multiple of any block
    size, W=400 is longer than T; output and the q, k, v gradients within bf16 rounding of the fp32 reference."""
    from blocks.ops.attention import kernel, reference

    if impl not in kernel.available_impls():
        pytest.skip(f"{impl} does not import here")
    fn = kernel.IMPLEMENTATIONS[impl]
    gen = torch.Generator("cuda").manual_seed(7)
    q = torch.randn(2, 300, 4, 64, device="cuda", generator=gen)  # (B, T, H, D)
    k, v = (torch.randn(2, 300, kv_heads, 64, device="cuda", generator=gen) for _ in range(2))  # (B, T, Hkv, D)
    do = torch.randn(2, 300, 4, 64, device="cuda", generator=gen)
    results = []
    for f, dtype in ((reference.attention, torch.float32), (fn, torch.bfloat16)):
        leaves = [t.detach().to(dtype).requires_grad_(True) for t in (q, k, v)]
        o = f(*leaves, window, 0.125)
        o.backward(do.to(dtype))
        results.append([o.float()] + [t.grad.float() for t in leaves])
    for name, want, got in zip(("out", "dq", "dk", "dv"), *results, strict=True):
        assert torch.isfinite(got).all(), f"{impl} {name}: non-finite values"
        if window == 1 and name in ("dq", "dk"):
            continue  # a softmax over one key: q and k get no gradient, both sides hold rounding noise
        assert_close_ratio(f"{impl} {name}", want, got, 2e-2)
