"""fastmlp run as a drop-in replacement gives the notebook's numbers.

The notebook's own classes (tests/notebook002.py, copied from the seed) and
fastmlp's are run from the same global seed, drawn in the same order.
"""

import re

import notebook002 as nb
import numpy as np
import pytest
from conftest import hard_data

import fastmlp


def build(lib, act="ReLU", **kw):
    Act = getattr(lib, act)
    return lib.Sequential(
        [lib.Linear(2, 10), Act(), lib.Linear(10, 10), Act(), lib.Linear(10, 2), lib.SoftMax()],
        lib.NLL(),
        **kw,
    )


def weights(model):
    return [p for m in model.modules if hasattr(m, "W") for p in (m.W, m.W0)]


def parse(out):
    """(iteration, accuracy, loss) of each printed report line."""
    pat = r"Iteration = (\d+) \tAcc = ([\d.]+) \tLoss = ([\d.e-]+)"
    return [(int(i), float(a), float(loss)) for i, a, loss in re.findall(pat, out)]


@pytest.mark.parametrize("act", ["ReLU", "Tanh"])
def test_same_weights_and_reports_after_1000_steps(engine, act, capsys):
    X, Y = hard_data()
    np.random.seed(7)
    ref = build(nb, act)
    ref.sgd(X, Y, iters=1000, lrate=0.005)
    ref_out = capsys.readouterr().out

    np.random.seed(7)
    fast = build(fastmlp, act, engine=engine)
    fast.sgd(X, Y, iters=1000, lrate=0.005)
    fast_out = capsys.readouterr().out

    for a, b in zip(weights(ref), weights(fast), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    ref_lines, fast_lines = parse(ref_out), parse(fast_out)
    assert [r[:2] for r in ref_lines] == [f[:2] for f in fast_lines]
    assert [r[0] for r in ref_lines] == [1, 251, 501, 751]
    np.testing.assert_allclose([f[2] for f in fast_lines], [r[2] for r in ref_lines], rtol=1e-9)
    # The global generator is left where the notebook leaves it.
    np.random.seed(7)
    build(nb, act)
    np.random.randint(200, size=1000)
    state = np.random.get_state()[1]
    np.random.seed(7)
    build(fastmlp, act, engine=engine).sgd(X, Y, iters=1000, print_every=None)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_seed_argument_matches_global_seed(engine):
    X, Y = hard_data()
    np.random.seed(3)
    a = build(fastmlp, engine=engine)
    a.sgd(X, Y, iters=300, verbose=False)
    # The same draws from a private RandomState, leaving the global one alone.
    np.random.seed(99)
    before = np.random.get_state()[1].copy()
    rs = np.random.RandomState(3)
    c = fastmlp.Sequential(
        [fastmlp.Linear(2, 10, seed=rs), fastmlp.ReLU(), fastmlp.Linear(10, 10, seed=rs),
         fastmlp.ReLU(), fastmlp.Linear(10, 2, seed=rs), fastmlp.SoftMax()],
        fastmlp.NLL(), engine=engine,
    )
    c.sgd(X, Y, iters=300, seed=rs, verbose=False)
    for p, q in zip(weights(a), weights(c), strict=True):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_print_accuracy_matches_notebook(engine, capsys):
    X, Y = hard_data()
    np.random.seed(1)
    ref = build(nb)
    np.random.seed(1)
    fast = build(fastmlp, engine=engine)
    for it in (0, 1, 2, 251):
        ref.print_accuracy(it, X, Y, 0.5)
        fast.print_accuracy(it, X, Y, 0.5)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0::2] == out[1::2]
