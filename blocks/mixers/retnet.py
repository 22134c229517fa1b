"""``R``: multi-scale retention (RetNet), as in Samba's Sliding-RetNet baseline.

Samba copies fla's ``MultiScaleRetention`` layer of about June 2024 (samba-facts.md §6.5; Sun et al.
2023, "Retentive Network: A Successor to Transformer for Large Language Models"): bias-free q, k
(d -> key_expand*d) and v, g (d -> value_expand*d) projections, RoPE (GPT-NeoX half-split, base
10,000) on q and k over the whole head_qk dim, a fixed decay ``gamma_h = 1 - 2^(-5-h)`` per head,
scale ``head_k_dim^-0.5``, the recurrence ``S_t = gamma_h S_{t-1} + k_t^T v_t``, ``o_t = q_t S_t``,
then a per-head RMSNorm times ``swish(g)`` and a bias-free ``o_proj``.

Heads default to ``max(1, d_model // 256)``, i.e. head_qk_dim 256: the paper's "heads = query heads
/ 2" with attention heads of 128 channels (6 heads of 256/512 at d=1536, 9 at d=2304, as the
official configs instantiate). Linear layers get fla's own init (xavier-uniform, gain 2^-2.5); the
model-level ``init`` may override it. RoPE is a private copy here (angles in float32, float64 for
float64 inputs, computed per call) so that this file depends on no other mixer's ops.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from blocks.mixers.base import ConfigError, MixerConfig, linear_flops
from blocks.mixers.linear_attention import GatedLinearMixer
from blocks.ops.retention import kernel, reference
from blocks.ops.rope import rope_qk

__all__ = ["RetNetConfig", "RetNet", "retention_log_decay"]

ROPE_BASE = 10000.0


def _divisors(n: int) -> str:
    return ", ".join(str(i) for i in range(1, n + 1) if n % i == 0)


def retention_log_decay(heads: int, device: torch.device | str | None = None) -> Tensor:
    """``log(1 - 2^(-5-h))`` for h = 0..heads-1, in float64: RetNet's (and fla's) fixed decays."""
    h = torch.arange(heads, dtype=torch.float64, device=device)
    return torch.log1p(-torch.exp2(-5.0 - h))


@dataclasses.dataclass(kw_only=True)
class RetNetConfig(MixerConfig):
    """Args:
    heads: number of heads; null takes ``max(1, d_model // 256)`` (head_qk_dim 256, half the
        attention heads at head size 128: 6 at d=1536, 9 at d=2304).
    key_expand: q/k width as a multiple of d_model (key_dim = int(d_model * key_expand)).
    value_expand: v/g width as a multiple of d_model (value_dim = int(d_model * value_expand)).
    chunk_size: tokens per chunk of the reference path (fla's kernel uses 64).
    rope: apply RoPE to q and k (needs an even head_k_dim).
    """

    heads: int | None = None
    key_expand: float = 1.0
    value_expand: float = 2.0
    chunk_size: int = 64
    rope: bool = True

    def dims(self, d_model: int) -> tuple[int, int, int]:
        """``(heads, key_dim, value_dim)`` at width ``d_model``."""
        heads = self.heads if self.heads is not None else max(1, d_model // 256)
        return heads, int(d_model * self.key_expand), int(d_model * self.value_expand)

    def validate(self, d_model: int | None = None) -> None:
        if self.heads is not None and self.heads < 1:
            raise ConfigError(
                f"retnet: field 'heads' must be a positive int or null (null: max(1, d_model // 256)); "
                f"got {self.heads!r}"
            )
        for name in ("key_expand", "value_expand"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"retnet: field {name!r} must be a positive number; got {value!r}")
        if self.chunk_size < 1:
            raise ConfigError(f"retnet: field 'chunk_size' must be a positive int; got {self.chunk_size!r}")
        if d_model is None:
            return
        heads, key_dim, value_dim = self.dims(d_model)
        for name, dim in (("key_expand", key_dim), ("value_expand", value_dim)):
            if dim < 1:
                raise ConfigError(
                    f"retnet: field {name!r}={getattr(self, name)!r} gives a width of int(d_model * {name}) = "
                    f"{dim} at d_model={d_model}; raise {name} to at least {1 / d_model:.3g}"
                )
        given = f"heads={heads}" if self.heads is not None else f"heads=null (-> {heads})"
        if key_dim % heads or value_dim % heads:
            raise ConfigError(
                f"retnet: field 'heads' must divide key_dim={key_dim} and value_dim={value_dim} at "
                f"d_model={d_model}; got {given}. Use heads in {{{_divisors(math.gcd(key_dim, value_dim))}}}, "
                "or change key_expand/value_expand"
            )
        if self.rope and (key_dim // heads) % 2:
            raise ConfigError(
                f"retnet: field 'rope' needs an even head_k_dim; key_dim={key_dim} / {given} gives "
                f"{key_dim // heads} at d_model={d_model}. Change heads or key_expand, or set rope=false"
            )


class RetNet(GatedLinearMixer):
    """Multi-scale retention. Input and output (B, T, D); per-head state (head_k_dim, head_v_dim)."""

    Config = RetNetConfig

    def __init__(self, d_model: int, config: RetNetConfig) -> None:
        super().__init__(d_model, config)
        self._init_fla()

    @classmethod
    def kernel_status(cls) -> str | None:
        return kernel.kernel_status()

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._qkv(x)
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        if self.config.rope:
            q, k = rope_qk(q, k, ROPE_BASE)
        log_decay = retention_log_decay(self.heads, x.device).to(acc)  # (H,)
        op = kernel.chunk_retention if self.backend == "kernel" else reference.chunk_retention
        o = op(q, k, v, log_decay, self.scale, self.config.chunk_size)  # (B, T, H, V)
        return self._output(o, x)

    def naive_forward(self, x: Tensor) -> Tensor:
        """One token at a time, as in decoding; RoPE rotates each (i, i + D/2) pair as a complex number."""
        B = x.shape[0]
        H, K, V = self.heads, self.head_k_dim, self.head_v_dim
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        gamma = retention_log_decay(H, x.device).exp().to(acc).view(H, 1, 1)
        inv_freq = ROPE_BASE ** (-torch.arange(0, K, 2, dtype=acc, device=x.device) / K)  # (K/2,)
        S = x.new_zeros(B, H, K, V, dtype=acc)
        outs = []
        for t, x_t in enumerate(x.unbind(1)):  # (B, D)
            q = self.q_proj(x_t).view(B, H, K).to(acc)
            k = self.k_proj(x_t).view(B, H, K).to(acc)
            if self.config.rope:
                turn = torch.polar(torch.ones_like(inv_freq), t * inv_freq)  # (K/2,)
                z_q, z_k = (torch.complex(*u.chunk(2, dim=-1)) * turn for u in (q, k))
                q, k = (torch.cat([z.real, z.imag], dim=-1) for z in (z_q, z_k))  # (B, H, K)
            v = self.v_proj(x_t).view(B, H, V).to(acc)
            S = gamma * S + k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, K, V)
            o = ((q * self.scale).unsqueeze(-2) @ S).squeeze(-2).to(x.dtype)  # (B, H, V)
            outs.append(self._output_step(o, x_t))
        return torch.stack(outs, dim=1)  # (B, T, D)

    def flops(self, seq_len: int) -> int:
        """Projections, RoPE on q and k (3 per channel each), plus per head the chunked form with
        C = min(chunk_size, seq_len): q.k over the C keys of the chunk (2CK), the decay mask (C), A.v
        (2CV), q.S (2KV) and the state update k^T v (2KV); plus ~8 per value channel for the RMSNorm
        and swish gate.
        """
        C = min(self.config.chunk_size, seq_len)
        K, V = self.head_k_dim, self.head_v_dim
        proj = linear_flops(self.q_proj, self.k_proj, self.v_proj, self.g_proj, self.o_proj)
        rope = 6 * self.key_dim if self.config.rope else 0
        mix = self.heads * (2 * C * (K + V) + C + 4 * K * V)
        return proj + rope + mix + 8 * self.value_dim

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rope={self.config.rope}"
