"""``A``: causal (sliding-window) softmax attention with RoPE and GQA, as Samba's ``CausalSelfAttention``.

Follows the official Samba code (``lit_gpt/model.py`` ``CausalSelfAttention``; samba-facts.md §6.2,
§6.3): bias-free projections, GPT-NeoX half-split RoPE with base 10,000 on q and k, scale
1/sqrt(head size), ``flash_attn_func(..., causal=True, window_size=(window-1, 0))``, so ``window`` counts
the keys a query sees *including itself* (``window=2048`` in the paper). ``window: null`` is full causal
attention (the Llama-2 baseline); ``rope: false`` is the NoPE ablation; ``kv_heads`` < ``heads`` is GQA
(1 = MQA), query head ``h`` reading KV head ``h // (heads // kv_heads)``.

The official code fuses q, k and v into one ``attn`` Linear of ``(heads + 2*kv_heads) * head_dim``
outputs; here they are three Linears (``q_proj``, ``k_proj``, ``v_proj``) with the same parameter
count, and ``o_proj`` is its ``proj``. The optional short convolution on q/k/v (``sc_attn``) is not
implemented. The attention itself lives in ``blocks/ops/attention`` (``reference.py``: blocked sliding
window through SDPA; ``kernel.py``: flash-attn, FlexAttention or fla).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from blocks.mixers.base import ConfigError, Mixer, MixerConfig, linear_flops
from blocks.ops.attention import kernel, reference
from blocks.ops.rope import rope_qk

__all__ = ["SWAConfig", "SWA", "mean_keys"]


def _choices(values: list[int], limit: int = 6) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return "{" + shown + (", ...}" if len(values) > limit else "}")


@dataclasses.dataclass(kw_only=True)
class SWAConfig(MixerConfig):
    """Args:
    heads: query heads.
    kv_heads: key/value heads; null = heads (MHA), 1 = MQA; must divide heads.
    window: keys a query sees, itself included; null = full causal attention.
    rope: rotary position embedding on q and k; false = NoPE.
    rope_base: the RoPE base.
    head_dim: size of one head; null = d_model // heads.
    """

    heads: int = 4
    kv_heads: int | None = None
    window: int | None = 128
    rope: bool = True
    rope_base: float = 10000.0
    head_dim: int | None = None

    def validate(self, d_model: int | None = None) -> None:
        if self.heads < 1:
            raise ConfigError(f"swa: field 'heads' must be a positive int; got {self.heads!r}")
        if self.kv_heads is not None and (self.kv_heads < 1 or self.heads % self.kv_heads):
            divisors = [d for d in range(1, self.heads + 1) if self.heads % d == 0]
            raise ConfigError(
                f"swa: field 'kv_heads'={self.kv_heads!r} must divide heads={self.heads} (each KV head serves "
                f"heads/kv_heads query heads); use kv_heads in {_choices(divisors)} or null for kv_heads=heads"
            )
        if self.window is not None and self.window < 1:
            raise ConfigError(
                f"swa: field 'window' must be a positive int (the keys a query sees, itself included) "
                f"or null for full causal attention; got {self.window!r}"
            )
        if not self.rope_base > 0:
            raise ConfigError(f"swa: field 'rope_base' must be positive; got {self.rope_base!r}")
        if self.head_dim is not None:
            if self.head_dim < 1:
                raise ConfigError(f"swa: field 'head_dim' must be a positive int or null; got {self.head_dim!r}")
            if self.rope and self.head_dim % 2:
                raise ConfigError(
                    f"swa: field 'head_dim'={self.head_dim} must be even for RoPE (channels rotate in pairs); "
                    f"use an even head_dim or rope=false"
                )
            return
        if d_model is None:
            return
        if d_model % self.heads:
            ok = [h for h in range(1, d_model + 1) if d_model % h == 0 and not (self.rope and (d_model // h) % 2)]
            raise ConfigError(
                f"swa: field 'heads'={self.heads} must divide d_model={d_model} (head size would be "
                f"{d_model / self.heads:g}); use heads in {_choices(ok)}, or set head_dim"
            )
        if self.rope and (d_model // self.heads) % 2:
            ok = [h for h in range(1, d_model + 1) if d_model % h == 0 and (d_model // h) % 2 == 0]
            raise ConfigError(
                f"swa: head size d_model/heads = {d_model}/{self.heads} = {d_model // self.heads} must be even "
                f"for RoPE (channels rotate in pairs); use heads in {_choices(ok)}, set an even head_dim, "
                f"or rope=false"
            )


def mean_keys(seq_len: int, window: int | None) -> float:
    """Mean over positions ``t = 0 .. seq_len-1`` of the keys query ``t`` sees, ``min(t+1, window)``."""
    w = seq_len if window is None else min(window, seq_len)
    total = w * (w + 1) // 2 + (seq_len - w) * w
    return total / seq_len


class SWA(Mixer):
    """Causal (sliding-window) attention. Input and output (B, T, D).

    Parameters: ``q_proj`` D -> heads*head_dim, ``k_proj`` and ``v_proj`` D -> kv_heads*head_dim,
    ``o_proj`` heads*head_dim -> D, no biases. RoPE is computed on the fly (no buffers), so the
    state_dict is the same on both backends and any sequence length can be evaluated.
    """

    Config = SWAConfig

    def __init__(self, d_model: int, config: SWAConfig) -> None:
        super().__init__(d_model, config)
        self.heads = config.heads
        self.kv_heads = config.kv_heads or config.heads
        self.head_dim = config.head_dim or d_model // config.heads
        self.window = config.window
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.q_proj = nn.Linear(d_model, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, d_model, bias=False)

    @classmethod
    def kernel_status(cls) -> str | None:
        if torch.cuda.is_available():
            return None  # FlexAttention ships with torch; flash-attn and fla are used when they import
        return "the attention kernel path needs a CUDA device"

    def kernel_route(self) -> str | None:
        """flash-attn, FlexAttention or fla, by what imports; flash-attn runs only bf16/fp16 inputs, so a run's
        route can differ by precision, and then both are named."""
        if self.backend != "kernel":
            return None
        from blocks.ops.attention.kernel import kernel_impl

        half, full = kernel_impl(torch.bfloat16, self.head_dim), kernel_impl(torch.float32, self.head_dim)
        return half if half == full else f"{half} (bf16/fp16), {full} (fp32)"

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Post-RoPE q (B, T, H, K) and k, v (B, T, Hkv, K)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim)  # (B, T, H, K)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.head_dim)  # (B, T, Hkv, K)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim)  # (B, T, Hkv, K)
        if self.config.rope:
            q, k = rope_qk(q, k, self.config.rope_base)
        return q, k, v

    def _out(self, o: Tensor) -> Tensor:
        B, T = o.shape[:2]
        return self.o_proj(o.reshape(B, T, self.heads * self.head_dim))  # (B, T, H*K) -> (B, T, D)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._qkv(x)
        if self.diagnostics is not None and self.diagnostics.wants("attn_probs"):
            with torch.no_grad():
                self.record("attn_probs", reference.attention_probs(q, k, self.window, self.scale))
        if self.backend == "kernel":
            o = kernel.attention(q, k, v, self.window, self.scale)
        else:
            o = reference.attention(q, k, v, self.window, self.scale)
        return self._out(o)

    def naive_forward(self, x: Tensor) -> Tensor:
        """The same module with an explicit (T, T) masked softmax (``reference.naive_attention``)."""
        q, k, v = self._qkv(x)
        return self._out(reference.naive_attention(q, k, v, self.window, self.scale))

    def step_forward(self, x: Tensor) -> Tensor:
        """The same module computing one query row at a time over its window (``reference.step_attention``)."""
        q, k, v = self._qkv(x)
        return self._out(reference.step_attention(q, k, v, self.window, self.scale))

    def state_size(self, seq_len: int) -> int:
        """KV-cache elements: keys and values of the last ``min(window, seq_len)`` tokens."""
        kept = seq_len if self.window is None else min(self.window, seq_len)
        return 2 * self.kv_heads * self.head_dim * kept

    def flops(self, seq_len: int) -> int:
        """Projections plus QK^T and PV: ``4 * heads * head_dim`` per visible key, averaged over positions.

        A query at position t sees ``min(t+1, window)`` keys; ``mean_keys`` averages that over
        ``t = 0 .. seq_len-1`` (``(seq_len+1)/2`` for full causal attention). Softmax is not counted.
        """
        attn = 4 * self.heads * self.head_dim * mean_keys(seq_len, self.window)
        return linear_flops(self.q_proj, self.k_proj, self.v_proj, self.o_proj) + round(attn)

    def output_projections(self) -> list[nn.Module]:
        return [self.o_proj]

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, heads={self.heads}, kv_heads={self.kv_heads}, head_dim={self.head_dim}, "
            f"window={self.window}, rope={self.config.rope}, backend={self.backend}"
        )
