"""Shared by ``flex_options.py`` and ``attention_routes.py``: time an attention call on CUDA and check it
(``scan_groups.py`` takes ``time_cuda`` too).

``row`` runs one attention variant forward and backward once (its first call: compile or autotune), times forward
and forward+backward with CUDA events (median of ``reps`` after warm-up), compares the output and the q, k, v
gradients of batch row 0 with the fp32 reference path and counts non-finite values; it returns the variant's
markdown table row. ``sdpa_row`` times SDPA's full causal attention for scale. Tensors are (B, H, T, D) here;
``attention_routes.py`` adapts its (B, T, H, D) calls.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

Attn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def add_shape_args(ap: argparse.ArgumentParser) -> None:
    """The attention shape (default: samba-421m's at batch 8) and the timing repetitions."""
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--window", type=int, default=2048, help="keys per query; 0 for full causal")
    ap.add_argument("--reps", type=int, default=20)


def time_cuda(fn: Callable[[], Any], reps: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn`` over ``reps`` runs after ``warmup``, by CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def fwd_bwd(attn: Attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Output and q, k, v gradients of one forward and backward with output gradient ``do``."""
    for t in (q, k, v):
        t.grad = None
    o = attn(q, k, v)
    o.backward(do)
    return o.detach(), q.grad, k.grad, v.grad


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, window: int | None,
              scale: float) -> tuple[torch.Tensor, ...]:
    """Output and gradients of batch row 0 on ``reference.attention`` in fp32, (1, H, T, D) in and out."""
    from blocks.ops.attention import reference

    q0, k0, v0 = (t[:1].detach().float().transpose(1, 2).requires_grad_() for t in (q, k, v))  # (1, T, H, D)
    o0 = reference.attention(q0, k0, v0, window, scale)
    o0.backward(do[:1].float().transpose(1, 2))
    return tuple(t.detach().transpose(1, 2) for t in (o0, q0.grad, k0.grad, v0.grad))


def row(name: str, attn: Attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor,
        want: tuple[torch.Tensor, ...], reps: int, first_call_digits: int = 0) -> str:
    """``| name | fwd ms | fwd+bwd ms | first call s | errors (o, dq, dk, dv) |``; a failure is a row too."""
    t0 = time.perf_counter()
    try:
        out = fwd_bwd(attn, q, k, v, do)
        torch.cuda.synchronize()
    except Exception as err:  # a variant this torch or GPU rejects: say so and go on
        return f"| {name} | - | - | - | failed: {type(err).__name__}: {str(err).splitlines()[0][:120]} |"
    first_s = time.perf_counter() - t0
    with torch.no_grad():
        fwd = time_cuda(lambda: attn(q, k, v), reps)
    both = time_cuda(lambda: fwd_bwd(attn, q, k, v, do), reps)
    bad = sum(int((~torch.isfinite(t)).sum()) for t in out)
    errs = ", ".join(f"{((g[:1].float() - w).norm() / w.norm()).item():.1e}" for g, w in zip(out, want, strict=True))
    return (f"| {name} | {fwd:.2f} | {both:.2f} | {first_s:.{first_call_digits}f} | "
            f"{errs}{f'; {bad} non-finite' if bad else ''} |")


def sdpa_row(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, scale: float, reps: int) -> str:
    """SDPA's full causal attention (no window) on the same (B, H, T, D) tensors, for scale."""
    q2, k2, v2, do2 = (t.detach().contiguous().requires_grad_(t is not do) for t in (q, k, v, do))
    gqa = k.shape[1] != q.shape[1]

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)

    with torch.no_grad():
        fwd = time_cuda(lambda: sdpa(q2, k2, v2), reps)
    both = time_cuda(lambda: fwd_bwd(sdpa, q2, k2, v2, do2), reps)
    return f"| SDPA full causal (no window; for scale) | {fwd:.2f} | {both:.2f} | - | - |"
