"""Whether an fla (flash-linear-attention) kernel can run here, and the fix when it cannot."""

from __future__ import annotations

import importlib

__all__ = ["fla_kernel_status", "FLA_INSTALL"]

FLA_INSTALL = "pip install fla-core==0.6.0 (CUDA machines; extra 'gpu')"


def fla_kernel_status(module: str, label: str) -> str | None:
    """None when CUDA is visible and ``module`` (e.g. ``fla.ops.gla``) imports; else the reason and fix."""
    import torch

    if not torch.cuda.is_available():
        return f"{label} kernels need a CUDA device (torch.cuda.is_available() is False); use backend=reference"
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or triton failing to find a driver
        return f"{module} does not import ({type(exc).__name__}: {exc}); {FLA_INSTALL}"
    return None
