"""The LM head's loss forms compute the plain head's loss and gradients: the chunked linear + cross-entropy, a chunk
of tokens at a time, and the cross-entropy written for inductor, on logits kept in their own dtype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blocks import HybridLM, ModelConfig
from blocks.loss import cross_entropy, linear_cross_entropy


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


def _ce_grads(fn, logits: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    logits = logits.detach().requires_grad_(True)
    loss = fn(logits, t)
    loss.backward()
    return loss.detach(), logits.grad


def _plain_ce(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), t, ignore_index=-100)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_cross_entropy_equals_f_cross_entropy_in_float64(compiled: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(37, 101, generator=gen, dtype=torch.float64) * 3
    t = torch.randint(0, 101, (37,), generator=gen)
    t[:5] = -100  # ignored targets neither count nor get gradients
    fn = torch.compile(cross_entropy, dynamic=False) if compiled else cross_entropy
    (loss, grad), (ref, ref_grad) = _ce_grads(fn, logits, t), _ce_grads(_plain_ce, logits, t)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-13)
    assert grad[:5].abs().max() == 0


def test_cross_entropy_of_bf16_logits_is_taken_in_fp32_and_returns_a_bf16_gradient() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(64, 300, generator=gen) * 4).bfloat16()
    t = torch.randint(0, 300, (64,), generator=gen)
    (loss, grad), (ref, ref_grad) = _ce_grads(cross_entropy, logits, t), _ce_grads(_plain_ce, logits, t)
    assert loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)  # both read the same bf16 values in fp32
    torch.testing.assert_close(grad, ref_grad, rtol=2**-7, atol=0)  # fp32 math on both, one bf16 rounding apart


def test_cross_entropy_with_every_target_ignored_is_nan_as_f_cross_entropy() -> None:
    logits, t = torch.randn(4, 7), torch.full((4,), -100)
    (loss, grad), (ref, _) = _ce_grads(cross_entropy, logits, t), _ce_grads(_plain_ce, logits, t)
    assert loss.isnan() and ref.isnan() and grad.abs().max() == 0


def test_a_compiled_model_takes_the_same_loss_and_gradients_as_the_eager_one() -> None:
    """Compiled, the head's loss is ``cross_entropy``; eager, ``F.cross_entropy``: one function."""
    torch.manual_seed(0)
    cfg = ModelConfig(pattern="F-A[window=8]-F", d_model=32, vocab_size=53, mixers={"A": {"heads": 2}})
    eager = HybridLM(cfg).double()
    compiled = HybridLM(cfg).double()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_sublayers()
    idx, targets = torch.randint(0, 53, (2, 19)), torch.randint(0, 53, (2, 19))
    targets[0, :3] = -100
    results = []
    for model in (eager, compiled):
        loss = model.loss(idx, targets)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss, grads), (ref, ref_grads) = results[1], results[0]
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12, msg=name)
