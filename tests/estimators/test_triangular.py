"""The compiled solves with an upper Cholesky factor, against numpy."""

import numpy as np
import pytest

from fastsearchlight.estimators._triangular import (
    back_upper,
    cholesky_lower_rows,
    cholesky_solve_upper,
    cholesky_solve_upper_rows,
    cholesky_upper_into,
    cholesky_upper_rows,
    column_norms_upper,
    forward_upper,
    forward_upper_rows,
    inverse_rows_upper,
    solve_upper,
)


def _factor(d, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((max(90, 2 * d), d))
    H = np.eye(d) + A.T @ A
    R = np.linalg.cholesky(H).T.copy()  # upper, C-contiguous
    return H, R, rng


@pytest.mark.parametrize("d", [1, 5, 19, 76, 111])
def test_cholesky_solve_upper_matches_numpy(d):
    H, R, rng = _factor(d, d)
    R += np.tril(np.full((d, d), np.nan), -1)  # the lower triangle is not read
    b = rng.standard_normal(d)
    out = np.full(d, 5.0)
    cholesky_solve_upper(R, b, out)
    np.testing.assert_allclose(out, np.linalg.solve(H, b), rtol=1e-10, atol=1e-12)
    in_place = b.copy()
    cholesky_solve_upper(R, in_place, in_place)
    np.testing.assert_array_equal(in_place, out)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 5, 7, 8, 9, 40, 41, 42, 43])
def test_solve_upper_uses_the_leading_block_only(k):
    """Within a larger work matrix, only the leading ``k x k`` block's upper triangle and the
    first ``k`` entries are read and written (every remainder of the four-row blocks)."""
    d = 45
    H, R, rng = _factor(k, k + 100) if k else (np.zeros((0, 0)), np.zeros((0, 0)), np.random.default_rng(0))
    U = np.full((d, d), np.nan)
    U[:k, :k] = np.triu(R)
    inv = np.full(d, np.nan)
    inv[:k] = 1.0 / np.diag(R)
    b = np.concatenate([rng.standard_normal(k), np.full(d - k, np.nan)])
    out = np.full(d, -3.0)
    solve_upper(U, inv, k, b, out)
    np.testing.assert_allclose(out[:k], np.linalg.solve(H, b[:k]) if k else out[:0], rtol=1e-10)
    np.testing.assert_array_equal(out[k:], -3.0)
    z = b.copy()
    forward_upper(U, inv, k, z)
    np.testing.assert_allclose(z[:k], np.linalg.solve(np.triu(R).T, b[:k]) if k else z[:0], rtol=1e-10)
    assert np.isnan(z[k:]).all()
    x = z.copy()
    back_upper(U, inv, k, x)
    np.testing.assert_allclose(x[:k], np.linalg.solve(np.triu(R), z[:k]) if k else x[:0], rtol=1e-10)
    np.testing.assert_array_equal(x[:k], out[:k])  # solve_upper is the two in turn
    assert np.isnan(x[k:]).all()


@pytest.mark.parametrize("d", [1, 19, 111])
def test_cholesky_solve_upper_rows_solves_the_running_rows_only(d):
    """Every running row of ``B`` is solved as :func:`cholesky_solve_upper` solves it (same
    order of operations: bit for bit); the other rows are left as they were."""
    H, R, rng = _factor(d, d + 7)
    R += np.tril(np.full((d, d), np.nan), -1)  # the lower triangle is not read
    B = rng.standard_normal((5, d))
    running = np.array([True, False, True, True, False])
    out = B.copy()
    cholesky_solve_upper_rows(R, out, running)
    for q in range(5):
        if running[q]:
            one = np.empty(d)
            cholesky_solve_upper(R, B[q], one)
            np.testing.assert_array_equal(out[q], one)
            np.testing.assert_allclose(out[q], np.linalg.solve(H, B[q]), rtol=1e-10, atol=1e-12)
        else:
            np.testing.assert_array_equal(out[q], B[q])


def _raw_scale_matrix(d, seed):
    """``I + 2 X^T X`` of raw-scale samples (offset 1000: badly conditioned, as the svc
    and logistic kernels' matrices are)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=1000.0, scale=100.0, size=(d + 5, d))
    return np.eye(d) + 2.0 * X.T @ X


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 7, 8, 9, 13, 24, 25, 31, 32, 77, 111, 141, 162])
def test_blocked_cholesky_matches_lapack_within_a_larger_matrix(d):
    """The compiled Cholesky factorisations, upper (input and factor in the upper triangle)
    and lower, on the leading block of a larger work matrix: the same factor as numpy's
    (LAPACK's ``potrf``) to rounding (backward error ``|F^T F - M|`` at rounding level),
    nothing outside the block touched, and the lower variant leaves the upper triangle
    alone."""

    M = _raw_scale_matrix(d, d)
    ref = np.linalg.cholesky(M).T
    scale = np.abs(M).max()
    work = np.full((d + 3, d + 9), np.nan)
    work[:d, :d] = np.triu(M) + np.tril(np.full((d, d), np.nan), -1)  # lower: not read
    assert cholesky_upper_rows(work, d)
    U = np.triu(work[:d, :d])
    assert np.isnan(work[d:]).all() and np.isnan(work[:, d:]).all()
    below_blocks = np.tril(np.ones((d, d), bool), -1) & (np.arange(d)[:, None] // 4 != np.arange(d) // 4)
    assert np.isnan(work[:d, :d][below_blocks]).all()  # only the diagonal blocks' lower parts spoiled
    np.testing.assert_allclose(U.T @ U, M, rtol=0, atol=1e-14 * scale)
    np.testing.assert_allclose(U, ref, rtol=0, atol=1e-11 * np.abs(ref).max())

    work = np.full((d + 3, d + 9), np.nan)
    work[:d, :d] = np.tril(M) + np.triu(np.full((d, d), np.nan), 1)  # upper: not read
    assert cholesky_lower_rows(work, d)
    L = np.tril(work[:d, :d])
    assert np.isnan(work[:d, :d][np.triu_indices(d, 1)]).all()
    assert np.isnan(work[d:]).all() and np.isnan(work[:, d:]).all()
    np.testing.assert_allclose(L @ L.T, M, rtol=0, atol=1e-14 * scale)

    R = np.full((d, d), np.nan)
    assert cholesky_upper_into(M, R)
    np.testing.assert_array_equal(np.triu(R), U)
    in_place = M.copy()
    assert cholesky_upper_into(in_place, in_place)
    np.testing.assert_array_equal(np.triu(in_place), U)


@pytest.mark.parametrize(("d", "bad"), [(11, 0), (11, 3), (11, 6), (11, 10), (40, 0), (40, 21), (40, 39)])
def test_blocked_cholesky_reports_a_matrix_not_positive_definite(d, bad):
    """A negative or NaN pivot, small matrices (rows solved by substitution) and larger ones
    (rows solved in tiles)."""

    M = _raw_scale_matrix(d, 0)
    M[bad, bad] = -1.0
    assert not cholesky_upper_into(M, np.empty((d, d)))
    assert not cholesky_lower_rows(M.copy(), d)
    M[bad, bad] = np.nan
    assert not cholesky_upper_into(M, np.empty((d, d)))


@pytest.mark.parametrize(("n", "k"), [(1, 1), (3, 2), (5, 4), (7, 5), (9, 8), (162, 75), (130, 77), (13, 23)])
def test_forward_upper_rows_solves_with_the_factor_left_by_the_factorisation(n, k):
    """Rows ``z`` of ``Z[:n]`` become ``U^-T z`` for the factor of the blocked factorisation
    (whose lower triangle the solve fills with the transpose); rows past ``n`` are not
    touched."""

    M = _raw_scale_matrix(k, n)
    U = np.empty((k, k))
    assert cholesky_upper_into(M, U)
    rng = np.random.default_rng(k)
    X = rng.normal(loc=1000.0, scale=100.0, size=(n + 2, k))
    Z = X.copy()
    forward_upper_rows(U, Z, n)
    expected = np.linalg.solve(np.triu(U).T, X[:n].T).T
    np.testing.assert_allclose(Z[:n], expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_array_equal(Z[n:], X[n:])


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 7, 8, 9, 19, 76, 111])
def test_inverse_rows_upper_matches_numpy(d):
    """``V = U^-1`` in the upper triangle (its lower triangle zeroed, whatever was there),
    the lower triangle of ``U`` not read: ``V V^T`` is the inverse of ``U^T U``, on every
    remainder of the four-row blocks."""
    H, R, _ = _factor(d, d + 7)
    U = R + np.tril(np.full((d, d), np.nan), -1)
    V = np.full((d + 3, d), np.nan)
    inverse_rows_upper(U, 1.0 / np.diag(R), V)
    np.testing.assert_allclose(V[:d], np.linalg.inv(R), rtol=1e-10, atol=1e-13)
    assert np.all(np.tril(V[:d], -1) == 0.0)
    assert np.isnan(V[d:]).all()
    np.testing.assert_allclose(V[:d] @ V[:d].T, np.linalg.inv(H), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize(("k", "m"), [(1, 1), (3, 2), (4, 16), (5, 17), (9, 33), (80, 32), (77, 27)])
def test_column_norms_upper_matches_numpy(k, m):
    """``|U^-T b|`` for every column of ``B``, with ``U`` left by the blocked factorisation
    (its lower triangle holding other values, not read) and work space wider than needed;
    ``B`` is not changed."""
    M = _raw_scale_matrix(k, 2 * k + 3)
    U = np.full((k, k), np.nan)
    assert cholesky_upper_into(M, U)
    U[np.tril_indices(k, -1)] = 1e30
    rng = np.random.default_rng(k + m)
    B = rng.normal(loc=1000.0, scale=100.0, size=(k, m))
    before = B.copy()
    out = np.empty(m)
    column_norms_upper(U, B, np.empty((k + 1, m + 5)), out)
    expected = np.linalg.norm(np.linalg.solve(np.triu(U).T, B), axis=0)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(B, before)
