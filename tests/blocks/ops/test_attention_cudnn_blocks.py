"""Sliding-window attention as two causal attentions per window-sized block, merged by log-sum-exp.

The block decomposition and its backward (each piece's backward run with the merged output and log-sum-exp) are
checked on the CPU in float64: the two cuDNN calls are replaced by an explicit causal softmax attention with the
same contract (output and log-sum-exp forward; gradients from the given output and log-sum-exp backward, as a
FlashAttention-style kernel computes them). The cuDNN kernels themselves are checked on the GPU
(tests/blocks/test_swa.py, every attention implementation against the reference).
"""

from __future__ import annotations

import pytest
import torch

from blocks.ops.attention import cudnn_blocks, reference


def _causal_scores(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    s = q @ k.transpose(-1, -2) * scale  # (N, H, L, L)
    L = q.shape[-2]
    return s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))


def _fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):  # type: ignore[no-untyped-def]
    s = _causal_scores(q, k, scale)
    lse = s.logsumexp(-1, keepdim=True)  # (N, H, L, 1), as cuDNN returns it
    return torch.exp(s - lse) @ v, lse, ("seed", "offset", None, None, 0, 0)


def _bwd(do, q, k, v, o, lse, extra, scale):  # type: ignore[no-untyped-def]
    assert extra == ("seed", "offset", None, None, 0, 0)  # the forward's extras come back to its backward
    p = torch.exp(_causal_scores(q, k, scale) - lse)  # from the given log-sum-exp, not recomputed
    dp = do @ v.transpose(-1, -2)
    ds = p * (dp - (do * o).sum(-1, keepdim=True))  # from the given output
    return ds @ k * scale, ds.transpose(-1, -2) @ q * scale, p.transpose(-1, -2) @ do


@pytest.fixture
def fp64_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cudnn_blocks, "_fwd", _fwd)
    monkeypatch.setattr(cudnn_blocks, "_bwd", _bwd)


def _blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scale: float) -> torch.Tensor:
    """``cudnn_blocks.attention`` for window < T, without its SDPA context (which wants CUDA)."""
    T = q.shape[1]
    pad = -T % window
    q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, 0, 0, pad)).contiguous() for t in (q, k, v))
    return cudnn_blocks._BlockedWindowAttention.apply(q, k, v, window, scale)[:, :T]


@pytest.mark.usefixtures("fp64_pieces")
@pytest.mark.parametrize(("seq_len", "window"), [(37, 1), (37, 2), (37, 5), (40, 8), (37, 36), (64, 16), (9, 4)])
def test_blocks_give_the_windowed_softmax_and_its_gradients(seq_len: int, window: int) -> None:
    gen = torch.Generator().manual_seed(seq_len * 100 + window)
    q, k, v, do = (torch.randn(2, seq_len, 3, 8, generator=gen, dtype=torch.float64) for _ in range(4))  # (B, T, H, D)
    results = []
    for fn in (reference.attention, _blocked):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        o = fn(*leaves, window, 0.3)
        o.backward(do)
        results.append([o] + [t.grad for t in leaves])
    for name, want, got in zip(("out", "dq", "dk", "dv"), *results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)


def test_it_takes_half_precision_one_key_head_per_query_head_and_head_sizes_up_to_128() -> None:
    if not cudnn_blocks.available():
        assert not cudnn_blocks.takes(torch.bfloat16, 64, gqa=False)  # no sm90 GPU here: never taken
        return
    assert cudnn_blocks.takes(torch.bfloat16, 128, gqa=False)
    assert not cudnn_blocks.takes(torch.float32, 128, gqa=False)
    assert not cudnn_blocks.takes(torch.bfloat16, 128, gqa=True)
    assert not cudnn_blocks.takes(torch.bfloat16, 256, gqa=False)
    assert not cudnn_blocks.takes(torch.bfloat16, 20, gqa=False)
