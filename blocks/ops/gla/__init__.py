"""Gated linear attention: ``reference.chunk_gla`` (pure PyTorch) and ``kernel.chunk_gla`` (fla)."""
