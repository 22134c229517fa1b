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
from typing import Any

import torch
from attention_timing import add_shape_args, reference, row, sdpa_row

from blocks.ops.attention import kernel

VARIANTS: list[tuple[str, str | None, dict[str, Any]]] = [  # (name, compile mode, kernel options)
    ("the kernel path's options", None, {}),
    ("+ rows guaranteed safe", None, {"ROWS_GUARANTEED_SAFE": True}),
    ("+ blocks contiguous", None, {"BLOCKS_ARE_CONTIGUOUS": True}),
    ("+ both", None, {"ROWS_GUARANTEED_SAFE": True, "BLOCKS_ARE_CONTIGUOUS": True}),
    ("+ fwd 128x128 w8 s2", None, {"fwd_BLOCK_M": 128, "fwd_BLOCK_N": 128, "fwd_num_warps": 8, "fwd_num_stages": 2}),
    ("+ bwd 64/64 w4 s3", None, {"bwd_BLOCK_M1": 64, "bwd_BLOCK_N1": 64, "bwd_BLOCK_M2": 64, "bwd_BLOCK_N2": 64,
                                 "bwd_num_warps": 4, "bwd_num_stages": 3}),
    *[(f"+ bwd {m1}/{n1} w{w} s{st}", None, {"bwd_BLOCK_M1": m1, "bwd_BLOCK_N1": n1, "bwd_BLOCK_M2": n1,
                                             "bwd_BLOCK_N2": m1, "bwd_num_warps": w, "bwd_num_stages": st})
      for m1, n1, w, st in [(32, 128, 4, 3), (32, 128, 8, 2), (64, 128, 8, 3), (64, 128, 4, 3), (32, 64, 4, 3)]],
    ("max-autotune", "max-autotune-no-cudagraphs", {}),
    ("+ TMA", None, {"USE_TMA": True}),
    ("+ prescale qk", None, {"PRESCALE_QK": True}),
    ("+ dq in the dk loop", None, {"WRITE_DQ": False}),
    ("+ TMA + prescale qk", None, {"USE_TMA": True, "PRESCALE_QK": True}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(ap)
    ap.add_argument("--only", nargs="*", help="run only the variants whose names contain one of these")
    args = ap.parse_args()
    from torch.nn.attention.flex_attention import flex_attention

    B, T, H, D, W = args.batch, args.seq_len, args.heads, args.head_dim, args.window or None
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
    want = reference(q, k, v, do, W, scale)
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

        print(row(name, attn, q, k, v, do, want, args.reps), flush=True)

    print(sdpa_row(q, k, v, do, scale, args.reps))


if __name__ == "__main__":
    main()
