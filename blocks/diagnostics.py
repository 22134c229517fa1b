"""Diagnostics capture: per-layer internals of one forward pass, without a second model.

Inside ``with capture(model) as cap:`` every mixer hands the tensors the entropy analysis needs to
``cap``: attention probabilities of ``A`` layers (``attn_probs``, (B, H, T, T), zero outside the
causal window), post-softplus Δ of ``M`` layers (``delta``, (B, D_inner, T)) and the GLA forget-gate
log-strength of ``G`` layers (``log_forget``, (B, T, H, K)). Outside a capture each mixer checks one
attribute (``self.diagnostics is None``) and the training path pays nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch import Tensor, nn

from blocks.mixers.base import Mixer

__all__ = ["Record", "Capture", "capture"]


@dataclass(frozen=True)
class Record:
    """One captured tensor: which sublayer (and branch of a parallel group) produced it."""

    layer: int
    branch: int
    symbol: str
    name: str
    value: Tensor


@dataclass
class Capture:
    """The records of one capture, in the order the layers ran."""

    names: frozenset[str] | None = None
    records: list[Record] = field(default_factory=list)

    def add(self, mixer: Mixer, name: str, value: Tensor) -> None:
        if self.names is not None and name not in self.names:
            return
        layer = -1 if mixer.layer_index is None else mixer.layer_index
        self.records.append(Record(layer, mixer.branch_index, mixer.symbol, name, value.detach().float()))

    def get(self, name: str) -> list[Record]:
        """All records called ``name``, in layer order."""
        return [r for r in self.records if r.name == name]

    def wants(self, name: str) -> bool:
        return self.names is None or name in self.names


@contextmanager
def capture(model: nn.Module, names: set[str] | None = None) -> Iterator[Capture]:
    """Capture mixer internals during the forward passes run inside the block.

    Args:
        model: a HybridLM or any module containing mixers.
        names: keep only these record names (``attn_probs``, ``delta``, ``log_forget``); None keeps all.
    """
    cap = Capture(names=frozenset(names) if names is not None else None)
    mixers = [m for m in model.modules() if isinstance(m, Mixer)]
    for m in mixers:
        m.diagnostics = cap
    try:
        yield cap
    finally:
        for m in mixers:
            m.diagnostics = None
