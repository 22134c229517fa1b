"""The Mamba-1 selective scan and the fused Mamba layer on mamba_ssm's CUDA kernels, imported lazily.

Three entry points, each the kernel form of a piece of ``blocks/mixers/mamba.py``:

- ``selective_scan``: ``selective_scan_fn(u, delta, A, B, C, D)``, same signature and layout as
  ``reference.selective_scan`` (used when a diagnostic capture needs delta, and by the parity tests).
- ``gated_scan``: ``selective_scan_fn`` with the delta bias, softplus and the ``SiLU(z)`` gate fused in.
- ``mamba_inner``: mamba_ssm's ``mamba_inner_fn`` (causal conv, x/dt projections, scan, gate and output
  projection in one autograd function that recomputes the conv and delta in backward), which needs
  causal-conv1d's CUDA extension.

``fused_impl()`` says which of the last two a Mamba layer uses here, ``conv_impl()`` which causal conv the
``gated_scan`` route uses (fla's Triton conv, else the mixer's own); the choice is logged once (a warning
without causal-conv1d) and recorded per run by the mixer's ``kernel_route``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["selective_scan", "gated_scan", "mamba_inner", "fused_impl", "conv_impl", "fla_causal_conv_silu"]

log = logging.getLogger("hybridlab.backend")
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
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

    When u and delta differ in dtype (the mixer keeps delta in fp32 under bf16) or are fp64, the scan
    runs in fp32 rather than rounding delta down; the output is cast back to u's dtype.
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


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def gated_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor, delta_bias: Tensor
) -> Tensor:
    """``scan(u, softplus(delta + delta_bias), A, B, C, D) * SiLU(z)`` in one kernel.

    Args:
        u, z: (batch, D, L); delta: (batch, D, L) before bias and softplus; B, C: (batch, N, L);
            A: (D, N); D, delta_bias: (D,). The bias is added in fp32 inside the kernel.

    Returns:
        The gated output (batch, D, L) in ``u``'s dtype (u, delta, B, C and z share one dtype).
    """
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    dtype = u.dtype if u.dtype in _KERNEL_DTYPES else torch.float32
    return selective_scan_fn(
        u.to(dtype), delta.to(dtype), A.float(), B.to(dtype), C.to(dtype), D.float(),
        z=z.to(dtype), delta_bias=delta_bias.float(), delta_softplus=True,
    ).to(u.dtype)


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def mamba_inner(
    xz: Tensor,
    batch: int,
    conv_weight: Tensor,
    conv_bias: Tensor,
    x_proj_weight: Tensor,
    dt_proj_weight: Tensor,
    out_proj_weight: Tensor,
    A: Tensor,
    D: Tensor,
    delta_bias: Tensor,
) -> Tensor:
    """mamba_ssm ``mamba_inner_fn``: the whole Mamba layer after ``in_proj``.

    Args:
        xz: ``in_proj`` output as ``W_in @ x^T``, (2·d_inner, batch·L), contiguous. Viewed here, outside any
            compiled graph, as (batch, 2·d_inner, L): a compiled caller's output and its gradient stay
            contiguous, so autograd never copies the gradient into the layout of a strided view.
        batch: the batch size.
        conv_weight: (d_inner, 1, d_conv); conv_bias, D, delta_bias: (d_inner,).
        x_proj_weight: (dt_rank + 2N, d_inner); dt_proj_weight: (d_inner, dt_rank);
            out_proj_weight: (d_model, d_inner); A: (d_inner, N).

    Returns:
        (batch, L, d_model).

    mamba_ssm's default ``checkpoint_lvl=1`` recomputes the conv output and delta in the backward. Keeping
    them (``checkpoint_lvl=0``) saved 0.5 ms of a 230 ms samba-421m batch-8 step for 2.2 GB more memory, a
    gain the A/B could not tell from noise (docs/BENCHMARKS.md §6), so the default stays.
    """
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn

    xz = xz.view(xz.shape[0], batch, -1).transpose(0, 1)  # (batch, 2·d_inner, L), unit stride along L
    return mamba_inner_fn(
        xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, out_proj_weight, None,
        A.float(), None, None, D.float(), delta_bias=delta_bias.float(), delta_softplus=True,
    )


@functools.cache
def fused_impl() -> str:
    """``"mamba_inner_fn"`` when causal-conv1d's CUDA extension imports next to mamba_ssm, else
    ``"selective_scan_fn"`` (the gated scan after a separate causal conv)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import causal_conv1d_fwd_function
    except (ImportError, OSError):
        causal_conv1d_fwd_function = None
    if causal_conv1d_fwd_function is None:  # cached: said once per process
        log.warning("mamba kernel: causal-conv1d not importable, layers run selective_scan_fn after the %s causal "
                    "conv; pip install causal-conv1d for the fused mamba_inner_fn", conv_impl())
        return "selective_scan_fn"
    log.info("mamba kernel: layers run mamba_inner_fn (causal-conv1d conv, projections, gated scan fused)")
    return "mamba_inner_fn"


@functools.cache
def _fla_conv() -> Callable[..., tuple[Tensor, Tensor | None]] | None:
    try:
        from fla.modules.causal_conv1d import causal_conv1d
    except (ImportError, OSError, RuntimeError):
        return None
    return causal_conv1d


def conv_impl() -> str:
    """The causal conv of the ``gated_scan`` route: ``"fla"`` (Triton) when fla imports, else ``"torch"``."""
    return "fla" if _fla_conv() is not None else "torch"


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def fla_causal_conv_silu(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``SiLU(causal_conv(x))`` on fla's Triton kernel; x (B, T, D), weight (D, K), bias (D,)."""
    y = _fla_conv()(x, weight.to(x.dtype), bias.to(x.dtype), activation="silu")
    return y[0] if isinstance(y, tuple) else y
