"""The contract every registered mixer keeps (parametrized over the registry, so a new mixer is covered).

(B, T, D) -> (B, T, D) in the input dtype; causal; gradients reach every parameter; the reference path
equals the mixer's plain per-token ground truth (``naive_forward``) in float64 to 1e-9 on odd sizes;
accounting is sane; diagnostics cost nothing when off; the state_dict does not depend on the backend.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from blocks import registry
from blocks.diagnostics import capture
from blocks.mixers.base import Mixer, apply_overrides

D_ODD = 40
T_ODD = 37
# Small chunk/window sizes so that odd T spans several chunks plus a remainder; a new mixer needs none.
SMALL = {"A": {"window": 5}, "G": {"chunk_size": 8}, "R": {"chunk_size": 8}}

SPECS = registry.specs()
IDS = [f"{s.symbol}-{s.name}" for s in SPECS]


def make(spec: registry.MixerSpec, d_model: int = D_ODD, dtype: torch.dtype = torch.float64, **over) -> Mixer:
    fields = {f.name for f in dataclasses.fields(spec.config)}
    small = {k: v for k, v in SMALL.get(spec.symbol, {}).items() if k in fields}
    cfg = apply_overrides(spec.config(), {**small, **over}, f"test {spec.symbol}", d_model)
    return spec.module(d_model, cfg).to(dtype)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype(spec: registry.MixerSpec, dtype: torch.dtype) -> None:
    m = make(spec, dtype=dtype)
    x = torch.randn(3, T_ODD, D_ODD, dtype=dtype)
    y = m(x)
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_reference_equals_naive_in_float64(spec: registry.MixerSpec) -> None:
    m = make(spec)
    x = torch.randn(2, T_ODD, D_ODD, dtype=torch.float64)
    torch.testing.assert_close(m(x), m.naive_forward(x), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_reference_gradients_equal_naive_gradients(spec: registry.MixerSpec) -> None:
    m = make(spec)
    x = torch.randn(2, T_ODD, D_ODD, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, T_ODD, D_ODD, dtype=torch.float64)
    grads = []
    for fn in (m.forward, m.naive_forward):
        m.zero_grad(set_to_none=True)
        x.grad = None
        (fn(x) * w).sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in m.parameters()])
    for name, a, b in zip(["input"] + [n for n, _ in m.named_parameters()], *grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=lambda s, n=name: f"grad of {n}: {s}")


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_causal(spec: registry.MixerSpec) -> None:
    m = make(spec)
    x = torch.randn(2, T_ODD, D_ODD, dtype=torch.float64)
    y = m(x)
    for t in (0, 7, 8, 20, T_ODD - 2):
        x2 = x.clone()
        x2[:, t + 1 :] += torch.randn_like(x2[:, t + 1 :])
        y2 = m(x2)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], atol=1e-12, rtol=0)
        assert not torch.allclose(y2[:, t + 1], y[:, t + 1]), "output at t+1 ignores its own input"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gradients_reach_every_parameter(spec: registry.MixerSpec) -> None:
    m = make(spec, dtype=torch.float32)
    x = torch.randn(2, T_ODD, D_ODD)
    (m(x) ** 2).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"{spec.name}.{name} gets no gradient"
        assert p.grad.abs().sum() > 0, f"{spec.name}.{name} gets an all-zero gradient"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_accounting(spec: registry.MixerSpec) -> None:
    m = make(spec, d_model=64, dtype=torch.float32)
    for seq_len in (1, 64, 4096):
        assert isinstance(m.flops(seq_len), int) and m.flops(seq_len) > 0
        assert isinstance(m.state_size(seq_len), int) and m.state_size(seq_len) >= 0
    linear_flops = sum(2 * p.numel() for p in m.parameters() if p.dim() == 2)
    assert m.flops(64) >= linear_flops, "FLOPs/token must at least count every weight matrix once"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_config_defaults_build_and_unknown_keys_are_rejected(spec: registry.MixerSpec) -> None:
    spec.config().validate(None)
    with pytest.raises(ValueError, match="unknown key 'no_such_key'"):
        apply_overrides(spec.config(), {"no_such_key": 1}, f"model.mixers.{spec.symbol}")


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_diagnostics_only_inside_capture(spec: registry.MixerSpec) -> None:
    m = make(spec, dtype=torch.float32)
    x = torch.randn(2, T_ODD, D_ODD)
    assert m.diagnostics is None
    with capture(m) as cap:
        y = m(x)
    assert m.diagnostics is None
    torch.testing.assert_close(y, m(x))
    expected = {"A": "attn_probs", "M": "delta", "G": "log_forget"}.get(spec.symbol)
    names = {r.name for r in cap.records}
    assert names == ({expected} if expected else set())


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_state_dict_does_not_depend_on_backend(spec: registry.MixerSpec) -> None:
    m = make(spec, dtype=torch.float32)
    keys = set(m.state_dict())
    m.set_backend("kernel")
    assert set(m.state_dict()) == keys
