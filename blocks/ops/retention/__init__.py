"""Multi-scale retention: ``reference.chunk_retention`` (pure PyTorch) and ``kernel.chunk_retention`` (fla)."""
