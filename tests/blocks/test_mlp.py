"""``F``: the SwiGLU MLP. Its kernel path (w1 and w2 as one product) is the reference path's function."""

from __future__ import annotations

import torch

from blocks.mixers.mlp import MLP, MLPConfig, default_hidden


def test_default_hidden_width_is_the_papers() -> None:
    assert default_hidden(1536) == 4096
    assert default_hidden(2304) == 6144


def test_kernel_path_equals_the_reference_path_with_gradients() -> None:
    torch.manual_seed(0)
    ref = MLP(24, MLPConfig(hidden=40)).double()
    ker = MLP(24, MLPConfig(hidden=40)).double()
    ker.load_state_dict(ref.state_dict())
    ker.set_backend("kernel")
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    w = torch.randn(2, 7, 24, dtype=torch.float64)
    results = []
    for m in (ref, ker):
        xi = x.clone().requires_grad_()
        y = m(xi)
        (y * w).sum().backward()
        results.append([y, xi.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)
