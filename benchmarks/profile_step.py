"""One torch.profiler trace of a training step on CUDA: the top CUDA kernels by time, and time by kind.

    python benchmarks/profile_step.py --preset samba-421m --batch 4 --seq-len 4096 --backend kernel > profile.txt

The step is the one ``analysis.bench.bench_train`` times (``build_train_step``: bf16 autocast forward, fp32
cross-entropy, backward, fused AdamW), after ``--warmup`` untimed steps; ``--steps`` steps are profiled and the table
gives per-step averages. Kernels are grouped into kinds by name (matrix products, the Mamba scan,
attention, fla kernels, elementwise/reductions, optimizer, copies) to say where the time goes. ``--copies`` also
records input shapes and Python stacks and lists the ops that launch copy, cast and add kernels, by shape and by
caller (that is how the gradient-layout copies of docs/BENCHMARKS.md §6's second round were found). ``--matmuls``
lists the matmul ops by input shapes with their device time and achieved TFLOP/s (§6, fourth round).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import defaultdict

import torch

from analysis.bench import build_train_step
from search_space.presets import get_preset

KINDS = [  # (kind, regex on the kernel name); first match wins
    ("matmul (cuBLAS/cutlass GEMM)", r"gemm|cutlass|sm90_xmma|nvjet|cublas|wgmma|splitK"),
    ("mamba selective scan / causal conv", r"selective_scan|causal_conv1d"),
    ("attention (FlexAttention/SDPA)", r"flex_attention|triton_tem_fused_flex|flash|fmha|attn"),
    ("fla gla/retention kernels", r"chunk_|gla|retention|simple_gla|fwd_h|bwd_dh|cumsum"),
    ("optimizer (fused AdamW)", r"adam|Adam"),
    ("cross-entropy / softmax", r"softmax|cross_entropy|nll_loss|log_softmax|logsumexp"),
    ("convolution (causal conv1d)", r"conv|Conv"),
    ("inductor-fused (torch.compile) kernels", r"^triton_(poi|red|per)_fused"),
    ("copies / casts / cat", r"copy|Copy|\bcat|CatArray|memcpy|Memcpy|memset|Memset"),
    ("reductions", r"reduce|Reduce|sum|norm"),
    ("other elementwise", r"elementwise|vectorized|unrolled|triton_"),
]


def kind_of(name: str) -> str:
    return next((k for k, pat in KINDS if re.search(pat, name)), "other")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="samba-421m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--backend", default="kernel")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--trace", help="also write a Chrome trace here")
    ap.add_argument("--compile", action="store_true", help="HybridLM.compile_sublayers first (as bench --compile)")
    ap.add_argument("--loss-chunk", type=int, default=None, help="chunked LM head + loss (as bench --loss-chunk)")
    ap.add_argument("--copies", action="store_true",
                    help="record shapes and Python stacks, and say which ops launch the copy and add kernels")
    ap.add_argument("--matmuls", action="store_true",
                    help="record shapes and list the matmuls by shape with their achieved TFLOP/s")
    args = ap.parse_args()

    cfg = get_preset(args.preset).model
    built = build_train_step(cfg, cfg.vocab_size or 32000, args.seq_len, args.batch, args.backend, "cuda",
                             compile=args.compile, loss_chunk=args.loss_chunk)
    dev, backends, step = built.device, built.backends, built.step

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    stacks = torch._C._profiler._ExperimentalConfig(verbose=True) if args.copies else None  # Python frames per op
    with torch.profiler.profile(activities=activities, record_shapes=args.copies or args.matmuls, with_stack=args.copies,
                                experimental_config=stacks) as prof:
        start.record()
        for _ in range(args.steps):
            loss = step()
        end.record()
        torch.cuda.synchronize()
    wall_ms = start.elapsed_time(end) / args.steps
    last_loss = loss.item()
    if args.trace:
        prof.export_chrome_trace(args.trace)

    # Per-kernel device time from the raw events: CUDA kernels only, not the CPU-side op rows and not the
    # GPU-side ranges of user annotations (``Optimizer.step#AdamW.step`` spans the AdamW kernels it launched).
    per_kernel: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA and not getattr(ev, "is_user_annotation", False):
            rec = per_kernel[ev.name]
            rec[0] += ev.time_range.elapsed_us() / 1000.0  # us -> ms
            rec[1] += 1
    total_ms = sum(v[0] for v in per_kernel.values()) / args.steps
    print(f"# {args.preset}, backend {args.backend} {backends}{', compiled' if args.compile else ''}{f', loss chunk {args.loss_chunk}' if args.loss_chunk else ''}, batch {args.batch} x {args.seq_len}, "
          f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
    print(f"# step (CUDA events, under the profiler): {wall_ms:.1f} ms; summed kernel time {total_ms:.1f} ms/step "
          f"({100 * total_ms / wall_ms:.0f}% of the step; the rest is GPU idle, i.e. launch/host bound); "
          f"loss after the profiled steps {last_loss:.4g}")
    if not math.isfinite(last_loss):
        warning = ("# WARNING: the loss is not finite, so these kernels ran on NaN/inf data, on which they run at other "
                   "speeds (docs/BENCHMARKS.md §6): the times below do not describe a training step")
        print(warning)
        print(warning[2:], file=sys.stderr)
    kinds: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for name, (ms, n) in per_kernel.items():
        k = kinds[kind_of(name)]
        k[0] += ms / args.steps
        k[1] += n // args.steps
    print("\n## Time by kind (per step)\n")
    print("| kind | ms/step | share of kernel time | launches/step |")
    print("|---|---|---|---|")
    for k, (ms, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print(f"| {k} | {ms:.1f} | {100 * ms / total_ms:.1f}% | {n} |")
    print(f"\n## Top {args.top} CUDA kernels by time (per step)\n")
    print("| ms/step | share | calls/step | kind | kernel |")
    print("|---|---|---|---|---|")
    for name, (ms, n) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[: args.top]:
        short = name if len(name) <= 110 else name[:107] + "..."
        short = short.replace("|", "/")
        print(f"| {ms / args.steps:.2f} | {100 * ms / args.steps / total_ms:.1f}% | {n // args.steps} | "
              f"{kind_of(name)} | `{short}` |")
    if args.copies:
        _print_copies(prof, args.steps, args.top)
    if args.matmuls:
        _print_matmuls(prof, args.steps, args.top)
    print(f"\n## torch.profiler key_averages, sorted by device time (top {args.top})\n")
    print(prof.key_averages().table(sort_by="device_time_total", row_limit=args.top, max_name_column_width=70))


def _by_shape(prof: torch.profiler.profile, ops: tuple[str, ...], top: int) -> list:
    """The ``top`` (op, input shapes) groups of ``ops`` by device time, largest first."""
    rows = [e for e in prof.key_averages(group_by_input_shape=True) if e.key in ops]
    return sorted(rows, key=lambda e: -e.device_time_total)[:top]


COPY_OPS = ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy", "aten::add", "aten::add_", "aten::cat")


def _print_copies(prof: torch.profiler.profile, steps: int, top: int) -> None:
    """The ops that launch copy, cast and add kernels, by input shapes and by the Python stack that called them."""
    print("\n## Copy / cast / add ops by input shapes (per step; device time includes the kernels they launch)\n")
    print("| ms/step | calls/step | op | input shapes |")
    print("|---|---|---|---|")
    for e in _by_shape(prof, COPY_OPS, top):
        print(f"| {e.device_time_total / 1000 / steps:.2f} | {e.count // steps} | {e.key} | {str(e.input_shapes)[:150]} |")
    print("\n## The same ops by calling Python stack (5 frames)\n")
    rows = [e for e in prof.key_averages(group_by_stack_n=5) if e.key in COPY_OPS]
    for e in sorted(rows, key=lambda e: -e.device_time_total)[:top]:
        frames = " <- ".join(f.split("/")[-1] for f in e.stack[:5]) or "(no Python frame: the autograd engine or C++)"
        print(f"- {e.device_time_total / 1000 / steps:.2f} ms/step, {e.count // steps} calls, {e.key}: {frames}")


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def matmul_flops(op: str, shapes: list[list[int]]) -> int:
    """FLOPs of one call of a matmul op from its recorded input shapes (2·M·K·N, times the batch for bmm)."""
    a, b = (shapes[1], shapes[2]) if op in ("aten::addmm", "aten::baddbmm") else (shapes[0], shapes[1])
    batch = a[0] if len(a) == 3 else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


def _print_matmuls(prof: torch.profiler.profile, steps: int, top: int) -> None:
    """The matmul ops by input shapes: device time, calls and achieved TFLOP/s, slowest total first."""
    print("\n## Matmuls by input shapes (per step; device time of the kernels each op launched)\n")
    print("| ms/step | calls/step | TFLOP/s | op | input shapes |")
    print("|---|---|---|---|---|")
    for e in _by_shape(prof, MATMUL_OPS, top):
        ms = e.device_time_total / 1000 / steps
        tflops = matmul_flops(e.key, e.input_shapes) * e.count / steps / (ms / 1000) / 1e12 if ms else 0.0
        print(f"| {ms:.2f} | {e.count // steps} | {tflops:.0f} | {e.key} | {str(e.input_shapes)[:150]} |")


if __name__ == "__main__":
    main()
