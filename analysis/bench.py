"""Training throughput of a layout: tokens/s, step time, peak memory and MFU, on any backend.

One training step is forward, cross-entropy, backward and a fused AdamW step, under bf16 autocast on
CUDA (fp32 on CPU), timed with CUDA events after warm-up, with no host synchronisation inside the
timed steps. MFU counts 3x the model's forward FLOPs per token (``HybridLM.flops_per_token``: every
matrix product, attention scores and values within the window, the scan) against the device's dense
bf16 peak, which for a Transformer is the usual 6N + attention estimate.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from blocks.config import ModelConfig
from blocks.model import HybridLM

__all__ = ["BenchResult", "NonFiniteLoss", "TrainStep", "bench_train", "build_train_step", "device_peak_flops"]

# Dense bf16 tensor-core peaks (FLOP/s), by substring of torch.cuda.get_device_name().
_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "4090": 165e12}


class NonFiniteLoss(RuntimeError):
    """A benchmarked training run's loss became NaN or infinite, so its timings mean nothing."""


def device_peak_flops(device: torch.device) -> float | None:
    """The dense bf16 peak of ``device`` in FLOP/s, or None when unknown (CPU, other GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in _PEAKS.items() if k in name), None)


@dataclass
class BenchResult:
    pattern: str
    params: int
    batch: int
    seq_len: int
    backend: dict[str, str]
    kernel_routes: dict[str, str]
    device: str
    tokens_per_s: float
    step_ms: float
    step_ms_std: float
    peak_mem_gb: float
    flops_per_token_train: float
    mfu: float | None
    compiled: bool
    loss_chunk: int | None = None
    loss_first: float | None = None
    loss_last: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainStep:
    """One benchmark training step on fixed random tokens: ``step()`` runs it and returns the loss (detached, on
    the device: reading it is left to the caller, so the step itself never waits on the host)."""

    model: HybridLM
    backends: dict[str, str]
    device: torch.device
    step: Callable[[], Tensor]


def build_train_step(
    cfg: ModelConfig,
    vocab_size: int,
    seq_len: int,
    batch: int,
    backend: str = "auto",
    device: str | torch.device | None = None,
    compile: bool = False,
    loss_chunk: int | None = None,
) -> TrainStep:
    """The step ``bench_train`` times (and ``benchmarks/profile_step.py`` profiles): seeded model on ``device``
    with ``backend``, optionally ``compile_sublayers``-ed and with a chunked head, fused AdamW on CUDA, and
    forward (bf16 autocast on CUDA), cross-entropy, backward and optimizer step on one (batch, seq_len) batch.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model = HybridLM(cfg, vocab_size=vocab_size).to(dev)
    chosen = model.set_backend(backend, dev)
    if compile:
        model.compile_sublayers()
    model.loss_chunk = loss_chunk
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=dev.type == "cuda")
    x = torch.randint(0, vocab_size, (batch, seq_len + 1), device=dev)
    inp, tgt = x[:, :-1], x[:, 1:]
    use_bf16 = dev.type == "cuda"

    def step() -> Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = model.loss(inp, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return TrainStep(model, chosen, dev, step)


def bench_train(
    cfg: ModelConfig,
    vocab_size: int,
    seq_len: int,
    batch: int,
    backend: str = "auto",
    steps: int = 10,
    warmup: int = 3,
    device: str | torch.device | None = None,
    compile: bool = False,
    loss_chunk: int | None = None,
) -> BenchResult:
    """Time ``steps`` training steps of ``cfg`` after ``warmup`` untimed ones.

    ``compile`` runs ``HybridLM.compile_sublayers`` first (the warm-up steps then include compilation);
    ``loss_chunk`` runs the eager head and loss that many tokens at a time (``blocks.loss``). The losses of the
    first and last step are reported.

    Raises:
        NonFiniteLoss: the loss was NaN or infinite at the end; such timings are not valid (kernels run at
            other speeds on NaNs) and the kernel path needs its parity tests.
    """
    built = build_train_step(cfg, vocab_size, seq_len, batch, backend, device, compile, loss_chunk)
    model, chosen, dev, step = built.model, built.backends, built.device, built.step
    losses = [step() for _ in range(warmup)]  # scalars on the device, read once timing is done
    times = []
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(steps)]
        for start, end in events:
            start.record()
            losses.append(step())
            end.record()
        torch.cuda.synchronize(dev)
        times = [s.elapsed_time(e) for s, e in events]
        peak = torch.cuda.max_memory_allocated(dev) / 2**30
    else:
        import resource

        for _ in range(steps):
            t0 = time.perf_counter()
            losses.append(step())
            times.append(1000 * (time.perf_counter() - t0))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    loss_first, loss_last = losses[0].item(), losses[-1].item()
    if not math.isfinite(loss_last):
        raise NonFiniteLoss(
            f"bench train: the loss of {model.pattern.compact} went from {loss_first:.4g} to {loss_last} over "
            f"{warmup + steps} steps (backends {chosen}); timings of a run on NaN or inf are not valid. Run the "
            f"kernel parity tests (pytest -m gpu tests/blocks) or bench with --backend reference to find the mixer."
        )
    step_ms = statistics.median(times)
    tps = batch * seq_len / (step_ms / 1000)
    train_flops = 3.0 * model.flops_per_token(seq_len)
    peak_flops = device_peak_flops(dev)
    return BenchResult(
        pattern=model.pattern.compact,
        params=model.num_params(),
        batch=batch,
        seq_len=seq_len,
        backend=chosen,
        kernel_routes=dict(model.kernel_routes),
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        tokens_per_s=tps,
        step_ms=step_ms,
        step_ms_std=statistics.pstdev(times),
        peak_mem_gb=peak,
        flops_per_token_train=train_flops,
        mfu=(train_flops * tps / peak_flops) if peak_flops else None,
        compiled=compile,
        loss_chunk=loss_chunk,
        loss_first=loss_first,
        loss_last=loss_last,
    )
