"""Perplexity vs context length: prefix means of one long forward equal separate prefix forwards."""

from __future__ import annotations

import math

import pytest
import torch

from analysis.context_length import loss_by_position, position_losses, ppl_at_lengths, ppl_metrics
from blocks import HybridLM, ModelConfig

V = 13


@pytest.fixture(scope="module")
def model() -> HybridLM:
    torch.manual_seed(0)
    m = HybridLM(ModelConfig(pattern="M-A[window=4]-F", d_model=16, mixers={"A": {"heads": 2}}), vocab_size=V)
    return m.train()


def direct_ppl(model: HybridLM, tokens: torch.Tensor, L: int) -> float:
    inputs, targets = tokens[:, :L], tokens[:, 1 : L + 1]
    with torch.no_grad():
        return math.exp(model.loss(inputs.masked_fill(inputs == -100, 0), targets).item())


def test_prefix_perplexities_equal_separate_forwards(model: HybridLM) -> None:
    tokens = torch.randint(0, V, (5, 21))
    lengths = [4, 13, 20]
    got = ppl_at_lengths(model, tokens, lengths, batch_size=2)
    assert list(got) == lengths
    for L in lengths:
        assert got[L] == pytest.approx(direct_ppl(model, tokens, L), rel=1e-5)
    assert model.training


def test_ignored_targets_are_left_out(model: HybridLM) -> None:
    tokens = torch.randint(0, V, (3, 17))
    tokens[1, 10:] = -100
    got = ppl_at_lengths(model, tokens, [8, 16], batch_size=3)
    for L in (8, 16):
        assert got[L] == pytest.approx(direct_ppl(model, tokens, L), rel=1e-5)
    _, count = position_losses(model, tokens)
    assert count.tolist() == [3.0] * 9 + [2.0] * 7


def test_loss_by_position_buckets_average_back_to_the_mean(model: HybridLM) -> None:
    tokens = torch.randint(0, V, (4, 13))
    overall = math.log(direct_ppl(model, tokens, 12))
    buckets = loss_by_position(model, tokens, n_buckets=4, batch_size=3)
    assert [(s, e) for s, e, _ in buckets] == [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert sum(v for _, _, v in buckets) / 4 == pytest.approx(overall, rel=1e-5)
    uneven = loss_by_position(model, tokens, n_buckets=5)
    assert uneven[0][0] == 0 and uneven[-1][1] == 12
    assert all(a[1] == b[0] for a, b in zip(uneven[:-1], uneven[1:], strict=True))
    weighted = sum((e - s) * v for s, e, v in uneven) / 12
    assert weighted == pytest.approx(overall, rel=1e-5)


def test_ppl_metrics_names_and_values(model: HybridLM) -> None:
    tokens = torch.randint(0, V, (3, 17))
    out = ppl_metrics(model, tokens, train_length=8, lengths=[16, 4], batch_size=2)
    assert set(out) == {"val/loss", "val/ppl", "val/ppl_len4", "val/ppl_len8", "val/ppl_len16"}
    assert out["val/ppl"] == out["val/ppl_len8"] == pytest.approx(math.exp(out["val/loss"]), rel=1e-12)
    assert out["val/ppl_len16"] == pytest.approx(direct_ppl(model, tokens, 16), rel=1e-5)


def test_bad_lengths_name_the_fix(model: HybridLM) -> None:
    tokens = torch.randint(0, V, (2, 9))
    with pytest.raises(ValueError, match=r"\[1, 8\]"):
        ppl_at_lengths(model, tokens, [16], batch_size=2)
    with pytest.raises(ValueError, match="at least one"):
        ppl_at_lengths(model, tokens, [], batch_size=2)
    with pytest.raises(ValueError, match="n_buckets"):
        loss_by_position(model, tokens, n_buckets=9)
