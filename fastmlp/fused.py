"""The fused path: planning a network for the compiled loops, and its flat buffers.

A network qualifies when it is made only of built-in layers (exact types, not
subclasses): Linear layers, each followed by at most one of ReLU, Tanh,
Sigmoid (or SoftMax, last only), with an NLL loss after a SoftMax or an MSE
loss after anything. Its parameters then live in one flat buffer that the
kernels update in place, and each Linear layer's ``W``, ``W0``, ``dLdW`` and
``dLdW0`` become views into it, so the layers always show the trained values
without copies.
"""

from dataclasses import dataclass

import numpy as np

from .layers import Linear, ReLU, Sigmoid, SoftMax, Tanh
from .losses import MSE, NLL

#: Activation codes of the kernels (fastmlp.kernels.fused), by layer type.
ACT_CODES = {ReLU: 1, Tanh: 2, Sigmoid: 3, SoftMax: 4}
IDENTITY, SOFTMAX = 0, 4
LOSS_CODES = {NLL: 0, MSE: 1}


@dataclass(frozen=True)
class Plan:
    """A network as the kernels see it."""

    sizes: np.ndarray  # int64 (L + 1,): widths, input first
    acts: np.ndarray  # int64 (L,): activation code after each Linear
    loss: int  # LOSS_CODES value
    linears: tuple  # the Linear layers, in order

    @property
    def n_params(self):
        """Number of parameters (weights and biases)."""
        s = self.sizes
        return int(np.sum(s[:-1] * s[1:] + s[1:]))


def make_plan(modules, loss):
    """Return the Plan of a network of built-in layers, or None if it has none."""
    if type(loss) not in LOSS_CODES or not modules or type(modules[0]) is not Linear:
        return None
    linears, acts = [], []
    for m in modules:
        if type(m) is Linear:
            if linears and acts[-1] == SOFTMAX:
                return None  # SoftMax inside the network
            linears.append(m)
            acts.append(IDENTITY)
        elif type(m) in ACT_CODES and acts[-1] == IDENTITY:
            acts[-1] = ACT_CODES[type(m)]
        else:
            return None  # a user layer, or two activations in a row
    if type(loss) is NLL and acts[-1] != SOFTMAX:
        return None
    if SOFTMAX in acts[:-1]:
        return None
    sizes = [linears[0].m] + [lin.n for lin in linears]
    return Plan(
        sizes=np.array(sizes, dtype=np.int64),
        acts=np.array(acts, dtype=np.int64),
        loss=LOSS_CODES[type(loss)],
        linears=tuple(linears),
    )


#: The Linear attributes kept in the flat buffers P (parameters), G (last
#: gradients) and V (optimizer velocities), in the order of FlatNetwork.views.
BOUND = ("W", "W0", "dLdW", "dLdW0", "_VW", "_VW0")


class FlatNetwork:
    """Parameters ``P``, gradients ``G`` and velocities ``V`` of a planned network.

    Layout of each buffer, per Linear layer in order: the (m x n) matrix,
    row-major, then the n biases. :meth:`bind` makes each layer's arrays
    views into the buffers, copying in any array the user replaced since.
    """

    def __init__(self, plan, dtype):
        self.plan = plan
        self.P = np.zeros(plan.n_params, dtype=dtype)
        self.G = np.zeros(plan.n_params, dtype=dtype)
        self.V = np.zeros(plan.n_params, dtype=dtype)
        self.views = []
        o = 0
        for m, n in zip(plan.sizes[:-1], plan.sizes[1:], strict=True):
            w, b = slice(o, o + m * n), slice(o + m * n, o + m * n + n)
            self.views.append(tuple(
                view for buf in (self.P, self.G, self.V)
                for view in (buf[w].reshape(m, n), buf[b].reshape(n, 1))
            ))
            o += m * n + n
        self.bind()

    def bind(self):
        """Make every layer's parameters, gradients and velocities views into the buffers."""
        for i, (lin, views) in enumerate(zip(self.plan.linears, self.views, strict=True)):
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
