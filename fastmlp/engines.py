"""Choosing the engine that does a model's arithmetic.

An engine is a module of functions with the same names and signatures:
:mod:`fastmlp.baseline` (pure NumPy) and :mod:`fastmlp.kernels.layer_ops`
(Numba-compiled). Layers and losses hold parameters, shapes and checks and
call their engine for every step of arithmetic, so the same classes run on
either engine.

This module is also the one place that loads compiled code
(:func:`kernel_module`): on first use, so ``import fastmlp`` stays fast and
the NumPy engine never imports Numba.
"""

import importlib

ENGINES = ("numba", "numpy")

_MODULES = {"numpy": "fastmlp.baseline", "numba": "fastmlp.kernels.layer_ops"}


def numba_available():
    """Return True if the Numba engine can be imported."""
    try:
        importlib.import_module(_MODULES["numba"])
    except ImportError:
        return False
    return True


def get_engine(engine=None):
    """Return the engine module for ``engine``.

    Parameters
    ----------
    engine : {"numba", "numpy"}, module or None
        None picks the fastest available engine: Numba if it imports, else
        NumPy. An engine module is returned as it is.

    Returns
    -------
    module
        A module exposing the engine functions and a ``name`` attribute.
    """
    if engine is None:
        engine = "numba" if numba_available() else "numpy"
    if isinstance(engine, str):
        if engine not in _MODULES:
            raise ValueError(f"engine must be one of {ENGINES} or None; got {engine!r}")
        return importlib.import_module(_MODULES[engine])
    if hasattr(engine, "linear_forward") and hasattr(engine, "name"):
        return engine
    raise TypeError(f"engine must be one of {ENGINES}, None or an engine module; got {engine!r}")


def kernel_module(name):
    """Return the compiled kernel module ``fastmlp.kernels.<name>`` (imported on first use)."""
    return importlib.import_module(f"fastmlp.kernels.{name}")
