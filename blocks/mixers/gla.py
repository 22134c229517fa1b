"""``G``: gated linear attention (GLA), as in Samba's Sliding-GLA baseline.

Samba copies fla's ``GatedLinearAttention`` layer of about June 2024 (samba-facts.md §6.5; Yang et
al. 2024, "Gated Linear Attention Transformers with Hardware-Efficient Training"): bias-free q, k
(d -> key_expand*d) and v, g (d -> value_expand*d) projections, no short convolution, a low-rank
forget gate ``gk = logsigmoid(W2 W1 x + b) / 16``, the per-head recurrence
``S_t = diag(exp(gk_t)) S_{t-1} + k_t^T v_t``, ``o_t = (q_t / sqrt(d_k)) S_t``, then a per-head
RMSNorm times ``swish(g)`` and a bias-free ``o_proj``. Heads default to ``d_model // 384`` (4 at
d=1536: key 768 = 4 x 192, value 1536 = 4 x 384), the paper's "heads = d_m/384, key expansion 0.5".
Linear layers get fla's own init (xavier-uniform, gain 2^-2.5, zero biases); the model-level
``init`` may override it.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blocks.mixers.base import ConfigError, MixerConfig, linear_flops
from blocks.mixers.linear_attention import GatedLinearMixer
from blocks.ops.gla import kernel, reference

__all__ = ["GLAConfig", "GLA"]



def _divisors(n: int) -> str:
    return ", ".join(str(i) for i in range(1, n + 1) if n % i == 0)


@dataclasses.dataclass(kw_only=True)
class GLAConfig(MixerConfig):
    """Args:
    heads: number of heads; null takes ``max(1, d_model // 384)``.
    key_expand: q/k width as a multiple of d_model (key_dim = int(d_model * key_expand)).
    value_expand: v/g width as a multiple of d_model (value_dim = int(d_model * value_expand)).
    gate_rank: inner width of the low-rank forget-gate projection.
    gate_normalizer: the log forget gate is ``logsigmoid(.) / gate_normalizer``.
    chunk_size: tokens per chunk of the reference path (fla's kernel picks its own).
    """

    heads: int | None = None
    key_expand: float = 0.5
    value_expand: float = 1.0
    gate_rank: int = 16
    gate_normalizer: float = 16.0
    chunk_size: int = 64

    def dims(self, d_model: int) -> tuple[int, int, int]:
        """``(heads, key_dim, value_dim)`` at width ``d_model``."""
        heads = self.heads if self.heads is not None else max(1, d_model // 384)
        return heads, int(d_model * self.key_expand), int(d_model * self.value_expand)

    def validate(self, d_model: int | None = None) -> None:
        if self.heads is not None and self.heads < 1:
            raise ConfigError(
                f"gla: field 'heads' must be a positive int or null (null: max(1, d_model // 384)); got {self.heads!r}"
            )
        for name in ("key_expand", "value_expand", "gate_normalizer"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"gla: field {name!r} must be a positive number; got {value!r}")
        for name in ("gate_rank", "chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gla: field {name!r} must be a positive int; got {getattr(self, name)!r}")
        if d_model is None:
            return
        heads, key_dim, value_dim = self.dims(d_model)
        for name, dim in (("key_expand", key_dim), ("value_expand", value_dim)):
            if dim < 1:
                raise ConfigError(
                    f"gla: field {name!r}={getattr(self, name)!r} gives a width of int(d_model * {name}) = {dim} "
                    f"at d_model={d_model}; raise {name} to at least {1 / d_model:.3g}"
                )
        if key_dim % heads or value_dim % heads:
            given = f"heads={heads}" if self.heads is not None else f"heads=null (-> {heads})"
            raise ConfigError(
                f"gla: field 'heads' must divide key_dim={key_dim} and value_dim={value_dim} at "
                f"d_model={d_model}; got {given}. Use heads in {{{_divisors(math.gcd(key_dim, value_dim))}}}, "
                "or change key_expand/value_expand"
            )


class GLA(GatedLinearMixer):
    """Gated linear attention. Input and output (B, T, D); per-head state (head_k_dim, head_v_dim)."""

    Config = GLAConfig

    def __init__(self, d_model: int, config: GLAConfig) -> None:
        super().__init__(d_model, config)
        self.gk_proj = nn.Sequential(
            nn.Linear(d_model, config.gate_rank, bias=False),
            nn.Linear(config.gate_rank, self.key_dim, bias=True),
        )
        self._init_fla()

    @classmethod
    def kernel_status(cls) -> str | None:
        return kernel.kernel_status()

    def _log_forget(self, x: Tensor) -> Tensor:
        """``logsigmoid(gk_proj(x)) / gate_normalizer`` in float32 (float64 for float64 input)."""
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        return F.logsigmoid(self.gk_proj(x).to(acc)) / self.config.gate_normalizer

    def forward(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        q, k, v = self._qkv(x)
        gk = self._log_forget(x).view(B, T, self.heads, self.head_k_dim)  # (B, T, H, K)
        if self.diagnostics is not None:
            self.record("log_forget", gk)
        op = kernel.chunk_gla if self.backend == "kernel" else reference.chunk_gla
        o = op(q, k, v, gk, self.scale, self.config.chunk_size)  # (B, T, H, V)
        return self._output(o, x)

    def naive_forward(self, x: Tensor) -> Tensor:
        """One token at a time, as in decoding: project x_t, update the state, read it out."""
        B = x.shape[0]
        H, K, V = self.heads, self.head_k_dim, self.head_v_dim
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        S = x.new_zeros(B, H, K, V, dtype=acc)
        outs = []
        for x_t in x.unbind(1):  # (B, D)
            q = self.q_proj(x_t).view(B, H, K).to(acc) * self.scale
            k = self.k_proj(x_t).view(B, H, K).to(acc)
            v = self.v_proj(x_t).view(B, H, V).to(acc)
            S = self._log_forget(x_t).exp().view(B, H, K, 1) * S + k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, K, V)
            o = (q.unsqueeze(-2) @ S).squeeze(-2).to(x.dtype)  # (B, H, V)
            outs.append(self._output_step(o, x_t))
        return torch.stack(outs, dim=1)  # (B, T, D)

    def flops(self, seq_len: int) -> int:
        """Projections, plus per head the chunked form with C = min(chunk_size, seq_len): q.k over the
        C keys of the chunk (2CK), A.v (2CV), q.S (2KV) and the state update k^T v (2KV); plus ~8 per
        key channel for the gate (logsigmoid, cumsum, exps, scalings) and ~8 per value channel for the
        RMSNorm and swish gate.
        """
        C = min(self.config.chunk_size, seq_len)
        K, V = self.head_k_dim, self.head_v_dim
        proj = linear_flops(self.q_proj, self.k_proj, self.v_proj, self.g_proj, *self.gk_proj, self.o_proj)
        mix = self.heads * (2 * C * (K + V) + 4 * K * V)
        return proj + mix + 8 * self.key_dim + 8 * self.value_dim
