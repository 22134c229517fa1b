"""The ``hybridlab`` command line (command names fixed by design.md).

Each subcommand imports its heavy dependencies (Ray, MLflow, Optuna) only when it runs, so
``hybridlab pattern`` answers in about a second. User errors (a bad pattern, config or path) exit
with status 2 and a message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "UserError"]


class UserError(Exception):
    """An error in the user's input: printed without a traceback, exit status 2."""


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def _format_params(symbols: str, params: dict | list) -> str:
    """The fields that differ from the mixer's defaults (``defaults`` when none do)."""
    import dataclasses

    from blocks import registry

    if isinstance(params, list):
        return " | ".join(_format_params(s, p) for s, p in zip(symbols.split("|"), params, strict=True))
    defaults = dataclasses.asdict(registry.get(symbols).config())
    changed = {k: v for k, v in params.items() if defaults.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"


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
    header = f"{'#':>4}  {'sym':<5} {'mixer':<12} {'params':>10} {'FLOPs/tok':>11} {'state':>10}  config (non-default)"
    print(header)
    print("-" * len(header))
    for layer in info["layers"]:
        print(
            f"{layer['index']:>4}  {layer['symbol']:<5} {layer['mixer']:<12} "
            f"{_human(layer['param_count']):>10} {_human(layer['flops_per_token']):>11} "
            f"{_human(layer['state_elements']):>10}  {_format_params(layer['symbol'], layer['params'])}"
        )
    print("-" * len(header))
    print(f"parameters:      {info['params']:,} ({_human(info['params'])}; embedding {_human(info['embedding_params'])})")
    print(f"FLOPs/token:     {info['flops_per_token']:,} ({_human(info['flops_per_token'])}, forward, at seq_len {info['seq_len']})")
    print(f"inference state: {info['state_bytes']:,} bytes ({_human(info['state_bytes'], 'B')}, bf16, one sequence of {info['seq_len']})")
    return 0


def _print_ui_hint(home: str) -> None:
    print(f"\nOpen the MLflow UI:  HYBRIDLAB_HOME={home} hybridlab ui   (then http://127.0.0.1:5000)")


def cmd_train(args: argparse.Namespace) -> int:
    from sweeps.config import load_config, to_plain
    from sweeps.paths import share_kernel_cache
    from sweeps.tracking import MLflowHooks, client, ensure_experiment, finish_run, set_home, start_run
    from sweeps.train import Diverged, Hooks, run_training

    cfg = load_config(args.config, args.overrides)
    home = set_home(cfg.tracking.home)
    share_kernel_cache(home)
    c = client(home)
    exp_id = ensure_experiment(c, cfg.tracking.experiment or "train", home)
    run_id = start_run(c, exp_id, cfg.tracking.run_name or cfg.model.pattern, {"hybridlab.role": "train"})
    mlflow_hooks = MLflowHooks(c, run_id, to_plain(cfg))

    class Console(Hooks):
        def on_start(self, model, info):  # type: ignore[no-untyped-def]
            mlflow_hooks.on_start(model, info)
            print(f"training {info['pattern']}: {info['params']:,} params on {info['device']} "
                  f"({info['precision']}), backends {info['backends']}", file=sys.stderr)

        def on_log(self, metrics, step):  # type: ignore[no-untyped-def]
            mlflow_hooks.on_log(metrics, step)

        def on_eval(self, metrics, step, final, checkpoint):  # type: ignore[no-untyped-def]
            mlflow_hooks.on_eval(metrics, step, final, checkpoint)
            lens = " ".join(f"{k[len('val/ppl_'):]}={v:.2f}" for k, v in metrics.items() if k.startswith("val/ppl_len"))
            print(f"\nstep {step}: val/loss {metrics['val/loss']:.4f} val/ppl {metrics['val/ppl']:.2f} [{lens}] "
                  f"{metrics['perf/tokens_per_s']:.0f} tok/s", file=sys.stderr)

    try:
        result = run_training(cfg, Console())
    except Diverged as e:
        finish_run(c, run_id, "diverged", str(e))
        print(f"hybridlab train: diverged: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        finish_run(c, run_id, "killed", "interrupted by the user")
        raise
    except BaseException as e:
        finish_run(c, run_id, "failed", f"{type(e).__name__}: {e}")
        raise
    finish_run(c, run_id, "ok")
    m = result.metrics
    print(json.dumps({"run_id": run_id, "wall_s": round(result.wall_s, 1),
                      **{k: round(v, 4) for k, v in m.items() if k.startswith(("val/", "perf/", "model/"))}}, indent=2))
    _print_ui_hint(str(home))
    return 0


def _sweep_and_report(cfg, resume: bool, address: str | None) -> int:  # type: ignore[no-untyped-def]
    from analysis.compare import format_leaderboard, load_sweep
    from sweeps.runner import run_sweep

    outcome = run_sweep(cfg, resume=resume, address=address)
    if outcome.interrupted:
        left = f" (not finished: {', '.join(outcome.unfinished)})" if outcome.unfinished else ""
        print(f"\nsweep {outcome.name} interrupted: {outcome.n_done}/{cfg.sweep.num_samples} trials done{left}. "
              f"Continue it with:  hybridlab sweep CONFIG sweep.name={outcome.name} --resume", file=sys.stderr)
        return 130
    skipped = ""
    if outcome.n_infeasible or outcome.n_duplicates:
        skipped = (f"; {outcome.n_infeasible} infeasible samples told to Optuna, "
                   f"{outcome.n_duplicates} duplicate samples answered without training")
    if outcome.exhausted:
        skipped += f"; the search space ran out of new feasible samples after {outcome.n_trials} trials"
    print(f"\nsweep {outcome.name}: {outcome.n_trials} trials ({outcome.n_errors} failed){skipped} "
          f"in {outcome.wall_s:.0f} s\n")
    objectives = dict(cfg.sweep.objectives) or None
    print(format_leaderboard(load_sweep(outcome.name), metric="val/ppl", objectives=objectives))
    from analysis.store import home_dir

    _print_ui_hint(str(home_dir()))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from sweeps.config import load_config

    cfg = load_config(args.config, args.overrides)
    return _sweep_and_report(cfg, args.resume, args.address)


def cmd_quickstart(args: argparse.Namespace) -> int:
    from sweeps.config import load_config
    from sweeps.tracking import client, set_home

    cfg = load_config("quickstart", args.overrides)
    home = set_home(cfg.tracking.home)
    c = client(home)
    base, n = cfg.sweep.name, 1
    while c.get_experiment_by_name(cfg.sweep.name) is not None or (home / "ray" / cfg.sweep.name).exists():
        n += 1
        cfg.sweep.name = f"{base}-{n}"
    print(f"hybridlab quickstart: sweep {cfg.sweep.name!r}, {cfg.sweep.num_samples} trials, "
          f"{cfg.sweep.max_concurrent} at a time, runs under {home}", file=sys.stderr)
    return _sweep_and_report(cfg, resume=False, address=None)


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import format_leaderboard, load_sweep, parse_objectives

    try:
        objectives = parse_objectives(args.pareto) if args.pareto else None
    except ValueError as e:
        raise UserError(str(e)) from None
    table = load_sweep(args.sweep)
    if args.json:
        print(json.dumps(table.to_json(args.sort, args.descending, objectives), indent=2))
    else:
        print(format_leaderboard(table, args.sort, args.descending, objectives))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.compare import latest_sweep
    from analysis.report import write_report
    from analysis.store import home_dir

    name = args.sweep or latest_sweep()
    out = Path(args.out) if args.out else home_dir() / "reports" / name
    html = write_report(name, out, log_to_mlflow=not args.no_mlflow)
    print(f"report of sweep {name}: {html}")
    for png in sorted(out.glob("*.png")):
        print(f"  {png}")
    if not args.no_mlflow:
        print("  (also logged under report/ as artifacts of the sweep's parent run)")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import subprocess

    from analysis.store import home_dir, tracking_uri

    home = home_dir()
    if not (home / "mlflow.db").exists():
        raise UserError(f"no MLflow store at {home / 'mlflow.db'}; run `hybridlab quickstart` first or set HYBRIDLAB_HOME")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri(home),
           "--default-artifact-root", (home / "artifacts").as_uri(), "--host", "127.0.0.1",
           "--port", str(args.port), "--workers", "1"]
    print(f"MLflow UI over {home} at http://127.0.0.1:{args.port} (Ctrl+C stops it)", file=sys.stderr)
    return subprocess.call(cmd)


def cmd_presets(args: argparse.Namespace) -> int:
    from search_space.presets import format_presets_table, presets_table

    rows = presets_table(vocab_size=args.vocab)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_presets_table(rows))
    return 0


def _bench_model(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from blocks.config import ModelConfig

    if args.preset:
        from search_space.presets import get_preset

        try:
            cfg = get_preset(args.preset).model
        except ValueError as e:
            raise UserError(str(e)) from None
        vocab = cfg.vocab_size or args.vocab
    else:
        if not args.pattern:
            raise UserError("bench train needs --preset NAME or --pattern PATTERN (with --d-model)")
        cfg = ModelConfig(pattern=args.pattern, d_model=args.d_model)
        vocab = args.vocab
    return cfg, vocab


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {text!r}")
        return n

    return parse


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from analysis.bench import NonFiniteLoss, bench_train

    cfg, vocab = _bench_model(args)
    backends = [args.backend]
    if torch.cuda.is_available() and args.backend != "reference" and not args.no_contrast:
        backends.append("reference")
    results = []
    for backend in backends:
        try:
            r = bench_train(cfg, vocab, args.seq_len, args.batch, backend=backend, steps=args.steps,
                            warmup=args.warmup, compile=args.compile, loss_chunk=args.loss_chunk)
        except NonFiniteLoss as e:  # not a usage error (2): the run itself went wrong, and no figure is printed
            print(f"hybridlab bench: error: {e}", file=sys.stderr)
            return 1
        results.append(r.to_dict())
        if not args.json:
            mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "n/a"
            print(f"{r.pattern} ({r.params / 1e6:.1f}M params) on {r.device}, backend {backend} {r.backend}: "
                  f"{r.tokens_per_s:,.0f} tokens/s, step {r.step_ms:.1f} ms (+-{r.step_ms_std:.1f}), "
                  f"peak {r.peak_mem_gb:.1f} GB, MFU {mfu}  [batch {r.batch} x {r.seq_len}]")
    if args.json:
        print(json.dumps(results, indent=2))
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

    p = sub.add_parser("presets", help="the named presets (the Samba ablation zoo) with parameter counts")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--vocab", type=int, default=None, help="vocabulary for presets without one (tiny-*; default 259)")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("bench", help="throughput and memory per layout")
    bench = p.add_subparsers(dest="bench_kind", required=True, metavar="KIND")
    b = bench.add_parser("train", help="training tokens/s, step time, peak memory and MFU")
    b.add_argument("--preset", help="a named preset, e.g. samba-421m")
    b.add_argument("--pattern", help="a layer pattern (instead of --preset)")
    b.add_argument("--d-model", type=int, default=1024)
    b.add_argument("--vocab", type=int, default=32000)
    b.add_argument("--seq-len", type=int, default=4096)
    b.add_argument("--batch", type=int, default=4)
    b.add_argument("--steps", type=_count(1), default=10, help="timed steps (default 10)")
    b.add_argument("--warmup", type=_count(0), default=3, help="untimed steps first (default 3)")
    b.add_argument("--backend", default="auto", choices=["auto", "reference", "kernel"])
    b.add_argument("--no-contrast", action="store_true", help="on CUDA, skip the --backend reference contrast run")
    b.add_argument("--compile", action="store_true", help="torch.compile the sublayers around the mixers' kernels (first steps compile)")
    b.add_argument("--loss-chunk", type=_count(1), default=None, metavar="TOKENS",
                   help="run the LM head + loss this many tokens at a time (eager; train.loss_chunk)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)

    p = sub.add_parser("train", help="one training run, no Ray, logged to MLflow")
    p.add_argument("config", help="a YAML file or a packaged config name (quickstart, samba_ablation)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100 model.d_model=96")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="a Ray Tune + Optuna sweep logged to MLflow")
    p.add_argument("config", help="a YAML file or a packaged config name")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    p.add_argument("--address", help="an existing Ray cluster (e.g. auto or HOST:6379); default: a local one")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("quickstart", help="the packaged toy sweep over Samba-family layouts on the stdlib corpus")
    p.add_argument("overrides", nargs="*", help="key=value overrides of quickstart.yaml")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("compare", help="leaderboard of a sweep from MLflow")
    p.add_argument("sweep", nargs="?", help="sweep name (default: the latest)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--sort", default="val/ppl", help="metric to sort by (default val/ppl)")
    p.add_argument("--descending", action="store_true", help="sort high to low (e.g. perf/tokens_per_s)")
    p.add_argument("--pareto", metavar="METRIC:MODE,...",
                   help="mark the Pareto front over these objectives, e.g. val/ppl:min,perf/tokens_per_s:max "
                        "(default: the sweep's sweep.objectives, if any)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="plots and an HTML report of a sweep, logged to its parent run")
    p.add_argument("sweep", nargs="?", help="sweep name (default: the latest)")
    p.add_argument("--out", help="output folder (default HYBRIDLAB_HOME/reports/SWEEP)")
    p.add_argument("--no-mlflow", action="store_true", help="write files only, do not log them to MLflow")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ui", help="serve the MLflow UI on 127.0.0.1 over HYBRIDLAB_HOME")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hybridlab`` console script; returns the exit status."""
    from analysis.compare import NoSuchSweep
    from blocks.mixers.base import ConfigError
    from blocks.pattern import PatternError
    from blocks.registry import RegistryError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (PatternError, ConfigError, RegistryError, UserError, NoSuchSweep) as e:
        print(f"hybridlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hybridlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`hybridlab pattern ... | head`): stop quietly with SIGPIPE's status, as Unix tools
        # do; stdout goes to /dev/null so that the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
