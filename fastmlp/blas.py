"""BLAS thread limits that nest correctly when several threads train at once.

The blocked per-sample kernel calls BLAS for small products between bursts
of per-sample work; on a 2-core machine two BLAS threads made those calls
slower and erratic (they sleep and wake between products), so it runs them
on one. threadpoolctl's limits are process-wide: two overlapping
``with threadpool_limits(1)`` blocks in two threads restore each other's
saved value, and can leave the process on one thread for good. Here the first
thread to enter sets the limit and the last to leave restores it, under a
lock. While any training call holds it, BLAS runs on one thread in the whole
process.

Measured with the OpenBLAS builds NumPy 2.4 and SciPy 1.17 ship (0.3.30,
0.3.31): a limit set from a thread other than the process's main thread is
reported by ``threadpool_info`` but does not change how products run (they
keep the configured threads, and round as they do). So the pin takes effect
for calls from the main thread; from other threads it is harmless but idle.
"""

import contextlib
import threading

__all__ = ["one_blas_thread"]

_lock = threading.Lock()
_state = {"depth": 0, "limiter": None, "controller": None}


def _controller():
    if _state["controller"] is None:
        # SciPy's BLAS is the one Numba's np.dot calls: load it so the
        # controller sees it as well as NumPy's.
        import scipy.linalg  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _state["controller"] = ThreadpoolController()
    return _state["controller"]


@contextlib.contextmanager
def one_blas_thread():
    """A context in which BLAS runs on one thread (re-entrant, thread-safe)."""
    with _lock:
        if _state["depth"] == 0:
            _state["limiter"] = _controller().limit(limits=1, user_api="blas")
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                _state["limiter"].restore_original_limits()
                _state["limiter"] = None
