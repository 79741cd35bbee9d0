"""The one decorator every fastmlp kernel is compiled with.

All kernels are nopython, release the GIL, use NumPy's error model (a float
division by zero gives inf, with no check in the loop) and are cached on disk,
so a second process loads machine code instead of compiling. If no cache
location is writable (a read-only install and an unwritable NUMBA_CACHE_DIR),
the kernels still compile, once per process, with a warning.

A damaged cache heals itself: an index (``.nbi``) or machine-code (``.nbc``)
file that cannot be read back (emptied, truncated or overwritten, say by a
full disk or a killed process) is treated as a cache miss. Its function's
cache files are removed, the kernel is recompiled and saved again, and one
warning per process names the cache folder. Without this, Numba raises
``EOFError`` or ``UnpicklingError`` in every later process until the cache
is cleared by hand.
"""

import functools
import glob
import hashlib
import os
import threading
import warnings

import numba
from numba.core.caching import FunctionCache
from numba.core.runtime import rtsys

#: fastmath flags for loops whose results may be reassociated (dot products
#: and sums). Not "nnan"/"ninf": non-finite values must still propagate.
REASSOC = {"reassoc", "contract", "nsz"}

_warned = []
_healed_folders = set()  # cache folders already reported in this process
_lock = threading.Lock()


def jit(fn=None, **options):
    """``numba.njit(cache=True, nogil=True, error_model="numpy", **options)``.

    The dispatcher's disk cache is a :class:`SelfHealingCache`.
    """
    if fn is None:
        return lambda f: jit(f, **options)
    opts = {"cache": True, "nogil": True, "error_model": "numpy", **options}
    try:
        dispatcher = numba.njit(**opts)(fn)
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
        if not _warned:
            _warned.append(True)
            warnings.warn(
                f"fastmlp: no writable Numba cache location ({exc}); kernels will be "
                "compiled in every process. Set NUMBA_CACHE_DIR to a writable folder.",
                RuntimeWarning,
                stacklevel=3,
            )
        opts["cache"] = False
        return numba.njit(**opts)(fn)
    if opts["cache"] and isinstance(getattr(dispatcher, "_cache", None), FunctionCache):
        dispatcher._cache = SelfHealingCache(dispatcher.py_func)
    return dispatcher


def cache_folder():
    """The folder the kernels' machine code is cached in, or None if none is writable."""
    try:
        return SelfHealingCache(_probe).cache_path
    except RuntimeError:  # no locator: no writable cache location
        return None


@functools.lru_cache(maxsize=1)
def sources_digest():
    """SHA-256 of the kernels' source files (this folder's ``*.py``), read once."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "*.py"))):
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _probe():
    """A function of this folder, whose cache location is every kernel's."""


class SelfHealingCache(FunctionCache):
    """Numba's per-function disk cache, recovering from unreadable entries.

    Any error while loading an entry (``EOFError``, ``UnpicklingError``,
    ``ValueError``... from a damaged ``.nbi`` or ``.nbc`` file) makes the
    entry a miss: the function's cache files are removed, a warning naming
    the cache folder is issued once per process, and Numba compiles the
    function and saves it again. A failed save only warns: the compiled
    function is still used.
    """

    def load_overload(self, sig, target_context):
        """Return the cached compile result for ``sig``, or None to compile.

        Without Numba's ``target_context.refresh()`` first: machine code
        needs only the runtime (NRT) initialised, not the registries of
        every implementation Numba can compile (refreshing imports
        ``numba.np.arraymath``, hence SciPy, and fills the typing tables:
        0.4-0.7 s of a warm process's first call, measured). A miss
        compiles, and the compiler refreshes the context itself.
        """
        try:
            rtsys.initialize(target_context)
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
            return None  # (Windows: a file another process holds)
        except Exception as exc:  # a damaged entry: whatever pickle raised
            self._drop(exc)
            return None

    def save_overload(self, sig, data):
        """Save the compile result; on a damaged index, drop it and retry once."""
        try:
            super().save_overload(sig, data)
        except Exception as exc:
            self._drop(exc)
            try:
                super().save_overload(sig, data)
            except Exception:  # (the kernel still runs; it is recompiled next time)
                pass

    def _index_key(self, sig, codegen):
        """Numba's key, plus a digest of every kernel source file.

        Numba invalidates a cached function when its own file changes, not
        when a function it calls from another file does (numba's docs say
        so), so a kernel would keep running its callees' old machine code
        after an upgrade or an edit of, say, ``update.py``. Measured here: a
        stale ``train_batches`` kept an older ``update`` and ran 25% slower;
        with a changed constant layout it could compute wrong numbers. Any
        change in ``kernels/`` now recompiles every kernel once.
        """
        return (*super()._index_key(sig, codegen), sources_digest())

    def cache_files(self):
        """The index and data files of this function in the cache folder."""
        base = glob.escape(os.path.join(self._cache_path, self._impl.filename_base))
        return glob.glob(base + ".nbi") + glob.glob(base + ".*.nbc")

    def _drop(self, exc):
        """Remove this function's cache files and warn once per folder."""
        removed = []
        for path in self.cache_files():
            try:
                os.unlink(path)
                removed.append(os.path.basename(path))
            except FileNotFoundError:  # another process dropped it first
                pass
        _warn_healed(self._cache_path, removed, exc)


def _warn_healed(folder, removed, exc):
    with _lock:
        if folder in _healed_folders:
            return
        _healed_folders.add(folder)
    files = ", ".join(removed) or "none left"
    warnings.warn(
        f"fastmlp: repaired the Numba kernel cache in {folder}: an entry could not be "
        f"read or written ({type(exc).__name__}: {exc}); removed {files} and "
        "recompiled. Further damaged entries in this folder are repaired silently.",
        RuntimeWarning,
        stacklevel=2,
    )
