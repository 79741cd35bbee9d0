"""Executors of a plan: objects that take runs of SGD steps on request.

``run(order, batch, optimizer, hits)`` takes one step per run of ``batch``
consecutive entries of ``order`` (the last may be shorter) and returns each
step's summed loss and hit count (how many samples have their largest output
where Y's is; the fused kernels always count them, at no cost, the
layer-by-layer loop only when ``hits`` is true). :class:`FusedSteps` does that in one
compiled call, on the kernel its plan names; :class:`LayerSteps` loops in
Python over the modules, exactly as the notebook, for networks the kernels
cannot run.
"""

import functools
import inspect

import numpy as np

from .blas import one_blas_thread
from .config import CALL_WORK, UPDATE_SAMPLES
from .engines import kernel_module
from .kernels.codes import ADAM, H_T
from .layers import BUILTIN, Linear, SoftMax
from .losses import MSE, NLL

__all__ = ["FusedSteps", "LayerSteps", "call_sgd_step"]


class FusedSteps:
    """Steps in compiled code: one kernel call per run of steps.

    The kernels read samples as rows. The plan's layout says how: X is that
    already (the transpose of a samples x features array, as the dataset
    loaders return, at no cost), is transposed once, or each run gathers the
    samples it draws, so a few hundred steps never pay for a copy of all of X.
    """

    def __init__(self, plan, flat, X, Y):
        self.plan, self.flat = plan, flat
        self._ws = None  # (batch, the kernel's sparse workspace)
        self.columns = (X, Y)
        if plan.layout == "rows":
            self.rows = (X.T, Y.T)
        elif plan.layout == "transpose":
            self.rows = (np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T))
        else:
            self.rows = None
        if plan.mode == "per-sample":
            self.kernel = kernel_module("blocked" if plan.kernel == "blocked" else "per_sample")
        else:
            self.kernel = kernel_module("minibatch")

    def _workspace(self, batch):
        """The sparse first layer's buffers for batches of ``batch``, made once
        (a run of many calls would otherwise allocate, and fault in, a few
        megabytes a call), or None where the plan never takes that path."""
        if self.plan.max_fill <= 0:
            return None
        if self._ws is None or self._ws[0] != batch:
            net = self.flat.network
            self._ws = (batch, self.kernel.sparse_workspace(self.flat.P, batch, int(net.sizes[0]),
                                                            int(net.sizes[1])))
        return self._ws[1]

    def _data(self, order):
        """Samples-as-rows X and Y for the steps in ``order``, and their indices there."""
        if self.rows is not None:
            return (*self.rows, order)
        X, Y = self.columns
        rows = np.arange(len(order), dtype=np.int64)
        return np.ascontiguousarray(X.T[order]), np.ascontiguousarray(Y.T[order]), rows

    def run(self, order, batch, optimizer, hits=True):
        """Take the steps of ``order`` in compiled calls of about ``CALL_WORK``
        parameters x samples each (whole steps), so that Ctrl-C is handled within a
        fraction of a second and leaves the weights of the last whole call."""
        X, Y, order = self._data(np.ascontiguousarray(order, dtype=np.int64))
        steps = -(-len(order) // batch)
        losses, hit = np.empty(steps), np.empty(steps, dtype=np.int64)
        extra = UPDATE_SAMPLES if self.plan.mode == "mini-batch" else 0
        work = self.flat.network.n_params * (batch + extra)
        per_call = max(1, CALL_WORK // work)
        for s in range(0, steps, per_call):
            e = min(steps, s + per_call)
            self._call(X, Y, order[s * batch:e * batch], batch, optimizer, losses[s:e], hit[s:e])
        return losses, hit

    def _call(self, X, Y, order, batch, optimizer, losses, hit):
        """One compiled call: the steps of ``order`` on the plan's kernel."""
        plan, flat, net = self.plan, self.flat, self.flat.network
        head = (flat.P, flat.G)
        body = (net.sizes, net.acts, net.loss, X, Y, order)
        if plan.mode == "mini-batch":
            self.kernel.train_minibatch(*head, optimizer.state, *body, int(batch), optimizer.code,
                                        optimizer.hyper(), losses, hit, plan.max_fill,
                                        self._workspace(int(batch)))
        elif plan.kernel == "blocked":
            with one_blas_thread():
                self.kernel.sgd_blocked(*head, *body, optimizer.learning_rate, losses, hit,
                                        plan.block, plan.sparse)
        else:
            self.kernel.sgd_per_sample(*head, *body, optimizer.learning_rate, losses, hit,
                                       plan.every_row)


def call_sgd_step(module, lrate):
    """Call ``module.sgd_step``, with the rate if it takes one (the notebook's
    base ``Layer.sgd_step`` takes none, while its ``Sequential`` passes one)."""
    fn = getattr(module, "sgd_step", None)
    if fn is None:
        return
    if _takes_rate(getattr(fn, "__func__", fn), hasattr(fn, "__self__")):
        fn(lrate)
    else:
        fn()


@functools.lru_cache(maxsize=256)
def _takes_rate(func, bound):
    """True if ``func`` accepts a positional argument besides ``self``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    return variadic or len(positional) > (1 if bound else 0)


def _uses_optimizer(module):
    """True for a Linear layer (or subclass) that keeps Linear's own sgd_step:
    the optimizer updates its parameters. Other layers step themselves."""
    return isinstance(module, Linear) and type(module).sgd_step is Linear.sgd_step


class LayerSteps:
    """The notebook's step: one Python call per module per batch.

    Works for any mix of built-in and user layers; built-in layers still do
    their arithmetic on the model's engine, through their unchecked steps
    (the data were checked once, up front), so this path is also a fair
    NumPy baseline. Where a SoftMax feeds NLL the combined gradient
    ``Ypred - Y`` replaces the two backward steps, and a first Linear layer
    skips its input gradient, which nothing uses. Linear layers are updated
    by the optimizer (momentum and weight decay included); a layer of your
    own gets ``sgd_step(lrate / batch)``.
    """

    def __init__(self, model, X, Y):
        self.model, self.X, self.Y = model, X, Y
        mods, loss = model.modules, model.loss
        builtin = [type(m) in BUILTIN for m in mods]
        self.forwards = [m.step_forward if b else m.forward
                         for m, b in zip(mods, builtin, strict=True)]
        backwards = [m.step_backward if b else m.backward
                     for m, b in zip(mods, builtin, strict=True)]
        self.combined = type(mods[-1]) is SoftMax and type(loss) is NLL
        top = len(mods) - 2 if self.combined else len(mods) - 1
        self.chain = backwards[top:0:-1]  # backward through modules top .. 1
        self.first = None if top < 0 else backwards[0]
        self.first_linear = type(mods[0]) is Linear
        self.updated, self.others = self._split_updates(model)
        self.builtin_loss = type(loss) in (NLL, MSE)

    @staticmethod
    def _split_updates(model):
        """The (module, offset) of each layer the optimizer updates, at the offset of
        its parameters in ``model.parameters()``; and the layers that step themselves."""
        updated, others, offset = [], [], 0
        for m in model.modules:
            params = m.parameters() if hasattr(m, "parameters") else []
            if _uses_optimizer(m):
                m.ensure_gradient_buffers()
                updated.append((m, offset))
            else:
                others.append(m)
            offset += sum(p.size for p in params)
        return updated, others

    def run(self, order, batch, optimizer, hits=True):
        X, Y, ops, loss_fn = self.X, self.Y, self.model.engine_ops, self.model.loss
        plain = batch == 1 and optimizer.plain
        lrate, hyper, S = optimizer.learning_rate, optimizer.hyper(), optimizer.state
        steps = -(-len(order) // batch)
        losses, hit = np.empty(steps), np.zeros(steps, dtype=np.int64)
        for s in range(steps):
            rows = order[s * batch:(s + 1) * batch]
            if len(rows) == 1:  # the notebook's slice: a view, no copy
                t = rows[0]
                Xt, Yt = X[:, t:t + 1], Y[:, t:t + 1]
            else:
                Xt, Yt = X[:, rows], Y[:, rows]
            A = Xt
            for f in self.forwards:
                A = f(A)
            losses[s] = loss_fn.step_forward(A, Yt) if self.builtin_loss else loss_fn.forward(A, Yt)
            if hits:
                hit[s] = np.count_nonzero(np.argmax(A, axis=0) == np.argmax(Yt, axis=0))
            grad = ops.softmax_nll_backward(A, Yt) if self.combined else loss_fn.backward()
            for b in self.chain:
                grad = b(grad)
            if self.first is not None:
                if self.first_linear:
                    self.first(grad, False)
                else:
                    self.first(grad)
            if optimizer.code == ADAM:  # Adam's step counter: once per step
                hyper[H_T] += 1
            for m, o in self.updated:
                if plain:
                    ops.linear_update(m.W, m.W0, m.dLdW, m.dLdW0, lrate)
                else:
                    w = m.W.size
                    ops.sgd_update(m.W, m.W0, m.dLdW, m.dLdW0, S[:, o:o + w],
                                   S[:, o + w:o + w + m.W0.size], optimizer.code, hyper, len(rows))
            for m in self.others:
                call_sgd_step(m, lrate / len(rows))
        return losses, hit
