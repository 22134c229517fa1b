"""Entropy diagnostics: analytic values of H_a, H_s and the GLA forget entropy, and the metric names."""

from __future__ import annotations

import math

import pytest
import torch

from analysis.entropy import attention_entropy, forget_entropy, layer_entropies, selection_entropy
from blocks import HybridLM, ModelConfig, capture
from blocks.mixers.swa import SWA, SWAConfig

V = 11


def uniform_causal(B: int, H: int, T: int, window: int | None = None) -> torch.Tensor:
    """(B, H, T, T) probabilities uniform over the keys each query sees."""
    i = torch.arange(T)
    mask = i[None, :] <= i[:, None]
    if window is not None:
        mask &= i[None, :] > i[:, None] - window
    p = mask.double() / mask.sum(-1, keepdim=True)
    return p.expand(B, H, T, T).clone()


def test_uniform_rows_give_log_of_keys_and_one_hot_rows_give_zero() -> None:
    T = 9
    probs = uniform_causal(2, 3, T)
    mean, heads = attention_entropy(probs)
    expected = sum(math.log(t + 1) for t in range(T)) / T
    assert mean == pytest.approx(expected, abs=1e-12)
    assert heads == pytest.approx([expected] * 3, abs=1e-12)
    assert attention_entropy(probs, last=1)[0] == pytest.approx(math.log(T), abs=1e-12)
    one_hot = torch.eye(T).expand(2, 3, T, T)
    assert attention_entropy(one_hot) == (0.0, [0.0, 0.0, 0.0])


def test_per_head_list_and_last_rows() -> None:
    T = 8
    probs = torch.cat([uniform_causal(1, 1, T), torch.eye(T).expand(1, 1, T, T)], dim=1)  # (1, 2, T, T)
    mean, heads = attention_entropy(probs, last=3)
    expected = sum(math.log(t + 1) for t in range(T - 3, T)) / 3
    assert heads == pytest.approx([expected, 0.0], abs=1e-12)
    assert mean == pytest.approx(expected / 2, abs=1e-12)
    assert attention_entropy(probs, last=100) == attention_entropy(probs)
    with pytest.raises(ValueError, match="last"):
        attention_entropy(probs, last=0)


def test_swa_mixer_rows_past_the_window_stay_below_log_window() -> None:
    w, T = 4, 16
    mixer = SWA(16, SWAConfig(heads=2, window=w))
    with capture(mixer, names={"attn_probs"}) as cap:
        mixer(torch.randn(2, T, 16) * 3)
    (rec,) = cap.get("attn_probs")
    probs = rec.value  # (B, H, T, T)
    assert torch.all((probs > 0).sum(-1) <= w)
    mean, heads = attention_entropy(probs, last=T - w)
    assert len(heads) == 2
    assert all(0 < h <= math.log(w) + 1e-6 for h in heads)
    rows = -torch.special.xlogy(probs[:, :, w:], probs[:, :, w:]).sum(-1)
    assert rows.max() <= math.log(w) + 1e-5


def test_selection_entropy_constant_and_one_hot() -> None:
    n = 13
    delta = torch.rand(2, 5, 1).expand(2, 5, n) + 0.1  # constant over time per channel
    assert selection_entropy(delta) == pytest.approx(math.log(n), abs=1e-12)
    one_hot = torch.zeros(2, 5, n)
    one_hot[..., 3] = 0.7
    assert selection_entropy(one_hot) == 0.0
    mixed = torch.cat([delta[:, :1], one_hot[:, :1]], dim=1)  # channel mean of log n and 0
    assert selection_entropy(mixed) == pytest.approx(math.log(n) / 2, abs=1e-12)


def test_forget_entropy_constant_gate_and_single_step() -> None:
    n = 10
    log_alpha = torch.log(torch.rand(3, 1, 2, 4) * 0.9 + 0.05).expand(3, n, 2, 4)  # (B, T, H, K)
    assert forget_entropy(log_alpha) == pytest.approx(math.log(n), abs=1e-12)
    spike = torch.zeros(3, n, 2, 4)
    spike[:, 6] = -2.0
    assert forget_entropy(spike) == pytest.approx(0.0, abs=1e-12)


def am_model() -> HybridLM:
    """``A-M`` with uniform causal attention (q, k zero) and Δ = softplus(dt bias) constant over time."""
    model = HybridLM(
        ModelConfig(pattern="A[window=null]-M", d_model=8, mixers={"A": {"heads": 2}}), vocab_size=V
    )
    with torch.no_grad():
        attn, mamba = model.layers[0].mixers[0], model.layers[1].mixers[0]
        attn.q_proj.weight.zero_()
        attn.k_proj.weight.zero_()
        mamba.x_proj.weight.zero_()
        mamba.dt_proj.weight.zero_()
    return model


def test_layer_entropies_of_a_hand_built_model() -> None:
    T = 12
    model = am_model()
    model.train()
    idx = torch.randint(0, V, (3, T))
    out = layer_entropies(model, idx)
    assert model.training
    h_attn = sum(math.log(t + 1) for t in range(T)) / T
    assert set(out) == {
        "entropy/attn/layer0",
        "entropy/attn/layer0/head0",
        "entropy/attn/layer0/head1",
        "entropy/attn/mean",
        "entropy/s6/layer1",
        "entropy/s6/mean",
    }
    for key in (
        "entropy/attn/layer0",
        "entropy/attn/layer0/head0",
        "entropy/attn/layer0/head1",
        "entropy/attn/mean",
    ):
        assert out[key] == pytest.approx(h_attn, abs=1e-6)
    assert out["entropy/s6/layer1"] == pytest.approx(math.log(T), abs=1e-6)
    assert out["entropy/s6/mean"] == out["entropy/s6/layer1"]
    last = layer_entropies(model, idx, last=4)
    assert last["entropy/attn/layer0"] == pytest.approx(
        sum(math.log(t + 1) for t in range(T - 4, T)) / 4, abs=1e-6
    )
    assert last["entropy/s6/layer1"] == pytest.approx(math.log(T), abs=1e-6)


def test_batch_chunks_give_the_same_values() -> None:
    model = HybridLM(
        ModelConfig(pattern="M-A[window=4]-M", d_model=8, mixers={"A": {"heads": 2}}), vocab_size=V
    )
    idx = torch.randint(0, V, (5, 10))
    whole = layer_entropies(model, idx, last=3)
    pieces = layer_entropies(model, idx, last=3, batch_chunk=2)
    assert whole.keys() == pieces.keys()
    for key in whole:
        assert pieces[key] == pytest.approx(whole[key], abs=1e-6)
    layers = [whole["entropy/s6/layer0"], whole["entropy/s6/layer2"]]
    assert whole["entropy/s6/mean"] == pytest.approx(sum(layers) / 2, abs=1e-12)


def test_parallel_branches_get_branch_keys_and_a_constant_gla_gate_gives_log_t() -> None:
    model = HybridLM(
        ModelConfig(pattern="(A|M)-R-G-F", d_model=16, mixers={"A": {"heads": 2, "window": 4}}), vocab_size=V
    )
    T = 8
    out = layer_entropies(model, torch.randint(0, V, (2, T)))
    assert set(out) == {
        "entropy/attn/layer0/branch0",
        "entropy/attn/layer0/branch0/head0",
        "entropy/attn/layer0/branch0/head1",
        "entropy/attn/mean",
        "entropy/s6/layer0/branch1",
        "entropy/s6/mean",
        "entropy/gla/layer2",
        "entropy/gla/mean",
    }
    assert 0 < out["entropy/gla/layer2"] <= math.log(T) + 1e-9
    with torch.no_grad():
        model.layers[2].mixers[0].gk_proj[0].weight.zero_()  # gate = logsigmoid(bias) / 16, constant in time
    constant = layer_entropies(model, torch.randint(0, V, (2, T)))
    assert constant["entropy/gla/layer2"] == pytest.approx(math.log(T), abs=1e-6)
