"""Multi-scale retention in pure PyTorch: the chunked form and the per-token recurrence.

Follows Sun et al. 2023, "Retentive Network: A Successor to Transformer for Large Language Models"
(§2.1, the chunkwise recurrent form) and fla's ``ops/retention/naive.py``; layout is fla's
(B, T, H, K). Per head ``h`` with fixed decay ``gamma_h = exp(log_decay[h])``::

    S_t = gamma_h S_{t-1} + k_t^T v_t        S_t: (K, V), S_0 = 0
    o_t = (scale * q_t) S_t

RoPE, if any, is applied to ``q`` and ``k`` by the caller. Accumulation is in float32 (float64 for
float64 inputs); the output has ``v``'s dtype. Every decay factor used is ``gamma^n`` with n >= 0,
built from position differences, so nothing can overflow for any ``log_decay <= 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["chunk_retention", "recurrent_retention"]


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _to_chunks(x: Tensor, C: int) -> Tensor:
    B, T, H, D = x.shape
    n = -(-T // C)
    x = x.transpose(1, 2)  # (B, H, T, D)
    if n * C != T:
        x = F.pad(x, (0, 0, 0, n * C - T))
    return x.reshape(B, H, n, C, D)  # (B, H, N, C, D)


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def chunk_retention(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, scale: float, chunk_size: int = 64
) -> Tensor:
    """Chunked retention: decay-masked matmuls inside chunks, a state recurrence over the T/C chunks.

    Args:
        q: queries (B, T, H, K), RoPE already applied.
        k: keys (B, T, H, K), RoPE already applied.
        v: values (B, T, H, V).
        log_decay: per-head log decay ``log(gamma_h)`` (H,), <= 0.
        scale: query scale (head_k_dim ** -0.5 in RetNet).
        chunk_size: tokens per chunk C (capped at T); T need not be a multiple of C (the last chunk
            is zero-padded).

    Returns:
        o (B, T, H, V) in ``v``'s dtype.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_retention: chunk_size must be >= 1; got {chunk_size}")
    out_dtype = v.dtype
    acc = _acc_dtype(q.dtype)
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = min(chunk_size, T)
    q, k, v = (_to_chunks(x.to(acc), C) for x in (q, k, v))
    q = q * scale
    n = q.shape[2]
    ld = log_decay.to(acc).view(H, 1, 1, 1)
    pos = torch.arange(C, device=q.device, dtype=acc)
    gap = pos.view(C, 1) - pos.view(1, C)  # (C, C): i - j
    tril = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    decay = torch.where(tril, gap * ld, float("-inf")).exp()  # (H, 1, C, C)
    o = ((q @ k.transpose(-1, -2)) * decay) @ v  # (B, H, N, C, V)

    q_in = q * ((pos.view(C, 1) + 1) * ld).exp()  # decay from the previous chunk's end to position i
    k_out = k * ((C - 1 - pos.view(C, 1)) * ld).exp()  # decay from position j to this chunk's end
    chunk_decay = (C * ld).exp().view(H, 1, 1)
    S = q.new_zeros(B, H, K, V)
    inter = []
    for q_t, k_t, v_t in zip(q_in.unbind(2), k_out.unbind(2), v.unbind(2), strict=True):
        inter.append(q_t @ S)
        S = S * chunk_decay + k_t.transpose(-1, -2) @ v_t
    o = o + torch.stack(inter, dim=2)

    o = o.reshape(B, H, n * C, V)[:, :, :T]  # (B, H, T, V)
    return o.transpose(1, 2).to(out_dtype)  # (B, T, H, V)


def recurrent_retention(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, scale: float) -> Tensor:
    """The per-token retention recurrence (the ground truth for ``chunk_retention``); no chunking.

    Returns:
        o (B, T, H, V) in ``v``'s dtype.
    """
    out_dtype = v.dtype
    acc = _acc_dtype(q.dtype)
    B, _, H, K = q.shape
    gamma = log_decay.to(acc).exp().view(H, 1, 1)
    S = q.new_zeros(B, H, K, v.shape[-1], dtype=acc)
    outs = []
    for q_t, k_t, v_t in zip(q.to(acc).unbind(1), k.to(acc).unbind(1), v.to(acc).unbind(1), strict=True):
        S = gamma * S + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)  # (B, H, K, V)
        outs.append(((q_t * scale).unsqueeze(-2) @ S).squeeze(-2))  # (B, H, V)
    return torch.stack(outs, dim=1).to(out_dtype)  # (B, T, H, V)
