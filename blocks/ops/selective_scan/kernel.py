"""The Mamba-1 selective scan on mamba_ssm's CUDA kernel (``selective_scan_fn``), imported lazily.

Same signature and layout as ``reference.selective_scan``. The kernel takes u, delta, B and C in one
dtype (fp32, fp16 or bf16) and A, D in fp32. When u and delta differ in dtype (the mixer keeps delta in
fp32 under bf16, as mamba_ssm adds the delta bias in fp32) or are fp64, the scan runs in fp32 rather than
rounding delta down; the output is cast back to u's dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["selective_scan"]

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None
) -> Tensor:
    """mamba_ssm ``selective_scan_fn(u, delta, A, B, C, D)`` with no z gate, delta bias or softplus.

    Args:
        u: inputs, (batch, D, L).
        delta: step sizes, (batch, D, L), already biased and softplus-ed.
        A: state matrix, (D, N).
        B, C: input and output projections per token, (batch, N, L).
        D: skip weight, (D,), or None.

    Returns:
        y, (batch, D, L), in ``u``'s dtype.
    """
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    same = u.dtype == delta.dtype and u.dtype in _KERNEL_DTYPES
    dtype = u.dtype if same else torch.float32  # the kernel takes one dtype for u, delta, B, C
    y = selective_scan_fn(
        u.to(dtype),
        delta.to(dtype),
        A.float(),
        B.to(dtype),
        C.to(dtype),
        None if D is None else D.float(),
        z=None,
        delta_bias=None,
        delta_softplus=False,
    )
    return y.to(u.dtype)
