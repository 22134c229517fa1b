"""Where runs live on disk: HYBRIDLAB_HOME and the kernel cache every run and trial under it shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.paths import hybridlab_home, share_kernel_cache


def test_home_is_absolute_and_read_on_every_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYBRIDLAB_HOME", raising=False)
    assert hybridlab_home() == tmp_path / "runs"
    monkeypatch.setenv("HYBRIDLAB_HOME", "elsewhere")
    assert hybridlab_home() == tmp_path / "elsewhere"


def test_the_kernel_caches_are_shared_under_home_unless_the_user_chose_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    env = share_kernel_cache(tmp_path)
    assert env == {
        "TRITON_CACHE_DIR": str(tmp_path / "cache" / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache" / "inductor"),
    }
    assert (tmp_path / "cache" / "triton").is_dir() and (tmp_path / "cache" / "inductor").is_dir()
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "mine"))
    assert share_kernel_cache(tmp_path)["TRITON_CACHE_DIR"] == str(tmp_path / "mine")
