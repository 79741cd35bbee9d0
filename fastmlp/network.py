"""A network as the compiled kernels see it: codes, widths and flat buffers.

A network fits the fused kernels when it is made only of built-in layers
(exact types, not subclasses): Linear layers, each followed by at most one of
ReLU, Tanh, Sigmoid (or SoftMax, last only), with an NLL loss after a SoftMax
or an MSE loss after anything. Its parameters then live in one flat buffer
that the kernels update in place, and each Linear layer's ``W``, ``W0``,
``dLdW`` and ``dLdW0`` become views into it, so the layers always show the
trained values without copies.
"""

from dataclasses import dataclass

import numpy as np

from .kernels import codes
from .layers import ACTIVATIONS, Linear
from .losses import MSE, NLL

__all__ = ["FlatNetwork", "Network", "describe"]


@dataclass(frozen=True)
class Network:
    """A network of built-in layers, as the kernels take it."""

    sizes: np.ndarray  # int64 (L + 1,): widths, input first
    acts: np.ndarray  # int64 (L,): activation code after each Linear
    loss: int  # loss code
    linears: tuple  # the Linear layers, in order

    @property
    def n_params(self):
        """Number of parameters (weights and biases)."""
        s = self.sizes
        return int(np.sum(s[:-1] * s[1:] + s[1:]))


def describe(modules, loss):
    """Return ``(network, None)`` for a network the kernels can run, else
    ``(None, reason)``, the reason in words (for :attr:`Sequential.path`)."""
    if type(loss) not in (NLL, MSE):
        return None, f"the loss {loss!r} is not a built-in loss"
    if type(modules[0]) is not Linear:
        return None, f"modules[0] ({modules[0]!r}) is not a Linear layer"
    linears, acts = [], []
    for i, m in enumerate(modules):
        if type(m) is Linear:
            if acts and acts[-1] == codes.SOFTMAX:
                return None, f"modules[{i - 1}] is a SoftMax inside the network"
            linears.append(m)
            acts.append(codes.IDENTITY)
        elif type(m) in ACTIVATIONS and acts[-1] == codes.IDENTITY:
            acts[-1] = type(m).code
        elif type(m) in ACTIVATIONS:
            return None, f"modules[{i}] is a second activation in a row"
        else:
            return None, f"modules[{i}] ({m!r}) is a layer of your own"
    if type(loss) is NLL and acts[-1] != codes.SOFTMAX:
        return None, "NLL follows no SoftMax"
    sizes = [linears[0].m] + [lin.n for lin in linears]
    return Network(
        sizes=np.array(sizes, dtype=np.int64),
        acts=np.array(acts, dtype=np.int64),
        loss=type(loss).code,
        linears=tuple(linears),
    ), None


#: The Linear attributes kept in the flat buffers P (parameters) and G (last
#: gradients), in the order of FlatNetwork.views.
BOUND = ("W", "W0", "dLdW", "dLdW0")


class FlatNetwork:
    """Parameters ``P`` and gradients ``G`` of a network, in flat buffers.

    Layout of each buffer, per Linear layer in order: the (m x n) matrix,
    row-major, then the n biases: the order of
    :meth:`Sequential.parameters <fastmlp.Sequential.parameters>`.
    :meth:`bind` makes each layer's arrays views into the buffers, copying in
    any array the user replaced since.
    """

    def __init__(self, network, dtype):
        self.network = network
        self.P = np.zeros(network.n_params, dtype=dtype)
        self.G = np.zeros(network.n_params, dtype=dtype)
        self.views = []
        o = 0
        for m, n in zip(network.sizes[:-1], network.sizes[1:], strict=True):
            w, b = slice(o, o + m * n), slice(o + m * n, o + m * n + n)
            self.views.append(tuple(
                view for buf in (self.P, self.G)
                for view in (buf[w].reshape(m, n), buf[b].reshape(n, 1))
            ))
            o += m * n + n
        self.bind()

    def fits(self, network, dtype):
        """True if these buffers serve ``network`` (same Linear layers) in ``dtype``."""
        return self.network.linears == network.linears and self.P.dtype == dtype

    def bind(self, network=None):
        """Make every layer's parameters and gradients views into the buffers.

        ``network`` (same Linear layers) replaces the description: activations
        or the loss may have been replaced since the buffers were made.
        """
        if network is not None:
            self.network = network
        for i, (lin, views) in enumerate(zip(self.network.linears, self.views, strict=True)):
            for name, view in zip(BOUND, views, strict=True):
                current = getattr(lin, name, None)
                if current is view:
                    continue
                if current is not None:
                    current = np.asarray(current)
                    if current.shape != view.shape:
                        raise ValueError(
                            f"Linear layer {i} ({lin!r}) has {name} of shape {current.shape}; "
                            f"expected {view.shape}"
                        )
                    view[...] = current
                setattr(lin, name, view)
