"""The shared skeleton of fla-style gated linear-attention mixers (GLA, RetNet).

Both project q, k (key_dim) and v, g (value_dim) without biases, run a per-head linear recurrence with a
(head_k_dim, head_v_dim) state, and read out through a per-head RMSNorm times swish(g) and ``o_proj``, as
fla's ``GatedLinearAttention`` and ``MultiScaleRetention`` (samba-facts.md §6.5). Subclasses add their
decay (a data-dependent gate or fixed per-head decays) and the op that mixes tokens. Not registered.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from blocks.mixers.base import Mixer, MixerConfig
from blocks.ops.norm import RMSNormSwishGate

__all__ = ["GatedLinearMixer", "NORM_EPS"]

NORM_EPS = 1e-5


class GatedLinearMixer(Mixer):
    """q/k/v/g projections, the gated RMSNorm readout and ``o_proj``; ``config.dims(d_model)`` gives
    (heads, key_dim, value_dim)."""

    def __init__(self, d_model: int, config: MixerConfig) -> None:
        super().__init__(d_model, config)
        dims: Any = config.dims(d_model)  # type: ignore[attr-defined]
        self.heads, self.key_dim, self.value_dim = dims
        self.head_k_dim = self.key_dim // self.heads
        self.head_v_dim = self.value_dim // self.heads
        self.scale = self.head_k_dim**-0.5
        self.q_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.g_norm_swish_gate = RMSNormSwishGate(self.head_v_dim, eps=NORM_EPS)
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)

    def _init_fla(self) -> None:
        """fla's own init: xavier-uniform with gain 2^-2.5 on every Linear, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=2**-2.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, _ = x.shape
        H, K, V = self.heads, self.head_k_dim, self.head_v_dim
        q = self.q_proj(x).view(B, T, H, K)  # (B, T, H, K)
        k = self.k_proj(x).view(B, T, H, K)
        v = self.v_proj(x).view(B, T, H, V)  # (B, T, H, V)
        return q, k, v

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        """Gate the mixed values ``o`` (B, T, H, V) with ``g = g_proj(x)`` and project back to d_model."""
        B, T, _ = x.shape
        g = self.g_proj(x).view(B, T, self.heads, self.head_v_dim)  # (B, T, H, V)
        o = self.g_norm_swish_gate(o, g).reshape(B, T, self.value_dim)  # (B, T, H*V)
        return self.o_proj(o)

    def _output_step(self, o: Tensor, x_t: Tensor) -> Tensor:
        """The same readout for one token: ``o`` (B, H, V), ``x_t`` (B, D)."""
        B = x_t.shape[0]
        g = self.g_proj(x_t).view(B, self.heads, self.head_v_dim)
        return self.o_proj(self.g_norm_swish_gate(o, g).reshape(B, self.value_dim))

    def state_size(self, seq_len: int) -> int:
        return self.heads * self.head_k_dim * self.head_v_dim

    def output_projections(self) -> list[nn.Module]:
        return [self.o_proj]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, heads={self.heads}, head_k_dim={self.head_k_dim}, "
            f"head_v_dim={self.head_v_dim}, chunk_size={self.config.chunk_size}"  # type: ignore[attr-defined]
        )
