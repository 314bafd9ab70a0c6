"""The compiled loops over a matrix's rows four (or eight) at a time, against numpy."""

import numpy as np
import pytest

from fastsearchlight.estimators._rows import (
    eight_dots,
    four_axpy,
    four_dots,
    gather_samples,
    next_four,
    row_products,
)


@pytest.mark.parametrize("d", [0, 1, 5, 76])
def test_four_dots_are_the_rows_dot_products_over_the_first_d_entries(d):
    rng = np.random.default_rng(d)
    M = rng.standard_normal((9, 80))
    v = rng.standard_normal(80)
    rows = (7, 2, 2, 0)
    got = four_dots(M, *rows, v, d)
    np.testing.assert_allclose(got, M[list(rows), :d] @ v[:d], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("d", [0, 1, 5, 76])
def test_eight_dots_are_eight_rows_dot_products_over_the_first_d_entries(d):
    """Rows ``r .. r + 7`` into the same places of ``out``; nothing else written."""
    rng = np.random.default_rng(20 + d)
    M = rng.standard_normal((12, 80))
    v = rng.standard_normal(80)
    out = np.full(12, np.nan)
    eight_dots(M, 3, v, d, out)
    np.testing.assert_allclose(out[3:11], M[3:11, :d] @ v[:d], rtol=1e-13, atol=1e-13)
    assert np.isnan(out[:3]).all() and np.isnan(out[11:]).all()


@pytest.mark.parametrize("n", [0, 3, 4, 7, 8, 13, 162])
def test_logistic_dots_match_numpy_for_every_remainder(n):
    """The logistic kernels' ``A v``: eight rows at a time, then four, then one."""
    from fastsearchlight.estimators._logistic_kernel import _dots

    rng = np.random.default_rng(n)
    A = rng.standard_normal((n, 82))
    v = rng.standard_normal(82)
    out = np.full(n, np.nan)
    _dots(A, v, out)
    np.testing.assert_allclose(out, A @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [0, 3, 76])
def test_four_axpy_adds_the_four_scaled_rows_to_the_first_d_entries(d):
    rng = np.random.default_rng(10 + d)
    M = rng.standard_normal((6, 80))
    c = rng.standard_normal(4)
    out = rng.standard_normal(80)
    want = out.copy()
    want[:d] += c @ M[[5, 1, 3, 1], :d]
    four_axpy(M, 5, 1, 3, 1, *c, out, d)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-13)


def test_next_four_finds_the_selected_positions_in_order_then_the_missing_ones():
    selected = np.array([False, True, True, False, True, False, True, True, False, True])
    assert next_four(selected, True, 0, 10) == (1, 2, 4, 6, 7)
    assert next_four(selected, True, 7, 10) == (7, 9, -1, -1, 10)
    assert next_four(selected, False, 0, 10) == (0, 3, 5, 8, 9)
    assert next_four(selected, True, 0, 3) == (1, 2, -1, -1, 3)  # n bounds the search
    assert next_four(selected, True, 10, 10) == (-1, -1, -1, -1, 10)


@pytest.mark.parametrize("p", [1, 7, 8, 19])
@pytest.mark.parametrize("ordered", [True, False])
def test_gather_samples_reads_each_voxel_at_each_sample(p, ordered):
    rng = np.random.default_rng(p)
    Xv = rng.standard_normal((30, 11))
    rows = rng.choice(30, p, replace=False)
    order = rng.permutation(11) if ordered else np.zeros(0, dtype=np.int64)
    out = np.full((11, p + 2), np.nan)[:, :p]  # rows with contiguous entries, strided
    gather_samples(Xv, rows, order, out)
    expected = Xv[rows][:, order if ordered else np.arange(11)].T
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("m", "n", "d"), [(8, 321, 124), (4, 217, 20), (7, 10, 3), (3, 5, 9), (1, 1, 1), (5, 6, 0), (0, 4, 3)]
)
def test_row_products_are_a_times_b_transposed_on_the_leading_blocks(m, n, d):
    rng = np.random.default_rng(m * 1000 + n + d)
    A = rng.standard_normal((m + 2, d + 3))
    B = rng.standard_normal((n + 1, d + 3))
    out = np.full((m + 1, n + 2), np.nan)
    row_products(A, B, out, m, n, d)
    np.testing.assert_allclose(out[:m, :n], A[:m, :d] @ B[:n, :d].T, rtol=1e-13, atol=1e-13)
    assert np.isnan(out[m:]).all() and np.isnan(out[:, n:]).all()  # nothing written outside
