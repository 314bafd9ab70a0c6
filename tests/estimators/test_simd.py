"""The outer-product tiles in explicit vector instructions: the sums of numpy's products, at
every offset, stride, tile edge and mode, in ``float64`` and in ``float32`` (stored in either),
and nothing written outside the tile."""

import numpy as np
import pytest
from numba import njit

from fastsearchlight.estimators._simd import TILE_COLUMNS, TILE_ROWS, outer_tile, outer_tile_solved


@njit(cache=False)
def _tile(A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate):
    outer_tile(A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate)


@njit(cache=False)
def _tile_solved(A, ia, lda, B, ib, ldb, length, C, ic, ldc, ncols, alpha, accumulate, T):
    outer_tile_solved(A, ia, lda, B, ib, ldb, length, C, ic, ldc, TILE_ROWS, ncols, alpha, accumulate, T)


def _expected(A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate):
    S = np.zeros((TILE_ROWS, TILE_COLUMNS))
    for step in range(length):
        a = A[ia + step * lda : ia + step * lda + nrows]
        b = B[ib + step * ldb : ib + step * ldb + ncols]
        S[:nrows, :ncols] += np.outer(a, b)
    out = C.copy()
    for r in range(nrows):
        for c in range(ncols):
            base = C[ic + r * ldc + c] if accumulate else 0.0
            out[ic + r * ldc + c] = base + alpha * S[r, c]
    return out


#: (the inputs' type, the output's type, the relative tolerance of the sums)
_TYPES = [(np.float64, np.float64, 1e-13), (np.float32, np.float32, 2e-6), (np.float32, np.float64, 2e-6)]


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize(("dtype", "out_dtype", "rtol"), _TYPES)
def test_outer_tile_matches_numpy(seed, dtype, out_dtype, rtol):
    """The tile's sums against numpy's in ``float64`` of the same (rounded) inputs."""
    rng = np.random.default_rng(seed)
    length = int(rng.integers(0, 50))
    lda, ldb, ldc = int(rng.integers(4, 30)), int(rng.integers(16, 40)), int(rng.integers(16, 30))
    nrows, ncols = int(rng.integers(1, TILE_ROWS + 1)), int(rng.integers(1, TILE_COLUMNS + 1))
    ia, ib, ic = int(rng.integers(0, lda - 3)), int(rng.integers(0, ldb - 15)), int(rng.integers(0, 4))
    # the arrays end where the tile's last entries do: a read past them would be outside
    A = rng.normal(size=max(length - 1, 0) * lda + ia + nrows).astype(dtype)
    B = rng.normal(size=max(length - 1, 0) * ldb + ib + ncols).astype(dtype)
    C = rng.normal(size=(nrows - 1) * ldc + ic + ncols).astype(out_dtype)
    alpha, accumulate = float(rng.normal()), bool(rng.integers(0, 2))
    expected = _expected(
        A.astype(np.float64), ia, lda, B.astype(np.float64), ib, ldb, length, C.astype(np.float64), ic, ldc,
        nrows, ncols, alpha, accumulate,
    )  # fmt: skip
    _tile(A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate)
    assert C.dtype == out_dtype
    np.testing.assert_allclose(C, expected, rtol=rtol, atol=rtol * max(1, length))


@pytest.mark.parametrize("seed", range(30))
def test_outer_tile_solved_applies_the_triangle_to_the_new_rows(seed):
    """The solved tile stores row ``r`` as ``sum_{l <= r} T[l, r] new_l``, ``new`` the plain
    tile's rows; ``T``'s entries below its diagonal (here NaN) are not read, and nothing
    outside the tile is written."""
    rng = np.random.default_rng(seed)
    length = int(rng.integers(0, 50))
    lda, ldb, ldc = int(rng.integers(4, 30)), int(rng.integers(16, 40)), int(rng.integers(16, 30))
    ncols = int(rng.integers(1, TILE_COLUMNS + 1))
    ia, ib, ic = int(rng.integers(0, lda - 3)), int(rng.integers(0, ldb - 15)), int(rng.integers(0, 4))
    A = rng.normal(size=max(length - 1, 0) * lda + ia + TILE_ROWS)
    B = rng.normal(size=max(length - 1, 0) * ldb + ib + ncols)
    C = rng.normal(size=(TILE_ROWS - 1) * ldc + ic + ncols + 3)
    T = np.triu(rng.normal(size=(TILE_ROWS, TILE_ROWS)))
    T[np.tril_indices(TILE_ROWS, -1)] = np.nan
    alpha, accumulate = float(rng.normal()), bool(rng.integers(0, 2))
    new = _expected(A, ia, lda, B, ib, ldb, length, C, ic, ldc, TILE_ROWS, ncols, alpha, accumulate)
    rows = np.array([new[ic + r * ldc : ic + r * ldc + ncols] for r in range(TILE_ROWS)])
    expected = new.copy()
    for r in range(TILE_ROWS):
        expected[ic + r * ldc : ic + r * ldc + ncols] = T[: r + 1, r] @ rows[: r + 1]
    _tile_solved(A, ia, lda, B, ib, ldb, length, C, ic, ldc, ncols, alpha, accumulate, T)
    np.testing.assert_allclose(C, expected, rtol=1e-13, atol=1e-13 * max(1, length))


def test_outer_tile_on_rows_of_a_2d_array_writes_the_tile_only():
    """A 2-d array is addressed from its first entry by its row length: the tile's entries
    change, every other entry (NaN) stays."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 40))
    C = np.full((6, 20), np.nan)
    C[1:4, 2:13] = 0.0
    _tile(X, 5, 40, X, 7, 40, 30, C, 1 * 20 + 2, 20, 3, 11, 1.0, True)
    np.testing.assert_allclose(C[1:4, 2:13], X[:, 5:8].T @ X[:, 7:18], rtol=1e-13)
    outside = np.ones(C.shape, bool)
    outside[1:4, 2:13] = False
    assert np.isnan(C[outside]).all()


@pytest.mark.parametrize(
    ("a_type", "b_type", "c_type"),
    [
        (np.float32, np.float64, np.float64),
        (np.float64, np.float64, np.float32),
        (np.int64, np.int64, np.int64),
    ],
)
def test_outer_tile_rejects_other_dtypes(a_type, b_type, c_type):
    """``A`` and ``B`` of one floating type, ``C`` of theirs or ``float64``."""
    A, B, C = np.ones(8, a_type), np.ones(32, b_type), np.ones(64, c_type)
    with pytest.raises(Exception, match="float"):
        _tile(A, 0, 4, B, 0, 16, 1, C, 0, 16, 4, 16, 1.0, False)


@pytest.mark.parametrize(
    ("n", "q"),
    [(0, 5), (1, 1), (5, 3), (80, 9), (40, 20), (33, 17), (162, 77), (130, 81), (130, 82), (141, 216)],
)
@pytest.mark.parametrize("shift", [0.0, 0.5])
@pytest.mark.parametrize(("dtype", "out_dtype", "rtol"), _TYPES)
def test_column_gram_upper_matches_numpy(n, q, shift, dtype, out_dtype, rtol):
    """The upper triangle of ``X' X + shift`` for the leading ``n x q`` block of a larger
    array; nothing is written below the diagonal or outside the block."""
    from fastsearchlight.estimators._simd import column_gram_upper

    rng = np.random.default_rng(q)
    X = rng.normal(loc=100.0, size=(n + 3, q + 5)).astype(dtype)
    G = np.full((q + 2, q + 4), np.nan, out_dtype)
    column_gram_upper(X, n, q, G, shift)
    X64 = X[:n, :q].astype(np.float64)
    expected = X64.T @ X64 + shift
    upper = np.triu_indices(q)
    np.testing.assert_allclose(G[:q, :q][upper], expected[upper], rtol=rtol, atol=rtol * n * 1e4)
    assert np.isnan(G[:q, :q][np.tril_indices(q, -1)]).all()
    assert np.isnan(G[q:]).all() and np.isnan(G[:, q:]).all()


@pytest.mark.parametrize("k", [0, 1, 54])
@pytest.mark.parametrize("q", [23, 18, 36])
def test_column_gram_upper_scales_and_accumulates(k, q):
    """``alpha`` scales the products and ``accumulate`` adds them to the upper triangle;
    the strict lower triangle is never touched (``q`` past the last full column of tiles:
    7, 2 and 4 columns)."""
    from fastsearchlight.estimators._simd import column_gram_upper

    rng = np.random.default_rng(k)
    X = rng.standard_normal((k, q))
    G = np.full((q, q), 3.0)
    column_gram_upper(X, k, q, G, 0.0)
    np.testing.assert_allclose(np.triu(G), np.triu(X.T @ X), rtol=1e-12, atol=1e-12)
    column_gram_upper(X, k, q, G, 0.0, -2.0, True)  # G - 2 X' X
    np.testing.assert_allclose(np.triu(G), np.triu(-(X.T @ X)), rtol=1e-12, atol=1e-12)
    column_gram_upper(X, k, q, G, 0.25, 1.0, True)
    np.testing.assert_allclose(np.triu(G), np.triu(np.full((q, q), 0.25)), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.tril(G, -1), np.tril(np.full((q, q), 3.0), -1))


@pytest.mark.parametrize("k", [0, 1, 30])
def test_column_gram_is_the_full_cross_product(k):
    from fastsearchlight.estimators._simd import column_gram

    X = np.random.default_rng(k).standard_normal((k, 19))
    G = np.full((19, 19), np.nan)
    column_gram(X, G)
    np.testing.assert_allclose(G, X.T @ X, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(G, G.T)


@pytest.mark.parametrize(
    ("n", "q"), [(5, 3), (33, 17), (28, 28), (162, 77), (130, 81), (130, 82), (40, 20), (141, 216)]
)
def test_column_products_upper_not_strict_writes_only_inside_the_diagonal_blocks(n, q):
    """Without ``strict`` the tiles across the diagonal write the lower entries of the
    diagonal's 8 x 8 blocks too (:data:`DIAGONAL_BLOCK`), with the symmetric product's
    values; nothing below them is touched."""
    from fastsearchlight.estimators._simd import DIAGONAL_BLOCK, column_products_upper

    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, q))
    w = rng.uniform(0.0, 1.0, size=n)
    G = np.full((q, q), np.nan)
    column_products_upper(X * w[:, None], X, n, q, G, 0.5, 1.0, False, False)
    expected = (X * w[:, None]).T @ X + 0.5
    upper = np.triu_indices(q)
    np.testing.assert_allclose(G[upper], expected[upper], rtol=1e-12, atol=1e-12)
    rows, cols = np.indices((q, q))
    block_start = rows - rows % DIAGONAL_BLOCK
    written = (rows > cols) & (cols >= block_start)
    np.testing.assert_allclose(G[written], expected[written], rtol=1e-12, atol=1e-12)
    assert np.isnan(G[cols < block_start]).all()
