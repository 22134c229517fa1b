"""Causal (sliding-window) softmax attention: ``reference`` (pure PyTorch) beside ``kernel`` (GPU).

Both take ``(q, k, v, window, scale)`` with ``q`` (B, T, H, D), ``k``/``v`` (B, T, Hkv, D) and return
(B, T, H, D); ``window=W`` means W keys per query, itself included (``reference.py`` defines it).
``kernel`` is imported by its caller only on the kernel path, so importing this package needs torch alone.
"""

from blocks.ops.attention.reference import (
    attention,
    attention_probs,
    naive_attention,
    step_attention,
    window_mask,
)

__all__ = ["attention", "attention_probs", "naive_attention", "step_attention", "window_mask"]
