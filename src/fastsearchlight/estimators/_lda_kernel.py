"""Compiled linear discriminant analysis of every fold, sphere by sphere, from the
voxel-major data (the feature-space covariances).

:func:`lda_block` goes from each sphere's samples to the decision values of every fold on
its test samples: the samples in the block order of
:class:`~fastsearchlight.estimators._fold_statistics.FoldBlocks`, each relative to the
reference (first) sample of its class (:func:`._fold_statistics.gather_centered`), the
cross-products of every block, each fold's class statistics from them, the shrunk pooled
covariance (:class:`~fastsearchlight.estimators.discriminant.BatchedLDA`, whose formulas it
follows), a Cholesky solve and the test decisions. Nothing larger than one sphere's
samples and cross-products is materialised.
"""

from __future__ import annotations

import numpy as np

from ..cv import CVPlan
from ._compiled import kernel
from ._fold_statistics import FoldBlocks
from ._ridge_kernel import (
    _cholesky_solve,
    accumulate,
    accumulate_upper,
    block_products,
    fold_matrix_upper,
    fold_sum,
)
from ._rows import gather_samples, row_gram

__all__ = ["lda_block", "lda_layout"]

_EPS = np.finfo(np.float64).eps
#: sums may be reordered (vectorised): the results stay exact to rounding; no assumptions
#: on NaN or infinities
_FASTMATH = {"reassoc", "contract"}


def lda_layout(blocks: FoldBlocks, plan: CVPlan) -> dict:
    """The arrays :func:`lda_block` reads the fold structure from.

    Parameters
    ----------
    blocks : FoldBlocks
    plan : CVPlan

    Returns
    -------
    dict
        ``order``, ``bounds``, ``block_class``, ``class_bounds`` (as ``blocks``),
        ``used`` (the blocks training some fold), ``fc_blocks`` (n_folds, n_classes, m):
        per fold and class the blocks to add (or to subtract from the class total when
        ``fc_sub``), padded with -1; ``test_pos`` (n_folds, max_test): block-order
        positions of each fold's test samples in plan order; ``n_test``.
    """
    n_folds, n_classes = blocks.n_folds, blocks.n_classes
    used_mask = blocks.train_mask.any(axis=0)
    fc = []
    fc_sub = np.zeros((n_folds, n_classes), dtype=bool)
    for f in range(n_folds):
        row = []
        for c in range(n_classes):
            members = np.flatnonzero(used_mask & (blocks.block_class == c))
            inc = members[blocks.train_mask[f, members]]
            exc = members[~blocks.train_mask[f, members]]
            fc_sub[f, c] = len(exc) < len(inc)
            row.append(exc if fc_sub[f, c] else inc)
        fc.append(row)
    width = max(1, max(len(r) for row in fc for r in row))
    fc_blocks = np.full((n_folds, n_classes, width), -1, dtype=np.int64)
    for f in range(n_folds):
        for c in range(n_classes):
            fc_blocks[f, c, : len(fc[f][c])] = fc[f][c]
    n = len(blocks.order)
    inv = np.empty(n, dtype=np.int64)
    inv[blocks.order] = np.arange(n)
    n_test = np.array([len(te) for te in plan.test_indices], dtype=np.int64)
    test_pos = np.zeros((n_folds, max(1, int(n_test.max()))), dtype=np.int64)
    for f, te in enumerate(plan.test_indices):
        test_pos[f, : len(te)] = inv[np.asarray(te)]
    return {
        "order": blocks.order.astype(np.int64),
        "bounds": blocks.bounds.astype(np.int64),
        "block_class": blocks.block_class.astype(np.int64),
        "class_bounds": blocks.class_bounds.astype(np.int64),
        "used": np.flatnonzero(used_mask).astype(np.int64),
        "fc_blocks": fc_blocks,
        "fc_sub": fc_sub,
        "test_pos": test_pos,
        "n_test": n_test,
    }


@kernel(nogil=True, fastmath=_FASTMATH)
def lda_block(
    Xv, vox, order, bounds, block_class, class_bounds, used, fc_blocks, fc_sub, test_pos, n_test,
    counts, prior, log_prior, auto, shrinkage,
):  # fmt: skip
    """LDA decisions of every fold on its test samples, for a block of spheres.

    Parameters
    ----------
    Xv : ndarray (n_voxels, n)
        Voxel-major data (float64, C-contiguous).
    vox : ndarray of int64 (B, p)
        Each sphere's rows of ``Xv``.
    order, bounds, block_class, class_bounds, used, fc_blocks, fc_sub, test_pos, n_test
        As :func:`lda_layout`.
    counts, prior, log_prior : ndarray (n_folds, n_classes)
        Training samples, priors and their logarithms of each fold and class.
    auto : bool
        Ledoit-Wolf shrinkage; else the fixed ``shrinkage`` (0 for none).
    shrinkage : float

    Returns
    -------
    ndarray (B, n_folds, max_test, K)
        Decisions of each fold's test samples in plan order (zeros beyond ``n_test``);
        ``K = 1`` for two classes (class 1 against class 0), else one per class.
    """
    B, p = vox.shape
    n = Xv.shape[1]
    F, C = counts.shape
    nb = bounds.shape[0] - 1
    K = 1 if C == 2 else C
    out = np.zeros((B, F, test_pos.shape[1], K))
    U = np.empty((n, p))
    raw0 = np.empty(p)  # a test sample relative to ref[0]
    ref = np.empty((C, p))
    grams = np.zeros((nb, p, p))
    sums = np.zeros((nb, p))
    tot_g = np.empty((C, p, p))
    tot_s = np.empty((C, p))
    G = np.empty((p, p))
    m = np.empty(p)
    var = np.empty(p)
    scale2 = np.empty(p)
    w = np.empty(p)
    wm = np.empty(p)
    diag_add = np.empty(p)
    pooled = np.empty((p, p))
    means = np.empty((C, p))  # class means in the frame X - ref[0]
    keep = np.empty(p)
    nk = 1 if C == 2 else C + 1
    rhs = np.empty((p, nk))
    coef = np.empty((p, K))
    icpt = np.empty(K)
    first = np.empty(C, dtype=np.bool_)
    zeros = np.zeros(p)  # (no mean to remove from a class's cross-products)
    tot_g[:, :, :] = 0.0  # (classes without training blocks)
    tot_s[:, :] = 0.0
    for sph in range(B):
        rows = vox[sph]
        _gather_centred(Xv, rows, order, class_bounds, U, ref)
        for c in range(C):
            first[c] = True
        for k in range(used.shape[0]):  # (the upper triangles only: all that is read of them)
            b = used[k]
            block_products(U, bounds, b, grams, sums, False)
            c = block_class[b]
            accumulate_upper(tot_g[c], grams[b], first[c])
            accumulate(tot_s[c], sums[b], first[c])
            first[c] = False
        for f in range(F):
            diag_add[:] = 0.0
            trace_add = 0.0
            for c in range(C):
                fold_matrix_upper(tot_g[c], grams, fc_blocks[f, c], fc_sub[f, c], 0.0, zeros, 0.0, G)
                fold_sum(tot_s[c], sums, fc_blocks[f, c], fc_sub[f, c], m)
                nfc = counts[f, c]
                inv_n = 1.0 / nfc
                for j in range(p):
                    m[j] *= inv_n
                    var[j] = G[j, j] * inv_n - m[j] * m[j]
                    means[c, j] = (ref[c, j] - ref[0, j]) + m[j]
                if auto:
                    vw = 0.0
                    for j in range(p):
                        mean_raw = ref[c, j] + m[j]
                        bound = nfc * mean_raw * _EPS
                        if var[j] <= nfc * _EPS * var[j] + bound * bound:
                            scale2[j] = 1.0
                        else:
                            scale2[j] = var[j]
                        w[j] = 1.0 / scale2[j]
                        vw += var[j] * w[j]
                    mu = vw / p
                    shrink = 0.0
                    if p > 1:
                        wmm = 0.0
                        for j in range(p):
                            wm[j] = w[j] * m[j]
                            wmm += wm[j] * m[j]
                        # sum_rk w_r G_rk^2 w_k and wm' G wm from the upper triangle
                        gg = 0.0
                        gm = 0.0
                        for r in range(p):
                            g, wk, wmk = G[r, r + 1 :], w[r + 1 :], wm[r + 1 :]
                            a1 = 0.0
                            a2 = 0.0
                            for k in range(p - r - 1):
                                a1 += g[k] * g[k] * wk[k]
                                a2 += g[k] * wmk[k]
                            grr = G[r, r]
                            gg += (2.0 * a1 + grr * grr * w[r]) * w[r]
                            gm += (2.0 * a2 + grr * wm[r]) * wm[r]
                        delta_ = gg * inv_n * inv_n - 2.0 * inv_n * gm + wmm * wmm
                        delta = (delta_ - p * mu * mu) / p
                        fourth = 0.0
                        # the training samples of the class in this fold: its used
                        # blocks that train the fold
                        for k in range(used.shape[0]):  # (indexed: iterators are reference-counted)
                            b = used[k]
                            if block_class[b] != c or not _trains(fc_blocks[f, c], fc_sub[f, c], b):
                                continue
                            for i in range(bounds[b], bounds[b + 1]):
                                z2 = wmm
                                for j in range(p):
                                    u = U[i, j]
                                    z2 += (w[j] * u - 2.0 * wm[j]) * u
                                fourth += z2 * z2
                        beta = (fourth * inv_n - delta_) * (inv_n / p)
                        if beta > delta:
                            beta = delta
                        shrink = 0.0 if beta == 0 else beta / delta
                    alpha = prior[f, c] * (1.0 - shrink)
                    extra = prior[f, c] * shrink * mu
                    for j in range(p):
                        diag_add[j] += extra * scale2[j]
                else:
                    alpha = (1.0 - shrinkage) * prior[f, c]
                    if shrinkage != 0.0:
                        tv = 0.0
                        for j in range(p):
                            tv += var[j]
                        trace_add += shrinkage * prior[f, c] * tv
                an = alpha * inv_n
                for r in range(p):  # (upper triangles: all the factorisation reads; row
                    am = alpha * m[r]  # slices from the diagonal vectorise)
                    pr, gr, mr = pooled[r, r:], G[r, r:], m[r:]
                    if c == 0:
                        for k in range(p - r):
                            pr[k] = an * gr[k] - am * mr[k]
                    else:
                        for k in range(p - r):
                            pr[k] += an * gr[k] - am * mr[k]
            for j in range(p):
                pooled[j, j] += diag_add[j] + trace_add / p
            # features without pooled variance: an identity row and column (zero weight)
            ptot = 0.0
            for j in range(p):
                ptot += pooled[j, j]
            any_null = False
            for j in range(p):
                keep[j] = 0.0 if pooled[j, j] <= _EPS * ptot else 1.0
                any_null = any_null or keep[j] == 0.0
            if any_null:
                for r in range(p):
                    for k in range(r, p):
                        pooled[r, k] *= keep[r] * keep[k]
                    if keep[r] == 0.0:
                        pooled[r, r] = 1.0
            _rhs(means, ref, keep, rhs)
            _cholesky_solve(pooled, rhs)
            _coefficients(rhs, means, ref, log_prior[f], coef, icpt)
            _test_decisions(U, class_bounds, test_pos[f], n_test[f], ref, coef, icpt, raw0, out[sph, f])
    return out


@kernel(nogil=True)
def _trains(blocks_fc, subtract, b):
    """Whether block ``b`` (of the class) trains the fold whose block list is
    ``blocks_fc`` (blocks added, or subtracted from the class total)."""
    listed = False
    for k in range(blocks_fc.shape[0]):
        x = blocks_fc[k]
        if x < 0:
            break
        if x == b:
            listed = True
            break
    return listed != subtract


@kernel(nogil=True, fastmath=_FASTMATH)
def _gather_centred(Xv, rows, order, class_bounds, U, ref):
    """A sphere's samples ``U`` (n, p) in block order, each relative to the reference
    (first) sample of its class, stored in ``ref`` (n_classes, p)."""
    p = U.shape[1]
    gather_samples(Xv, rows, order, U)
    for c in range(ref.shape[0]):
        lo, hi = class_bounds[c], class_bounds[c + 1]
        r = ref[c]
        u0 = U[lo]
        for j in range(p):
            r[j] = u0[j]
        for i in range(lo, hi):
            u = U[i]
            for j in range(p):
                u[j] -= r[j]


@kernel(nogil=True, fastmath=_FASTMATH)
def _rhs(means, ref, keep, rhs):
    """Right-hand sides of a fold: ``m_1 - m_0`` for two classes, else every class mean
    and the origin ``ref[0]`` of the common frame (zero at the null features)."""
    C, p = means.shape
    if C == 2:
        for j in range(p):
            rhs[j, 0] = (means[1, j] - means[0, j]) * keep[j]
        return
    for j in range(p):
        for c in range(C):
            rhs[j, c] = means[c, j] * keep[j]
        rhs[j, C] = ref[0, j] * keep[j]


@kernel(nogil=True, fastmath=_FASTMATH)
def _coefficients(sol, means, ref, log_prior, coef, icpt):
    """Coefficients and intercepts of a fold in the frame ``X - ref[0]`` from the solved
    right-hand sides ``sol`` (:func:`_rhs`), as ``BatchedLDA``'s decisions."""
    C, p = means.shape
    if C == 2:
        b0 = 0.0
        for j in range(p):
            coef[j, 0] = sol[j, 0]
            b0 += 0.5 * (means[0, j] + means[1, j]) * sol[j, 0]
        icpt[0] = -b0 + (log_prior[1] - log_prior[0])
        return
    gh = 0.0
    for j in range(p):
        gh += ref[0, j] * sol[j, C]
    for c in range(C):
        mv = 0.0
        for j in range(p):
            coef[j, c] = sol[j, c] + sol[j, C]
            mv += means[c, j] * sol[j, c]
        icpt[c] = -0.5 * mv + 0.5 * gh + log_prior[c]


@kernel(nogil=True, fastmath=_FASTMATH)
def _test_decisions(U, class_bounds, test_pos, n_test, ref, coef, icpt, raw0, out):
    """``(x - ref[0]) . coef + icpt`` of a fold's test samples into ``out`` (max_test, K),
    from the sphere's class-centred samples ``U`` (``x - ref[0] = U[i] + ref[c] - ref[0]``
    for a sample of class ``c``)."""
    p, K = coef.shape
    for t in range(n_test):
        i = test_pos[t]
        c = 0
        while i >= class_bounds[c + 1]:
            c += 1
        u = U[i]
        for j in range(p):
            raw0[j] = u[j] + (ref[c, j] - ref[0, j])
        for k in range(K):
            acc = icpt[k]
            for j in range(p):
                acc += raw0[j] * coef[j, k]
            out[t, k] = acc


def lda_sample_rows(blocks: FoldBlocks) -> np.ndarray:
    """Block-order positions of the training samples of every fold and class, shape
    (n_folds, n_classes, max_count), padded with -1 (for :func:`lda_sample_block`)."""
    counts = blocks.train_counts.astype(np.int64)
    fc_rows = np.full(counts.shape + (max(1, int(counts.max())),), -1, dtype=np.int64)
    for f in range(blocks.n_folds):
        for c in range(blocks.n_classes):
            sl = blocks.class_slice(c)
            rows = np.flatnonzero(blocks.sample_train[f, sl]) + sl.start
            fc_rows[f, c, : len(rows)] = rows
    return fc_rows


@kernel(nogil=True, fastmath=_FASTMATH)
def lda_sample_block(
    Xv, vox, order, class_bounds, fc_rows, test_pos, n_test, counts, prior, log_prior,
):  # fmt: skip
    """LDA decisions with Ledoit-Wolf shrinkage in the sample space, for a block of spheres
    with more features than training samples.

    The pooled covariance of a fold is ``Z'Z + diag(D)``: ``Z`` holds the training samples
    centred on their class mean, each scaled by ``sqrt(alpha_c / n_c)`` (``alpha_c`` the
    prior of its class times one minus its shrinkage), and ``D`` is the shrinkage target of
    every class weighted by its prior and shrinkage. By the Woodbury identity,
    ``(Z'Z + D)^-1 r = D^-1 r - D^-1 Z' (I + Z D^-1 Z')^-1 Z D^-1 r``: one system of the
    size of the training set per fold. The shrinkage itself comes from sums over pairs of
    training samples (``w.(G*G).w = ||U diag(w) U'||^2`` and ``(w m).G.(w m) =
    ||U (w m)||^2`` with ``G = U'U`` the class cross-products).

    Parameters
    ----------
    Xv, vox, order, class_bounds, test_pos, n_test, counts, prior, log_prior
        As :func:`lda_block`.
    fc_rows : ndarray of int64 (n_folds, n_classes, max_count)
        As :func:`lda_sample_rows`.

    Returns
    -------
    out : ndarray (B, n_folds, max_test, K)
        As :func:`lda_block`.
    fallback : ndarray of bool (B,)
        Spheres to compute in the feature space instead (:func:`lda_block`): those with a
        feature without pooled variance or a null shrinkage target in some fold (whose
        pooled covariance may be singular).
    """
    B, p = vox.shape
    n = Xv.shape[1]
    F, C = counts.shape
    K = 1 if C == 2 else C
    nk = 1 if C == 2 else C + 1
    out = np.zeros((B, F, test_pos.shape[1], K))
    fallback = np.zeros(B, dtype=np.bool_)
    U = np.empty((n, p))
    raw0 = np.empty(p)
    ref = np.empty((C, p))
    m = np.empty((C, p))
    var = np.empty((C, p))
    scale2 = np.empty((C, p))
    alpha = np.empty(C)
    w = np.empty(p)
    wm = np.empty(p)
    D = np.empty(p)
    dinv = np.empty(p)
    pdiag = np.empty(p)
    means = np.empty((C, p))
    keep = np.ones(p)
    rhs = np.empty((p, nk))
    coef = np.empty((p, K))
    icpt = np.empty(K)
    n_max = 0
    for f in range(F):
        tot = 0
        for c in range(C):
            tot += int(counts[f, c])
        n_max = max(n_max, tot)
    Zbuf = np.empty((n_max, p))
    ZDbuf = np.empty((n_max, p))
    # (row_gram reads whole blocks of four rows: padded, zeros past the used rows)
    Zsbuf = np.zeros((n_max + 4, p))
    c_max = 0
    for f in range(F):
        for c in range(C):
            c_max = max(c_max, int(counts[f, c]))
    Uw = np.zeros((c_max + 4, p))
    Kbuf = np.empty((c_max, c_max))
    sw = np.empty(p)
    sdinv = np.empty(p)
    for sph in range(B):
        rows = vox[sph]
        _gather_centred(Xv, rows, order, class_bounds, U, ref)
        for f in range(F):
            D[:] = 0.0
            pdiag[:] = 0.0
            for c in range(C):
                nfc = counts[f, c]
                inv_n = 1.0 / nfc
                cnt = int(nfc)
                idx = fc_rows[f, c, :cnt]
                for j in range(p):
                    s1 = 0.0
                    s2 = 0.0
                    for t in range(cnt):  # (indexed: an iterator per feature is reference-counted)
                        u = U[idx[t], j]
                        s1 += u
                        s2 += u * u
                    mj = s1 * inv_n
                    m[c, j] = mj
                    var[c, j] = s2 * inv_n - mj * mj
                    means[c, j] = (ref[c, j] - ref[0, j]) + mj
                vw = 0.0
                for j in range(p):
                    mean_raw = ref[c, j] + m[c, j]
                    bound = nfc * mean_raw * _EPS
                    v = var[c, j]
                    scale2[c, j] = 1.0 if v <= nfc * _EPS * v + bound * bound else v
                    w[j] = 1.0 / scale2[c, j]
                    vw += v * w[j]
                mu = vw / p
                shrink = 0.0
                if p > 1:
                    wmm = 0.0
                    for j in range(p):
                        wm[j] = w[j] * m[c, j]
                        wmm += wm[j] * m[c, j]
                        sw[j] = np.sqrt(w[j])
                    mm = 0.0
                    fourth = 0.0
                    for a in range(cnt):
                        ia = idx[a]
                        q = 0.0
                        z2 = wmm
                        row = Uw[a]
                        for j in range(p):
                            u = U[ia, j]
                            row[j] = u * sw[j]
                            q += u * wm[j]
                            z2 += (u * w[j] - 2.0 * wm[j]) * u
                        mm += q * q
                        fourth += z2 * z2
                    # w.(G*G).w = |U diag(w) U'|_F^2: the Gram matrix of the rows of
                    # U diag(sqrt(w)), by symmetric blocks of dot products
                    row_gram(Uw, Kbuf, cnt, p, 0.0)
                    ww = 0.0
                    for a in range(cnt):
                        ka = Kbuf[a, :cnt]
                        for b2 in range(cnt):
                            ww += ka[b2] * ka[b2]
                    delta_ = ww * inv_n * inv_n - 2.0 * inv_n * mm + wmm * wmm
                    delta = (delta_ - p * mu * mu) / p
                    beta = (fourth * inv_n - delta_) * (inv_n / p)
                    if beta > delta:
                        beta = delta
                    shrink = 0.0 if beta == 0 else beta / delta
                alpha[c] = prior[f, c] * (1.0 - shrink)
                extra = prior[f, c] * shrink * mu
                for j in range(p):
                    D[j] += extra * scale2[c, j]
                    pdiag[j] += alpha[c] * var[c, j]
            ptot = 0.0
            for j in range(p):
                pdiag[j] += D[j]
                ptot += pdiag[j]
            for j in range(p):
                if pdiag[j] <= _EPS * ptot or D[j] <= 1e-8 * pdiag[j]:
                    fallback[sph] = True
                    D[j] = 1.0
                dinv[j] = 1.0 / D[j]
                sdinv[j] = np.sqrt(dinv[j])
            # Z, Z D^-1 and Z D^-1/2 of the fold's training samples
            nt = 0
            for c in range(C):
                cnt = int(counts[f, c])
                scale = np.sqrt(alpha[c] / counts[f, c])
                for a in range(cnt):
                    ia = fc_rows[f, c, a]
                    for j in range(p):
                        z = (U[ia, j] - m[c, j]) * scale
                        Zbuf[nt, j] = z
                        ZDbuf[nt, j] = z * dinv[j]
                        Zsbuf[nt, j] = z * sdinv[j]
                    nt += 1
            Z = Zbuf[:nt]
            ZD = ZDbuf[:nt]
            # Z D^-1 Z' + I, the Gram matrix of the rows of Z D^-1/2 (symmetric blocks)
            M = np.empty((nt, nt))
            row_gram(Zsbuf, M, nt, p, 0.0)
            for i in range(nt):
                M[i, i] += 1.0
            _rhs(means, ref, keep, rhs)
            for j in range(p):
                for k in range(nk):
                    rhs[j, k] *= dinv[j]
            t = np.dot(Z, rhs)
            _cholesky_solve(M, t)
            rhs -= np.dot(ZD.T, t)
            _coefficients(rhs, means, ref, log_prior[f], coef, icpt)
            _test_decisions(U, class_bounds, test_pos[f], n_test[f], ref, coef, icpt, raw0, out[sph, f])
    return out, fallback
