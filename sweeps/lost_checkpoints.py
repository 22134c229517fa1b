"""Resume a trial whose checkpoint Ray deleted before it saved the experiment state: from step 0, said and recorded.

Ray Tune 2.60 with ``CheckpointConfig(num_to_keep=1)`` deletes a trial's previous checkpoint as soon as it
registers the new one (``_CheckpointManager.register_checkpoint``) and re-saves the experiment state, which
names the checkpoint to resume from, only at the end of that controller step. A driver killed in between
leaves a state naming a deleted checkpoint; on ``--resume`` the trial's actor then fails in
``Trainable.restore`` ("Could not recover from checkpoint as it does not exist on storage anymore") and the
trial ends errored, its work lost. docs/BENCHMARKS.md §4 has the reproduction.

``RestartLostCheckpoints`` is a Tune callback: ``on_trial_start`` runs on the driver right before Ray schedules
the restore (``TuneController._actor_started``). When the trial's latest checkpoint is gone from storage it
drops the trial's checkpoint record, so Ray starts the trial from scratch instead, prints what happened and tags
the trial's MLflow run with ``hybridlab.restarted`` (the lost checkpoint and why). The trial keeps its id,
config and MLflow run; its metrics are logged again from step 0.
"""

from __future__ import annotations

import sys
from typing import Any

from ray.tune import Callback

__all__ = ["RESTARTED_TAG", "RestartLostCheckpoints", "lost_checkpoint"]

RESTARTED_TAG = "hybridlab.restarted"


def lost_checkpoint(trial: Any) -> str | None:
    """The path of ``trial``'s latest checkpoint when it no longer exists on its storage, else None."""
    from pyarrow.fs import FileType

    result = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    if result is None or result.checkpoint is None:
        return None
    ckpt = result.checkpoint
    if ckpt.filesystem.get_file_info(ckpt.path).type != FileType.NotFound:
        return None
    return str(ckpt.path)


class RestartLostCheckpoints(Callback):
    """Start from scratch, instead of failing, a trial whose latest checkpoint is gone from storage.

    Args:
        sweep: the sweep's name, for the message.
        experiment_id: the sweep's MLflow experiment, where the trial's run is found by ``hybridlab.trial_id``
            in the store under HYBRIDLAB_HOME (``run_sweep`` exports it before Ray starts).

    The callback is pickled into Ray's experiment state with the run config, so it holds only strings.
    """

    def __init__(self, sweep: str, experiment_id: str) -> None:
        self.sweep, self.experiment_id = sweep, experiment_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        path = lost_checkpoint(trial)
        if path is None:
            return
        manager = trial.run_metadata.checkpoint_manager
        manager._latest_checkpoint_result = None  # Ray 2.60's _CheckpointManager; ray is pinned
        manager._checkpoint_results = []
        trial._restore_checkpoint_result = None
        why = (
            f"its checkpoint {path} was gone from storage on resume (Ray deletes the previous checkpoint before it "
            f"saves the experiment state naming the new one, and the driver was killed in between); restarted "
            f"from step 0"
        )
        print(f"sweep {self.sweep}: trial {trial.trial_id}: {why}", file=sys.stderr, flush=True)
        try:
            self._record(trial.trial_id, why)
        except Exception as e:  # the restart goes ahead; only its tag is missing, and that is said
            print(f"sweep {self.sweep}: trial {trial.trial_id}: could not tag its MLflow run {RESTARTED_TAG} ({e})",
                  file=sys.stderr, flush=True)

    def _record(self, trial_id: str, why: str) -> None:
        from sweeps.tracking import TRIAL_TAG, client

        c = client()
        runs = c.search_runs([self.experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=1)
        if runs:
            c.set_tag(runs[0].info.run_id, RESTARTED_TAG, why)
