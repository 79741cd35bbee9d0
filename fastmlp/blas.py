"""BLAS thread limits that stay correct when several threads train at once.

The blocked per-sample kernel calls BLAS for small products between bursts
of per-sample work; on a 2-core machine two BLAS threads made those calls
slower and erratic (they sleep and wake between products), so it runs them
on one, and so do the inference workers (one BLAS thread each).

threadpoolctl's limits are process-wide, and with the OpenBLAS builds that
NumPy 2.4 and SciPy 1.17 ship (0.3.30, 0.3.31) they only work from the
process's main thread: measured, a limit set from another thread is reported
by ``threadpool_info`` (sometimes) but products keep running, and rounding,
as configured; and limits set and restored from several threads at once
overlapped and left the process on one thread for good. So only the main
thread ever changes them here: :func:`one_blas_thread` pins BLAS to one
thread for a call from the main thread (re-entrant: the outermost call
restores) and does nothing in other threads, where BLAS runs as configured.

:func:`blas_threads` reads the limit the caller set (threadpoolctl's
``threadpool_limits``, ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``, or
joblib's workers, which set one of those), not :func:`one_blas_thread`'s own:
fastmlp's worker threads follow it (:func:`fastmlp.inference.default_threads`),
as scikit-learn's MLP follows it through BLAS.
"""

import contextlib
import threading

__all__ = ["blas_threads", "one_blas_thread"]

_lock = threading.Lock()
_state = {"depth": 0, "limiter": None, "controller": None, "outer": None}


def _controller():
    if _state["controller"] is None:
        # SciPy's BLAS is the one Numba's np.dot calls: load it so the
        # controller sees it as well as NumPy's.
        import scipy.linalg  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _state["controller"] = ThreadpoolController()
    return _state["controller"]


def _configured():
    counts = [lib.num_threads for lib in _controller().select(user_api="blas").lib_controllers]
    counts = [c for c in counts if c is not None and c > 0]
    return min(counts) if counts else None


def blas_threads():
    """The threads BLAS may use as the caller configured it (the fewest over
    the BLAS libraries loaded), ignoring :func:`one_blas_thread`'s own limit;
    None if no BLAS library reports one. A query of the loaded libraries
    (about 10 µs). Inside a pin, the limit as it was when the outermost pin
    began (a limit the caller changes inside it is not seen)."""
    with _lock:  # (the read and the pin's start do not interleave)
        if _state["depth"] > 0:
            return _state["outer"]
        return _configured()


@contextlib.contextmanager
def one_blas_thread():
    """A context in which BLAS runs on one thread, when entered from the main
    thread (re-entrant); from any other thread it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _lock:
        if _state["depth"] == 0:
            _state["outer"] = _configured()
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
