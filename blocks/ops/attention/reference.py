"""Causal (sliding-window) softmax attention in pure PyTorch: the ``reference`` path and its ground truths.

The window convention, defined once here and shared by every path (conventions.md anti-pattern 9):
``window = W`` means a query at position ``i`` sees the keys at positions ``j`` with ``j <= i`` and
``i - j < W``, i.e. ``W`` keys *including itself* (``max(0, i-W+1) .. i``). This is flash-attn's
``window_size=(W-1, 0)`` as called by the official Samba code (samba-facts.md §6.2) and fla's
``parallel_attn(window_size=W)``. ``window=None`` is full causal attention.

Layout of every function here and in ``kernel.py``: ``q`` (B, T, H, D), ``k`` and ``v`` (B, T, Hkv, D)
with ``H % Hkv == 0`` (GQA; query head ``h`` reads KV head ``h // (H // Hkv)``, as flash-attn, fla and
SDPA's ``enable_gqa``), output (B, T, H, D) in q's dtype. Inputs below float32 are computed in float32.

- ``attention``: the fast path. ``W < T`` uses the blocked form of cpu-kernels.md §3b: queries in blocks
  of W attend to a span of 2W keys through SDPA with a small (W, 2W) mask, so the cost is O(T·W), not
  O(T²) as a band mask over all of (T, T) would be; ``W >= T`` or ``None`` is SDPA with ``is_causal``.
- ``naive_attention``: explicit (T, T) masked softmax (fla ``ops/attn/naive.py`` style), the ground truth.
- ``step_attention``: one query row at a time over the keys of its window, a per-token baseline.
- ``attention_probs``: the explicit probabilities (B, H, T, T), zero outside the window (diagnostics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention", "naive_attention", "step_attention", "attention_probs", "window_mask"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def window_mask(seq_len: int, window: int | None, device: torch.device | str | None = None) -> Tensor:
    """The (T, T) bool mask: ``mask[i, j]`` is True iff key ``j`` is visible to query ``i``."""
    i = torch.arange(seq_len, device=device)[:, None]
    j = torch.arange(seq_len, device=device)[None, :]
    visible = j <= i
    if window is not None:
        visible = visible & (i - j < window)
    return visible


def _expand_kv(x: Tensor, heads: int) -> Tensor:
    """(B, T, Hkv, D) -> (B, T, H, D), each KV head repeated for its group of query heads."""
    groups = heads // x.shape[2]
    return x if groups == 1 else x.repeat_interleave(groups, dim=2)


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def attention(q: Tensor, k: Tensor, v: Tensor, window: int | None, scale: float) -> Tensor:
    """Causal attention with an optional sliding window; (B, T, H, D) in, (B, T, H, D) out.

    Args:
        q: queries (B, T, H, D).
        k: keys (B, T, Hkv, D), ``H % Hkv == 0``.
        v: values (B, T, Hkv, D).
        window: keys a query sees, itself included; None for full causal attention.
        scale: the softmax scale (1/sqrt(D) in Samba).
    """
    B, T, H, D = q.shape
    out_dtype = q.dtype
    dtype = _compute_dtype(q.dtype)
    q, k, v = (t.to(dtype).transpose(1, 2) for t in (q, k, v))  # (B, H|Hkv, T, D)
    if window is None or window >= T:
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=k.shape[1] != H)
    else:
        o = _blocked(q, k, v, window, scale)
    return o.transpose(1, 2).to(out_dtype)  # (B, T, H, D)


def _blocked(q: Tensor, k: Tensor, v: Tensor, window: int, scale: float) -> Tensor:
    """Blocked sliding window on (B, H, T, D) queries and (B, Hkv, T, D) keys/values, ``window < T``.

    Query block ``n`` (positions ``nW .. nW+W-1``) attends to the key span ``nW-W .. nW+W-1``; keys are
    left-padded by W so every span has 2W entries. In block-local indices (query ``a``, key ``b``) the
    window rule ``0 <= i - j < W`` becomes ``a < b <= a + W``; the padding keys of block 0 (``b < W``)
    are masked too. Queries past T (right padding) see at least their own (zero) key, so no row is empty.
    """
    B, H, T, D = q.shape
    W = window
    if k.shape[1] != H:
        groups = H // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, H, T, D)
    nb = -(-T // W)
    pad = nb * W - T
    if pad:
        q = F.pad(q, (0, 0, 0, pad))  # (B, H, nb*W, D)
    k = F.pad(k, (0, 0, W, pad))  # (B, H, W + nb*W, D)
    v = F.pad(v, (0, 0, W, pad))
    qb = q.reshape(B * H, nb, W, D)
    kb = k.unfold(2, 2 * W, W).transpose(-1, -2).reshape(B * H, nb, 2 * W, D)
    vb = v.unfold(2, 2 * W, W).transpose(-1, -2).reshape(B * H, nb, 2 * W, D)
    a = torch.arange(W, device=q.device)[:, None]
    b = torch.arange(2 * W, device=q.device)[None, :]
    mask = ((b > a) & (b <= a + W)).expand(nb, W, 2 * W).clone()  # (nb, W, 2W)
    mask[0, :, :W] = False
    o = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale)  # (B*H, nb, W, D)
    o = o.reshape(B, H, nb * W, D)
    return o[:, :, :T] if pad else o


def attention_probs(q: Tensor, k: Tensor, window: int | None, scale: float) -> Tensor:
    """Explicit attention probabilities (B, H, T, T), zero outside the causal window.

    Computed in float32 (float64 for float64 inputs) from post-RoPE ``q`` (B, T, H, D) and ``k``
    (B, T, Hkv, D).
    """
    B, T, H, D = q.shape
    dtype = _compute_dtype(q.dtype)
    k = _expand_kv(k, H)
    scores = torch.einsum("bihd,bjhd->bhij", q.to(dtype), k.to(dtype)) * scale  # (B, H, T, T)
    scores = scores.masked_fill(~window_mask(T, window, q.device), float("-inf"))
    return scores.softmax(dim=-1)


def naive_attention(q: Tensor, k: Tensor, v: Tensor, window: int | None, scale: float) -> Tensor:
    """Ground truth for ``attention``: an explicit (T, T) masked softmax. Same signature and layout."""
    probs = attention_probs(q, k, window, scale)  # (B, H, T, T)
    v = _expand_kv(v, q.shape[2]).to(probs.dtype)
    return torch.einsum("bhij,bjhd->bihd", probs, v).to(q.dtype)  # (B, T, H, D)


def step_attention(q: Tensor, k: Tensor, v: Tensor, window: int | None, scale: float) -> Tensor:
    """Per-token baseline for ``attention``: a loop over query positions, one masked-softmax row each.

    Row ``i`` takes the keys ``max(0, i-W+1) .. i`` explicitly. Same signature and layout.
    """
    B, T, H, D = q.shape
    dtype = _compute_dtype(q.dtype)
    k = _expand_kv(k, H).to(dtype)
    v = _expand_kv(v, H).to(dtype)
    rows = []
    for i, q_i in enumerate(q.to(dtype).unbind(1)):  # q_i (B, H, D)
        lo = 0 if window is None else max(0, i - window + 1)
        scores = torch.einsum("bhd,bjhd->bhj", q_i, k[:, lo : i + 1]) * scale  # (B, H, i+1-lo)
        rows.append(torch.einsum("bhj,bjhd->bhd", scores.softmax(dim=-1), v[:, lo : i + 1]))
    return torch.stack(rows, dim=1).to(q.dtype)  # (B, T, H, D)
