"""Kernel warm-up: autotune and compile each kernel shape once per node, before training, under a lock.

fla's Triton kernels autotune for minutes the first time they see a shape and dtype, and FlexAttention and
``train.compile`` compile per shape (shared/gpu/README.md). Their results land in the shared caches
(``sweeps.paths.share_kernel_cache``: Triton's with fla's autotune results, and inductor's), so only the
first process to run a shape should pay. ``warm_kernels`` runs the shapes a run will meet (a training step
at ``batch_size x seq_len``, forward passes at the evaluation lengths) once, under an exclusive file lock
named by the run's *kernel signature* (the GPU, the library versions, every layer's resolved config and
backend, the shapes, the precision). The first process with a signature does the work and leaves a marker;
processes that arrive meanwhile wait on the lock instead of autotuning the same kernels in parallel on the
same GPU, then find the marker and start at once. ``prewarm_nodes`` does this for a sweep's known layouts
on every GPU node before any trial starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from blocks.model import HybridLM
from sweeps.config import RunConfig

__all__ = ["WarmupResult", "kernel_signature", "warm_kernels", "warm_dir", "needs_warmup"]

MARKER_DIR = "hybridlab-warm"


@dataclass(frozen=True)
class WarmupResult:
    """What ``warm_kernels`` did: ``cache`` is ``cold`` (this process warmed the shapes), ``waited``
    (another process was warming them; this one waited on the lock) or ``warm`` (already done)."""

    signature: str
    cache: str
    seconds: float
    waited_s: float


def warm_dir() -> Path:
    """Where the lock and marker files live: beside the kernels they stand for, in Triton's cache."""
    base = os.environ.get("TRITON_CACHE_DIR") or str(Path.home() / ".triton" / "cache")
    path = Path(base) / MARKER_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def needs_warmup(model: HybridLM, device: torch.device, compiled: bool) -> bool:
    """Whether a run has anything to warm: on CUDA, a mixer on its kernel path or a compiled model."""
    return device.type == "cuda" and (compiled or "kernel" in model.backends.values())


def kernel_signature(model: HybridLM, cfg: RunConfig, device: torch.device, use_bf16: bool) -> str:
    """A short hash of everything that decides which kernels (and which autotune keys) a run meets."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:  # CPU builds of torch come without it
        triton_version = None
    layers = [[(m.symbol, m.backend, m.d_model, dataclasses.asdict(m.config)) for m in block.mixers]
              for block in model.layers]
    t = cfg.train
    facts = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "triton": triton_version,
        "layers": layers,
        "vocab": model.vocab_size,
        "train": [t.batch_size, cfg.data.seq_len],
        "eval": [t.eval_batch_size, sorted({cfg.data.seq_len, *cfg.data.eval_lengths})],
        "bf16": use_bf16,
        "compiled": model.compiled,
    }
    return hashlib.sha1(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[float]:
    """Hold an exclusive ``flock`` on ``path``; yields the seconds spent waiting for it."""
    t0 = time.perf_counter()
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_shapes(model: HybridLM, cfg: RunConfig, device: torch.device, use_bf16: bool) -> None:
    """One forward+backward at the training shape, forwards at the evaluation shapes; no parameter changes."""
    t = cfg.train
    gen = torch.Generator(device="cpu").manual_seed(0)  # leaves the run's own RNG streams alone
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    tokens = torch.randint(0, model.vocab_size, (t.batch_size, cfg.data.seq_len + 1), generator=gen).to(device)
    was_training = model.training
    model.train()
    with autocast:
        loss = model.loss(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad(), autocast:
        for length in sorted({cfg.data.seq_len, *cfg.data.eval_lengths}):
            model(torch.randint(0, model.vocab_size, (t.eval_batch_size, length), generator=gen).to(device))
    model.train(was_training)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_kernels(model: HybridLM, cfg: RunConfig, device: torch.device, use_bf16: bool) -> WarmupResult:
    """Run the shapes of ``cfg`` once on ``model`` unless a process on this cache already has.

    Gradients are cleared afterwards and no optimizer steps, so the run that follows is unchanged.
    """
    sig = kernel_signature(model, cfg, device, use_bf16)
    folder = warm_dir()
    marker = folder / f"{sig}.json"
    t0 = time.perf_counter()
    done_before = marker.exists()
    with _locked(folder / f"{sig}.lock") as waited:
        if marker.exists():
            return WarmupResult(sig, "warm" if done_before else "waited", time.perf_counter() - t0, waited)
        _run_shapes(model, cfg, device, use_bf16)
        seconds = time.perf_counter() - t0
        marker.write_text(json.dumps({"seconds": seconds, "pattern": model.pattern.compact, "time": time.time()}))
    return WarmupResult(sig, "cold", seconds, waited)


def prewarm(plains: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Warm each config (plain dicts of ``RunConfig``) on this process's GPU; returns one record per config.

    Run as a Ray task per GPU node by ``sweeps.runner`` before trials start; also callable directly.
    """
    from sweeps.config import from_plain
    from sweeps.data.loader import make_dataset
    from sweeps.train import resolve_device

    out = []
    for plain in plains:
        cfg = from_plain(plain, check_sweep=False)
        device = resolve_device(cfg.train.device)
        vocab = cfg.model.vocab_size or make_dataset(cfg.data).vocab_size
        model = HybridLM(dataclasses.replace(cfg.model, vocab_size=vocab)).to(device)
        model.set_backend(cfg.model.backend, device)
        if cfg.train.compile:
            model.compile_sublayers()
        use_bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda")
        if not needs_warmup(model, device, bool(cfg.train.compile)):
            out.append({"pattern": model.pattern.compact, "cache": "none"})
            continue
        r = warm_kernels(model, cfg, device, use_bf16)
        out.append({"pattern": model.pattern.compact, **dataclasses.asdict(r)})
        del model
        torch.cuda.empty_cache()
    return out
