"""FlexAttention kernel options for the sliding-window mask of ``blocks/ops/attention/kernel.py``, timed on CUDA.

    python benchmarks/flex_options.py --batch 8 --heads 12 --seq-len 4096 --head-dim 128 --window 2048 > flex.md

Each variant compiles ``flex_attention`` with its own ``kernel_options`` (or compile mode) on the block mask the
SWA kernel path builds, and times forward and forward+backward (CUDA events, median of ``--reps`` after warm-up).
Every variant's output and gradients for batch row 0 are compared with the fp32 reference path, and non-finite
values are counted, so an option that breaks the result shows. SDPA's full causal flash kernel is timed beside them for
scale. Options are torch's ``FlexKernelOptions``; ``bwd_``/``fwd_`` prefixes
apply one to one pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from blocks.ops.attention import kernel

VARIANTS: list[tuple[str, str | None, dict[str, Any]]] = [  # (name, compile mode, kernel options)
    ("the kernel path's options", None, {}),
    ("+ rows guaranteed safe", None, {"ROWS_GUARANTEED_SAFE": True}),
    ("+ blocks contiguous", None, {"BLOCKS_ARE_CONTIGUOUS": True}),
    ("+ both", None, {"ROWS_GUARANTEED_SAFE": True, "BLOCKS_ARE_CONTIGUOUS": True}),
    ("+ fwd 128x128 w8 s2", None, {"fwd_BLOCK_M": 128, "fwd_BLOCK_N": 128, "fwd_num_warps": 8, "fwd_num_stages": 2}),
    ("+ bwd 64/64 w4 s3", None, {"bwd_BLOCK_M1": 64, "bwd_BLOCK_N1": 64, "bwd_BLOCK_M2": 64, "bwd_BLOCK_N2": 64,
                                 "bwd_num_warps": 4, "bwd_num_stages": 3}),
    ("max-autotune", "max-autotune-no-cudagraphs", {}),
    ("+ TMA", None, {"USE_TMA": True}),
    ("+ prescale qk", None, {"PRESCALE_QK": True}),
    ("+ dq in the dk loop", None, {"WRITE_DQ": False}),
    ("+ TMA + prescale qk", None, {"USE_TMA": True, "PRESCALE_QK": True}),
]


def _time(fn: Callable[[], Any], reps: int, warmup: int = 3) -> float:
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


def _fwd_bwd(attn: Callable[..., torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             do: torch.Tensor) -> tuple[torch.Tensor, ...]:
    for t in (q, k, v):
        t.grad = None
    o = attn(q, k, v)
    o.backward(do)
    return o.detach(), q.grad, k.grad, v.grad


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, window: int,
               scale: float) -> tuple[torch.Tensor, ...]:
    """Output and gradients of batch row 0 on ``reference.attention`` in fp32, laid out (1, H, T, D)."""
    from blocks.ops.attention import reference

    q0, k0, v0 = (t[:1].detach().float().transpose(1, 2).requires_grad_() for t in (q, k, v))  # (1, T, H, D)
    o0 = reference.attention(q0, k0, v0, window, scale)
    o0.backward(do[:1].float().transpose(1, 2))
    return tuple(t.detach().transpose(1, 2) for t in (o0, q0.grad, k0.grad, v0.grad))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--only", nargs="*", help="run only the variants whose names contain one of these")
    args = ap.parse_args()
    from torch.nn.attention.flex_attention import flex_attention

    B, T, H, D, W = args.batch, args.seq_len, args.heads, args.head_dim, args.window
    Hkv = args.kv_heads or H
    gen = torch.Generator("cuda").manual_seed(0)
    q = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()  # (B, H, T, D)
    k = torch.randn(B, Hkv, T, D, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
    v = torch.randn(B, Hkv, T, D, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
    do = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    scale = D**-0.5
    mask = kernel._block_mask(T, W, q.device)
    base = kernel._flex_kernel_options()
    print(f"# FlexAttention sliding window: B={B} H={H} Hkv={Hkv} T={T} D={D} W={W} bf16, {torch.cuda.get_device_name()}, "
          f"torch {torch.__version__}; base options {base}; block mask {mask.BLOCK_SIZE}")
    want = _reference(q, k, v, do, W, scale)
    print("\n| variant | fwd ms | fwd+bwd ms | compile s | rel. error vs fp32 reference, batch row 0 (o, dq, dk, dv) |")
    print("|---|---|---|---|---|")
    for name, mode, options in VARIANTS:
        if args.only and not any(s in name for s in args.only):
            continue
        torch._dynamo.reset()
        compiled = torch.compile(flex_attention, dynamic=False, mode=mode)
        opts = {**base, **options}

        def attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, compiled: Any = compiled,
                 opts: dict[str, Any] = opts) -> torch.Tensor:
            return compiled(q, k, v, block_mask=mask, scale=scale, enable_gqa=Hkv != H, kernel_options=opts)

        t0 = time.perf_counter()
        try:
            out = _fwd_bwd(attn, q, k, v, do)
            torch.cuda.synchronize()
        except Exception as err:  # an option this torch or GPU rejects: say so and go on
            print(f"| {name} | - | - | - | failed: {type(err).__name__}: {str(err).splitlines()[0][:120]} |")
            continue
        compile_s = time.perf_counter() - t0
        with torch.no_grad():
            fwd = _time(lambda: attn(q, k, v), args.reps)
        both = _time(lambda: _fwd_bwd(attn, q, k, v, do), args.reps)
        bad = sum(int((~torch.isfinite(t)).sum()) for t in out)
        errs = ", ".join(f"{((g[:1].float() - w).norm() / w.norm()).item():.1e}" for g, w in zip(out, want, strict=True))
        print(f"| {name} | {fwd:.2f} | {both:.2f} | {compile_s:.0f} | {errs}{f'; {bad} non-finite' if bad else ''} |",
              flush=True)

    q2, k2, v2, do2 = (t.detach().requires_grad_(t is not do) for t in (q, k, v, do))
    sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=Hkv != H)  # noqa: E731
    with torch.no_grad():
        fwd = _time(lambda: sdpa(q2, k2, v2), args.reps)
    print(f"| SDPA full causal (no window; for scale) | {fwd:.2f} | {_time(lambda: _fwd_bwd(sdpa, q2, k2, v2, do2), args.reps):.2f} | - | - |")


if __name__ == "__main__":
    main()
