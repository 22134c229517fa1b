"""The same sweep with and without ``sweep.reuse_actors``: trials per hour and where each trial's start-up goes.

    python benchmarks/reuse_actors.py [--config quickstart] [--home DIR] [--rounds 1] [key=value ...]

Runs ``hybridlab sweep CONFIG`` with ``sweep.reuse_actors=false`` and then ``=true`` (``--rounds`` times, in
that order) under one fresh HYBRIDLAB_HOME whose corpus cache is built first, FIFO scheduling (so every trial
trains to the end and both sweeps do the same work), then prints one row per sweep from
``benchmarks/gpu_sweep_summary.py``: sweep wall, trials per hour, mean ``perf/startup_s`` and its phases
(``startup/process_s`` is the process start and imports a reused process skips).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_sweep_summary import summarise  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="quickstart")
    ap.add_argument("--home", type=Path, help="HYBRIDLAB_HOME to use (default: a new temporary folder)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="hybridlab-reuse-"))
    os.environ["HYBRIDLAB_HOME"] = str(home)
    from sweeps.config import load_config
    from sweeps.data.loader import make_dataset

    make_dataset(load_config(args.config, args.overrides).data)  # the corpus cache, outside the timed sweeps
    names = []
    for r in range(args.rounds):
        for reuse in ("false", "true"):
            name = f"reuse_{reuse}_{r}"
            cmd = [sys.executable, "-m", "sweeps.cli", "sweep", args.config, *args.overrides, f"sweep.name={name}",
                   "sweep.scheduler=fifo", f"sweep.reuse_actors={reuse}"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            print(f"{name}: exit {proc.returncode} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            if proc.returncode != 0:
                sys.exit(proc.stderr[-3000:])
            names.append(name)
    print(f"| sweep | trials | wall | trials/hour | start-up per trial (mean) | startup/process_s (mean) | "
          f"the other phases (mean sum) |  [{args.config} {' '.join(args.overrides)}; HYBRIDLAB_HOME={home}]")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        r = summarise(name, {}, None)
        phases = r["startup_phases_s"]
        other = sum(v for k, v in phases.items() if k != "process")
        print(f"| {name} | {r['finished']}/{r['trials']} | {r['wall_s']:.0f} s | {r['trials_per_hour']:.0f} | "
              f"{(r['startup_s'] or {}).get('mean', float('nan')):.2f} s | {phases.get('process', float('nan')):.2f} s | "
              f"{other:.2f} s |")


if __name__ == "__main__":
    main()
