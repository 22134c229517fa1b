"""Count Ray trial processes that abort at exit, with and without ``sweeps.trial_exit.join_at_exit``.

    python benchmarks/trial_exit_stress.py --trials 60 --mode nojoin > nojoin.log 2>&1; grep -c "Fatal Python error" nojoin.log
    python benchmarks/trial_exit_stress.py --trials 60 --mode join > join.log 2>&1; grep -c "Fatal Python error" join.log

Each trial is a Ray Tune function trainable that holds a small torch model, its AdamW state and a few thousand
tensors and reports every step; Tune stops it after two reports, raising ``SystemExit`` in its thread and ending
the actor without waiting for it, as ASHA's stops do in a sweep. An actor whose interpreter finalises while that
thread still frees tensors aborts with "Fatal Python error: Aborted" and a native stack dump, which Ray forwards
to this script's output (docs/BENCHMARKS.md §2). Run from the repository root (it imports ``sweeps``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import ray
import torch
from ray import tune


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--mode", choices=["join", "nojoin"], required=True)
    ap.add_argument("--storage", default="/tmp/hybridlab-trial-exit-stress")
    args = ap.parse_args()
    join = args.mode == "join"

    def trainable(config: dict[str, Any]) -> None:
        if join:
            from sweeps.trial_exit import join_at_exit

            join_at_exit()
        model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(40)])
        opt = torch.optim.AdamW(model.parameters())
        held = [torch.randn(64, 64) for _ in range(3000)]  # noqa: F841 - freed while the thread unwinds
        try:
            for i in range(100):
                loss = model(torch.randn(32, 256)).pow(2).mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
                tune.report({"i": i, "loss": loss.item()})
        finally:
            time.sleep(0.05)  # a finally block's work, as closing the trial's MLflow run

    ray.init(num_cpus=2, include_dashboard=False)
    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search(list(range(args.trials)))},
        run_config=tune.RunConfig(stop={"training_iteration": 2}, verbose=0, storage_path=args.storage),
        tune_config=tune.TuneConfig(reuse_actors=False),
    )
    tuner.fit()


if __name__ == "__main__":
    main()
