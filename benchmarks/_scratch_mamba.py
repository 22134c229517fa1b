"""Scratch timing of the Mamba mixer on CPU (float32, 2 threads): reference fwd+bwd vs naive_forward."""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if "--stub" in sys.argv:  # import blocks.mixers.mamba without running the package __init__ files
    for name, sub in [("blocks", "blocks"), ("blocks.mixers", "blocks/mixers")]:
        mod = types.ModuleType(name)
        mod.__path__ = [str(ROOT / sub)]
        sys.modules[name] = mod
sys.path.insert(0, str(ROOT))

from blocks.mixers.mamba import Mamba, MambaConfig  # noqa: E402


def time_fb(fn, x: torch.Tensor, reps: int) -> float:
    times = []
    for _ in range(reps + 1):
        xi = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        fn(xi).sum().backward()
        times.append(time.perf_counter() - t0)
    return min(times[1:]) * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--stub", action="store_true")
    p.add_argument("--d", type=int, nargs="+", default=[128, 256])
    p.add_argument("--T", type=int, default=512)
    p.add_argument("--naive-T", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    for d in args.d:
        m = Mamba(d, MambaConfig())
        x = torch.randn(8, args.T, d)
        ms = time_fb(m, x, args.reps)
        print(f"d={d} B=8 T={args.T}: reference fwd+bwd {ms:.1f} ms")
        if args.naive_T:
            xn = torch.randn(8, args.naive_T, d)
            mn = time_fb(m.naive_forward, xn, 1)
            print(f"d={d} B=8 T={args.naive_T}: naive fwd+bwd {mn:.1f} ms (x{args.T / args.naive_T:.0f} -> "
                  f"{mn * args.T / args.naive_T:.0f} ms at T={args.T})")


if __name__ == "__main__":
    main()
