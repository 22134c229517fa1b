"""Kernel warm-up: autotune and compile each kernel shape once per node, before training, under a lock.

fla's Triton kernels autotune for minutes the first time they see a shape and dtype, and FlexAttention and
``train.compile`` compile per shape (shared/gpu/README.md). Their results land in the shared caches
(``sweeps.paths.share_kernel_cache``: Triton's with fla's autotune results, and inductor's), so only the
first process to run a shape should pay. A model's *kernel units* are its distinct mixers (with their resolved
configs and paths, after their sublayer's norm) at the run's shapes; compiled, its distinct sublayers (whose
fused kernels depend on all of each) plus the head and loss;
``warm_kernels`` runs each unit alone (a forward and backward at ``batch_size x seq_len``, forwards at the
evaluation lengths) under an exclusive file lock named by the unit's signature (GPU, library versions,
unit, shapes, precision) and leaves a marker. Processes that arrive while a unit runs wait on its lock
instead of autotuning the same kernels in parallel on one GPU, then find the marker and go on. Layouts
share units, so a sweep of twelve layouts built from a handful of distinct mixers warms a handful.
``prewarm`` does this for a sweep's listed layouts on every GPU node before any trial starts
(``sweeps.runner``), with several worker processes per GPU: Triton's compilation, the bulk of a cold
autotune, is CPU-bound, so workers take different units (a worker skips a unit another one holds and comes
back to it at the end) and the cold warm-up takes about as long as its slowest unit rather than their sum.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from blocks.model import HybridLM, join_stream
from sweeps.config import RunConfig

__all__ = ["WarmupResult", "kernel_signature", "kernel_units", "warm_kernels", "warm_dir", "needs_warmup", "prewarm"]

MARKER_DIR = "hybridlab-warm"


@dataclass(frozen=True)
class WarmupResult:
    """What ``warm_kernels`` did over a model's kernel units (one per distinct mixer, or sublayer and head compiled).

    ``cache`` is ``cold`` when this process ran at least one unit, ``waited`` when it ran none but waited
    for another process that was running one, ``busy`` when it ran none and skipped some another process
    held (``wait=False``), and ``warm`` when every unit was done before it started;
    ``signature`` hashes the units' signatures (the same model and shapes give the same one); ``units_busy``
    counts units skipped because another process held them (only when called with ``wait=False``).
    """

    signature: str
    cache: str
    seconds: float
    waited_s: float
    units: int
    units_run: int
    units_busy: int = 0


def warm_dir() -> Path:
    """Where the lock and marker files live: beside the kernels they stand for, in Triton's cache."""
    base = os.environ.get("TRITON_CACHE_DIR") or str(Path.home() / ".triton" / "cache")
    path = Path(base) / MARKER_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def needs_warmup(model: HybridLM, device: torch.device) -> bool:
    """Whether a run has anything to warm: on CUDA, a mixer on its kernel path or a compiled model."""
    return device.type == "cuda" and (model.compiled is not None or "kernel" in model.backends.values())


def _context(model: HybridLM, cfg: RunConfig, device: torch.device, use_bf16: bool) -> dict[str, Any]:
    """What every unit's kernels depend on besides the unit itself: device, versions, shapes, precision."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:  # CPU builds of torch come without it
        triton_version = None
    t = cfg.train
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "triton": triton_version,
        "d_model": model.config.d_model,
        "train": [t.batch_size, cfg.data.seq_len],
        "eval": [t.eval_batch_size, sorted({cfg.data.seq_len, *cfg.data.eval_lengths})],
        "bf16": use_bf16,
        "compiled": model.compiled,
    }


def _digest(facts: Any) -> str:
    return hashlib.sha1(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


Unit = tuple[str, int, int]  # (what, sublayer index or -1 for the head, mixer index within it or -1 for all)


def _units(model: HybridLM, cfg: RunConfig, device: torch.device, use_bf16: bool) -> dict[str, Unit]:
    """``{signature: (what, sublayer, mixer)}``, the first occurrence of each.

    Eager, a unit is one mixer (with its sublayer's norm): a parallel sublayer ``(G|A)`` shares its G and A
    units with the layouts that have them alone, so each kernel shape is run once. Compiled, a unit is a
    whole sublayer, whose fused kernels depend on everything in it, plus the head and loss; the first
    sublayer is a unit of its own (``"M (first)"``), since it takes the stream alone where every later one
    takes an (output, residual) pair, and so compiles to another graph.
    """
    ctx = _context(model, cfg, device, use_bf16)
    units: dict[str, Unit] = {}
    for i, block in enumerate(model.layers):
        mixers = [(m.symbol, m.backend, dataclasses.asdict(m.config)) for m in block.mixers]
        if model.compiled:
            what = "|".join(m.symbol for m in block.mixers) + (" (first)" if i == 0 else "")
            facts = {**ctx, "block": mixers, **({"first": True} if i == 0 else {})}
            units.setdefault(_digest(facts), (what, i, -1))
            continue
        for j, mixer in enumerate(mixers):
            units.setdefault(_digest({**ctx, "block": [mixer]}), (mixer[0], i, j))
    if model.compiled:
        units.setdefault(
            _digest({**ctx, "head": model.vocab_size, "tied": model.config.tie_embeddings}), ("head", -1, -1)
        )
    return units


def kernel_units(model: HybridLM, cfg: RunConfig, device: torch.device, use_bf16: bool) -> dict[str, str]:
    """The model's kernel units, ``{signature: what}``: one per distinct mixer (its resolved config and path,
    after its sublayer's norm) at the run's shapes; when compiled, one per distinct sublayer plus the head and
    loss. Layouts that share a unit warm it once for all of them."""
    return {sig: unit[0] for sig, unit in _units(model, cfg, device, use_bf16).items()}


def kernel_signature(model: HybridLM, cfg: RunConfig, device: torch.device, use_bf16: bool) -> str:
    """A short hash of everything that decides which kernels (and which autotune keys) a run meets."""
    return _digest(sorted(kernel_units(model, cfg, device, use_bf16)))


@contextlib.contextmanager
def _locked(path: Path, wait: bool = True) -> Iterator[float | None]:
    """Hold an exclusive ``flock`` on ``path``; yields the seconds spent waiting for it, or ``None`` without
    holding it when another process has it and ``wait`` is false."""
    t0 = time.perf_counter()
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_unit(model: HybridLM, unit: Unit, cfg: RunConfig, device: torch.device, use_bf16: bool) -> None:
    """One forward+backward of the unit at the training shape, forwards at the evaluation shapes.

    The unit runs alone on random activations, not inside the whole model: a compiled sublayer and the head get
    the (output, residual) pair as in training (autocast's output dtype, the residual stream's dtype), the
    first sublayer the stream alone (the embedding's output); its gradients are cleared afterwards and nothing
    else changes.
    """
    _, index, j = unit
    t = cfg.train
    d = model.config.d_model
    gen = torch.Generator(device="cpu").manual_seed(0)  # leaves the run's own RNG streams alone
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    dtype = model.embed.weight.dtype
    block = model.layers[index] if index >= 0 else None

    out_dtype = torch.bfloat16 if use_bf16 else dtype  # a sublayer's output dtype: autocast's, else the model's

    def run(x: torch.Tensor) -> torch.Tensor:
        assert block is not None
        if j >= 0:
            return block.mixers[j](block.norm(x))
        if index == 0:
            return join_stream(*block(x, None))  # the first block gets the stream alone, as in training
        return join_stream(*block(x.to(out_dtype), x))  # the (output, residual) pair every block after the first gets

    was_training = model.training
    model.train()
    x = torch.randn(t.batch_size, cfg.data.seq_len, d, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    with autocast:
        if block is None:
            targets = torch.randint(0, model.vocab_size, (t.batch_size, cfg.data.seq_len), generator=gen).to(device)
            out = model._head_loss(x.to(out_dtype), x, targets)
        else:
            out = run(x).float().pow(2).mean()
    out.backward()
    model.zero_grad(set_to_none=True)
    if block is not None:
        model.eval()
        with torch.no_grad(), autocast:
            for length in sorted({cfg.data.seq_len, *cfg.data.eval_lengths}):
                run(torch.randn(t.eval_batch_size, length, d, generator=gen, dtype=dtype).to(device))
    model.train(was_training)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_kernels(
    model: HybridLM, cfg: RunConfig, device: torch.device, use_bf16: bool, *, wait: bool = True
) -> WarmupResult:
    """Run each of the model's kernel units once unless a process on this cache already has.

    Each unit has its own lock and marker, so concurrent processes share the work: a unit another process is
    running is waited for (or, with ``wait=False``, skipped and counted in ``units_busy``), never run twice.
    Gradients are cleared afterwards and no optimizer steps, so the run that follows is unchanged.
    """
    units = _units(model, cfg, device, use_bf16)
    folder = warm_dir()
    t0 = time.perf_counter()
    ran = waited_on = busy = 0
    waited_total = 0.0
    for sig, unit in units.items():
        marker = folder / f"{sig}.json"
        done_before = marker.exists()
        with _locked(folder / f"{sig}.lock", wait) as waited:
            if waited is None:
                busy += 1
                continue
            waited_total += waited
            if marker.exists():
                waited_on += not done_before
                continue
            u0 = time.perf_counter()
            shapes = f"batch {cfg.train.batch_size} x {cfg.data.seq_len}, evaluation lengths {cfg.data.eval_lengths}"
            print(f"kernel warm-up: {unit[0]} ({shapes}) ...", file=sys.stderr, flush=True)
            _run_unit(model, unit, cfg, device, use_bf16)
            seconds = time.perf_counter() - u0
            marker.write_text(json.dumps({"unit": unit[0], "seconds": seconds, "time": time.time()}))
            print(f"kernel warm-up: {unit[0]} done in {seconds:.1f} s", file=sys.stderr, flush=True)
            ran += 1
    cache = "cold" if ran else ("busy" if busy else ("waited" if waited_on else "warm"))
    return WarmupResult(
        _digest(sorted(units)), cache, time.perf_counter() - t0, waited_total, len(units), ran, busy
    )


def prewarm(plains: list[dict[str, Any]], worker: int = 0, workers: int = 1) -> list[dict[str, Any]]:
    """Warm each config (plain dicts of ``RunConfig``) on this process's GPU; returns a record per config and pass
    (a config whose units another worker held gets a second record from the waiting pass; ``units_run`` sums).

    Run by ``sweeps.runner`` before trials start as ``workers`` Ray tasks per GPU node, ``worker`` being this
    one's index; also callable directly. Worker ``k`` starts ``k/workers`` of the way through the list and
    first skips units another worker holds, then goes back and waits for those, so every unit is run once and
    workers overlap their (CPU-bound) compilation instead of queueing on one lock.
    """
    from sweeps.config import from_plain
    from sweeps.space import vocab_for_counting
    from sweeps.train import autocast_bf16, resolve_device

    start = (worker * len(plains)) // max(1, workers)
    order = plains[start:] + plains[:start]
    out: list[dict[str, Any]] = []
    deferred: list[dict[str, Any]] = []
    for waiting, todo in ((False, order), (True, deferred)):
        for plain in todo:
            cfg = from_plain(plain, check_sweep=False)
            device = resolve_device(cfg.train.device)
            model = HybridLM(dataclasses.replace(cfg.model, vocab_size=vocab_for_counting(cfg))).to(device)
            model.set_backend(cfg.model.backend, device)
            if cfg.train.compile:
                model.compile_sublayers()
            if not needs_warmup(model, device):
                out.append({"pattern": model.pattern.compact, "worker": worker, "cache": "none"})
                continue
            r = warm_kernels(model, cfg, device, autocast_bf16(cfg.train.precision, device), wait=waiting)
            if r.units_busy:
                deferred.append(plain)
            out.append({"pattern": model.pattern.compact, "worker": worker, **dataclasses.asdict(r)})
            del model
            torch.cuda.empty_cache()
    return out
