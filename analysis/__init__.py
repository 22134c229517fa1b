"""Measuring and comparing: perplexity vs context length, entropy, probes, throughput, reports."""
