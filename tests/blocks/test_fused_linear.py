"""``blocks.ops.fused_linear``: several bias-free Linears on one input as one matrix product."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from blocks.ops.fused_linear import fused_linear


class _CountMatmuls(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default):
            self.count += 1
        return func(*args, **(kwargs or {}))


def _layers(*out_features: int, in_features: int = 12) -> list[nn.Linear]:
    torch.manual_seed(0)
    return [nn.Linear(in_features, n, bias=False).double() for n in out_features]


def test_outputs_and_gradients_are_those_of_the_separate_layers() -> None:
    layers = _layers(8, 4, 4)
    x = torch.randn(2, 5, 12, dtype=torch.float64, requires_grad=True)
    w = [torch.randn(2, 5, n, dtype=torch.float64) for n in (8, 4, 4)]

    fused = fused_linear(x, *layers)
    assert [tuple(y.shape) for y in fused] == [(2, 5, 8), (2, 5, 4), (2, 5, 4)]
    sum((y * wi).sum() for y, wi in zip(fused, w, strict=True)).backward()
    got = [x.grad.clone()] + [layer.weight.grad.clone() for layer in layers]
    x.grad = None
    for layer in layers:
        layer.weight.grad = None

    separate = [layer(x) for layer in layers]
    sum((y * wi).sum() for y, wi in zip(separate, w, strict=True)).backward()
    want = [x.grad] + [layer.weight.grad for layer in layers]
    for a, b in zip(fused, separate, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_one_matrix_product_forward_and_one_per_gradient_backward() -> None:
    layers = _layers(8, 4, 4)
    x = torch.randn(10, 12, dtype=torch.float64, requires_grad=True)
    with _CountMatmuls() as forward:
        ys = fused_linear(x, *layers)
    with _CountMatmuls() as backward:
        torch.cat(ys, dim=-1).sum().backward()
    assert forward.count == 1
    assert backward.count == 2  # the input's gradient and the stacked weights' gradient


@pytest.mark.parametrize(
    "layers",
    [
        [nn.Linear(12, 4, bias=True), nn.Linear(12, 4, bias=False)],
        [nn.Linear(12, 4, bias=False), nn.Linear(10, 4, bias=False)],
    ],
    ids=["bias", "in_features"],
)
def test_layers_with_a_bias_or_another_input_width_are_refused(layers: list[nn.Linear]) -> None:
    with pytest.raises(ValueError, match="must be bias-free and share in_features"):
        fused_linear(torch.randn(3, 12), *layers)
