"""Let a stopped trial's training thread finish unwinding before its Ray worker process exits.

Ray Tune runs a function trainable in a daemon thread. To stop a trial (ASHA prunes it, or it is done) Ray raises
``SystemExit`` inside that thread's ``tune.report`` and then ends the actor without waiting for the thread
(``FunctionTrainable.cleanup`` joins it with ``timeout=0``, Ray 2.60). The thread is still unwinding: closing the
trial's MLflow run (``sweeps.runner.trainable``'s ``finally``) and freeing the model and its tensors. If the
interpreter starts finalising meanwhile, the thread's next attempt to take the GIL, here from inside torch's C++
tensor destructor, ends the thread by forced unwinding through a ``noexcept`` frame, and the whole process aborts
("Fatal Python error: Aborted" and a native stack dump in the sweep's output; one ``hybridlab quickstart`` in
three on the 2-core machine, docs/BENCHMARKS.md §2). The trial's results were already reported, but its MLflow run
could be left unclosed and the user sees a crash.

``join_at_exit`` has an ``atexit`` handler join the thread: Python runs ``atexit`` handlers before it
starts finalising, so the thread completes its ``finally`` blocks and frees its objects first.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref

__all__ = ["EXIT_JOIN_S", "join_at_exit"]

EXIT_JOIN_S = 30.0
"""How long process exit waits for the thread: its unwinding takes milliseconds; the bound keeps a thread that
is stuck for another reason from holding the process."""

_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_handler: list[bool] = []  # non-empty once the atexit handler is registered


def join_at_exit(thread: threading.Thread | None = None) -> None:
    """Join ``thread`` (default: the calling thread) when the process exits, within ``EXIT_JOIN_S`` for all.

    A process that Ray reuses for several trials (``sweep.reuse_actors``) registers each trial's thread; one
    handler joins those still alive (threads that ended and were freed drop out of the set).
    """
    thread = thread or threading.current_thread()
    if thread is threading.main_thread():
        return  # the main thread is the one exiting
    if not _handler:
        atexit.register(_join_all, EXIT_JOIN_S)
        _handler.append(True)
    _threads.add(thread)


def _join_all(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in list(_threads):
        thread.join(max(0.0, deadline - time.monotonic()))
