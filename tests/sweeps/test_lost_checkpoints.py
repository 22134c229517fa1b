"""A trial whose checkpoint Ray deleted before saving the experiment state starts again from step 0 on resume.

Unit level: Ray's own checkpoint manager and checkpoint objects, a stand-in for the trial, a real MLflow store.
The end-to-end case (a SIGKILLed sweep with a trial's checkpoints removed) is in test_sweep.py.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune import Checkpoint, CheckpointConfig

from sweeps.lost_checkpoints import RESTARTED_TAG, RestartLostCheckpoints, lost_checkpoint
from sweeps.tracking import TRIAL_TAG, client, ensure_experiment, start_run


def _trial(tmp: Path, trial_id: str) -> tuple[SimpleNamespace, Path]:
    ckpt_dir = tmp / "ray" / trial_id / "checkpoint_000002"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "state.pt").write_bytes(b"x")
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=1))
    manager.register_checkpoint(_TrainingResult(Checkpoint.from_directory(str(ckpt_dir)), {"step": 20}))
    trial = SimpleNamespace(trial_id=trial_id, run_metadata=SimpleNamespace(checkpoint_manager=manager),
                            _restore_checkpoint_result=None)
    return trial, ckpt_dir


@dataclass
class Sweep:
    """A sweep's MLflow store under HYBRIDLAB_HOME, as the driver sees it, and its callback."""

    home: Path
    client: Any
    experiment_id: str
    callback: RestartLostCheckpoints

    def trial_with_run(self, trial_id: str) -> tuple[SimpleNamespace, Path, str]:
        """A trial with one checkpoint on disk and its MLflow run: (trial, checkpoint folder, run id)."""
        run = start_run(self.client, self.experiment_id, f"M-F #{trial_id}", {TRIAL_TAG: trial_id})
        return (*_trial(self.home, trial_id), run)


@pytest.fixture
def sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sweep:
    monkeypatch.setenv("HYBRIDLAB_HOME", str(tmp_path))  # run_sweep exports it before Ray starts
    c = client(tmp_path)
    exp = ensure_experiment(c, "lost", tmp_path)
    return Sweep(tmp_path, c, exp, RestartLostCheckpoints("lost", exp))


def test_a_trial_whose_checkpoint_is_gone_starts_from_scratch_said_and_tagged(
    sweep: Sweep, capsys: pytest.CaptureFixture[str]
) -> None:
    trial, ckpt_dir, run = sweep.trial_with_run("t_00001")
    shutil.rmtree(ckpt_dir)  # what Ray's num_to_keep=1 leaves when the driver dies before the state save
    assert lost_checkpoint(trial) == str(ckpt_dir)

    sweep.callback.on_trial_start(iteration=0, trials=[trial], trial=trial)

    manager = trial.run_metadata.checkpoint_manager
    assert manager.latest_checkpoint_result is None and manager.best_checkpoint_results == []
    assert lost_checkpoint(trial) is None  # Ray's _schedule_trial_restore now finds nothing and trains anew
    err = capsys.readouterr().err
    assert "sweep lost: trial t_00001" in err and str(ckpt_dir) in err and "restarted from step 0" in err
    tag = sweep.client.get_run(run).data.tags[RESTARTED_TAG]
    assert str(ckpt_dir) in tag and "killed" in tag


def test_a_trial_whose_checkpoint_exists_is_left_to_resume_from_it(
    sweep: Sweep, capsys: pytest.CaptureFixture[str]
) -> None:
    trial, ckpt_dir, run = sweep.trial_with_run("t_00002")
    before = trial.run_metadata.checkpoint_manager.latest_checkpoint_result

    sweep.callback.on_trial_start(iteration=0, trials=[trial], trial=trial)

    assert trial.run_metadata.checkpoint_manager.latest_checkpoint_result is before
    assert before.checkpoint.path == str(ckpt_dir)
    assert capsys.readouterr().err == ""
    assert RESTARTED_TAG not in sweep.client.get_run(run).data.tags


def test_a_trial_without_any_checkpoint_is_left_alone(sweep: Sweep) -> None:
    trial = SimpleNamespace(trial_id="t_00003", _restore_checkpoint_result=None,
                            run_metadata=SimpleNamespace(checkpoint_manager=_CheckpointManager(None)))
    assert lost_checkpoint(trial) is None
    sweep.callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    assert trial.run_metadata.checkpoint_manager.latest_checkpoint_result is None


def test_the_callback_survives_pickling_into_rays_experiment_state(sweep: Sweep) -> None:
    import ray.cloudpickle as cloudpickle

    copy = cloudpickle.loads(cloudpickle.dumps(sweep.callback))
    assert (copy.sweep, copy.experiment_id) == ("lost", sweep.experiment_id)


def test_a_store_that_cannot_be_tagged_does_not_stop_the_restart_and_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("a file where HYBRIDLAB_HOME should be a folder")
    monkeypatch.setenv("HYBRIDLAB_HOME", str(not_a_folder))
    callback = RestartLostCheckpoints("lost", "0")
    trial, ckpt_dir = _trial(tmp_path, "t_00004")
    shutil.rmtree(ckpt_dir)
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    assert trial.run_metadata.checkpoint_manager.latest_checkpoint_result is None
    assert "could not tag its MLflow run hybridlab.restarted" in capsys.readouterr().err
