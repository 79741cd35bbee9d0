"""The first layer's pass over column blocks (kernels/columns.py) against NumPy:
the layout round trip, the block widths, and one step's update and product,
over every row and over a list of rows."""

import numpy as np
import pytest

from fastmlp.engines import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not importable")


@pytest.mark.parametrize("itemsize, n, expected", [
    (4, 1, [8]), (4, 33, [40]), (4, 100, [32, 32, 40]), (4, 65, [32, 40]),
    (4, 96, [32, 32, 32]), (4, 97, [32, 32, 40]), (4, 112, [32, 32, 32, 16]),
    (8, 3, [4]), (8, 20, [20]), (8, 36, [16, 20]), (8, 100, [16] * 5 + [20]),
    (8, 200, [16] * 12 + [8]),
])
def test_block_widths(itemsize, n, expected):
    from fastmlp.kernels.columns import block_widths

    widths = block_widths(n, itemsize)
    assert widths.tolist() == expected
    assert widths.sum() >= n and widths.sum() - n < 32 // itemsize


@pytest.mark.parametrize("listed", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, n", [(1, 1), (5, 3), (4, 12), (6, 20), (3, 9), (17, 33), (64, 200),
                                  (9, 37), (784, 100)])
def test_one_pass_updates_then_multiplies(m, n, dtype, listed):
    from fastmlp.kernels.columns import first_pass, from_columns, to_columns, widths_for

    rng = np.random.RandomState(m * n)
    wo = 7  # (the matrix sits at an offset in the flat buffer)
    P = rng.randn(wo + m * n + 5).astype(dtype)
    widths = widths_for(n, P)
    Wc = to_columns(P, wo, m, n, widths)
    assert Wc.size == m * widths.sum()
    X = rng.rand(3, m).astype(dtype)
    if listed:  # (zero inputs, left out of the rows)
        X[:, ::3] = 0
    d = np.zeros(widths.sum(), dtype=dtype)
    d[:n] = rng.randn(n)
    out = np.full(widths.sum(), np.nan, dtype=dtype)
    lr = dtype(0.01)
    rows = np.flatnonzero(X[1] != 0).astype(np.uint32) if listed else None
    k = m if rows is None else len(rows)
    first_pass(Wc, widths, m, rows, k, X.ravel(), 2 * m, X.ravel(), m, d, lr, out,
               np.empty(m, dtype))
    after = P.copy()
    from_columns(Wc, widths, after, wo, m, n)

    W = P[wo:wo + m * n].reshape(m, n).astype(np.float64)
    W_new = W - (np.float64(lr) * X[1].astype(np.float64))[:, None] * d[None, :n]
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(after[wo:wo + m * n].reshape(m, n), W_new, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(out[:n], X[2] @ W_new, rtol=rtol * 10, atol=rtol * 10)
    np.testing.assert_array_equal(out[n:], 0)  # (the padding columns stay zero)
    np.testing.assert_array_equal(after[:wo], P[:wo])
    np.testing.assert_array_equal(after[wo + m * n:], P[wo + m * n:])


def test_a_round_trip_through_columns_keeps_every_bit():
    from fastmlp.kernels.columns import from_columns, to_columns, widths_for

    P = np.random.RandomState(0).randn(3 + 50 * 37)
    widths = widths_for(37, P)
    back = np.zeros_like(P)
    back[:3] = P[:3]
    from_columns(to_columns(P, 3, 50, 37, widths), widths, back, 3, 50, 37)
    np.testing.assert_array_equal(back, P)


def test_a_width_without_a_loop_is_refused():
    from fastmlp.kernels.columns import PASS_WIDTHS, first_pass

    assert 28 not in PASS_WIDTHS
    m = 3
    Wc, x = np.zeros(m * 28), np.ones(m)
    with pytest.raises(ValueError, match="block width"):
        first_pass(Wc, np.array([28]), m, None, m, x, 0, x, 0, np.zeros(28), 0.1, np.zeros(28),
                   np.empty(m))


def test_nonzero_rows_lists_the_rows_either_input_needs():
    from fastmlp.kernels.columns import nonzero_rows

    x = np.array([0.0, 1.0, 0.0, 0.0, 2.0, 0.0])
    xp = np.array([9.0, 0.0, 0.0, 3.0, 0.0, 0.0, 5.0])  # (offset 1 below: 0, 0, 3, 0, 0, 5)
    rows = np.zeros(6, dtype=np.uint32)
    k = nonzero_rows(x, 0, xp, 1, 6, rows)
    assert rows[:k].tolist() == [1, 2, 4, 5]
