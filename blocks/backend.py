"""Backend selection: ``auto | reference | kernel``, resolved once per mixer, said once, recorded.

Follows conventions.md §2.12: ``kernel`` without its package is an error naming the install
command; ``auto`` takes the kernel on CUDA when it imports and otherwise the reference path, and
says so once per process (a WARNING), so runs that silently used the slow path cannot exist.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from blocks.mixers.base import Mixer

__all__ = ["BackendError", "BACKENDS", "resolve_backend"]

BACKENDS = ("auto", "reference", "kernel")
log = logging.getLogger("hybridlab.backend")
_said: set[tuple[str, str]] = set()


class BackendError(RuntimeError):
    """The requested backend cannot run here."""


def resolve_backend(
    requested: str, mixer_cls: type[Mixer], device: torch.device | str
) -> Literal["reference", "kernel"]:
    """The path ``mixer_cls`` runs on for ``requested`` on ``device``.

    Raises:
        BackendError: ``kernel`` was asked for on a CPU device or without its package.
        ValueError: ``requested`` is not one of ``auto``, ``reference``, ``kernel``.
    """
    if requested not in BACKENDS:
        raise ValueError(f"model.backend must be one of {', '.join(BACKENDS)}; got {requested!r}")
    device = torch.device(device)
    name = mixer_cls.__name__
    if requested == "reference":
        return "reference"
    status = mixer_cls.kernel_status()
    if requested == "kernel":
        if device.type != "cuda":
            raise BackendError(
                f"model.backend=kernel: {name} kernels run on CUDA only, the model is on {device}. "
                "Use backend=reference (or auto) on CPU."
            )
        if status is not None:
            raise BackendError(f"model.backend=kernel: {status}")
        return "kernel"
    if device.type == "cuda" and status is None:
        return "kernel"
    if device.type == "cuda" and (name, "fallback") not in _said:
        _said.add((name, "fallback"))
        log.warning("backend auto: %s runs the reference path on CUDA (%s)", name, status)
    return "reference"
