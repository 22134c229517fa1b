"""The SWA kernel path's attention implementations side by side on CUDA: time, and error against the fp32 reference.

    python benchmarks/attention_routes.py --batch 8 --heads 12 --seq-len 4096 --head-dim 128 --window 2048 > routes.md

Each implementation of ``blocks/ops/attention/kernel.py`` that imports here (flash-attn, FlexAttention, fla's
``parallel_attn``; ``--impls`` picks some) runs the kernel path's own call on bf16 q, k, v in the path's (B, T, H, D)
layout. Beside them, a candidate the path does not take: ``torch_flash``, the FlashAttention-2 kernels PyTorch ships
(``aten::_flash_attention_forward`` with ``window_size_left=W-1``; its autograd node passes the window to the
backward), which needs neither flash-attn nor a compile; on an H200 at the Samba shape it was 13% slower than
FlexAttention (docs/BENCHMARKS.md §6). Forward and forward+backward are timed with CUDA events (median of
``--reps`` after warm-up); the output and the q, k, v gradients of batch row 0 are compared with the fp32 reference
path (relative RMS error), and non-finite values are counted. SDPA's full causal attention is timed beside them
for scale. The first call of an implementation (FlexAttention's compile, fla's autotuning) is reported apart.
"""

from __future__ import annotations

import argparse

import torch
from attention_timing import add_shape_args, reference, row, sdpa_row

from blocks.ops.attention import kernel

IMPLS = [*kernel.IMPLEMENTATIONS, "torch_flash"]


def _torch_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None, scale: float) -> torch.Tensor:
    """PyTorch's bundled FlashAttention-2 with a sliding window, (B, T, H, D) in and out, GQA native."""
    T = q.shape[1]
    left = -1 if window is None or window >= T else window - 1  # -1: no limit to the left
    return torch.ops.aten._flash_attention_forward(
        q, k, v, None, None, T, T, 0.0, True, False, scale=scale, window_size_left=left, window_size_right=0,
    )[0]


def _impl(name: str):  # type: ignore[no-untyped-def]
    """The call for ``name``, as ``(q, k, v, window, scale) -> o``, or None if it does not import here."""
    if name == "torch_flash":
        return _torch_flash if torch.backends.cuda.is_flash_attention_available() else None
    return kernel.IMPLEMENTATIONS[name] if name in kernel.available_impls() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(ap)
    ap.add_argument("--impls", nargs="*", default=["flash_attn", "flex_attention", "torch_flash"],
                    choices=IMPLS, help="fla autotunes for minutes on first use, so it runs only when named")
    args = ap.parse_args()
    B, T, H, D = args.batch, args.seq_len, args.heads, args.head_dim
    W = args.window or None
    Hkv = args.kv_heads or H
    gen = torch.Generator("cuda").manual_seed(0)
    # (B, H, T, D) views of (B, T, H, D) tensors: the timing helpers take the first, the path the second
    q = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=gen).transpose(1, 2).requires_grad_()
    k = torch.randn(B, T, Hkv, D, device="cuda", dtype=torch.bfloat16, generator=gen).transpose(1, 2).requires_grad_()
    v = torch.randn(B, T, Hkv, D, device="cuda", dtype=torch.bfloat16, generator=gen).transpose(1, 2).requires_grad_()
    do = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=gen).transpose(1, 2)
    scale = D**-0.5
    print(f"# SWA attention implementations: B={B} H={H} Hkv={Hkv} T={T} D={D} W={W} bf16, "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    want = reference(q, k, v, do, W, scale)
    print("\n| implementation | fwd ms | fwd+bwd ms | first call s | rel. error vs fp32 reference, batch row 0 (o, dq, dk, dv) |")
    print("|---|---|---|---|---|")
    for name in args.impls:
        fn = _impl(name)
        if fn is None:
            print(f"| {name} | - | - | - | does not import here |")
            continue

        def attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fn=fn) -> torch.Tensor:  # type: ignore[no-untyped-def]
            return fn(*(t.transpose(1, 2) for t in (q, k, v)), W, scale).transpose(1, 2)  # the path's (B, T, H, D)

        print(row(name, attn, q, k, v, do, want, args.reps, first_call_digits=1), flush=True)

    print(sdpa_row(q, k, v, do, scale, args.reps))


if __name__ == "__main__":
    main()
