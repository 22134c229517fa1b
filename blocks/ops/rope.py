"""Rotary position embedding (RoPE), GPT-NeoX half-split form, computed on the fly for any length.

Follows the official Samba code (litgpt ``build_rope_cache`` + flash-attn ``apply_rotary_emb_func``
with ``interleaved=False``; samba-facts.md §6.3): channel ``i < D/2`` is rotated together with channel
``i + D/2`` by the angle ``pos * base**(-2i/D)``. Unlike the official code, which stores its cos/sin
cache in bf16, the angles, cosines and sines are computed in float32 (float64 for float64 inputs) at
every call, so there is no buffer in the state_dict and any length (evaluation beyond the training
length) works. The (T, D/2) tables are built by an opaque op (``hybridlab::rope_cos_sin``), so a compiled
sublayer reads them instead of recomputing cos and sin for every element of q and k, and ``rope_qk`` rotates
queries and keys with one table (SWA and RetNet both call it).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rope_cos_sin", "apply_rope", "rope", "rope_qk"]


@torch.library.custom_op("hybridlab::rope_cos_sin", mutates_args=())
def _cos_sin_op(
    seq_len: int, dim: int, base: float, offset: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The tables, behind an op torch.compile cannot see into. Traced through, inductor fused the angles,
    cosines and sines into the rotation kernel and recomputed them for every element of q and k (batch x
    heads times over; 3.05 ms of a samba-421m batch-8 step on an H200, 1.49 ms reading tables)."""
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, device=device, dtype=dtype) / dim)  # (D/2,)
    pos = torch.arange(offset, offset + seq_len, device=device, dtype=dtype)  # (T,)
    angles = torch.outer(pos, inv_freq)  # (T, D/2)
    return angles.cos(), angles.sin()


@_cos_sin_op.register_fake
def _(seq_len: int, dim: int, base: float, offset: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    return torch.empty(seq_len, dim // 2, device=device, dtype=dtype), torch.empty(seq_len, dim // 2, device=device, dtype=dtype)


def rope_cos_sin(
    seq_len: int,
    dim: int,
    base: float = 10000.0,
    *,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Cosines and sines of the rotation angles for positions ``offset .. offset+seq_len-1``.

    Args:
        seq_len: number of positions T.
        dim: rotated head size D (even).
        base: the RoPE base (10,000 in Samba).
        offset: the first position.
        device: where to build them (default: torch's default device).
        dtype: float32 or float64; the angles are computed in this precision.

    Returns:
        ``(cos, sin)``, each (T, D/2).
    """
    if dim % 2:
        raise ValueError(f"rope: the head size must be even; got {dim}")
    where = torch.device(device) if device is not None else torch.get_default_device()
    return _cos_sin_op(seq_len, dim, float(base), offset, where, dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (B, T, H, D) by ``cos``/``sin`` (T, D/2), half-split; the result has x's dtype."""
    half = x.shape[-1] // 2
    xf = x.to(cos.dtype).unflatten(-1, (2, half))  # (B, T, H, 2, D/2): [x1, x2]
    c = cos[:, None, None, :]  # (T, 1, 1, D/2)
    s = torch.stack((-sin, sin), dim=-2)[:, None]  # (T, 1, 2, D/2)
    # [x1, x2] * cos + [x2, x1] * [-sin, sin] = [x1 cos - x2 sin, x2 cos + x1 sin]; flip has no
    # zero-filling backward, unlike slicing the halves.
    return (xf * c + xf.flip(-2) * s).flatten(-2).to(x.dtype)


def _tables_for(x: Tensor, base: float, offset: int) -> tuple[Tensor, Tensor]:
    """The tables for ``x`` (B, T, H, D): float32, float64 when ``x`` is float64."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return rope_cos_sin(x.shape[1], x.shape[-1], base, offset=offset, device=x.device, dtype=dtype)


def rope(x: Tensor, base: float = 10000.0, offset: int = 0) -> Tensor:
    """Apply RoPE to ``x`` (B, T, H, D) at positions ``offset .. offset+T-1``.

    The rotation is computed in float32 (float64 when ``x`` is float64) and cast back to ``x.dtype``.
    """
    return apply_rope(x, *_tables_for(x, base, offset))


def rope_qk(q: Tensor, k: Tensor, base: float = 10000.0, offset: int = 0) -> tuple[Tensor, Tensor]:
    """``rope(q), rope(k)`` with one table: q (B, T, H, D) and k (B, T, Hkv, D) share T, D and dtype."""
    cos, sin = _tables_for(q, base, offset)
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin)
