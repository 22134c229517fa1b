"""Causal (sliding-window) attention on the GPU: the ``kernel`` path, same signature as ``reference.attention``.

Three implementations, tried in this order (design.md "Backends"); every import is lazy:

1. flash-attn 2 (``flash_attn_func(q, k, v, causal=True, softmax_scale=scale, window_size=(W-1, 0))``),
   exactly the call of the official Samba code (samba-facts.md §6.2). Used for fp16/bf16 inputs with
   head size <= 256, the only ones it takes.
2. PyTorch FlexAttention (``torch.nn.attention.flex_attention``) with a sliding-window ``BlockMask``
   built by ``create_block_mask``, cached per (T, window, device); both compiled once with
   ``torch.compile``. Needs only torch (and the triton it ships with), any float dtype; head sizes
   below 16 are zero-padded to 16.
3. fla's ``parallel_attn(q, k, v, scale=scale, window_size=W)`` (fla >= the versions with
   ``window_size``).

The window convention and layout are those of ``reference.py``: ``window=W`` means W keys per query
including itself, ``None`` full causal; ``q`` (B, T, H, D), ``k``/``v`` (B, T, Hkv, D), output
(B, T, H, D). ``kernel_impl(dtype)`` names the implementation a call with that dtype uses; the first
call of each implementation is logged once.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["IMPLEMENTATIONS", "attention", "kernel_impl", "available_impls"]

log = logging.getLogger("hybridlab.backend")
_HALF = (torch.float16, torch.bfloat16)
_FLEX_MIN_HEAD_DIM = 16
_said: set[str] = set()


@functools.cache
def _flash_attn_func() -> Callable[..., Tensor] | None:
    try:
        from flash_attn import flash_attn_func
    except (ImportError, OSError):
        return None
    if "window_size" not in inspect.signature(flash_attn_func).parameters:
        return None  # flash-attn < 2.3 has no sliding window
    return flash_attn_func


@functools.cache
def _flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _fla_parallel_attn() -> Callable[..., Tensor] | None:
    try:
        from fla.ops.attn import parallel_attn
    except (ImportError, OSError, RuntimeError):
        return None
    if "window_size" not in inspect.signature(parallel_attn).parameters:
        return None
    return parallel_attn


def available_impls() -> list[str]:
    """The implementations that import here, in order of preference."""
    impls = []
    if _flash_attn_func() is not None:
        impls.append("flash_attn")
    if _flex_available():
        impls.append("flex_attention")
    if _fla_parallel_attn() is not None:
        impls.append("fla")
    return impls


def kernel_impl(dtype: torch.dtype = torch.bfloat16, head_dim: int = 64) -> str:
    """The implementation ``attention`` uses for inputs of ``dtype`` and ``head_dim``.

    Returns:
        ``"flash_attn"``, ``"flex_attention"`` or ``"fla"``.

    Raises:
        RuntimeError: none of them imports; the message names the packages to install.
    """
    if dtype in _HALF and head_dim <= 256 and _flash_attn_func() is not None:
        return "flash_attn"
    if _flex_available():
        return "flex_attention"
    if _fla_parallel_attn() is not None:
        return "fla"
    raise RuntimeError(
        "swa kernel: no attention kernel imports here; install flash-attn>=2.3 "
        "(pip install flash-attn --no-build-isolation), or torch>=2.5 for FlexAttention, "
        "or flash-linear-attention (pip install 'hybridlab[gpu]'); or use backend=reference"
    )


@functools.cache
def _compiled_flex() -> tuple[Callable[..., Tensor], Callable[..., Any]]:
    """``flex_attention`` and ``create_block_mask``, each compiled once.

    Static shapes: a new (T, head size, heads, dtype) compiles anew (a training run sees a handful);
    dynamic shapes failed to lower in torch 2.11.
    """
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    return torch.compile(flex_attention, dynamic=False), torch.compile(create_block_mask, dynamic=False)


@functools.cache
def _flex_kernel_options() -> dict[str, Any]:
    """Always the main Triton kernel: for T < 128 inductor would pick flex-decoding, which fails for GQA.

    The two hints that sound true of a sliding window are wrong for it and are not given: with
    ``ROWS_GUARANTEED_SAFE`` the outputs were NaN, with ``BLOCKS_ARE_CONTIGUOUS`` 10-40% off (an H200,
    ``benchmarks/flex_options.py``, docs/BENCHMARKS.md §6). Likely causes: in the key block where a query block's
    window starts, some of its rows see no key at all, and the partially masked key blocks (window start and
    diagonal) are not one run.
    """
    from torch.nn.attention import flex_attention as fa

    options = getattr(fa, "FlexKernelOptions", None)
    if options is not None and "BACKEND" in getattr(options, "__annotations__", {}):
        return {"BACKEND": "TRITON"}
    return {"FORCE_USE_FLEX_ATTENTION": True}


@functools.lru_cache(maxsize=32)
def _block_mask(seq_len: int, window: int | None, device: torch.device) -> Any:
    """The sliding-window ``BlockMask`` for (T, T), shared by all batches and heads.

    One ``mask_mod`` serves every window: the window is a captured tensor (full causal attention is
    ``window = T``), so neither the mask nor ``flex_attention`` recompiles for a new window value.
    The compiled ``create_block_mask`` never materialises the (T, T) mask.
    """
    w = torch.tensor(seq_len if window is None else window, device=device)

    def sliding(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (kv_idx <= q_idx) & (q_idx - kv_idx < w)

    create_block_mask = _compiled_flex()[1]
    return create_block_mask(sliding, None, None, seq_len, seq_len, device=device)


def _flex(q: Tensor, k: Tensor, v: Tensor, window: int | None, scale: float) -> Tensor:
    B, T, H, D = q.shape
    flex_attention = _compiled_flex()[0]
    block_mask = _block_mask(T, window, q.device)
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # (B, H|Hkv, T, D)
    if D < _FLEX_MIN_HEAD_DIM:
        # FlexAttention's triton kernels need D >= 16; zero channels change neither q.k nor the output.
        pad = (0, _FLEX_MIN_HEAD_DIM - D)
        qh, kh, vh = (torch.nn.functional.pad(t, pad) for t in (qh, kh, vh))  # (B, H|Hkv, T, 16)
    o = flex_attention(
        qh, kh, vh, block_mask=block_mask, scale=scale, enable_gqa=kh.shape[1] != H,
        kernel_options=_flex_kernel_options(),
    )
    return o[..., :D].transpose(1, 2)  # (B, T, H, D)


def _flash(q: Tensor, k: Tensor, v: Tensor, window: int | None, scale: float) -> Tensor:
    window_size = (-1, -1) if window is None else (window - 1, 0)
    return _flash_attn_func()(q, k, v, causal=True, softmax_scale=scale, window_size=window_size)


def _fla(q: Tensor, k: Tensor, v: Tensor, window: int | None, scale: float) -> Tensor:
    return _fla_parallel_attn()(q, k, v, scale=scale, window_size=window)


IMPLEMENTATIONS: dict[str, Callable[[Tensor, Tensor, Tensor, int | None, float], Tensor]] = {
    "flash_attn": _flash, "flex_attention": _flex, "fla": _fla,
}
"""Each implementation's call, ``attention``'s signature; one that does not import (``available_impls``) fails."""


def _say(impl: str) -> None:
    if impl not in _said:
        _said.add(impl)
        log.info("swa kernel: attention runs on %s", impl)


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def attention(q: Tensor, k: Tensor, v: Tensor, window: int | None, scale: float) -> Tensor:
    """Causal attention with an optional sliding window on CUDA; the signature of ``reference.attention``.

    Args:
        q: queries (B, T, H, D) on a CUDA device.
        k: keys (B, T, Hkv, D), ``H % Hkv == 0``.
        v: values (B, T, Hkv, D).
        window: keys a query sees, itself included; None for full causal attention.
        scale: the softmax scale.
    """
    impl = kernel_impl(q.dtype, q.shape[-1])
    _say(impl)
    return IMPLEMENTATIONS[impl](q, k, v, window, scale)
