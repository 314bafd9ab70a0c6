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

A sphere that shares at least half its voxels with the sphere before it (neighbours in scan
order: at W1 10 mm 81% of the spheres, a quarter of their voxels new) keeps the shared
voxels in the slots they had there (:func:`sphere_slots`: the order of the voxels in the
kernel's arrays), so that their block products are already in place, and forms only the
added voxels' rows and columns (:func:`block_products_added`, the same to the bit as the
whole product on the same slots). Captured calls of 6,000 neighbouring W1 10 mm spheres
(one thread, three rounds alternated call by call with the whole products): this kernel
0.932 of the time, ``RidgeClassifierCV``'s 0.930, decisions within 4e-11 (relative) of
before (the features in another order: their rounding), the same chosen alphas and
near-tie flags.
"""

from __future__ import annotations

import numpy as np

from ..cv import CVPlan
from ._compiled import kernel
from ._rows import gather_samples
from ._simd import TILE_COLUMNS, column_gram, column_gram_upper, mirror_below_blocks, outer_tile8
from ._triangular import cholesky_upper_into, solve_upper

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
    runs : ndarray of int64 (n_runs, 3)
        ``order`` as runs of consecutive samples: ``(first sample, first position,
        length)`` (:func:`order_runs`).
    test_span : ndarray of int64 (n_folds, 2)
        Per fold, the first and one past the last block-order position of its test samples.
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
        self.runs = order_runs(order)
        self.test_span = np.zeros((len(n_test), 2), dtype=np.int64)
        for f, k in enumerate(n_test):
            if k:
                self.test_span[f] = test_pos[f, :k].min(), test_pos[f, :k].max() + 1


def order_runs(order: np.ndarray) -> np.ndarray:
    """A sample order as runs of consecutive samples, ``(first sample, first position,
    length)`` per run (one run when the order is the identity), so that gathering a voxel's
    samples in that order copies contiguous pieces.

    Parameters
    ----------
    order : ndarray of int (n,)

    Returns
    -------
    ndarray of int64 (n_runs, 3)
    """
    order = np.asarray(order, dtype=np.int64)
    if not len(order):
        return np.zeros((0, 3), dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, np.diff(order) != 1])
    lengths = np.diff(np.r_[starts, len(order)])
    return np.column_stack([order[starts], starts, lengths]).astype(np.int64)


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


@kernel(nogil=True, fastmath=_FASTMATH)
def gather_sphere(Xv, rows, order, Xs, centre, mu):
    """The sphere's samples ``Xs[i, j] = Xv[rows[j], order[i]]`` from the voxel-major data
    (samples in the order of their role in the folds); when ``centre``, shifted by their mean
    over all samples, kept in ``mu`` (with an intercept, an exact reparametrisation that
    removes the raw values' common offset). Shared by the ridge kernels."""
    n, p = Xs.shape
    gather_samples(Xv, rows, order, Xs)
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


@kernel(nogil=True, fastmath=_FASTMATH)
def block_products(X, bounds, b, grams, sums, mirror=True):
    """Block ``b``'s rows ``X[bounds[b]:bounds[b + 1]]``: their cross-products into
    ``grams[b]`` (outer-product tiles, :mod:`._simd`; both triangles, or the upper one only
    when not ``mirror``) and column sums into ``sums[b]``; returns the rows. Shared by the
    LDA and ridge kernels."""
    Xb = X[bounds[b] : bounds[b + 1]]
    if mirror:
        column_gram(Xb, grams[b])
    else:
        column_gram_upper(Xb, Xb.shape[0], Xb.shape[1], grams[b], 0.0)
    for j in range(X.shape[1]):
        acc = 0.0
        for i in range(Xb.shape[0]):
            acc += Xb[i, j]
        sums[b, j] = acc
    return Xb


@kernel(nogil=True, fastmath=_FASTMATH)
def accumulate(total, part, first):
    """``total = part`` when ``first``, else ``total += part``, for C-contiguous arrays of one
    shape, as one flat loop (numba's array expressions on 2-d arrays are slower)."""
    into = total.reshape(-1)
    fro = part.reshape(-1)
    if first:
        for i in range(into.shape[0]):
            into[i] = fro[i]
    else:
        for i in range(into.shape[0]):
            into[i] += fro[i]


@kernel(nogil=True, fastmath=_FASTMATH)
def fold_sum(total, parts, blocks, subtract, out):
    """A fold's vector ``out`` from the role blocks' ``parts`` (see :func:`fold_products`)."""
    m = out.shape[0]
    for j in range(m):
        out[j] = total[j] if subtract else 0.0
    for k in range(blocks.shape[0]):  # (indexed: an iterator is reference-counted)
        b = blocks[k]
        if b < 0:
            break
        if subtract:
            for j in range(m):
                out[j] -= parts[b, j]
        else:
            for j in range(m):
                out[j] += parts[b, j]


@kernel(nogil=True, fastmath=_FASTMATH)
def fold_products(total_g, total_s, grams, sums, blocks, subtract, G, s):
    """A fold's cross-products ``G`` and sums ``s`` from the role blocks ``blocks`` (ended by
    -1): the totals minus those blocks when ``subtract``, else the blocks' sum. Shared by the
    LDA and ridge kernels. (Flat loops over the C-contiguous arrays, the copy and the first
    block in one pass: numba's array expressions on 2-d arrays took 2.5 times longer.)"""
    n_blocks = 0
    while n_blocks < blocks.shape[0] and blocks[n_blocks] >= 0:
        n_blocks += 1
    out = G.reshape(-1)
    total = total_g.reshape(-1)
    if n_blocks == 0:
        for i in range(out.shape[0]):
            out[i] = total[i] if subtract else 0.0
    else:
        first = grams[blocks[0]].reshape(-1)
        if subtract:
            for i in range(out.shape[0]):
                out[i] = total[i] - first[i]
        else:
            for i in range(out.shape[0]):
                out[i] = first[i]
        for k in range(1, n_blocks):
            more = grams[blocks[k]].reshape(-1)
            if subtract:
                for i in range(out.shape[0]):
                    out[i] -= more[i]
            else:
                for i in range(out.shape[0]):
                    out[i] += more[i]
    fold_sum(total_s, sums, blocks, subtract, s)


@kernel(nogil=True, fastmath=_FASTMATH)
def _cholesky_solve(A, R):
    """``R = A^-1 R`` in place for a symmetric positive definite ``A`` given by its upper
    triangle (the blocked Cholesky of :mod:`._triangular` on a copy; ``gesv`` when it
    fails), column by column of ``R`` by the compiled solves of :mod:`._triangular`."""
    p, k = R.shape
    F = np.empty((p, p))
    if not cholesky_upper_into(A, F):  # not positive definite to rounding: LU on the symmetric
        for r in range(p):  # matrix of A's upper triangle
            for c in range(r):
                F[r, c] = A[c, r]
            for c in range(r, p):
                F[r, c] = A[r, c]
        R[:, :] = np.linalg.solve(F, R)
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


@kernel(nogil=True, fastmath=_FASTMATH)
def gather_rows(Xv, rows, runs, Xt, centre, mu):
    """The sphere's samples voxel-major, ``Xt[j, i] = Xv[rows[j], order[i]]`` (samples in
    the order of their role in the folds, given as the runs of :func:`order_runs`: each
    voxel's row is copied in contiguous pieces); when ``centre``, each row shifted by its
    mean over all samples, kept in ``mu`` (with an intercept, an exact reparametrisation
    that removes the raw values' common offset)."""
    p, n = Xt.shape
    for j in range(p):
        v = rows[j]
        m = 0.0
        if centre:
            acc = 0.0
            for i in range(n):
                acc += Xv[v, i]
            m = acc / n
            mu[j] = m
        for k in range(runs.shape[0]):
            src, dst, length = runs[k, 0], runs[k, 1], runs[k, 2]
            # (1-d slices: numba's loops over offset 2-d indices did not vectorise)
            into = Xt[j, dst : dst + length]
            fro = Xv[v, src : src + length]
            for i in range(length):
                into[i] = fro[i] - m


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _sample_major(Xt, lo, hi):
    """Positions ``lo:hi`` of the voxel-major samples ``Xt`` ``(p, n)``, sample-major."""
    p = Xt.shape[0]
    T = np.empty((hi - lo, p))
    for j in range(p):
        row = Xt[j, lo:hi]
        for i in range(hi - lo):
            T[i, j] = row[i]
    return T


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _block_sums(Xt, lo, hi, out):
    """``out[j]``: the sum of row ``j`` of ``Xt`` over positions ``lo:hi``."""
    for j in range(Xt.shape[0]):
        row = Xt[j, lo:hi]
        acc = 0.0
        for i in range(hi - lo):
            acc += row[i]
        out[j] = acc


@kernel(nogil=True, fastmath=_FASTMATH)
def block_products_rows(Xt, bounds, b, grams, sums, mirror=False):
    """Block ``b``'s samples ``Xt[:, bounds[b]:bounds[b + 1]]`` (voxel-major): the upper
    triangle of their cross-products into ``grams[b]`` (both triangles when ``mirror``) and
    their sums into ``sums[b]``.

    The block is copied sample-major and its cross-products formed in the outer-product
    tiles of :func:`._simd.column_gram_upper` (BLAS's ``syrk`` on the voxel-major rows before
    stop 72). Captured kernel calls of 6,000 neighbouring W1 10 mm spheres (blocks of 54
    samples, 76 columns), both versions alternated in one process, the same chosen alphas
    and decisions within 5e-14: ``RidgeClassifier``'s kernel 0.90 of the time,
    ``RidgeClassifierCV``'s 0.97. Entries below the diagonal are left as they were, but
    for those of the diagonal's 8 x 8 blocks (:data:`._simd.DIAGONAL_BLOCK`), which get the
    symmetric product's values."""
    lo, hi = bounds[b], bounds[b + 1]
    G = grams[b]
    p = Xt.shape[0]
    T = _sample_major(Xt, lo, hi)
    column_gram_upper(T, hi - lo, p, G, 0.0, 1.0, False, False)
    if mirror:
        mirror_below_blocks(G, p)
    _block_sums(Xt, lo, hi, sums[b])


@kernel(nogil=True)
def sphere_slots(rows, prev_rows, prev_slot, slot, slot_rows, added):
    """The order in which a sphere's voxels enter its kernel's arrays (their *slots*), so
    that the voxels it shares with the sphere before keep that sphere's slots.

    ``rows``: the sphere's voxels, ``prev_rows`` the sphere before's (both in increasing
    order; empty: none), ``prev_slot[i]`` the slot of ``prev_rows[i]``. Writes ``slot[j]``,
    the slot of ``rows[j]``, and ``slot_rows[s]``, the voxel in slot ``s``. Where the two
    spheres (of the same size) share at least half their voxels, every shared voxel keeps its
    slot and the added voxels take the freed ones, which go into ``added[:k]`` (in
    increasing order); returns ``k``. Else every slot is its voxel's position (``slot[j] =
    j``) and it returns -1: the sphere's products are formed afresh."""
    p, q = rows.shape[0], prev_rows.shape[0]
    ordered = q == p
    for j in range(1, p):
        ordered = ordered and rows[j] > rows[j - 1]
    for j in range(1, q):
        ordered = ordered and prev_rows[j] > prev_rows[j - 1]
    shared = 0
    taken = np.zeros(p, dtype=np.bool_)
    if ordered:
        a = 0
        for j in range(p):
            slot[j] = -1
            v = rows[j]
            while a < q and prev_rows[a] < v:
                a += 1
            if a < q and prev_rows[a] == v:
                slot[j] = prev_slot[a]
                taken[prev_slot[a]] = True
                shared += 1
    if not ordered or 2 * shared < p:
        for j in range(p):
            slot[j] = j
            slot_rows[j] = rows[j]
        return -1
    k = 0
    for s in range(p):
        if not taken[s]:
            added[k] = s
            k += 1
    r = 0
    for j in range(p):
        if slot[j] < 0:
            slot[j] = added[r]
            r += 1
        slot_rows[slot[j]] = rows[j]
    return k


@kernel(nogil=True, fastmath=_FASTMATH)
def block_products_added(Xt, bounds, b, grams, sums, added):
    """:func:`block_products_rows` (the upper triangle of ``grams[b]`` and ``sums[b]``) where
    only the voxels in the slots ``added`` changed since ``grams[b]`` was formed
    (:func:`sphere_slots`): their rows and columns are formed again, the rest is kept.

    The products of two voxels kept in their slots are the same numbers on both spheres.
    The added voxels' products with every slot are formed in the same outer-product tiles
    (:func:`._simd.outer_tile8`: each entry the same chain of multiply-adds over the
    block's samples as in :func:`._simd.column_gram_upper`, the two factors of each product
    in either order), so the upper triangle is the same to the bit as
    :func:`block_products_rows`'s on the same ``Xt``. Below the diagonal nothing is
    written."""
    p = Xt.shape[0]
    k = added.shape[0]
    lo, hi = bounds[b], bounds[b + 1]
    m = hi - lo
    G = grams[b]
    T = _sample_major(Xt, lo, hi)
    Tn = np.empty((m, k))  # the added slots' samples
    for r in range(k):
        row = Xt[added[r], lo:hi]
        for i in range(m):
            Tn[i, r] = row[i]
    P = np.empty((k, p))  # their products with every slot
    for c0 in range(0, p, TILE_COLUMNS):
        for r0 in range(0, k, 8):
            outer_tile8(
                Tn, r0, k, T, c0, p, m, P, r0 * p + c0, p, min(8, k - r0), min(TILE_COLUMNS, p - c0), 1.0, False
            )  # fmt: skip
    for r in range(k):  # the added slot's column above the diagonal, then its row
        a = added[r]
        for t in range(a):
            G[t, a] = P[r, t]
        for t in range(a, p):
            G[a, t] = P[r, t]
    _block_sums(Xt, lo, hi, sums[b])


@kernel(nogil=True, fastmath=_FASTMATH)
def block_target_sums(Yt, bounds, used, sy, total_y):
    """Each used role block's sums of the targets, ``sy[b, q]`` over its positions, added
    to ``total_y`` (targets ``Yt`` ``(Q, n)``). Shared by the ridge kernels."""
    for k in range(used.shape[0]):
        b = used[k]
        for q in range(Yt.shape[0]):
            acc = 0.0
            for i in range(bounds[b], bounds[b + 1]):
                acc += Yt[q, i]
            sy[b, q] = acc
            total_y[q] += acc


@kernel(nogil=True, fastmath=_FASTMATH)
def block_target_products(Xt, Yt, bounds, b, xy):
    """Block ``b``'s products of its samples with the targets, ``xy[b, q, r] = sum_i
    Xt[r, i] Yt[q, i]`` over its positions ``i`` (voxel-major samples ``Xt`` ``(p, n)``,
    targets ``Yt`` ``(Q, n)``). Shared by the ridge kernels."""
    lo, hi = bounds[b], bounds[b + 1]
    for q in range(Yt.shape[0]):
        yq = Yt[q, lo:hi]
        for r in range(Xt.shape[0]):
            xr = Xt[r, lo:hi]
            acc = 0.0
            for i in range(hi - lo):
                acc += xr[i] * yq[i]
            xy[b, q, r] = acc


@kernel(nogil=True, fastmath=_FASTMATH)
def ridge_block(
    Xv, vox, runs, bounds, used, fold_blocks, subtract, n_train, test_pos, n_test, test_span,
    targets, alpha, fit_intercept,
):  # fmt: skip
    """Ridge decisions of every fold on its test samples, for a block of spheres.

    Sphere by sphere: its samples gathered voxel-major from the data in block order
    (centred on their mean with an intercept), the cross-products and target products of
    each used role block, and per fold the training normal equations (centred on the
    training mean with an intercept; their upper triangle), their Cholesky solution and
    the test decisions.

    Parameters
    ----------
    Xv : ndarray (n_voxels, n)
        Voxel-major data (float64, C-contiguous).
    vox : ndarray of int64 (B, p)
        Each sphere's rows of ``Xv``.
    runs, bounds, used, fold_blocks, subtract, n_train, test_pos, n_test, test_span
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
    Xt = np.empty((p, n))
    Yt = np.ascontiguousarray(targets.T)  # (Q, n)
    grams = np.zeros((nb, p, p))
    xy = np.zeros((nb, Q, p))  # each block's products X'Y, transposed
    sx = np.zeros((nb, p))
    sy = np.zeros((nb, Q))
    total_g = np.zeros((p, p))
    total_xy = np.empty((Q, p))
    total_x = np.empty(p)
    total_y = np.zeros(Q)
    block_target_sums(Yt, bounds, used, sy, total_y)
    A = np.zeros((p, p))
    Rt = np.empty((Q, p))
    mu = np.empty(p)
    ybar = np.empty(Q)
    inv = np.empty(p)
    dspan = np.empty(n)
    # the sphere's voxels in slots that keep those shared with the sphere before in place
    # (:func:`sphere_slots`), so that only the added ones' products are formed
    slot = np.empty(p, dtype=np.int64)
    prev_slot = np.empty(p, dtype=np.int64)
    slot_rows = np.empty(p, dtype=np.int64)
    added = np.empty(p, dtype=np.int64)
    for sph in range(B):
        n_added = sphere_slots(
            vox[sph], vox[sph - 1] if sph > 0 else vox[sph, :0], prev_slot, slot, slot_rows, added
        )
        prev_slot[:] = slot
        gather_rows(Xv, slot_rows, runs, Xt, fit_intercept, mu)
        for k in range(used.shape[0]):
            b = used[k]
            if n_added < 0:
                block_products_rows(Xt, bounds, b, grams, sx)
            else:
                block_products_added(Xt, bounds, b, grams, sx, added[:n_added])
            accumulate_upper(total_g, grams[b], k == 0)
            block_target_products(Xt, Yt, bounds, b, xy)
            accumulate(total_xy, xy[b], k == 0)
            accumulate(total_x, sx[b], k == 0)
        for f in range(F):
            blocks, sub = fold_blocks[f], subtract[f]
            fold_products(total_xy, total_y, xy, sy, blocks, sub, Rt, ybar)
            fold_sum(total_x, sx, blocks, sub, mu)
            nf = n_train[f]
            if fit_intercept:
                # about the training mean: A - s s' / n, X'Y - s ybar'
                for j in range(p):
                    mu[j] /= nf
                for q in range(Q):
                    ybar[q] /= nf
                    for j in range(p):
                        Rt[q, j] -= nf * mu[j] * ybar[q]
            fold_matrix_upper(total_g, grams, blocks, sub, nf if fit_intercept else 0.0, mu, alpha, A)
            if cholesky_upper_into(A, A):
                for i in range(p):
                    inv[i] = 1.0 / A[i, i]
                for q in range(Q):
                    solve_upper(A, inv, p, Rt[q], Rt[q])
            else:  # not positive definite to rounding (the factorisation stopped): LU
                fold_matrix_upper(total_g, grams, blocks, sub, nf if fit_intercept else 0.0, mu, alpha, A)
                for r in range(p):
                    for c in range(r):
                        A[r, c] = A[c, r]
                Rt[:, :] = np.linalg.solve(A, Rt.T).T
            # decisions of the samples spanning the fold's test positions, voxel by voxel
            lo, hi = test_span[f, 0], test_span[f, 1]
            for q in range(Q):
                base = ybar[q] if fit_intercept else 0.0
                if fit_intercept:
                    for j in range(p):
                        base -= mu[j] * Rt[q, j]
                for i in range(hi - lo):
                    dspan[i] = base
                for j in range(p):
                    r = Rt[q, j]
                    xj = Xt[j, lo:hi]
                    for i in range(hi - lo):
                        dspan[i] += xj[i] * r
                for t in range(n_test[f]):
                    out[sph, f, t, q] = dspan[test_pos[f, t] - lo]
    return out


@kernel(nogil=True, fastmath=_FASTMATH)
def accumulate_upper(total, part, first):
    """``total = part`` when ``first``, else ``total += part``, on the upper triangles of
    square C-contiguous arrays (row slices from the diagonal; shared by the LDA and ridge
    kernels)."""
    if first:  # (the branch outside the loops: see fold_matrix_upper)
        for r in range(total.shape[0]):
            into, fro = total[r, r:], part[r, r:]
            for k in range(into.shape[0]):
                into[k] = fro[k]
    else:
        for r in range(total.shape[0]):
            into, fro = total[r, r:], part[r, r:]
            for k in range(into.shape[0]):
                into[k] += fro[k]


@kernel(nogil=True, fastmath=_FASTMATH)
def fold_matrix_upper(total_g, grams, blocks, subtract, nf, mu, alpha, A):
    """A fold's normal equations ``A = G - nf mu mu' + alpha I`` on their upper triangle (all
    a Cholesky factorisation reads; the ``RidgeClassifierCV`` kernel mirrors it), with ``G``
    the fold's cross-products from the role blocks (see :func:`fold_products`; only their
    upper triangles need hold them) and ``mu`` its training mean (``nf =
    0`` without an intercept; LDA's class cross-products with ``nf = alpha = 0``). With one
    block (k-fold, leave-one-group-out) each row takes one fused loop. Row slices from the
    diagonal, in loops without branches: with a branch inside the row loop numba kept the
    slices' reference counts (an atomic increment and decrement each): 8.7% of an LDA profile
    in LDA's first version of this, 12.3% with the ``subtract`` test moved into the fused
    loop. (The blocks are indexed rather than iterated: an array's iterator is
    reference-counted too.)"""
    p = A.shape[0]
    n_blocks = 0
    while n_blocks < blocks.shape[0] and blocks[n_blocks] >= 0:
        n_blocks += 1
    if n_blocks == 1 and subtract:  # k-fold, leave-one-group-out: one fused loop per row
        g = grams[blocks[0]]
        for r in range(p):
            nm = nf * mu[r]
            out, tot, fro, m = A[r, r:], total_g[r, r:], g[r, r:], mu[r:]
            for c in range(p - r):
                out[c] = (tot[c] - fro[c]) - nm * m[c]
            A[r, r] += alpha
        return
    if subtract:
        for r in range(p):
            out, tot = A[r, r:], total_g[r, r:]
            for c in range(p - r):
                out[c] = tot[c]
    else:
        for r in range(p):
            out = A[r, r:]
            for c in range(p - r):
                out[c] = 0.0
    for k in range(n_blocks):
        g = grams[blocks[k]]
        if subtract:
            for r in range(p):
                out, fro = A[r, r:], g[r, r:]
                for c in range(p - r):
                    out[c] -= fro[c]
        else:
            for r in range(p):
                out, fro = A[r, r:], g[r, r:]
                for c in range(p - r):
                    out[c] += fro[c]
    if nf == 0.0 and alpha == 0.0:
        return
    for r in range(p):
        nm = nf * mu[r]
        out, m = A[r, r:], mu[r:]
        for c in range(p - r):
            out[c] -= nm * m[c]
        A[r, r] += alpha
