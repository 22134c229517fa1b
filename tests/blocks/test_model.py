"""HybridLM: layout resolution, sublayer structure, initialisation, accounting, backends, and learning."""

from __future__ import annotations

import math

import pytest
import torch

from blocks import HybridLM, ModelConfig, capture
from blocks.backend import BackendError
from blocks.mixers.base import ConfigError
from blocks.model import resolve_layout
from blocks.pattern import PatternError
from blocks.summary import describe

V = 64


def tiny(pattern: str, **kw) -> HybridLM:
    mixers = kw.pop("mixers", {"A": {"window": 8}, "G": {"chunk_size": 16}, "R": {"chunk_size": 16}})
    return HybridLM(ModelConfig(pattern=pattern, d_model=kw.pop("d_model", 32), mixers=mixers, **kw), vocab_size=V)


def test_one_sublayer_per_token_with_its_own_norm() -> None:
    m = tiny("(M-F-A-F)*2")
    assert len(m.layers) == 8
    assert [b.mixers[0].symbol for b in m.layers] == list("MFAF" * 2)
    assert all(isinstance(b.norm, torch.nn.RMSNorm) for b in m.layers)
    assert [b.mixers[0].layer_index for b in m.layers] == list(range(8))


def test_parallel_branches_average_their_outputs() -> None:
    m = tiny("(A|F)")
    block = m.layers[0]
    x = torch.randn(2, 10, 32)
    h = block.norm(x)
    out = (block.mixers[0](h) + block.mixers[1](h)) / 2
    torch.testing.assert_close(block(x), (out, x))


def test_the_stream_is_the_plain_pre_norm_residual_sum_bit_for_bit() -> None:
    """Blocks pass (output, residual) pairs; the sums are those of ``x = x + mixer(norm(x))`` in the same order."""
    m = tiny("(M-F-A-F)*2-(G|R)")
    idx = torch.randint(0, V, (2, 19))
    with torch.no_grad():
        x = m.embed(idx)
        for block in m.layers:
            h = block.norm(x)
            x = x + torch.stack([mixer(h) for mixer in block.mixers]).mean(0)
        assert torch.equal(m.hidden(idx), x)
        assert torch.equal(m(idx), m.lm_head(m.norm_f(x)))
        plain = torch.nn.functional.cross_entropy(m(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
        assert torch.equal(m.loss(idx[:, :-1], idx[:, 1:]), plain)


def test_config_precedence_defaults_then_model_mixers_then_pattern_params() -> None:
    _, layers = resolve_layout(
        ModelConfig(pattern="A-A[window=4]-A[window=null]", d_model=32, mixers={"swa": {"window": 16, "heads": 2}})
    )
    windows = [layer.branches[0][1].window for layer in layers]
    assert windows == [16, 4, None]
    assert all(layer.branches[0][1].heads == 2 for layer in layers)


def test_impossible_config_names_the_layer_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"pattern layer 1 \(A\), d_model=32"):
        resolve_layout(ModelConfig(pattern="M-A[heads=5]", d_model=32))
    with pytest.raises(ConfigError, match=r"model.mixers.Q: unknown mixer 'Q'"):
        resolve_layout(ModelConfig(pattern="M", d_model=32, mixers={"Q": {}}))
    with pytest.raises(PatternError):
        resolve_layout(ModelConfig(pattern="M-", d_model=32))


def test_tied_and_untied_parameter_counts() -> None:
    tied = tiny("F", tie_embeddings=True)
    untied = tiny("F", tie_embeddings=False)
    assert tied.lm_head.weight is tied.embed.weight
    assert untied.num_params() - tied.num_params() == V * 32
    hidden = tied.layers[0].mixers[0].hidden
    assert tied.num_params() == V * 32 + 3 * 32 * hidden + 32 + 32


def test_mamba_init_scales_residual_output_projections() -> None:
    torch.manual_seed(0)
    m = tiny("(F)*16", init="mamba", d_model=64)
    w3 = torch.cat([b.mixers[0].w3.weight.flatten() for b in m.layers])
    bound = 1 / math.sqrt(m.layers[0].mixers[0].hidden)
    assert w3.abs().max() <= bound / math.sqrt(16) + 1e-7
    assert abs(m.embed.weight.std().item() - 0.02) < 0.002


def test_normal_init_uses_gpt_neox_scales() -> None:
    m = tiny("(A-F)*4", init="normal", tie_embeddings=False, d_model=64)
    std = math.sqrt(2 / (5 * 64))
    assert abs(m.layers[0].mixers[0].q_proj.weight.std().item() - std) < 0.1 * std
    out = torch.cat([m.layers[i].mixers[0].output_projections()[0].weight.flatten() for i in range(8)])
    assert abs(out.std().item() - 1 / (8 * 4)) < 0.1 / (8 * 4)


def test_model_is_causal_end_to_end() -> None:
    m = tiny("(M-F-A-F-G-R)").double()
    idx = torch.randint(0, V, (2, 40))
    logits = m(idx)
    idx2 = idx.clone()
    idx2[:, 25:] = torch.randint(0, V, (2, 15))
    torch.testing.assert_close(m(idx2)[:, :25], logits[:, :25], atol=1e-10, rtol=0)


def test_backend_resolution_on_cpu() -> None:
    m = tiny("M-A-G-R-F")
    assert m.set_backend("auto", "cpu") == dict.fromkeys("MAGRF", "reference")
    assert m.set_backend("reference", "cpu") == dict.fromkeys("MAGRF", "reference")
    with pytest.raises(BackendError, match="CUDA only"):
        m.set_backend("kernel", "cpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        m.set_backend("fast", "cpu")


def test_capture_collects_per_layer_records() -> None:
    m = tiny("(M-F-A-F)*2")
    with capture(m) as cap:
        m(torch.randint(0, V, (2, 16)))
    assert [r.layer for r in cap.get("delta")] == [0, 4]
    assert [r.layer for r in cap.get("attn_probs")] == [2, 6]
    assert cap.get("attn_probs")[0].value.shape == (2, 4, 16, 16)


def test_describe_matches_the_built_model() -> None:
    cfg = ModelConfig(pattern="(M-F-A[window=64]-F)*2", d_model=64)
    info = describe(cfg, vocab_size=V, seq_len=256)
    real = HybridLM(cfg, vocab_size=V)
    assert info["params"] == real.num_params()
    assert info["flops_per_token"] == real.flops_per_token(256)
    assert info["state_bytes"] == 2 * real.state_size(256)
    assert sum(layer["param_count"] for layer in info["layers"]) + V * 64 + 64 == info["params"]
    assert info["compact"] == "(M-F-A[window=64]-F)*2"
    assert info["n_layers"] == 8


def test_samba_421m_parameter_count_matches_the_paper() -> None:
    info = describe(ModelConfig(pattern="(M-F-A[window=2048,heads=12]-F)*6", d_model=1536), vocab_size=32000)
    assert abs(info["params"] - 421.8e6) / 421.8e6 < 0.01


OVERFIT = ["M", "A", "G", "R", "F", "(M-F-A-F)*2"]


@pytest.mark.parametrize("pattern", OVERFIT)
def test_tiny_model_overfits_one_batch(pattern: str) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if pattern == "F":
        # An MLP-only model sees one token at a time: give it a batch whose next token is a function of
        # the current one (a random permutation), which a position-wise model can memorise.
        perm = torch.randperm(V, generator=g)
        seqs = [torch.randint(0, V, (1,), generator=g)]
        for _ in range(32):
            seqs.append(perm[seqs[-1]])
        batch = torch.cat(seqs).view(1, -1).repeat(4, 1)
        batch[1:] = perm[batch[1:]]
    else:
        batch = torch.randint(0, V, (4, 33), generator=g)
    x, y = batch[:, :-1], batch[:, 1:]
    m = tiny(pattern, d_model=48)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(300):
        loss = m.loss(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.1 * first:
            break
    assert loss.item() < 0.1 * first, f"{pattern}: loss {first:.3f} -> {loss.item():.3f}"


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_sublayers_compute_the_same_loss_and_gradients(backend: str) -> None:
    """compile_sublayers traces everything but the mixers' ops (graph breaks) and changes no parameter name."""
    torch.manual_seed(0)
    cfg = ModelConfig(pattern="(M-F-A[window=8]-F)*1-(G|R)", d_model=32, mixers={"A": {"heads": 2}})
    eager = HybridLM(cfg, vocab_size=40)
    compiled = HybridLM(cfg, vocab_size=40)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_sublayers(backend=backend)
    assert compiled.compiled == backend and list(compiled.state_dict()) == list(eager.state_dict())
    idx = torch.randint(0, 40, (2, 21))
    for _ in range(2):  # the second call reuses the compiled graphs
        losses = []
        for m in (eager, compiled):
            m.zero_grad(set_to_none=True)
            loss = m.loss(idx[:, :-1], idx[:, 1:])
            loss.backward()
            losses.append(loss)
        torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=1e-6)
        for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=lambda s, n=name: f"{n}: {s}")
