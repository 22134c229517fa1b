"""A trial whose checkpoint Ray deleted before saving the experiment state starts again from step 0 on resume.

Unit level: Ray's own checkpoint manager and checkpoint objects, a stand-in for the trial, a real MLflow store.
The end-to-end case (a SIGKILLed sweep with a trial's checkpoints removed) is in test_sweep.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune import Checkpoint, CheckpointConfig

from sweeps.lost_checkpoints import RESTARTED_TAG, RestartLostCheckpoints, lost_checkpoint
from sweeps.tracking import TRIAL_TAG, client, ensure_experiment, start_run, tracking_uri


def _trial(tmp: Path, trial_id: str) -> tuple[SimpleNamespace, Path]:
    ckpt_dir = tmp / trial_id / "checkpoint_000002"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "state.pt").write_bytes(b"x")
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=1))
    manager.register_checkpoint(_TrainingResult(Checkpoint.from_directory(str(ckpt_dir)), {"step": 20}))
    trial = SimpleNamespace(trial_id=trial_id, run_metadata=SimpleNamespace(checkpoint_manager=manager),
                            _restore_checkpoint_result=None)
    return trial, ckpt_dir


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RestartLostCheckpoints, object, str]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # a sweep run in this process would have set it
    c = client(tmp_path)
    exp = ensure_experiment(c, "lost", tmp_path)
    return RestartLostCheckpoints("lost", tracking_uri(tmp_path), exp), c, exp


def test_a_trial_whose_checkpoint_is_gone_starts_from_scratch_said_and_tagged(
    tmp_path: Path, store: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    callback, c, exp = store
    run = start_run(c, exp, "M-F #00001", {TRIAL_TAG: "t_00001"})
    trial, ckpt_dir = _trial(tmp_path, "t_00001")
    shutil.rmtree(ckpt_dir)  # what Ray's num_to_keep=1 leaves when the driver dies before the state save
    assert lost_checkpoint(trial) == str(ckpt_dir)

    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)

    manager = trial.run_metadata.checkpoint_manager
    assert manager.latest_checkpoint_result is None and manager.best_checkpoint_results == []
    assert lost_checkpoint(trial) is None  # Ray's _schedule_trial_restore now finds nothing and trains anew
    err = capsys.readouterr().err
    assert "sweep lost: trial t_00001" in err and str(ckpt_dir) in err and "restarted from step 0" in err
    tag = c.get_run(run).data.tags[RESTARTED_TAG]
    assert str(ckpt_dir) in tag and "killed" in tag


def test_a_trial_whose_checkpoint_exists_is_left_to_resume_from_it(
    tmp_path: Path, store: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    callback, c, exp = store
    run = start_run(c, exp, "A-F #00002", {TRIAL_TAG: "t_00002"})
    trial, ckpt_dir = _trial(tmp_path, "t_00002")
    before = trial.run_metadata.checkpoint_manager.latest_checkpoint_result

    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)

    assert trial.run_metadata.checkpoint_manager.latest_checkpoint_result is before
    assert before.checkpoint.path == str(ckpt_dir)
    assert capsys.readouterr().err == ""
    assert RESTARTED_TAG not in c.get_run(run).data.tags


def test_a_trial_without_any_checkpoint_is_left_alone(tmp_path: Path, store: tuple) -> None:
    callback, _, _ = store
    trial = SimpleNamespace(trial_id="t_00003", _restore_checkpoint_result=None,
                            run_metadata=SimpleNamespace(checkpoint_manager=_CheckpointManager(None)))
    assert lost_checkpoint(trial) is None
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    assert trial.run_metadata.checkpoint_manager.latest_checkpoint_result is None


def test_the_callback_survives_pickling_into_rays_experiment_state(store: tuple) -> None:
    import ray.cloudpickle as cloudpickle

    callback, _, exp = store
    copy = cloudpickle.loads(cloudpickle.dumps(callback))
    assert (copy.sweep, copy.tracking_uri, copy.experiment_id) == ("lost", callback.tracking_uri, exp)


def test_a_store_that_cannot_be_tagged_does_not_stop_the_restart_and_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    callback = RestartLostCheckpoints("lost", "file:///nonexistent/\0bad", "0")
    trial, ckpt_dir = _trial(tmp_path, "t_00004")
    shutil.rmtree(ckpt_dir)
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    assert trial.run_metadata.checkpoint_manager.latest_checkpoint_result is None
    assert "could not tag its MLflow run hybridlab.restarted" in capsys.readouterr().err
