"""Layout accounting without allocating weights: exact parameters, FLOPs/token and state per layer.

The model is built on PyTorch's ``meta`` device, so a 1.3B-parameter layout is described in well under
a second on a laptop; the counts are the real module's (nothing is estimated separately).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from blocks import registry
from blocks.config import ModelConfig
from blocks.model import HybridLM

__all__ = ["describe", "build_meta", "STATE_BYTES_PER_ELEMENT"]

STATE_BYTES_PER_ELEMENT = 2  # bf16 inference cache


def build_meta(cfg: ModelConfig, vocab_size: int | None = None) -> HybridLM:
    """Build ``cfg`` on the meta device (shapes only)."""
    with torch.device("meta"):
        return HybridLM(cfg, vocab_size=vocab_size)


def describe(cfg: ModelConfig, vocab_size: int | None = None, seq_len: int = 4096) -> dict[str, Any]:
    """A JSON-ready description of a layout (the ``hybridlab pattern --json`` document).

    Keys: ``canonical``, ``compact``, ``layout_hash``, ``n_layers``, ``layers`` (``index``, ``symbol``,
    ``mixer``, ``params`` (resolved config), ``param_count``, ``flops_per_token``, ``state_elements``),
    ``params``, ``flops_per_token``, ``state_bytes`` (bf16 cache for one sequence of ``seq_len``),
    ``d_model``, ``vocab_size``, ``seq_len``, ``tie_embeddings``.
    """
    model = build_meta(cfg, vocab_size)
    layers = []
    for block, layer in zip(model.layers, model.resolved, strict=True):
        mixers = list(block.mixers)
        layers.append(
            {
                "index": layer.index,
                "symbol": layer.symbols,
                "mixer": "|".join(registry.get(s).name for s, _ in layer.branches),
                "params": (
                    dataclasses.asdict(layer.branches[0][1])
                    if len(layer.branches) == 1
                    else [dataclasses.asdict(c) for _, c in layer.branches]
                ),
                "param_count": sum(p.numel() for p in block.parameters()),
                "flops_per_token": sum(m.flops(seq_len) for m in mixers),
                "state_elements": sum(m.state_size(seq_len) for m in mixers),
            }
        )
    return {
        "canonical": model.pattern.canonical,
        "compact": model.pattern.compact,
        "layout_hash": model.pattern.layout_hash,
        "n_layers": model.pattern.n_layers,
        "layers": layers,
        "params": model.num_params(),
        "embedding_params": model.embed.weight.numel(),
        "flops_per_token": model.flops_per_token(seq_len),
        "state_bytes": model.state_size(seq_len) * STATE_BYTES_PER_ELEMENT,
        "d_model": cfg.d_model,
        "vocab_size": model.vocab_size,
        "seq_len": seq_len,
        "tie_embeddings": cfg.tie_embeddings,
    }
