"""Several bias-free ``nn.Linear`` layers that read the same input, run as one matrix product.

The kernel paths of ``A`` (q, k, v) and ``F`` (SwiGLU's w1, w2) use it: on the GPU one wide GEMM runs
closer to the hardware's peak than three or two narrow ones, and its backward gives the input gradient
as one product instead of a sum of several (docs/BENCHMARKS.md §6, "Fourth round"). The layers keep
their own parameters, so the state_dict is that of the separate layers and does not depend on the
backend; the concatenation of the weights is an elementwise copy that ``torch.compile`` fuses into
autocast's cast of the weights. Megatron's and the official Samba code's fused ``attn``/``fc`` Linears
compute the same thing with one stored weight instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["fused_linear"]


def fused_linear(x: Tensor, *layers: nn.Linear) -> tuple[Tensor, ...]:
    """``tuple(layer(x) for layer in layers)``, computed as ``x @ [W_1; ...; W_n]^T`` split back per layer.

    Args:
        x: input (..., in_features), shared by every layer.
        layers: bias-free Linears with the same ``in_features``.

    Returns:
        One output per layer, (..., out_features of that layer): views into one (..., sum of out_features)
        product, so each is strided along the last dimension's neighbours but unit-stride within it.
    """
    for layer in layers:
        if layer.bias is not None or layer.in_features != layers[0].in_features:
            raise ValueError(f"fused_linear: layers must be bias-free and share in_features; got {layers}")
    weight = torch.cat([layer.weight for layer in layers])  # (sum of out_features, in_features)
    return F.linear(x, weight).split([layer.out_features for layer in layers], dim=-1)
