"""GLA on the GPU: a wrapper of fla's Triton ``chunk_gla`` with the signature of ``reference.chunk_gla``.

fla (flash-linear-attention, ``fla-core==0.6.0``) is imported inside the function, never at module
import, so this file imports on any machine. fla 0.6.0's ``chunk_gla(q, k, v, g, scale=None,
initial_state=None, output_final_state=False, state_v_first=False, cu_seqlens=None, ...)`` takes the
same (B, T, H, K) layout and natural-log forget gates ``g`` and returns ``(o, final_state)``; it
chooses its own chunk size (``min(64, max(16, next_power_of_2(T)))``), so ``chunk_size`` only tunes
the reference path and the result is the same recurrence either way.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blocks.ops.fla_status import fla_kernel_status

__all__ = ["chunk_gla", "kernel_status"]

def kernel_status() -> str | None:
    """None when fla's GLA kernel can run here; otherwise why not and how to fix it."""
    return fla_kernel_status("fla.ops.gla", "GLA")


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def chunk_gla(q: Tensor, k: Tensor, v: Tensor, gk: Tensor, scale: float, chunk_size: int = 64) -> Tensor:
    """Same contract as ``blocks.ops.gla.reference.chunk_gla``: (B, T, H, K) inputs, o (B, T, H, V)."""
    from fla.ops.gla import chunk_gla as fla_chunk_gla

    o, _ = fla_chunk_gla(q, k, v, gk, scale=scale, initial_state=None, output_final_state=False)
    return o
