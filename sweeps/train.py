"""The training loop: one run of one config, no Ray import (runs alone or inside a Tune trial).

AdamW (beta1 0.9, beta2 0.95), weight decay 0.1 on every parameter, linear warmup then cosine to
``lr * min_lr_ratio``, gradient-norm clip 1.0 and gradient accumulation, as the official Samba
``pretrain.py`` (samba-facts.md §2.3); bf16 autocast on CUDA and fp32 on CPU; seeded and
deterministic on CPU. Periodic evaluation measures ``val/loss``, ``val/ppl`` and ``val/ppl_len{L}``
(mean loss over the whole prefix of length L), per-layer entropies and throughput; everything is
handed to ``Hooks`` (MLflow logging, Ray Tune reporting), so this module knows neither.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from blocks.model import HybridLM
from sweeps.config import RunConfig
from sweeps.warmup import needs_warmup, warm_kernels

__all__ = ["Hooks", "TrainResult", "Diverged", "run_training", "resolve_device", "autocast_bf16", "lr_at"]

Checkpoint = Callable[[], dict[str, Any]]


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Hooks:
    """Receivers of what the loop measures; the defaults do nothing."""

    def on_start(self, model: HybridLM, info: dict[str, Any]) -> None:
        """Called once the model is built: ``info`` holds params, FLOPs/token, backends, device."""

    def on_log(self, metrics: dict[str, float], step: int) -> None:
        """Training metrics every ``train.log_every`` steps."""

    def on_artifact(self, path: str, data: dict[str, Any]) -> None:
        """A JSON-ready artifact (the final per-position loss curve), before the final ``on_eval``."""

    def on_eval(self, metrics: dict[str, float], step: int, final: bool, checkpoint: Checkpoint) -> None:
        """Evaluation metrics every ``train.eval_every`` steps and at the end; ``checkpoint()`` gives the
        loop state to resume from. Called last for a given step, so a hook may stop the run here."""


@dataclass
class TrainResult:
    metrics: dict[str, float]
    steps: int
    wall_s: float
    info: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; an unavailable CUDA request is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but no CUDA device is visible; use train.device=cpu or auto")
    return device


def autocast_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``train.precision`` trains under bf16 autocast on ``device`` (``auto``: on CUDA only)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warmup over ``warmup * steps`` steps, then cosine from ``lr`` to ``lr * min_lr_ratio``."""
    t = cfg.train
    warm = int(t.warmup * t.steps)
    if step < warm:
        return t.lr * (step + 1) / warm
    progress = (step - warm) / max(1, t.steps - warm)
    floor = t.lr * t.min_lr_ratio
    return floor + 0.5 * (t.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.t0 = total, enabled, time.perf_counter()

    def update(self, step: int, loss: float, extra: str = "") -> None:
        if not self.enabled:
            return
        frac = step / self.total
        bar = "#" * int(24 * frac)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        sys.stderr.write(f"\r[{bar:<24}] {step}/{self.total} loss {loss:.3f} {extra} eta {eta:.0f}s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run_training(
    cfg: RunConfig, hooks: Hooks | None = None, resume: dict[str, Any] | None = None, origin: float | None = None
) -> TrainResult:
    """Train ``cfg`` to ``train.steps``; resume from a ``checkpoint()`` dict when given.

    ``origin`` is the wall-clock time (``time.time()``) the run is counted from for ``perf/startup_s``
    (start to the end of the first step; a Ray trial passes its process start), default this call. The first
    log also carries where that time went, ``startup/<phase>_s``: ``process`` (origin to this call: process
    start, imports), ``data``, ``model`` (build, backends, compile wrappers), ``tracking`` (the optimizer and the start hooks),
    ``eval_data`` and ``first_step`` (with lazy compilation); ``startup/kernel_warmup_s`` comes with the start.

    Raises:
        Diverged: the loss became NaN/inf.
    """
    from analysis.context_length import ppl_metrics
    from analysis.entropy import layer_entropies
    from sweeps.data.loader import make_dataset

    hooks = hooks or Hooks()
    t = cfg.train
    t_start = time.perf_counter()
    origin = time.time() if origin is None else origin
    startup_s: float | None = None
    phases = {"process": max(0.0, time.time() - origin)}  # startup/<phase>_s: where the start-up time goes
    mark = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[phase], mark = now - mark, now

    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    data = make_dataset(cfg.data)
    lap("data")
    model_cfg = cfg.model if cfg.model.vocab_size else dataclasses.replace(cfg.model, vocab_size=data.vocab_size)
    model = HybridLM(model_cfg).to(device)
    backends = model.set_backend(cfg.model.backend, device)
    if t.compile:
        model.compile_sublayers()
    model.loss_chunk = t.loss_chunk
    use_bf16 = autocast_bf16(t.precision, device)
    warm = None
    lap("model")
    if t.warm_kernels and needs_warmup(model, device):
        warm = warm_kernels(model, cfg, device, use_bf16)
    mark = time.perf_counter()  # the warm-up has its own metric, startup/kernel_warmup_s
    opt = torch.optim.AdamW(
        model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay,
        fused=device.type == "cuda",
    )
    start_step = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        start_step = int(resume["step"])
    info = {
        "params": model.num_params(),
        "flops_per_token": model.flops_per_token(cfg.data.seq_len),
        "backends": backends,
        "kernel_routes": dict(model.kernel_routes),
        "device": str(device),
        "precision": "bf16-autocast" if use_bf16 else "fp32",
        "compiled": bool(t.compile),
        "kernel_warmup": None if warm is None else dataclasses.asdict(warm),
        "pattern": model.pattern.compact,
        "layout_hash": model.pattern.layout_hash,
        "vocab_size": model.vocab_size,
        "start_step": start_step,
    }
    hooks.on_start(model, info)
    lap("tracking")

    longest = max(cfg.data.eval_lengths)
    if data.is_synthetic:
        eval_sets = list(data.eval_batches(cfg.data.seq_len, t.eval_batch_size, t.eval_batches))
        entropy_tokens = eval_sets[0][0][: t.entropy_batch_size]
    else:
        eval_tokens = torch.cat(
            [torch.cat([x, y[:, -1:]], 1) for x, y in data.eval_batches(longest, t.eval_batch_size, t.eval_batches)]
        )  # (N, longest + 1)
        entropy_tokens = eval_tokens[: t.entropy_batch_size, : cfg.data.seq_len]
    batches = data.train_batches(t.batch_size, seed=t.seed, start_step=start_step * t.grad_accum)
    tokens_per_step = t.batch_size * cfg.data.seq_len * t.grad_accum
    progress = _Progress(t.steps, t.progress == "on" or (t.progress == "auto" and sys.stderr.isatty()))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    def checkpoint(step: int) -> Checkpoint:
        return lambda: {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}

    def evaluate(step: int) -> dict[str, float]:
        with autocast:
            if data.is_synthetic:
                m = _synthetic_eval(model, eval_sets, device)
            else:
                m = ppl_metrics(model, eval_tokens.to(device), cfg.data.seq_len, cfg.data.eval_lengths, t.eval_batch_size)
            if t.entropy:
                m.update(layer_entropies(model, entropy_tokens.to(device), last=t.entropy_last))
        model.train()
        return m

    step_times: list[float] = []
    last_loss = float("nan")
    metrics: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    lap("eval_data")
    for step in range(start_step, t.steps):
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for _ in range(t.grad_accum):
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast:
                loss = model.loss(x, y) / t.grad_accum
            loss.backward()
            loss_sum += loss.detach()
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip) if t.grad_clip > 0 else torch.zeros(())
        )
        opt.step()
        opt.zero_grad(set_to_none=True)
        done = step + 1
        first = startup_s is None
        is_log = done % t.log_every == 0 or done == t.steps or first
        is_eval = done % t.eval_every == 0 or done == t.steps
        if is_log or is_eval:
            last_loss = loss_sum.item()
            if not math.isfinite(last_loss):
                raise Diverged(f"training loss became {last_loss} at step {done}")
        if device.type == "cuda" and (is_log or is_eval):
            torch.cuda.synchronize(device)
        step_times.append(time.perf_counter() - t0)
        if first:
            startup_s = time.time() - origin
            lap("first_step")
        if is_log:
            step_s = _median(step_times[-t.log_every :])
            hooks.on_log(
                {
                    "train/loss": last_loss,
                    "train/lr": lr,
                    "train/grad_norm": float(grad_norm),
                    "perf/step_ms": 1000 * step_s,
                    "perf/tokens_per_s": tokens_per_step / step_s,
                    **({"perf/startup_s": startup_s, **{f"startup/{k}_s": v for k, v in phases.items()}} if first else {}),
                },
                done,
            )
            progress.update(done, last_loss)
        if is_eval:
            step_s = _median(step_times[1:] or step_times)
            metrics = {
                "train/loss": last_loss,
                "perf/step_ms": 1000 * step_s,
                "perf/tokens_per_s": tokens_per_step / step_s,
                "perf/peak_mem_mb": _peak_mem_mb(device),
                "model/params": float(info["params"]),
                "model/flops_per_token": float(info["flops_per_token"]),
                **evaluate(done),
            }
            if done == t.steps and not data.is_synthetic:
                from analysis.context_length import loss_by_position

                with autocast:
                    buckets = loss_by_position(model, eval_tokens.to(device), 16, t.eval_batch_size)
                model.train()
                hooks.on_artifact(
                    "eval/loss_by_position.json",
                    {"train_length": cfg.data.seq_len, "step": done,
                     "buckets": [{"start": a, "end": b, "mean_loss": v} for a, b, v in buckets]},
                )
            if done == t.steps and t.probes:
                from analysis.probes import probe_metrics
                from sweeps.probes import probe_sets

                with autocast:
                    metrics.update(probe_metrics(model, probe_sets(cfg.data, t.probes), device))
            hooks.on_eval(metrics, done, done == t.steps, checkpoint(done))
    progress.close()
    return TrainResult(metrics, t.steps, time.perf_counter() - t_start, info)



@torch.no_grad()
def _synthetic_eval(model: HybridLM, sets: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> dict[str, float]:
    """Mean loss over the answer positions of a synthetic task's evaluation batches."""
    model.eval()
    losses = [model.loss(x.to(device), y.to(device)).item() for x, y in sets]
    loss = sum(losses) / len(losses)
    return {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0))}


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    return ys[len(ys) // 2]
