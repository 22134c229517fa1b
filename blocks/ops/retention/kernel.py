"""Retention on the GPU: a wrapper of fla's Triton ``chunk_retention`` with the signature of
``reference.chunk_retention``.

fla (flash-linear-attention, ``fla-core==0.6.0``) is imported inside the function, never at module
import. fla 0.6.0's ``chunk_retention(q, k, v, scale=None, initial_state=None,
output_final_state=False, cu_seqlens=None, **kwargs)`` takes (B, T, H, K) and returns
``(o, final_state)``. It has no decay argument: it hard-codes ``g_gamma = log(1 - 2**(-5 - h))``
for h = 0..H-1 (computed in float32) and calls ``chunk_simple_gla``. That is the decay
``blocks.mixers.retnet.retention_log_decay`` gives, so ``log_decay`` is only checked for its length
here (a per-call value check would synchronise the GPU); ``test_retnet`` checks the formula. For
h >= 20 fla's float32 ``1 - 2**(-5-h)`` rounds to 1 (no decay), while the reference path keeps the
float64 value; the difference is below 2**-25 per step. ``chunk_size`` only tunes the reference path
(fla uses 64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from blocks.ops.fla_status import fla_kernel_status

__all__ = ["chunk_retention", "kernel_status"]

def kernel_status() -> str | None:
    """None when fla's RetNet kernel can run here; otherwise why not and how to fix it."""
    return fla_kernel_status("fla.ops.retention", "RetNet")


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def chunk_retention(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, scale: float, chunk_size: int = 64
) -> Tensor:
    """Same contract as ``blocks.ops.retention.reference.chunk_retention`` (fla's fixed decays only)."""
    from fla.ops.retention import chunk_retention as fla_chunk_retention

    if log_decay.shape != (q.shape[2],):
        raise ValueError(
            f"chunk_retention (kernel): log_decay must have one entry per head, shape ({q.shape[2]},); "
            f"got {tuple(log_decay.shape)}"
        )
    o, _ = fla_chunk_retention(q, k, v, scale=scale, initial_state=None, output_final_state=False)
    return o
