"""Forward+backward time of every registered mixer's reference path against its naive per-token form.

Issue: "every mixer at least 5x faster than its naive per-token form; Mamba-1 within 3x of GLA" on the
2-core CPU machine at B=8, T=512, d=128 and 256 (float32, 2 threads). Run:

    python benchmarks/bench_mixers.py [--d 128 256] [--batch 8] [--seq 512] [--reps 5] [--json out.json]

Times are the minimum over ``--reps`` repetitions after one warm-up (new random inputs each time);
the naive form runs ``--naive-reps`` times (it is slow). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch

from blocks import registry
from blocks.mixers.base import Mixer, apply_overrides


def fwd_bwd_ms(fn: Callable[[torch.Tensor], torch.Tensor], mixer: Mixer, shape: tuple[int, int, int], reps: int,
               warmup: int = 1) -> float:
    best = float("inf")
    for i in range(warmup + reps):
        x = torch.randn(*shape, requires_grad=True)
        mixer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        fn(x).sum().backward()
        dt = time.perf_counter() - t0
        if i >= warmup:
            best = min(best, dt)
    return 1000 * best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--naive-reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--only", nargs="+", help="symbols to measure (default: every registered mixer)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    for d in args.d:
        for spec in registry.specs():
            if args.only and spec.symbol not in args.only:
                continue
            over = {"window": args.window} if spec.symbol == "A" else {}
            cfg = apply_overrides(spec.config(), over, f"bench {spec.symbol}", d)
            m = spec.module(d, cfg)
            shape = (args.batch, args.seq, d)
            ref = fwd_bwd_ms(m.forward, m, shape, args.reps)
            per_token = getattr(m, "step_forward", m.naive_forward)
            naive = fwd_bwd_ms(per_token, m, shape, args.naive_reps, warmup=0)
            results.append({"mixer": f"{spec.symbol} ({spec.name})", "d_model": d, "reference_ms": ref,
                            "naive_ms": naive, "speedup": naive / ref})
            print(f"d={d} {spec.symbol}: reference {ref:.1f} ms, naive {naive:.1f} ms ({naive / ref:.1f}x)", flush=True)
    print()
    print(f"B={args.batch}, T={args.seq}, float32, {args.threads} threads, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print()
    print("| mixer | d_model | reference fwd+bwd (ms) | naive per-token fwd+bwd (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mixer']} | {r['d_model']} | {r['reference_ms']:.1f} | {r['naive_ms']:.0f} | {r['speedup']:.1f}x |")
    for d in args.d:
        by = {r["mixer"][0]: r for r in results if r["d_model"] == d}
        if "M" in by and "G" in by:
            print(f"\nd={d}: Mamba / GLA reference time = {by['M']['reference_ms'] / by['G']['reference_ms']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
