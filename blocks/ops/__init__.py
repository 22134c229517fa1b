"""Sequence-mixing operators, one folder per op: ``reference.py`` (pure PyTorch) beside ``kernel.py`` (GPU wrapper)."""
