"""Time mamba_ssm's selective scan with B and C split into G identical groups (GPU only).

mamba_ssm's scan backward runs one thread block per (batch row, channel) and adds each channel's share of dB and
dC, (batch, G, N, L), into global memory with atomics: with one group, all 3072 channels of a samba-421m layer
add into the same (N, L) rows. The kernel takes B and C per group of channels (``B: (batch, G, N, L)``, channel d
reads group ``d // (D / G)``), so copying B and C into G identical groups spreads those atomics over G separate
buffers at the price of the copy and a sum of the G gradients. This script measures what that buys at the shape of
one samba-421m Mamba layer at batch 8 (u, delta, z, B, C in bf16; A, D and the delta bias in fp32; the delta bias,
softplus and SiLU(z) gate in the kernel, as ``mamba_inner_fn`` calls it), forward and forward+backward, and checks
every gradient against the one-group call.

    python benchmarks/scan_groups.py [--batch 8 --dim 3072 --seq-len 4096 --groups 1 2 8 32 96 384]
"""

from __future__ import annotations

import argparse

import torch
from attention_timing import time_cuda


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dim", type=int, default=3072, help="d_inner")
    ap.add_argument("--state", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--groups", type=int, nargs="+", default=[1, 2, 8, 32, 96, 384])
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    torch.manual_seed(0)
    b, d, n, length = args.batch, args.dim, args.state, args.seq_len
    dev, bf16 = "cuda", torch.bfloat16
    u, z = (torch.randn(b, d, length, device=dev, dtype=bf16).requires_grad_() for _ in range(2))
    delta = (0.5 * torch.randn(b, d, length, device=dev) - 4).to(bf16).requires_grad_()  # softplus(-4 + ...) ~ 0.02
    B, C = (torch.randn(b, n, length, device=dev, dtype=bf16).requires_grad_() for _ in range(2))
    A = (-torch.arange(1, n + 1, device=dev, dtype=torch.float32)).repeat(d, 1).requires_grad_()  # (d, N), S4D-real
    D = torch.ones(d, device=dev).requires_grad_()
    delta_bias = torch.full((d,), -1.0, device=dev).requires_grad_()
    dy = torch.randn(b, d, length, device=dev, dtype=bf16)
    leaves = {"u": u, "delta": delta, "z": z, "B": B, "C": C, "A": A, "D": D, "delta_bias": delta_bias}

    def grouped(t: torch.Tensor, g: int) -> torch.Tensor:
        return t if g == 1 else t.unsqueeze(1).expand(-1, g, -1, -1).contiguous()  # (b, G, N, L)

    def forward(g: int) -> torch.Tensor:
        return selective_scan_fn(u, delta, A, grouped(B, g), grouped(C, g), D, z=z, delta_bias=delta_bias,
                                 delta_softplus=True)

    def fwd_bwd(g: int) -> None:
        for t in leaves.values():
            t.grad = None
        forward(g).backward(dy)

    want: dict[str, torch.Tensor] = {}
    print("| groups | fwd ms | fwd+bwd ms | bwd ms | largest rel. error of a gradient vs 1 group (which) |")
    print("|---|---|---|---|---|")
    for g in args.groups:
        if d % g:
            print(f"| {g} | - | - | - | skipped: {d} channels do not split into {g} groups |")
            continue
        try:
            fwd_bwd(g)
        except Exception as err:  # a group count the kernel or memory rejects: say so, go on
            print(f"| {g} | - | - | - | failed: {type(err).__name__}: {str(err).splitlines()[0][:100]} |")
            continue
        got = {k: t.grad.float().clone() for k, t in leaves.items()}
        if not want:
            want = got
        errs = {k: ((got[k] - want[k]).norm() / want[k].norm().clamp_min(1e-30)).item() for k in want}
        worst = max(errs, key=errs.get)
        with torch.no_grad():
            t_fwd = time_cuda(lambda g=g: forward(g), args.reps)
        t_all = time_cuda(lambda g=g: fwd_bwd(g), args.reps)
        print(f"| {g} | {t_fwd:.2f} | {t_all:.2f} | {t_all - t_fwd:.2f} | {errs[worst]:.1e} ({worst}) |", flush=True)


if __name__ == "__main__":
    main()
