"""Chunked linear + cross-entropy computes the plain head's loss and gradients, a chunk of tokens at a time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blocks import HybridLM, ModelConfig
from blocks.loss import linear_cross_entropy


def _plain(x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    logits = F.linear(x, w)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # as HybridLM's plain head
    return F.cross_entropy(logits.flatten(0, 1), t.flatten(), ignore_index=-100)


def _grads(fn, x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[no-untyped-def]
    x, w = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
    loss = fn(x, w, t)
    loss.backward()
    return loss.detach(), x.grad, w.grad


@pytest.mark.parametrize("chunk", [1, 16, 37, 1000])  # one token, uneven chunks, one chunk, more than N
def test_loss_and_gradients_equal_the_plain_head_in_float64(chunk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 37, 24, generator=gen, dtype=torch.float64)
    w = torch.randn(101, 24, generator=gen, dtype=torch.float64)
    t = torch.randint(0, 101, (3, 37), generator=gen)
    t[0, :5] = -100  # ignored targets neither count nor get gradients
    got = _grads(lambda a, b, c: linear_cross_entropy(a, b, c, chunk), x, w, t)
    want = _grads(_plain, x, w, t)
    for g, e in zip(got, want, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    assert got[1][0, :5].abs().max() == 0


def test_under_bf16_autocast_it_matches_the_plain_head_to_bf16_precision() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, 32, generator=gen)
    w = torch.randn(300, 32, generator=gen) / 4
    t = torch.randint(0, 300, (4, 64), generator=gen)

    def under_autocast(fn):  # type: ignore[no-untyped-def]
        def run(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn(a, b, c)

        return run

    loss, gx, gw = _grads(under_autocast(lambda a, b, c: linear_cross_entropy(a, b, c, 50)), x, w, t)
    ref_loss, ref_gx, ref_gw = _grads(under_autocast(_plain), x, w, t)
    assert loss.dtype == torch.float32 and gx.dtype == x.dtype and gw.dtype == w.dtype
    assert abs(loss.item() - ref_loss.item()) <= 1e-6 * abs(ref_loss.item())  # both take bf16 logits to fp32
    for g, e in ((gx, ref_gx), (gw, ref_gw)):
        assert ((g - e).norm() / e.norm()).item() < 1e-2  # bf16 products, summed in another order


def test_all_targets_ignored_gives_zero_loss_and_zero_gradients() -> None:
    x, w = torch.randn(2, 5, 8), torch.randn(11, 8)
    loss, gx, gw = _grads(lambda a, b, c: linear_cross_entropy(a, b, c, 3), x, w, torch.full((2, 5), -100))
    assert loss.item() == 0 and gx.abs().max() == 0 and gw.abs().max() == 0


def test_a_chunk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk must be a positive int; got 0"):
        linear_cross_entropy(torch.randn(2, 3, 4), torch.randn(5, 4), torch.zeros(2, 3, dtype=torch.long), 0)


@pytest.mark.parametrize("tied", [True, False])
def test_a_model_with_loss_chunk_has_the_same_loss_and_gradients(tied: bool) -> None:
    torch.manual_seed(0)
    model = HybridLM(ModelConfig(pattern="M-F-A[window=8]-F", d_model=32, vocab_size=53, tie_embeddings=tied,
                                 mixers={"A": {"heads": 2}})).double()
    idx = torch.randint(0, 53, (2, 19))
    targets = torch.randint(0, 53, (2, 19))

    def run(chunk: int | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        model.loss_chunk = chunk
        loss = model.loss(idx, targets)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    (loss, grads), (ref, ref_grads) = run(7), run(None)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-10, atol=1e-12, msg=name)
