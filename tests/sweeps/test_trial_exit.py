"""``sweeps.trial_exit``: a trial's training thread, a daemon that Ray does not wait for, finishes before exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from sweeps.trial_exit import join_at_exit

    stop = threading.Event()

    def trial():  # stands in for a stopped trial's unwinding: its finally block outlives the main thread
        stop.wait()
        try:
            raise SystemExit(0)
        finally:
            time.sleep(0.5)
            open(sys.argv[1], "w").write("closed")

    thread = threading.Thread(target=trial, daemon=True)
    thread.start()
    if sys.argv[2] == "join":
        join_at_exit(thread)
    stop.set()  # the trial is stopped, and the process exits at once, as Ray's actor does
    """
)


@pytest.mark.parametrize(("mode", "finished"), [("join", True), ("no-join", False)])
def test_a_stopped_trials_thread_finishes_its_finally_block_before_the_process_exits(
    tmp_path: Path, mode: str, finished: bool
) -> None:
    """Without the join the daemon thread is cut off mid-unwind (the control case); with it, its finally runs."""
    marker = tmp_path / "closed"
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", _SCRIPT, str(marker), mode], check=True, cwd=repo, timeout=60)
    assert marker.exists() is finished


def test_the_main_thread_is_not_registered() -> None:
    from sweeps import trial_exit

    before = len(trial_exit._threads)
    trial_exit.join_at_exit()  # pytest's main thread: the thread that exits cannot join itself
    assert len(trial_exit._threads) == before
