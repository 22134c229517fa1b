"""Scratch timing (to be deleted): Mamba mixer fwd+bwd on CPU, float32, 2 threads, against GLA and naive.

Runs are interleaved (Mamba, GLA, Mamba, ...) so that load from other processes hits both alike; the
minimum over reps is reported.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from blocks.mixers.gla import GLA, GLAConfig
from blocks.mixers.mamba import Mamba, MambaConfig


def fwd_bwd_ms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    xi = x.clone().requires_grad_(True)
    t0 = time.perf_counter()
    fn(xi).sum().backward()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--d", type=int, nargs="+", default=[128, 256])
    p.add_argument("--T", type=int, default=512)
    p.add_argument("--naive-T", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for d in args.d:
        mamba, gla = Mamba(d, MambaConfig()), GLA(d, GLAConfig())
        x = torch.randn(8, args.T, d)
        times: dict[str, list[float]] = {"mamba": [], "gla": []}
        for r in range(args.reps + 1):
            for name, m in (("mamba", mamba), ("gla", gla)):
                ms = fwd_bwd_ms(m, x)
                if r:
                    times[name].append(ms)
        tm, tg = min(times["mamba"]), min(times["gla"])
        print(f"d={d} B=8 T={args.T}: mamba {tm:.1f} ms  gla {tg:.1f} ms  ratio {tm / tg:.2f}")
        if args.naive_T:
            xn = torch.randn(8, args.naive_T, d)
            fwd_bwd_ms(mamba.naive_forward, xn)
            tn = min(fwd_bwd_ms(mamba.naive_forward, xn) for _ in range(2))
            tr = min(fwd_bwd_ms(mamba, xn) for _ in range(3))
            scale = args.T / args.naive_T
            print(
                f"d={d} B=8 T={args.naive_T}: naive {tn:.1f} ms, reference {tr:.1f} ms (x{tn / tr:.1f}); "
                f"naive extrapolated to T={args.T}: {tn * scale:.0f} ms"
            )


if __name__ == "__main__":
    main()
