"""The Mamba-1 selective scan (mamba_ssm ``selective_scan_fn`` layout).

``reference.selective_scan`` is pure PyTorch (CPU and GPU); ``kernel.selective_scan`` wraps mamba_ssm's
CUDA kernel, imported lazily. Both take ``(u, delta, A, B, C, D)`` and return ``y``.
"""
