"""Per-head RMSNorm followed by a swish output gate, the output stage of GLA and RetNet.

Follows fla's ``FusedRMSNormSwishGate`` (``fla/modules/fused_norm_gate.py``), which Samba's copies of
GLA and MultiScaleRetention use (samba-facts.md §6.5): ``rmsnorm(o) * weight * g * sigmoid(g)`` over
the last (head) dimension, one weight vector shared by all heads, computed in float32 (float64 for
float64 inputs) and returned in ``o``'s dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["rms_norm_swish_gate", "RMSNormSwishGate"]


def rms_norm_swish_gate(o: Tensor, g: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    """``o / rms(o) * weight * silu(g)`` over the last dimension.

    Args:
        o: values to normalise (..., D).
        g: gate pre-activations, same shape as ``o``.
        weight: per-channel scale (D,).
        eps: added to the mean square.
    """
    acc = torch.float64 if o.dtype == torch.float64 else torch.float32
    o32 = o.to(acc)
    y = o32 * torch.rsqrt(o32.pow(2).mean(-1, keepdim=True) + eps) * weight.to(acc)
    return (y * F.silu(g.to(acc))).to(o.dtype)


class RMSNormSwishGate(nn.Module):
    """``rms_norm_swish_gate`` with a learnable weight of size ``dim`` (initialised to 1)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, o: Tensor, g: Tensor) -> Tensor:
        return rms_norm_swish_gate(o, g, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
