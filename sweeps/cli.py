"""The ``hybridlab`` command line (command names fixed by design.md).

Each subcommand imports its heavy dependencies (Ray, MLflow, Optuna) only when it runs, so
``hybridlab pattern`` answers in about a second. User errors (a bad pattern, config or path) exit
with status 2 and a message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "UserError"]


class UserError(Exception):
    """An error in the user's input: printed without a traceback, exit status 2."""


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def _format_params(params: dict | list) -> str:
    if isinstance(params, list):
        return " | ".join(_format_params(p) for p in params)
    return ", ".join(f"{k}={v}" for k, v in params.items())


def cmd_pattern(args: argparse.Namespace) -> int:
    from blocks.config import ModelConfig
    from blocks.summary import describe

    cfg = ModelConfig(pattern=args.pattern, d_model=args.d_model, vocab_size=args.vocab)
    info = describe(cfg, seq_len=args.seq_len)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"canonical:   {info['canonical']}")
    print(f"compact:     {info['compact']}")
    print(f"layout_hash: {info['layout_hash']}")
    print(f"d_model={info['d_model']}  vocab={info['vocab_size']}  seq_len={info['seq_len']}  "
          f"tied={info['tie_embeddings']}")
    print()
    header = f"{'#':>4}  {'sym':<5} {'mixer':<12} {'params':>10} {'FLOPs/tok':>11} {'state':>10}  config"
    print(header)
    print("-" * len(header))
    for layer in info["layers"]:
        print(
            f"{layer['index']:>4}  {layer['symbol']:<5} {layer['mixer']:<12} "
            f"{_human(layer['param_count']):>10} {_human(layer['flops_per_token']):>11} "
            f"{_human(layer['state_elements']):>10}  {_format_params(layer['params'])}"
        )
    print("-" * len(header))
    print(f"parameters:      {info['params']:,} ({_human(info['params'])}; embedding {_human(info['embedding_params'])})")
    print(f"FLOPs/token:     {info['flops_per_token']:,} ({_human(info['flops_per_token'])}, forward, at seq_len {info['seq_len']})")
    print(f"inference state: {info['state_bytes']:,} bytes ({_human(info['state_bytes'], 'B')}, bf16, one sequence of {info['seq_len']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridlab",
        description="Architecture ablation and sweep platform for hybrid language models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pattern", help="validate a layer pattern; print its layers, parameters, FLOPs and state")
    p.add_argument("pattern", help='a layer pattern, e.g. "(M-F-A[window=2048]-F)*6"')
    p.add_argument("--d-model", type=int, default=128, help="residual width (default 128)")
    p.add_argument("--vocab", type=int, default=259, help="vocabulary size (default 259: bytes tokenizer)")
    p.add_argument("--seq-len", type=int, default=4096, help="sequence length for FLOPs and state (default 4096)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_pattern)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hybridlab`` console script; returns the exit status."""
    from blocks.mixers.base import ConfigError
    from blocks.pattern import PatternError
    from blocks.registry import RegistryError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (PatternError, ConfigError, RegistryError, UserError) as e:
        print(f"hybridlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hybridlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
