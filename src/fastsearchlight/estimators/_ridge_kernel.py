"""Compiled ridge classifier of every fold, sphere by sphere, from the voxel-major data.

:func:`ridge_block` goes from each sphere's samples to the decision values of every fold
on its test samples without materialising anything larger than one sphere's samples and
its cross-products (the feature-space normal equations, fewer features than training
samples).

The samples are grouped into *role blocks*: samples that train the same folds (and are
tested by the same folds) are contiguous. A fold's training cross-products are the sum of
those of its training blocks, or the total minus those of the other blocks, whichever is
shorter (:func:`role_blocks`). Every inner product is computed in a frame centred on the
sphere's mean sample when an intercept is fitted (the fitted model does not depend on it),
which keeps the cross-products accurate on raw BOLD values.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..cv import CVPlan
from ._lapack import cholesky_upper, gram_into
from ._triangular import solve_upper

__all__ = ["RoleBlocks", "ridge_block", "role_blocks"]

#: sums may be reordered (vectorised): the results stay exact to rounding; no assumptions
#: on NaN or infinities
_FASTMATH = {"reassoc", "contract"}


class RoleBlocks:
    """Grouping of the samples by their role in every fold (see :func:`role_blocks`).

    Attributes
    ----------
    order : ndarray of int64 (n_samples,)
        Sample indices in block order.
    bounds : ndarray of int64 (n_blocks + 1,)
        Block ``b`` holds positions ``bounds[b]:bounds[b + 1]`` of ``order``.
    used : ndarray of int64 (n_used,)
        The blocks that train at least one fold (their sum is the total).
    fold_blocks : ndarray of int64 (n_folds, n_used)
        Per fold, the blocks to add (or to subtract from the total), padded with -1.
    subtract : ndarray of bool (n_folds,)
        Whether a fold's statistics are the total minus its ``fold_blocks``.
    n_train : ndarray of float64 (n_folds,)
        Training samples of each fold.
    test_pos : ndarray of int64 (n_folds, max_test)
        Per fold, the block-order positions of its test samples in plan order, padded
        with 0.
    n_test : ndarray of int64 (n_folds,)
    """

    def __init__(self, order, bounds, used, fold_blocks, subtract, n_train, test_pos, n_test) -> None:
        self.order = order
        self.bounds = bounds
        self.used = used
        self.fold_blocks = fold_blocks
        self.subtract = subtract
        self.n_train = n_train
        self.test_pos = test_pos
        self.n_test = n_test


def role_blocks(plan: CVPlan) -> RoleBlocks:
    """Group the samples of a CV plan into role blocks.

    Parameters
    ----------
    plan : CVPlan

    Returns
    -------
    RoleBlocks
    """
    n, n_folds = plan.n_samples, plan.n_folds
    train = plan.train_masks  # (F, n)
    test = np.zeros((n_folds, n), dtype=bool)
    for f, te in enumerate(plan.test_indices):
        test[f, te] = True
    role = np.concatenate([train, test]).T.astype(np.int8)
    _, role_id = np.unique(role, axis=0, return_inverse=True)
    role_id = np.asarray(role_id).ravel()
    order = np.argsort(role_id, kind="stable").astype(np.int64)
    sorted_id = role_id[order]
    starts = np.flatnonzero(np.r_[True, sorted_id[1:] != sorted_id[:-1]])
    bounds = np.append(starts, n).astype(np.int64)
    block_train = train[:, order[starts]]  # (F, n_blocks)
    used = np.flatnonzero(block_train.any(axis=0)).astype(np.int64)
    fold_blocks = np.full((n_folds, len(used)), -1, dtype=np.int64)
    subtract = np.zeros(n_folds, dtype=bool)
    for f in range(n_folds):
        inc = used[block_train[f, used]]
        exc = used[~block_train[f, used]]
        subtract[f] = len(exc) < len(inc)
        rows = exc if subtract[f] else inc
        fold_blocks[f, : len(rows)] = rows
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    n_test = np.array([len(te) for te in plan.test_indices], dtype=np.int64)
    test_pos = np.zeros((n_folds, max(1, int(n_test.max()))), dtype=np.int64)
    for f, te in enumerate(plan.test_indices):
        test_pos[f, : len(te)] = inv[np.asarray(te)]
    return RoleBlocks(
        order=order,
        bounds=bounds,
        used=used,
        fold_blocks=fold_blocks,
        subtract=subtract,
        n_train=train.sum(axis=1).astype(np.float64),
        test_pos=test_pos,
        n_test=n_test,
    )


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def gather_sphere(Xv, rows, order, Xs, centre, mu):
    """The sphere's samples ``Xs[i, j] = Xv[rows[j], order[i]]`` from the voxel-major data
    (samples in the order of their role in the folds); when ``centre``, shifted by their mean
    over all samples, kept in ``mu`` (with an intercept, an exact reparametrisation that
    removes the raw values' common offset). Shared by the ridge kernels."""
    n, p = Xs.shape
    for i in range(n):
        src = order[i]
        for j in range(p):
            Xs[i, j] = Xv[rows[j], src]
    if centre:
        for j in range(p):
            mu[j] = 0.0
        for i in range(n):
            for j in range(p):
                mu[j] += Xs[i, j]
        for j in range(p):
            mu[j] /= n
        for i in range(n):
            for j in range(p):
                Xs[i, j] -= mu[j]


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def block_products(X, bounds, b, grams, sums):
    """Block ``b``'s rows ``X[bounds[b]:bounds[b + 1]]``: their cross-products into
    ``grams[b]`` (both triangles, BLAS) and column sums into ``sums[b]``; returns the rows.
    Shared by the LDA and ridge kernels."""
    Xb = X[bounds[b] : bounds[b + 1]]
    gram_into(Xb, grams[b])
    for j in range(X.shape[1]):
        acc = 0.0
        for i in range(Xb.shape[0]):
            acc += Xb[i, j]
        sums[b, j] = acc
    return Xb


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def fold_products(total_g, total_s, grams, sums, blocks, subtract, G, s):
    """A fold's cross-products ``G`` and sums ``s`` from the role blocks ``blocks`` (ended by
    -1): the totals minus those blocks when ``subtract``, else the blocks' sum. Shared by the
    LDA and ridge kernels."""
    if subtract:
        G[:] = total_g
        s[:] = total_s
        for b in blocks:
            if b < 0:
                break
            G -= grams[b]
            s -= sums[b]
    else:
        G[:] = 0.0
        s[:] = 0.0
        for b in blocks:
            if b < 0:
                break
            G += grams[b]
            s += sums[b]


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _cholesky_solve(A, R):
    """``R = A^-1 R`` in place for a symmetric positive definite ``A`` (LAPACK's ``potrf``
    called in place on a copy, :mod:`._lapack`; ``gesv`` when it fails), column by column of
    ``R`` by the compiled solves of :mod:`._triangular`."""
    p, k = R.shape
    F = np.empty((p, p))
    if not cholesky_upper(A, F):  # not positive definite to rounding: LU
        R[:, :] = np.linalg.solve(A, R)
        return
    inv = np.empty(p)
    for i in range(p):
        inv[i] = 1.0 / F[i, i]
    col = np.empty(p)  # (a column of R, contiguous)
    for q in range(k):
        for i in range(p):
            col[i] = R[i, q]
        solve_upper(F, inv, p, col, col)
        for i in range(p):
            R[i, q] = col[i]


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def ridge_block(
    Xv, vox, order, bounds, used, fold_blocks, subtract, n_train, test_pos, n_test, targets, alpha,
    fit_intercept,
):  # fmt: skip
    """Ridge decisions of every fold on its test samples, for a block of spheres.

    Sphere by sphere: its samples gathered from the data in block order (centred on
    their mean with an intercept), the cross-products and target products of each used
    role block, and per fold the training normal equations (centred on the training mean
    with an intercept), their Cholesky solution and the test decisions.

    Parameters
    ----------
    Xv : ndarray (n_voxels, n)
        Voxel-major data (float64, C-contiguous).
    vox : ndarray of int64 (B, p)
        Each sphere's rows of ``Xv``.
    order, bounds, used, fold_blocks, subtract, n_train, test_pos, n_test
        As :class:`RoleBlocks`.
    targets : ndarray (n, Q)
        Targets of every problem, samples in block order.
    alpha : float
    fit_intercept : bool

    Returns
    -------
    ndarray (B, n_folds, max_test, Q)
        ``(x - mean) . coef + mean(y)`` (``x . coef`` without an intercept) of each fold's
        test samples, in plan order (zeros beyond ``n_test``).
    """
    B, p = vox.shape
    n = Xv.shape[1]
    Q = targets.shape[1]
    F = fold_blocks.shape[0]
    nb = bounds.shape[0] - 1
    out = np.zeros((B, F, test_pos.shape[1], Q))
    Xs = np.empty((n, p))
    grams = np.zeros((nb, p, p))
    xy = np.zeros((nb, p, Q))
    sx = np.zeros((nb, p))
    sy = np.zeros((nb, Q))
    total_g = np.empty((p, p))
    total_xy = np.empty((p, Q))
    total_x = np.empty(p)
    total_y = np.empty(Q)
    for b in used:
        for q in range(Q):
            acc = 0.0
            for i in range(bounds[b], bounds[b + 1]):
                acc += targets[i, q]
            sy[b, q] = acc
    total_y[:] = 0.0
    for b in used:
        total_y += sy[b]
    A = np.empty((p, p))
    R = np.empty((p, Q))
    mu = np.empty(p)
    ybar = np.empty(Q)
    for sph in range(B):
        gather_sphere(Xv, vox[sph], order, Xs, fit_intercept, mu)
        total_g[:, :] = 0.0
        total_xy[:, :] = 0.0
        total_x[:] = 0.0
        for b in used:
            Xb = block_products(Xs, bounds, b, grams, sx)
            xy[b] = np.dot(Xb.T, targets[bounds[b] : bounds[b + 1]])
            total_g += grams[b]
            total_xy += xy[b]
            total_x += sx[b]
        for f in range(F):
            fold_products(total_g, total_x, grams, sx, fold_blocks[f], subtract[f], A, mu)
            fold_products(total_xy, total_y, xy, sy, fold_blocks[f], subtract[f], R, ybar)
            if fit_intercept:
                # about the training mean: A - s s' / n, X'Y - s ybar'
                nf = n_train[f]
                for j in range(p):
                    mu[j] /= nf
                for q in range(Q):
                    ybar[q] /= nf
                for r in range(p):
                    for c in range(p):
                        A[r, c] -= nf * mu[r] * mu[c]
                    for q in range(Q):
                        R[r, q] -= nf * mu[r] * ybar[q]
            for j in range(p):
                A[j, j] += alpha
            _cholesky_solve(A, R)
            for t in range(n_test[f]):
                x = Xs[test_pos[f, t]]
                for q in range(Q):
                    acc = 0.0
                    if fit_intercept:
                        for j in range(p):
                            acc += (x[j] - mu[j]) * R[j, q]
                        acc += ybar[q]
                    else:
                        for j in range(p):
                            acc += x[j] * R[j, q]
                    out[sph, f, t, q] = acc
    return out
