"""The G and R kernel paths (fla's Triton ``chunk_gla`` / ``chunk_retention``) against the reference paths on
CPU, through Triton's interpreter: no GPU needed.

    python -m pip install --target /tmp/tri triton==3.6.0 .whl/fla_core-0.6.0-py3-none-any.whl --no-deps
    PYTHONPATH=/tmp/tri:. python benchmarks/interpret_parity.py > benchmarks/results/interpret-parity.txt

What it checks: the parity cases of ``tests/blocks/test_kernel_parity.py`` for G and R (same mixers,
shapes, seeds, shared state_dict, T=63) and the op-level cases of ``tests/blocks/test_gla.py`` /
``test_retnet.py`` (T=1 and 263), on the kernel path in fp32 and under float16 autocast, against the
fp32 reference path; relative RMS and max abs error per tensor. What it does not: bfloat16 (the
interpreter stores bf16 as raw uint16 and does no bf16 arithmetic), GPU-only failures (PTX compilation,
shared memory, autotuning), timing. Each Triton autotuner keeps only its first config (no benchmarking).
The interpreter runs each program instance in numpy: minutes for the whole set on 2 cores.
"""

from __future__ import annotations

import builtins
import os
import sys
import time

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from triton.runtime import autotuner  # noqa: E402
from triton.runtime import interpreter as interp  # noqa: E402

# 1. One config per autotuner: nothing to benchmark on a CPU.
_autotuner_init = autotuner.Autotuner.__init__


def _one_config(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    _autotuner_init(self, *args, **kwargs)
    self.configs = self.configs[:1]


autotuner.Autotuner.__init__ = _one_config

# 2. numpy >= 2.4 refuses int() of a one-element 1-d array, which triton 3.6's interpreter does for
#    scalar tensors used as loop bounds.
_patch_tensor = interp._patch_lang_tensor


def _patch_lang_tensor(tensor, scope):  # type: ignore[no-untyped-def]
    _patch_tensor(tensor, scope)
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))


interp._patch_lang_tensor = _patch_lang_tensor


# 3. The interpreter's loop variables are Python ints; fla's kernels call ``i_t.to(tl.int64)`` on them.
class _LoopInt(int):
    def to(self, dtype, **kwargs):  # type: ignore[no-untyped-def]
        return interp._implicit_cvt(int(self)).to(dtype)


def _range(*args):  # type: ignore[no-untyped-def]
    return (_LoopInt(i) for i in builtins.range(*[int(a) for a in args]))


import fla.ops.gla  # noqa: E402,F401
import fla.ops.retention  # noqa: E402,F401

for _name, _mod in list(sys.modules.items()):
    if _name.startswith("fla.") and _mod is not None:
        _mod.range = _range

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from blocks import registry  # noqa: E402
from blocks.mixers.base import apply_overrides  # noqa: E402
from blocks.mixers.retnet import retention_log_decay  # noqa: E402
from blocks.ops.gla import kernel as gla_kernel  # noqa: E402
from blocks.ops.gla import reference as gla_reference  # noqa: E402
from blocks.ops.retention import kernel as ret_kernel  # noqa: E402
from blocks.ops.retention import reference as ret_reference  # noqa: E402
from tests.blocks.test_kernel_parity import CASES  # noqa: E402
from tests.blocks.test_kernel_parity import _rel_rms as rel_rms  # noqa: E402
from tests.blocks.test_kernel_parity import _run as run  # noqa: E402

DTYPES = {"fp32": None, "fp16-autocast": torch.float16}


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def mixer_cases() -> None:
    print("## Mixer parity cases (tests/blocks/test_kernel_parity.py CASES, B=2, T=63)\n")
    row("case", "dtype", "output rel RMS", "output max abs", "worst gradient rel RMS (of N)", "worst gradient max abs")
    row(*["---"] * 6)
    for case, symbol, d_model, over in CASES:
        if symbol not in "GR":
            continue
        spec = registry.get(symbol)
        for label, dtype in DTYPES.items():
            torch.manual_seed(42)
            cfg = apply_overrides(spec.config(), over, case, d_model)
            ref, ker = spec.module(d_model, cfg), spec.module(d_model, cfg)
            ker.load_state_dict(ref.state_dict())
            ker.set_backend("kernel")
            x, w = torch.randn(2, 63, d_model), torch.randn(2, 63, d_model)
            y_ref, g_ref = run(ref, x, w)
            with torch.autocast("cpu", dtype=dtype or torch.float16, enabled=dtype is not None):
                y_ker, g_ker = run(ker, x, w)
            errs = {n: (rel_rms(g_ker[n], g_ref[n]), (g_ker[n] - g_ref[n]).abs().max().item()) for n in g_ref}
            worst = max(errs.values())
            row(case, label, f"{rel_rms(y_ker, y_ref):.1e}", f"{(y_ker - y_ref).abs().max().item():.1e}",
                f"{worst[0]:.1e} ({len(errs)})", f"{max(e[1] for e in errs.values()):.1e}")


def op_cases() -> None:
    print("\n## Op-level cases (tests/blocks/test_gla.py, test_retnet.py: B=2, H=3, K=64; relative L2 error)\n")
    row("op", "T", "dtype", "o", "dq", "dk", "dv", "dgk", "ref. norm of dgk")
    row(*["---"] * 9)
    for dtype in (torch.float32, torch.float16):
        for T in (1, 263):
            for op in ("gla", "retention"):
                torch.manual_seed(42)
                B, H, K = 2, 3, 64
                V = 96 if op == "gla" else 128
                q, k = (torch.randn(B, T, H, K, dtype=dtype) for _ in range(2))
                v = torch.randn(B, T, H, V, dtype=dtype)
                if op == "gla":
                    extra = [F.logsigmoid(torch.randn(B, T, H, K)) / 16]
                    w = torch.randn(B, T, H, V)
                    fns, const = (gla_reference.chunk_gla, gla_kernel.chunk_gla), ()
                else:
                    extra = []
                    w = torch.randn(B, T, H, V)
                    fns, const = (ret_reference.chunk_retention, ret_kernel.chunk_retention), (retention_log_decay(H).float(),)
                outs = []
                for fn in fns:
                    ins = [t.clone().requires_grad_() for t in (q, k, v, *extra)]
                    o = fn(*ins, *const, K**-0.5, 64)
                    (o.float() * w).sum().backward()
                    outs.append([o] + [t.grad for t in ins])
                errs = [((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()
                        for a, b in zip(outs[1], outs[0], strict=True)]
                cells = [f"{e:.1e}" for e in errs] + ["-"] * (5 - len(errs))
                dgk_norm = f"{outs[0][4].float().norm().item():.1e}" if op == "gla" else "-"
                row(op, T, str(dtype).split(".")[-1], *cells, dgk_norm)


if __name__ == "__main__":
    import triton

    t0 = time.time()
    print(f"# Triton interpreter on CPU: torch {torch.__version__}, triton {triton.__version__}, "
          f"fla {fla.__version__}; kernel path vs fp32 reference path\n")
    mixer_cases()
    op_cases()
    print(f"\n({time.time() - t0:.0f} s)")
