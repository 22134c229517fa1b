"""Sliding-window attention from causal cuDNN attention on window-sized blocks: a kernel-path implementation.

With a window of W keys (the query itself included) and T > W, cut the sequence into blocks of W rows. Query
row ``i`` of block ``b`` sees

- the keys of its own block up to itself (``j <= i``): a causal attention of the block with itself, and
- the keys of block ``b - 1`` after the same row (``j >= i + 1``): the upper triangle. Reversing the order of
  the block's queries ``0..W-2`` and of the previous block's keys ``1..W-1`` makes it a causal attention too.

Both pieces run cuDNN's fused causal attention (``aten::_scaled_dot_product_cudnn_attention``, with its
log-sum-exp) with the blocks as the batch, and merge by log-sum-exp. The backward runs each piece's cuDNN
backward with the *merged* output and log-sum-exp, the identity ring attention rests on (torch's context
parallel, ring-flash-attention), so the gradients are those of the windowed softmax, not of each piece's own.
The work is that of causal attention over 2W keys for every 2W queries: at T = 2W, 3/4 of full causal
attention, against FlexAttention's block-sparse kernel over the same mask. GQA is not taken (cuDNN's op
wants one key head per query head); ``kernel.py`` routes it elsewhere.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["available", "takes", "attention"]


@functools.cache
def available() -> bool:
    """cuDNN's fused attention on an sm90+ GPU (where this was measured faster than FlexAttention)."""
    if not (torch.cuda.is_available() and torch.backends.cudnn.is_available()):
        return False
    if not hasattr(torch.ops.aten, "_scaled_dot_product_cudnn_attention_backward"):
        return False
    return torch.cuda.get_device_capability() >= (9, 0)


def takes(dtype: torch.dtype, head_dim: int, gqa: bool) -> bool:
    """Whether ``attention`` runs these inputs: fp16/bf16, one key head per query head (not ``gqa``), head size
    a multiple of 8 up to 128, and cuDNN attention not switched off (``torch.backends.cuda.enable_cudnn_sdp``)."""
    return (
        dtype in (torch.float16, torch.bfloat16) and not gqa and head_dim % 8 == 0 and head_dim <= 128
        and torch.backends.cuda.cudnn_sdp_enabled() and available()
    )


def _fwd(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor, tuple[Any, ...]]:
    """Causal cuDNN attention of (N, H, L, D) views: output (N, H, L, D), lse (N, H, L, 1), what the backward needs."""
    out, lse, cq, ck, mq, mk, seed, offset, _ = torch.ops.aten._scaled_dot_product_cudnn_attention(
        q, k, v, None, True, 0.0, True, False, scale=scale
    )
    return out, lse, (seed, offset, cq, ck, mq, mk)


def _bwd(do: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, extra: tuple[Any, ...],
         scale: float) -> tuple[Tensor, Tensor, Tensor]:
    seed, offset, cq, ck, mq, mk = extra
    dq, dk, dv = torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
        do, q, k, v, o, lse, seed, offset, None, cq, ck, mq, mk, 0.0, True, scale=scale
    )[:3]
    return dq, dk, dv


def _heads_first(x: Tensor, n: int, w: int) -> Tensor:
    """(B, n·w, H, D), contiguous -> the (B·n, H, w, D) view of its blocks."""
    B, _, H, D = x.shape
    return x.view(B * n, w, H, D).transpose(1, 2)  # (B·n, H, w, D)


def _reversed(x: Tensor, blocks: slice, rows: slice) -> Tensor:
    """Rows ``rows`` of blocks ``blocks`` of x (B, n, w, H, D), in reverse row order: (B·n', H, w', D), a copy."""
    part = x[:, blocks, rows].flip(2)  # (B, n', w', H, D)
    return part.flatten(0, 1).transpose(1, 2)  # (B·n', H, w', D)


def _in_order(g: Tensor, B: int) -> Tensor:
    """A piece's (B·n', H, w', D) result in reversed rows -> (B, n', w', H, D) in sequence order (a view)."""
    return g.unflatten(0, (B, -1)).flip(3).transpose(2, 3)


QUERIES, KEYS = (slice(1, None), slice(None, -1))  # blocks whose queries / keys meet in the upper triangle


class _BlockedWindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, w: int, scale: float) -> Tensor:  # type: ignore[override]
        B, T, H, D = q.shape  # contiguous, T a multiple of w, T > w
        n = T // w
        oa, lse_a, extra_a = _fwd(*(_heads_first(t, n, w) for t in (q, k, v)), scale)  # (B·n, H, w, D)
        lse = lse_a.reshape(B, n, H, w).clone()  # (B, n, H, w) fp32
        out = oa.unflatten(0, (B, n)).transpose(2, 3).contiguous()  # (B, n, w, H, D)
        saved_b: tuple[Tensor, ...] = ()
        extra_b: tuple[Any, ...] = ()
        if w > 1:  # the upper triangle: queries 0..w-2 of blocks 1.., keys 1..w-1 of the block before
            blocks = [t.view(B, n, w, H, D) for t in (q, k, v)]
            qb = _reversed(blocks[0], QUERIES, slice(0, w - 1))
            kb, vb = (_reversed(t, KEYS, slice(1, w)) for t in blocks[1:])
            ob, lse_b, extra_b = _fwd(qb, kb, vb, scale)
            ob = _in_order(ob, B)  # (B, n-1, w-1, H, D)
            lse_b = lse_b.reshape(B, n - 1, H, w - 1).flip(3)
            lse_a_part = lse[:, 1:, :, : w - 1]  # (B, n-1, H, w-1)
            merged = torch.logaddexp(lse_a_part, lse_b)
            wa = torch.exp(lse_a_part - merged).transpose(2, 3).unsqueeze(-1)  # (B, n-1, w-1, H, 1)
            wb = torch.exp(lse_b - merged).transpose(2, 3).unsqueeze(-1)
            part = out[:, 1:, : w - 1]
            part.copy_(part.to(wa.dtype) * wa + ob.to(wa.dtype) * wb)  # in the log-sum-exp's dtype, fp32 for bf16
            lse[:, 1:, :, : w - 1] = merged
            saved_b = (qb, kb, vb)
        out = out.view(B, T, H, D)
        ctx.save_for_backward(q, k, v, out, lse, *saved_b)
        ctx.extra = (extra_a, extra_b)
        ctx.w, ctx.scale = w, scale
        return out

    @staticmethod
    def backward(ctx: Any, do: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        q, k, v, out, lse, *saved_b = ctx.saved_tensors
        w, scale = ctx.w, ctx.scale
        extra_a, extra_b = ctx.extra
        B, T, H, D = q.shape
        n = T // w
        do = do.contiguous()
        piece_a = (_heads_first(t, n, w) for t in (do, q, k, v, out))
        grads = _bwd(*piece_a, lse.view(B * n, H, w, 1), extra_a, scale)  # (B·n, H, w, D) each
        dq, dk, dv = (g.unflatten(0, (B, n)).transpose(2, 3).contiguous() for g in grads)  # (B, n, w, H, D)
        if saved_b:
            qb, kb, vb = saved_b
            dob, ob = (_reversed(t.view(B, n, w, H, D), QUERIES, slice(0, w - 1)) for t in (do, out))
            lse_b = lse[:, 1:, :, : w - 1].flip(3).reshape(B * (n - 1), H, w - 1, 1)
            dqb, dkb, dvb = _bwd(dob, qb, kb, vb, ob, lse_b, extra_b, scale)  # (B·n', H, w-1, D)
            dq[:, 1:, : w - 1] += _in_order(dqb, B)
            dk[:, :-1, 1:] += _in_order(dkb, B)
            dv[:, :-1, 1:] += _in_order(dvb, B)
        return dq.view(B, T, H, D), dk.view(B, T, H, D), dv.view(B, T, H, D), None, None


def attention(q: Tensor, k: Tensor, v: Tensor, window: int | None, scale: float) -> Tensor:
    """Causal attention with a sliding window of ``window`` keys; (B, T, H, D) in and out, one key head per head.

    ``window`` None or >= T is full causal attention: one cuDNN call through SDPA. Otherwise T is padded to a
    multiple of the window with zero rows at the end (keys after every real query, so no real query sees them).
    """
    B, T, H, D = q.shape
    if window is None or window >= T:
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.CUDNN_ATTENTION):
            o = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=True, scale=scale)
        return o.transpose(1, 2)  # (B, T, H, D)
    pad = -T % window
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v))  # (B, T + pad, H, D)
    q, k, v = (t.contiguous() for t in (q, k, v))
    o = _BlockedWindowAttention.apply(q, k, v, window, scale)
    return o[:, :T] if pad else o
