"""fastmlp: the NumPy notebook's MLP API, trained by fused Numba kernels.

Switch a notebook script over by changing its import::

    from fastmlp import Sequential, Linear, ReLU, SoftMax, NLL
"""

__version__ = "0.1.0"

from .layers import Layer, Linear, ReLU, Sigmoid, SoftMax, Tanh
from .losses import MSE, NLL
from .sequential import Sequential, load
from .training import History

__all__ = [
    "MSE",
    "NLL",
    "History",
    "Layer",
    "Linear",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftMax",
    "Tanh",
    "load",
]
