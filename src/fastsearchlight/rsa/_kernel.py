"""Compiled RDMs of a block of spheres: noise covariance, Cholesky factor and distances, sphere
by sphere.

Every distance of rsatoolbox's ``calc_rdm`` but the correlation is a sum over groups ``g``
(folds, or the terms of the balanced crossnobis kernel) of ``w_g (a_gi - a_gj)' P (b_gi -
b_gj) / n``, with ``a_g``, ``b_g`` the condition patterns of group ``g`` over the sphere's
``n`` voxels and ``P`` the sphere's noise precision. Only differences of patterns enter it,
so each group's ``C`` patterns are replaced by the ``C - 1`` contrasts ``a_gc - a_g0``: with
``Q = sum_g w_g A_g' P B_g`` over the contrasts (``Q_0. = Q_.0 = 0``),
``d_ij = (Q_ii + Q_jj - Q_ij - Q_ji) / n``.

Per sphere, in compiled loops over a few small scratch arrays (no per-block temporaries):

1. the residuals of the sphere's voxels (gathered, or derived from the patterns when there is
   one sample per run and condition), their Gram matrix ``S = E E'`` (lower triangle), and
   from it the covariance of the noise model (as :mod:`.noise` describes);
2. its Cholesky factor ``L`` (``P = L^-T L^-1 / const``), in place;
3. the contrasts, whitened by a forward solve with ``L`` (the inverse is never formed; for
   variances, a division by the standard deviations);
4. ``Q`` from the whitened contrasts, and the RDM vector.

Compiled with numba (``cache=True``; the first call after installation compiles and writes
the cache). ``nogil=True``: blocks run in parallel in threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["DIAG", "FULL", "IDENTITY", "SHRINKAGE_DIAG", "SHRINKAGE_EYE", "block_distances"]

#: noise models: no precision, variances, sample covariance, Ledoit-Wolf, Schäfer-Strimmer
IDENTITY, DIAG, FULL, SHRINKAGE_EYE, SHRINKAGE_DIAG = 0, 1, 2, 3, 4
#: sums may be reordered (vectorised): the results stay exact to rounding; no assumptions on
#: NaN or infinities
_FASTMATH = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _gram_lower(E, S):
    """Lower triangle of ``S = E E'`` (E: n x N; the tiles on the diagonal also write a few
    entries above it). Tiles of 4 x 4 entries: eight rows of ``E`` read together serve
    sixteen dot products (vectorised over the samples)."""
    n, N = E.shape
    j = 0
    while j + 4 <= n:
        for k in range(0, j + 1, 4):
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = 0.0
            for t in range(N):
                a0, a1, a2, a3 = E[j, t], E[j + 1, t], E[j + 2, t], E[j + 3, t]
                b0, b1, b2, b3 = E[k, t], E[k + 1, t], E[k + 2, t], E[k + 3, t]
                s00 += a0 * b0
                s01 += a0 * b1
                s02 += a0 * b2
                s03 += a0 * b3
                s10 += a1 * b0
                s11 += a1 * b1
                s12 += a1 * b2
                s13 += a1 * b3
                s20 += a2 * b0
                s21 += a2 * b1
                s22 += a2 * b2
                s23 += a2 * b3
                s30 += a3 * b0
                s31 += a3 * b1
                s32 += a3 * b2
                s33 += a3 * b3
            S[j, k], S[j, k + 1], S[j, k + 2], S[j, k + 3] = s00, s01, s02, s03
            S[j + 1, k], S[j + 1, k + 1], S[j + 1, k + 2], S[j + 1, k + 3] = s10, s11, s12, s13
            S[j + 2, k], S[j + 2, k + 1], S[j + 2, k + 2], S[j + 2, k + 3] = s20, s21, s22, s23
            S[j + 3, k], S[j + 3, k + 1], S[j + 3, k + 2], S[j + 3, k + 3] = s30, s31, s32, s33
        j += 4
    for r in range(j, n):
        for k in range(r + 1):
            s = 0.0
            for t in range(N):
                s += E[r, t] * E[k, t]
            S[r, k] = s


@njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _cholesky_lower(A, inv_diag):
    """``A = L L'`` in place in the lower triangle of ``A`` (read from it), ``inv_diag`` the
    inverse of ``L``'s diagonal; False if ``A`` is not positive definite.

    Row by row (each entry a dot product of two rows of ``L``), four entries of a row at a
    time: each load of the row serves four dot products, then the four finish among
    themselves."""
    n = A.shape[0]
    for i in range(n):
        j0 = 0
        while j0 + 4 <= i:
            j = j0
            s0, s1, s2, s3 = A[i, j], A[i, j + 1], A[i, j + 2], A[i, j + 3]
            for k in range(j):
                a = A[i, k]
                s0 -= a * A[j, k]
                s1 -= a * A[j + 1, k]
                s2 -= a * A[j + 2, k]
                s3 -= a * A[j + 3, k]
            s0 *= inv_diag[j]
            s1 = (s1 - s0 * A[j + 1, j]) * inv_diag[j + 1]
            s2 = (s2 - s0 * A[j + 2, j] - s1 * A[j + 2, j + 1]) * inv_diag[j + 2]
            s3 = (s3 - s0 * A[j + 3, j] - s1 * A[j + 3, j + 1] - s2 * A[j + 3, j + 2]) * inv_diag[j + 3]
            A[i, j], A[i, j + 1], A[i, j + 2], A[i, j + 3] = s0, s1, s2, s3
            j0 += 4
        for j in range(j0, i):
            s = A[i, j]
            for k in range(j):
                s -= A[i, k] * A[j, k]
            A[i, j] = s * inv_diag[j]
        s = A[i, i]
        for k in range(i):
            s -= A[i, k] * A[i, k]
        if not s > 0.0:
            return False
        A[i, i] = np.sqrt(s)
        inv_diag[i] = 1.0 / A[i, i]
    return True


@njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _forward_solve(L, inv_diag, W):
    """``W <- L^-1 W`` in place, L lower triangular (n x n), W (n x m), four rows at a time.

    The four rows take the solved rows above them four at a time: each pass over the
    columns reads four solved rows and updates the four rows once (four products each), so
    loads and stores, not multiplications, no longer bound the loop. Then the four rows are
    solved among themselves."""
    n, m = W.shape
    i = 0
    while i < n:
        h = min(4, n - i)
        if h == 4:
            k = 0
            while k + 4 <= i:
                a00, a01, a02, a03 = L[i, k], L[i, k + 1], L[i, k + 2], L[i, k + 3]
                a10, a11, a12, a13 = L[i + 1, k], L[i + 1, k + 1], L[i + 1, k + 2], L[i + 1, k + 3]
                a20, a21, a22, a23 = L[i + 2, k], L[i + 2, k + 1], L[i + 2, k + 2], L[i + 2, k + 3]
                a30, a31, a32, a33 = L[i + 3, k], L[i + 3, k + 1], L[i + 3, k + 2], L[i + 3, k + 3]
                for c in range(m):
                    w0, w1, w2, w3 = W[k, c], W[k + 1, c], W[k + 2, c], W[k + 3, c]
                    W[i, c] -= a00 * w0 + a01 * w1 + a02 * w2 + a03 * w3
                    W[i + 1, c] -= a10 * w0 + a11 * w1 + a12 * w2 + a13 * w3
                    W[i + 2, c] -= a20 * w0 + a21 * w1 + a22 * w2 + a23 * w3
                    W[i + 3, c] -= a30 * w0 + a31 * w1 + a32 * w2 + a33 * w3
                k += 4
            for kk in range(k, i):
                a0, a1, a2, a3 = L[i, kk], L[i + 1, kk], L[i + 2, kk], L[i + 3, kk]
                for c in range(m):
                    w = W[kk, c]
                    W[i, c] -= a0 * w
                    W[i + 1, c] -= a1 * w
                    W[i + 2, c] -= a2 * w
                    W[i + 3, c] -= a3 * w
        else:
            for kk in range(i):
                for r in range(i, i + h):
                    a = L[r, kk]
                    for c in range(m):
                        W[r, c] -= a * W[kk, c]
        for r in range(i, i + h):
            for kk in range(i, r):
                a = L[r, kk]
                for c in range(m):
                    W[r, c] -= a * W[kk, c]
            inv = inv_diag[r]
            for c in range(m):
                W[r, c] *= inv
        i += h


@njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _sample_sums(E, scale, acc):
    """``sum over samples of (sum over voxels j of scale_j e_jt**2)**2``, the per-sample
    sums accumulated voxel by voxel in ``acc`` (N) (contiguous loops)."""
    n, N = E.shape
    acc[:] = 0.0
    for j in range(n):
        f = scale[j]
        for t in range(N):
            acc[t] += f * E[j, t] * E[j, t]
    total = 0.0
    for t in range(N):
        total += acc[t] * acc[t]
    return total


@njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _shrink_eye(S, E, n_samples, dof, ones, acc):
    """Ledoit-Wolf shrinkage towards ``m I`` (rsatoolbox's ``_covariance_eye``), in the lower
    triangle of ``S`` (the Gram matrix of the residuals ``E``); ``ones`` (n) and ``acc`` (N)
    are scratch."""
    n = E.shape[0]
    inv_n = 1.0 / n_samples
    frob = 0.0
    trace = 0.0
    for j in range(n):
        for k in range(j):
            frob += 2.0 * (S[j, k] * inv_n) ** 2
        frob += (S[j, j] * inv_n) ** 2
        trace += S[j, j] * inv_n
    ones[:] = 1.0
    per_sample = _sample_sums(E, ones, acc)  # sum over samples of (sum over the sphere of e**2)**2
    b2 = (per_sample * inv_n - frob) * inv_n
    m = trace / n
    d2 = frob - n * m * m  # ||s - m I||^2
    b2 = min(d2, b2)
    w = b2 / d2 if d2 > 0.0 else 0.0
    rescale = n_samples / dof
    f = (1.0 - w) * inv_n * rescale
    for j in range(n):
        for k in range(j + 1):
            S[j, k] *= f
        S[j, j] += w * m * rescale


@njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _shrink_diag(S, E, d, d4, n_samples, dof, inv_d, acc):
    """Schäfer-Strimmer shrinkage of the correlations towards zero (rsatoolbox's
    ``_covariance_diag``), in the lower triangle of ``S``, from sums over the sphere: ``d``
    and ``d4`` are its voxels' sums of squared and fourth-power residuals; ``inv_d`` (n) and
    ``acc`` (N) are scratch."""
    n = E.shape[0]
    for j in range(n):
        inv_d[j] = 1.0 / d[j]
    rho_sq = 0.0  # sum over all j, k of rho_jk**2
    for j in range(n):
        off = 0.0
        for k in range(j):
            off += S[j, k] * S[j, k] * inv_d[k]
        rho_sq += (2.0 * off + S[j, j] * S[j, j] * inv_d[j]) * inv_d[j]
    off_sq = (rho_sq - n) * (dof / (n_samples - 1)) ** 2  # sum over j != k of s_mean**2
    # sum over j != k of sum_t e_tj**2 e_tk**2 / (d_j d_k)
    both = _sample_sums(E, inv_d, acc)
    for j in range(n):
        both -= d4[j] * inv_d[j] * inv_d[j]
    off_s2 = both * dof * dof / (n_samples - 1)
    var_hat = n_samples / dof**2 * (off_s2 - off_sq)
    lamb = var_hat / off_sq if off_sq > 0.0 else 1.0
    lamb = min(max(lamb, 0.0), 1.0)
    f = (1.0 - lamb) / dof
    for j in range(n):
        for k in range(j):
            S[j, k] *= f
        S[j, j] = d[j] / dof


@njit(cache=True, fastmath=_FASTMATH, nogil=True)
def block_distances(
    vox,
    left,
    right,
    symmetric,
    weights,
    noise,
    residuals,
    cell_residuals,
    sum_sq,
    sum_4,
    n_samples,
    dof,
    rows,
    cols,
):
    """The RDM vectors of a block of equal-size spheres (see the module's docstring).

    Parameters
    ----------
    vox : ndarray of int (B, n)
        Mask-voxel indices of each sphere.
    left, right : ndarray (n_mask_voxels, G, C)
        Each voxel's patterns of each group, on either side of the precision.
    symmetric : bool
        Whether ``right`` is ``left`` (whitened once).
    weights : ndarray (G,)
        Each group's weight.
    noise : int
        The noise model: :data:`IDENTITY`, :data:`DIAG`, :data:`FULL`,
        :data:`SHRINKAGE_EYE` or :data:`SHRINKAGE_DIAG`.
    residuals : ndarray (n_mask_voxels, n_samples)
        Voxel-major residuals (any 2D array when not used).
    cell_residuals : bool
        Residuals derived from the patterns instead: one sample per run and condition, group
        0 the totals over runs and group ``1 + r`` run ``r`` (``left[1 + r] - left[0] / R``).
    sum_sq, sum_4 : ndarray (n_mask_voxels,)
        Each voxel's sum of squared and fourth-power residuals.
    n_samples, dof : int
        As rsatoolbox's noise estimate.
    rows, cols : ndarray of int (n_pairs,)
        The conditions of each pair.

    Returns
    -------
    rdms : ndarray (B, n_pairs)
    ok : ndarray of bool (B,)
        False where the noise covariance is not positive definite (the RDM is then NaN).
    """
    B, n = vox.shape
    G, C = left.shape[1], left.shape[2]
    m = G * (C - 1)
    N = residuals.shape[1]
    if cell_residuals:
        N = (G - 1) * C
    out = np.empty((B, len(rows)))
    ok = np.ones(B, dtype=np.bool_)
    E = np.empty((n, N))
    S = np.empty((n, n))
    W = np.empty((n, m if symmetric else 2 * m))
    Wt = np.empty((W.shape[1], n))
    d = np.empty(n)
    d4 = np.empty(n)
    inv_diag = np.empty(n)
    scratch = np.empty(n)
    acc = np.empty(N)
    Q = np.zeros((C, C))
    inv_runs = 1.0 / max(G - 1, 1)
    for b in range(B):
        # the contrasts of every group, side by side (left, then right)
        for j in range(n):
            v = vox[b, j]
            for g in range(G):
                for c in range(1, C):
                    W[j, g * (C - 1) + c - 1] = left[v, g, c] - left[v, g, 0]
                    if not symmetric:
                        W[j, m + g * (C - 1) + c - 1] = right[v, g, c] - right[v, g, 0]
        if noise == DIAG:
            for j in range(n):
                scale = np.sqrt(dof / sum_sq[vox[b, j]])
                for c in range(W.shape[1]):
                    W[j, c] *= scale
        elif noise != IDENTITY:
            for j in range(n):
                v = vox[b, j]
                d[j] = sum_sq[v]
                d4[j] = sum_4[v]
                if cell_residuals:
                    for r in range(G - 1):
                        for c in range(C):
                            E[j, r * C + c] = left[v, 1 + r, c] - left[v, 0, c] * inv_runs
                else:
                    for t in range(N):
                        E[j, t] = residuals[v, t]
            _gram_lower(E, S)
            if noise == FULL:
                for j in range(n):
                    for k in range(j + 1):
                        S[j, k] /= dof
            elif noise == SHRINKAGE_EYE:
                _shrink_eye(S, E, n_samples, dof, scratch, acc)
            else:
                _shrink_diag(S, E, d, d4, n_samples, dof, scratch, acc)
            if not _cholesky_lower(S, inv_diag):
                ok[b] = False
                out[b] = np.nan
                continue
            _forward_solve(S, inv_diag, W)
        # Q (contrast c - 1 at index c; row and column 0 stay 0), from dot products over
        # the voxels of the whitened contrasts (transposed: contiguous)
        for j in range(n):
            for c in range(W.shape[1]):
                Wt[c, j] = W[j, c]
        for i in range(1, C):
            for k in range(1 if not symmetric else i, C):
                q = 0.0
                for g in range(G):
                    lo = g * (C - 1)
                    ro = lo if symmetric else m + lo
                    s = 0.0
                    for j in range(n):
                        s += Wt[lo + i - 1, j] * Wt[ro + k - 1, j]
                    q += weights[g] * s
                Q[i, k] = q
                if symmetric:
                    Q[k, i] = q
        for p in range(len(rows)):
            i, k = rows[p], cols[p]
            out[b, p] = (Q[i, i] + Q[k, k] - Q[i, k] - Q[k, i]) / n
    return out, ok
