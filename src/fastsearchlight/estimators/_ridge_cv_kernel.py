"""Compiled ``RidgeClassifierCV`` (efficient leave-one-out choice of alpha) of every fold,
sphere by sphere, from the voxel-major data.

:func:`ridge_cv_block` computes, for every (sphere, fold) problem and every alpha, the
leave-one-out errors that :mod:`.ridge_cv` describes, with one Cholesky factorisation per
alpha instead of one eigendecomposition per problem:

- **covariance form** (more training samples than features, as scikit-learn): with
  ``A = Xc'Xc + alpha I = U'U``, the rows ``z_i = U^-T x_i`` of the centred training samples
  (one triangular solve of all of them) give the leverages ``h_ii = |z_i|^2`` and, with
  ``t = U^-T Xc'Yc``, the fitted values ``z_i . t``; the coefficients are ``U^-1 t``;
- **Gram form** (otherwise): the inverse of ``G = Xc Xc' + alpha I`` (shifted along ``1``
  with an intercept: below) as ``V V'``, ``V = U^-1`` from its Cholesky factor ``U``
  (:func:`_gram_alpha`), gives the dual coefficients ``c = G^-1 Yc = V (V' Yc)`` and the
  denominators ``G^-1_ii - (G^-1 1)_i / n`` (no ``1/n`` term without an intercept), the
  diagonal being the squared norms of ``V``'s rows. (LAPACK's ``potri`` in their place,
  OpenBLAS's unblocked loops at these sizes, took 37-39% of the profiles of fits with 81
  and 162 training samples.)

About 3 times fewer operations than the eigendecomposition for 3 alphas (W1 at 10 mm:
75 features, 162 training samples), and no interpreter between spheres.

**Near-ties.** The Cholesky errors and the eigendecomposition's (the reference path of
:mod:`.ridge_cv`, which follows scikit-learn's formulas) differ by rounding. The relative
error of a leverage is about ``eps * cond``, that of a denominator ``1 - h_ii - 1/n``
larger by ``(h_ii + 1/n) / (1 - h_ii - 1/n)`` (``amp``, largest over samples and alphas),
so the two paths' scores differ by about ``eps * cond * (1 + amp)`` (relative): measured
at most 0.66 times that on 12,000 problems, d < n, d ~ n (18 training samples and 17
features) and d > n, raw BOLD-scale values and standardised ones, with and without an
intercept, condition numbers from 3 to 3e14. Where the best alpha's score is within
``margin * eps * cond * (1 + amp)`` (relative) of another alpha's (``margin`` = 1e4 by
default, :data:`.ridge_cv._TIE_MARGIN`), rounding could decide between them: the problem
(and label set) is flagged, and the caller solves it again on the eigendecomposition path,
which then makes the choice (and gives the decisions) exactly as before. ``cond`` is the
1-norm condition number of ``A`` (LAPACK's estimate, ``pocon``) or of ``G`` (from its
inverse) at the smallest alpha, the largest of the alphas'.

In the Gram form with an intercept, ``G`` is ``K + s 11' + alpha I`` with ``s = trace(K) /
n^2`` (as scikit-learn adds ``11'``): the centred ``K`` has the null direction ``1``,
which gives ``(K + alpha I)^-1`` an eigenvalue ``1 / alpha`` that the denominators'
subtraction ``(G^-1 1)_i / n`` then cancels. The shift changes neither the dual
coefficients nor the denominators in exact arithmetic (``Yc`` and that correction are
orthogonal to ``1``), and takes ``cond`` from ``lambda_max / alpha`` to about ``lambda_max
/ lambda_min`` of ``K``'s other eigenvalues. With the old ``G`` on raw-scale spheres of
171-261 voxels and 162 training samples, the unit exceeded the scores' differences, so
every fold was flagged. The kernel's scores are now within 5e-12 (relative) of 40-digit
arithmetic on problems with an intercept, while scikit-learn's and the eigendecomposition
path's differ from them by up to about 1e-6 on raw values: their rounding, not the
kernel's, sets the unit, still ``eps * cond * (1 + amp)`` with the shifted ``G``'s
``cond``. The Gram form's margin (``gram_margin`` = 1e2,
:data:`.ridge_cv._GRAM_TIE_MARGIN`) is calibrated on those: their scores were at most 0.23
of its units from the kernel's (``benchmarks/ridge_cv_rounding.py``). A factorisation that
fails, or
a denominator that is not positive, flags the problem too. With predictions alone (below)
and one label set, a near-tie is not flagged when the alphas it leaves in play (those
within the margin of the best: scikit-learn's choice is one of them) are proven to predict
alike, as below on those alphas alone; its choice is skipped (W1 data at 10 mm with 54
samples, where the Gram form's scores on raw values near-tie: one-thread fits 0.41 of the
time).

**Predictions alone** (scores such as accuracy; ``predictions_only``). In the covariance
form, most of the work is the leave-one-out leverages: a triangular solve of every
training sample per alpha. When every alpha gives every test sample the same prediction
(each proven by a bound on its decision's error, :func:`_agreeing_decisions`), the
leave-one-out choice cannot change the predictions, so it is skipped. The proof takes one
factorisation per fold, at the largest alpha; the other alphas' coefficients come from it
by a series, with an error bound that needs no residual, and where that does not prove
the predictions by iterative refinement, with error bounds from their residuals (their own
factorisation only where refinement converges slowly). On W1 at 10 mm (75-84 features,
162 training samples, raw-scale data) 97% of the folds take this way, nearly all by the
series alone, and one-thread fits of 3,000 spheres take about a quarter of the time of
the full choice (0.79-0.82 s against 3.35-3.38 s, alternated in one process). The Gram
form's leave-one-out errors cost an inverse per alpha beside its factorisation; the same
proof runs there on the centred Gram matrix (the dual coefficients ``(K + alpha I)^-1 Yc``
and the decisions ``cross c + ybar`` have the covariance form's algebra), from
``_GRAM_PROOF_MIN`` training samples: with W3's 28 it cost more than it saved (one-thread
fits 1.7 times as long), with 162 samples and 261 voxels (W1 data at 14.5 mm) 83% of the
folds were proven and fits took 0.50-0.54 of the time. The bound on ``|(M + alpha
I)^-1|`` is ``1 / (alpha - slack)``, ``slack`` a bound on the rounding of ``M``'s
computation, since only its exact value is positive semi-definite: the centred Gram matrix
has a zero eigenvalue by construction, which rounding left between -5.4e-10 and 3.4e-10 on
that data (entries up to 4.3e5; the slack there about 1e-5). With an intercept the proof
runs on ``K + s 11'`` (above), whose exact value is positive semi-definite too and gives
the same decisions (``Yc`` and the test samples' centred products are orthogonal to
``1``); the shift's own rounding adds ``8 eps`` of the largest diagonal to each entry's
bound. Its inverse has no ``1 / alpha`` along ``1``, so the bound from the trace of the
inverse (:func:`_inverse_trace`) is far tighter: 20 spheres of 261 voxels, 162 training
samples, 77 of 80 folds proven against 61 on ``K``; one-thread fits of 300 spheres
0.84-0.85 of the time. A block of spheres that proves
fewer than a quarter of its first ``_PROOF_TRIALS`` folds (and of every later count) stops
trying: near ``d ~ n`` the alphas seldom predict alike (W1 data at 12 mm: 9% proven, fits
0.74 of the time with the rule).

Samples are grouped into role blocks (:func:`._ridge_kernel.role_blocks`): a fold's
covariance is the sum of its training blocks' cross-products, or the total minus the
others', corrected by its training mean; the Gram form centres one Gram matrix of all
samples per fold. Every sphere's features are centred on their mean over all samples
first when an intercept is fitted (an exact reparametrisation that keeps raw BOLD values'
offset out of the products).
"""

from __future__ import annotations

import numpy as np

from ._compiled import kernel
from ._lapack import (
    matmul_into,
    reciprocal_condition_upper,
)
from ._ridge_kernel import (
    accumulate,
    accumulate_upper,
    block_products_added,
    block_products_rows,
    block_target_products,
    block_target_sums,
    fold_matrix_upper,
    fold_products,
    fold_sum,
    gather_rows,
    gather_sphere,
    sphere_slots,
)
from ._rows import row_gram
from ._triangular import (
    cholesky_solve_upper_rows,
    cholesky_upper_into,
    forward_upper_rows,
    inverse_rows_upper,
)

__all__ = ["ridge_cv_block"]

#: sums may be reordered (vectorised): the results stay exact to rounding; no assumptions
#: on NaN or infinities
_FASTMATH = {"reassoc", "contract"}

_EPS = np.finfo(np.float64).eps

#: refinement steps of the coefficients of an alpha from the largest alpha's factor before
#: :func:`_agreeing_decisions` gives up proving the predictions (1-2 on W1 at 10 mm)
_REFINEMENTS = 4
#: the Gram form tries :func:`_agreeing_decisions` from this many training samples: below
#: it the leave-one-out errors cost less than the proof (W3, 28 training samples: the
#: proof took one-thread fits to 1.7 times their time; 162 samples, 261 voxels: 0.50-0.54)
_GRAM_PROOF_MIN = 64
#: a block of spheres stops trying the proof when fewer than a quarter of its first
#: ``_PROOF_TRIALS`` folds (and of every later count) were proven: near ``d ~ n`` the alphas
#: seldom predict alike (W1 data at 10 mm with 81 training samples: 3% of the folds)
_PROOF_TRIALS = 16


@kernel(nogil=True, fastmath=_FASTMATH)
def _norm1_shifted(A, alpha, H):
    """``H = A + alpha I`` (C-contiguous copies) and the 1-norm of ``H``: row by row, each
    column's sum taken over the rows in order (contiguous loops, which numba vectorises;
    column by column they are strided)."""
    p = A.shape[0]
    sums = np.zeros(p)
    for r in range(p):
        hr, ar = H[r], A[r]
        for c in range(p):
            hr[c] = ar[c]
        hr[r] += alpha
        for c in range(p):
            sums[c] += abs(hr[c])
    norm = 0.0
    for c in range(p):
        if sums[c] > norm:
            norm = sums[c]
    return norm


@kernel(nogil=True, fastmath=_FASTMATH)
def _intercept_shifted(K, fit_intercept):
    """``K + s 11'`` with ``s = trace(K) / m^2`` for the ``m x m`` centred Gram matrix ``K``
    of a fold with an intercept (``K 1 = 0``: the direction ``1`` gets the eigenvalue
    ``trace(K) / m``, the mean of ``K``'s), ``K`` itself without one."""
    if not fit_intercept:
        return K
    m = K.shape[0]
    trace = 0.0
    for i in range(m):
        trace += K[i, i]
    s = trace / (m * m)
    out = np.empty((m, m))
    for i in range(m):
        ki, oi = K[i], out[i]
        for j in range(m):
            oi[j] = ki[j] + s
    return out


@kernel(nogil=True, fastmath=_FASTMATH)
def _gram_alpha(Ks, alpha, Yc, fit_intercept, exact_cond, G, V, work, col, diag, c):
    """One alpha of the Gram form: with ``G = Ks + alpha I = U'U`` (``Ks`` from
    :func:`_intercept_shifted`) and ``G^-1 = V V'``, ``V = U^-1``
    (:func:`._triangular.inverse_rows_upper`), the denominators ``G^-1_ii - (G^-1 1)_i / n``
    (no correction without an intercept) into ``diag`` and the dual coefficients ``G^-1 y``
    of every row ``y`` of ``Yc`` into the rows of ``c``, each as ``V (V' y)``. Returns
    ``(ok, cond, amp)``: False when ``G`` is not positive definite to rounding or a
    denominator is not positive; ``cond``, with ``exact_cond``, the 1-norm condition number
    of ``G`` from the inverse formed (``V V'``, into ``G``), else 0; ``amp`` the largest
    ``(1 - den) / den`` of the denominators ``den = alpha * diag``. ``V`` has its rows
    padded to a multiple of four (zeros), ``work`` and ``col`` are ``(n,)`` scratch."""
    ntr = Ks.shape[0]
    nf = float(ntr)
    norm1 = _norm1_shifted(Ks, alpha, G)
    if not cholesky_upper_into(G, G):
        return False, 0.0, 0.0
    for i in range(ntr):
        work[i] = 1.0 / G[i, i]
    inverse_rows_upper(G, work, V)
    cond = 0.0
    if exact_cond:
        row_gram(V, G, ntr, ntr, 0.0)  # the inverse, in place of the factor
        col[:] = 0.0
        for i in range(ntr):  # column sums by rows (contiguous)
            gi = G[i]
            for k in range(ntr):
                col[k] += abs(gi[k])
        norm_inv = 0.0
        for k in range(ntr):
            norm_inv = max(norm_inv, col[k])
        cond = norm1 * norm_inv
        if not np.isfinite(cond):
            return False, 0.0, 0.0
    if fit_intercept:  # V' 1, for the inverse's row sums V (V' 1)
        col[:] = 0.0
        for i in range(ntr):
            vi, ci = V[i, i:], col[i:]
            for j in range(vi.shape[0]):
                ci[j] += vi[j]
    amp = 0.0
    for i in range(ntr):
        vi = V[i, i:]
        d = 0.0
        acc = 0.0
        if fit_intercept:
            ci = col[i:]
            for j in range(vi.shape[0]):
                d += vi[j] * vi[j]
                acc += vi[j] * ci[j]
            d -= acc / nf
        else:
            for j in range(vi.shape[0]):
                d += vi[j] * vi[j]
        diag[i] = d
        den = alpha * d  # = 1 - h_ii - 1/n
        if not den > 0.0:
            return False, 0.0, 0.0
        amp = max(amp, (1.0 - den) / den)
    for q in range(Yc.shape[0]):  # column by column (see _solve_columns)
        y = Yc[q]
        work[:] = 0.0  # V' y (the reciprocals are no longer needed)
        for i in range(ntr):
            vi, wi = V[i, i:], work[i:]
            yi = y[i]
            for j in range(vi.shape[0]):
                wi[j] += yi * vi[j]
        cq = c[q]
        for i in range(ntr):
            vi, wi = V[i, i:], work[i:]
            acc = 0.0
            for j in range(vi.shape[0]):
                acc += vi[j] * wi[j]
            cq[i] = acc
    return True, cond, amp


@kernel(nogil=True, fastmath=_FASTMATH)
def _solve_columns(U, Rt, fitted, Z):
    """For every target column ``r`` (a row of ``Rt``, ``Xc'Yc``'s columns): ``t = U^-T r``,
    the fitted values ``Z t`` (rows ``z_i = U^-T x_i`` of ``Z``) into ``fitted``'s row, and
    the coefficients ``U^-1 t`` in place of ``r``.

    Written as loops over one column at a time rather than BLAS calls on all of them, so
    that a column's result does not depend on how many label sets are solved together
    (BLAS may sum in another order for another number of columns, which matters at the
    level of ``eps * cond``)."""
    p = U.shape[0]
    Q = Rt.shape[0]
    ntr = Z.shape[0]
    for q in range(Q):
        t = Rt[q]
        for c in range(p):  # U^T t = r, U^T lower: rows of U read in order
            v = t[c] / U[c, c]
            t[c] = v
            row, rest = U[c, c + 1 :], t[c + 1 :]  # (slices looped from 0: vectorised)
            for i in range(row.shape[0]):
                rest[i] -= row[i] * v
        for i in range(ntr):
            acc = 0.0
            z = Z[i]
            for j in range(p):
                acc += z[j] * t[j]
            fitted[q, i] = acc
        for i in range(p - 1, -1, -1):  # U b = t
            row, rest = U[i, i + 1 :], t[i + 1 :]
            acc = 0.0
            for j in range(row.shape[0]):
                acc += row[j] * rest[j]
            t[i] = (t[i] - acc) / U[i, i]


@kernel(nogil=True, fastmath=_FASTMATH)
def _loo_sse(E, den, ntr, T, out):
    """Each label set's sum of squared leave-one-out errors ``E[q, i] / den[i]`` over its
    ``T`` target columns and the ``ntr`` training samples, into ``out[s]`` (both forms:
    residuals over ``1 - h_ii - 1/n``, or dual coefficients over the inverse's diagonal)."""
    for s in range(out.shape[0]):
        acc = 0.0
        for q in range(s * T, (s + 1) * T):
            for i in range(ntr):
                e = E[q, i] / den[i]
                acc += e * e
        out[s] = acc


@kernel(nogil=True)
def _choose(sse, scale, sensitivity, margin, best_out, near_out):
    """First best alpha per label set from the sums of squared leave-one-out errors
    ``sse`` ``(A, L)``; ``near_out`` ``(L,)``: whether a set's best score is within the
    rounding margin of another alpha's (or a score is not finite)."""
    n_alphas, n_sets = sse.shape
    tol = margin * _EPS * sensitivity
    for s in range(n_sets):
        b = 0
        best = -sse[0, s] * scale
        for a in range(1, n_alphas):
            score = -sse[a, s] * scale
            if score > best:
                best = score
                b = a
        best_out[s] = b
        near = False
        for a in range(n_alphas):
            if a != b and abs(best + sse[a, s] * scale) <= tol * abs(best):
                near = True
            if not np.isfinite(sse[a, s]):
                near = True
        near_out[s] = near


@kernel(nogil=True)
def _tied_alphas(sse, scale, sensitivity, margin, b, alphas, out):
    """The alphas whose score (label set 0) is within the rounding margin of the chosen
    alpha ``b``'s, as :func:`_choose` tests them (``b`` included), into ``out``; their
    count, or 0 when a score is not finite. Any alpha outside them scores below ``b``
    beyond what either path's rounding can reverse, so scikit-learn's choice is one of
    them."""
    tol = margin * _EPS * sensitivity
    best = -sse[b, 0] * scale
    k = 0
    for a in range(sse.shape[0]):
        if not np.isfinite(sse[a, 0]):
            return 0
        if a == b or abs(best + sse[a, 0] * scale) <= tol * abs(best):
            out[k] = alphas[a]
            k += 1
    return k


@kernel(nogil=True, fastmath=_FASTMATH)
def _tie_proven_alike(
    sse, scale, sensitivity, tie_margin, b, alphas, tied, tried, M, R, F, ybar, T, margin, H, C, out, slack
):
    """Whether a near-tie (label set 0, chosen alpha ``b``) cannot change a prediction: the
    alphas it leaves in play (:func:`_tied_alphas` with ``tie_margin``, into ``tied``) proven
    to predict alike by :func:`_agreeing_decisions` on ``M, R, F`` (either form's; its
    rounding margin ``margin``), whose decisions then go into ``out``. Not tried when every
    alpha is in play and ``tried`` says the proof of every alpha already failed on this
    fold."""
    k = _tied_alphas(sse, scale, sensitivity, tie_margin, b, alphas, tied)
    if k == 0 or (k == alphas.shape[0] and tried):
        return False
    return _agreeing_decisions(M, R, F, ybar, tied[:k], T, margin, H, C, out, slack)


@kernel(nogil=True)
def _proven_class(vals, errs, a):
    """The class that row ``a`` of ``vals`` (``(A, T)`` decisions of one test sample and
    label set, ``errs`` bounds on their errors) predicts, proven by the bounds, or -1: two
    classes (``T == 1``), the sign (positive: the second class), farther from 0 than its
    bound; else the largest column, ahead of every other by more than both bounds."""
    T = vals.shape[1]
    if T == 1:
        if vals[a, 0] > errs[a, 0]:
            return 1
        if vals[a, 0] < -errs[a, 0]:
            return 0
        return -1
    top = 0
    for k in range(1, T):
        if vals[a, k] > vals[a, top]:
            top = k
    low = vals[a, top] - errs[a, top]
    for k in range(T):
        if k != top and not low > vals[a, k] + errs[a, k]:
            return -1
    return top


@kernel(nogil=True)
def _proven_alike(dec0, err0, dec, err, T, vals, errs):
    """Whether every test sample (row of the decisions ``dec0`` and ``dec``, ``(n_test, Q)``,
    with bounds ``err0`` and ``err`` on their errors) gets the same class from both, each
    prediction proven by its bounds (label sets of ``T`` columns): 1 if so; -1 if some
    sample's two predictions are both proven and differ (no tighter bound can prove them
    alike); else 0. With ``dec`` the same array as ``dec0``, whether its predictions are
    proven (1 or 0). ``vals`` and ``errs`` are ``(2, T)`` work arrays."""
    n_test, Q = dec0.shape
    result = 1
    if T == 1:  # two classes: the signs, written out
        for t in range(n_test):
            for q in range(Q):
                d0, e0, d, e = dec0[t, q], err0[t, q], dec[t, q], err[t, q]
                if not (abs(d0) > e0 and abs(d) > e):
                    result = 0
                elif (d0 > 0.0) != (d > 0.0):
                    return -1
        return result
    for t in range(n_test):
        for s in range(Q // T):
            for k in range(T):
                q = s * T + k
                vals[0, k] = dec0[t, q]
                errs[0, k] = err0[t, q]
                vals[1, k] = dec[t, q]
                errs[1, k] = err[t, q]
            first = _proven_class(vals, errs, 0)
            other = _proven_class(vals, errs, 1)
            if first < 0 or other < 0:
                result = 0
            elif first != other:
                return -1
    return result


@kernel(nogil=True, fastmath=_FASTMATH)
def _decisions_and_bounds(F, fn, C, coef_err, ybar, tol, dec, err):
    """Decisions ``dec = F C' + ybar`` of the test rows ``F`` (norms ``fn``) and bounds on
    their errors: ``|f| coef_err[q]`` (the coefficients' error) plus the rounding of the
    sum, ``tol (|f| |c| + |ybar|)``."""
    Q, m = C.shape
    for q in range(Q):
        cq = C[q]
        cn = _norm(cq)
        for t in range(F.shape[0]):
            x = F[t]
            acc = 0.0
            for j in range(m):
                acc += x[j] * cq[j]
            dec[t, q] = acc + ybar[q]
            err[t, q] = fn[t] * coef_err[q] + tol * (fn[t] * cn + abs(ybar[q]))


@kernel(nogil=True, fastmath=_FASTMATH)
def _norm(v):
    """The Euclidean norm of the 1-d array ``v``."""
    acc = 0.0
    for j in range(v.shape[0]):
        acc += v[j] * v[j]
    return np.sqrt(acc)


@kernel(nogil=True)
def _factor_shifted(M, diag, alpha, U):
    """The upper Cholesky factor of ``M + alpha I`` into ``U``: ``M``'s diagonal (``diag``)
    shifted in place, then restored; False when not positive definite."""
    m = M.shape[0]
    for r in range(m):
        M[r, r] = diag[r] + alpha
    ok = cholesky_upper_into(M, U)
    for r in range(m):
        M[r, r] = diag[r]
    return ok


@kernel(nogil=True, fastmath=_FASTMATH)
def _inverse_trace(U, work):
    """The trace of ``A^-1`` from the upper factor ``U`` of ``A`` (``A^-1 = V V'`` with
    ``V = U^-1``, written to ``work``: the sum of its squares); 0 when a diagonal entry of
    ``U`` is not positive."""
    d = U.shape[0]
    inv = np.empty(d)
    for r in range(d):
        if not U[r, r] > 0.0:
            return 0.0
        inv[r] = 1.0 / U[r, r]
    inverse_rows_upper(U, inv, work)
    trace = 0.0
    for r in range(d):
        vr = work[r, r:]
        for c in range(vr.shape[0]):
            trace += vr[c] * vr[c]
    return trace if trace > 0.0 else 0.0


@kernel(nogil=True)
def _series_error(norms, delta, inv, fro2, gamma_solve):
    """A bound on the error of the coefficients ``c = c0 + delta g1 + delta^2 g2 +
    delta^3 g3`` (computed, nested) of ``M + alpha I``, ``delta = alpha0 - alpha``, where
    ``g_k`` are the computed solves ``A0^-1 g_{k-1}`` (``g_0 = c0 = A0^-1 r``) with
    ``A0 = M + alpha0 I = U'U``, without a residual: ``norms`` holds ``|c0|, |g1|, |g2|,
    |g3|``, ``inv`` a bound on ``|(M + alpha I)^-1|_2``, ``fro2`` on ``|U|_F^2``.

    Each solve is exact for ``A0 + E_k``, ``|E_k| <= gamma_solve |U'||U|`` (Cholesky
    factorisation and solve, Higham, Theorem 10.4), so its residual ``rho_k`` is at most
    ``gamma_solve |U|_F^2 |g_k|``; then ``r - (M + alpha I) c = rho_0 + delta rho_1 +
    delta^2 rho_2 + delta^3 rho_3 + delta^4 g3`` exactly (with ``delta`` as computed: its
    rounding adds at most ``eps delta |c|``), and the nested sum's own rounding is at most
    ``gamma_6`` times the sum of the terms' norms."""
    terms = norms[0] + delta * (norms[1] + delta * (norms[2] + delta * norms[3]))
    residual = (gamma_solve * fro2 + _EPS * delta) * terms + delta**4 * norms[3]
    return inv * residual + 8 * _EPS * terms


@kernel(nogil=True, inline="always")
def _keep_trying(tried, proven):
    """Whether a block of spheres tries the next fold's proof: always for its first
    ``_PROOF_TRIALS`` folds, then while at least a quarter of those tried were proven."""
    return tried < _PROOF_TRIALS or 4 * proven >= tried


@kernel(nogil=True)
def _inverse_norm(alpha, alpha0, lam0, slack):
    """An upper bound on ``|(M + alpha I)^-1|_2`` for a symmetric ``M`` whose smallest
    eigenvalue is at least ``-slack`` (``slack < alpha``): ``1 / (alpha - slack)``, or, given
    a lower bound ``lam0`` on the smallest eigenvalue of ``M + alpha0 I`` (0 if none),
    ``1 / (lam0 - alpha0 + alpha)`` where that is smaller."""
    low = lam0 - alpha0 + alpha
    floor = alpha - slack
    return 1.0 / low if low > floor else 1.0 / floor


@kernel(nogil=True, fastmath=_FASTMATH)
def _agreeing_decisions(M, R, F, ybar, alphas, T, margin, H, C, out, slack):
    """The test decisions of every alpha's ridge fit, kept if all alphas predict alike.

    ``M`` is the centred covariance ``Xc'Xc`` ``(m, m)``, ``R`` the rows of ``Xc'Yc``
    ``(Q, m)``, ``F`` the centred test samples ``(n_test, m)``; the coefficients of alpha
    are ``(M + alpha I)^-1 R`` (row by row) and the decisions ``F C' + ybar``. If every
    alpha gives every test sample the same class (in each label set of ``T`` columns), each
    prediction proven by a bound on its decision's error, the largest alpha's decisions go
    into ``out`` ``(>= n_test, Q)`` and the function returns True: whichever alpha
    leave-one-out would choose, the predictions are these. Else False: the caller chooses
    the alpha.

    - **The largest alpha** ``a0``: one Cholesky factorisation of ``A0 = M + a0 I``
      (``M``'s diagonal shifted in place and restored) and solve. Its coefficients' error
      is about ``eps * cond * |c|``, with ``cond <= (|M|_1 + a0) |A0^-1|_2``.
    - **Every other alpha** ``a``: no factorisation. Its coefficients are the series
      ``sum_k (a0 - a)^k A0^-k c0`` to ``k = 3`` (the terms shared by the alphas: three
      more solves), with an error bound that needs no residual (:func:`_series_error`:
      the solves' backward errors and the series' remainder). Where that does not prove
      the predictions, they are refined further by ``c <- c + A0^-1 (r - (M + a I) c)``,
      with the error at most ``|r - (M + a I) c| |(M + a I)^-1|_2``, the exact residual's
      norm being at most the computed one plus the standard bound on its rounding,
      ``gamma_{m+2} (|r| + (|M|_1 + a) |c|)``. On W1 at 10 mm (the smallest eigenvalue of
      ``M`` about 2,000-4,500 against alphas of 0.1-10) the series alone proves the
      predictions of nearly every fold; after ``_REFINEMENTS`` steps without proof the
      function returns False.
    - ``|(M + a I)^-1|_2`` is bounded above, not estimated (:func:`_inverse_norm`): by
      ``1 / (a - slack)``, ``slack`` a bound on the rounding of ``M``'s computation (its
      exact value is positive semi-definite, so the computed ``M``'s smallest eigenvalue
      is at least ``-slack``; the function returns False when ``slack`` is not below half
      the smallest alpha), or where that does not prove the predictions, from the trace of
      ``A0^-1``, whose reciprocal is a lower bound on the smallest eigenvalue of ``A0``
      (one inversion, into ``H[1]``; the bound halved, which leaves room for the computed
      inverse's rounding, about ``eps * cond`` relative).

    The other bounds on rounding (of a factorisation and solve, of a decision's sum) are
    first-order, ``margin * eps`` times the size of the computation (``margin``, the
    near-tie margin 1e4, covers the dimension and the constants).
    ``H`` ``(2, m, m)`` and ``C`` ``(A, Q, m)`` are work arrays.
    """
    n_alphas = alphas.shape[0]
    Q, m = R.shape
    n_test = F.shape[0]
    tol = margin * _EPS
    if not 2.0 * slack < np.min(alphas):
        return False
    # the residual's rounding: at most gamma (|r| + |M + alpha I| |c|) componentwise, with
    # gamma = (m + 2) u / (1 - (m + 2) u) (sums of m + 2 products, in any order), u = eps / 2
    gamma = (m + 2) * _EPS
    a0 = np.argmax(alphas)
    alpha0 = alphas[a0]
    diag = np.empty(m)
    sums = np.zeros(m)
    for r in range(m):
        row = M[r]
        diag[r] = row[r]
        for c in range(m):
            sums[c] += abs(row[c])
    norm_m = 0.0
    for c in range(m):
        norm_m = max(norm_m, sums[c])
    U = H[0]
    if not _factor_shifted(M, diag, alpha0, U):
        return False
    running = np.ones(Q, dtype=np.bool_)
    C0 = C[a0]
    C0[:, :] = R
    cholesky_solve_upper_rows(U, C0, running)
    fn = np.empty(n_test)
    for t in range(n_test):
        fn[t] = _norm(F[t])
    rn = np.empty(Q)
    cn0 = np.empty(Q)
    for q in range(Q):
        rn[q] = _norm(R[q])
        cn0[q] = _norm(C0[q])
    coef_err = np.empty(Q)
    dec0 = np.empty((n_test, Q))
    err0 = np.empty((n_test, Q))
    res = np.empty((Q, m))
    dec = np.empty((n_test, Q))
    err = np.empty((n_test, Q))
    vals = np.empty((2, T))
    errs = np.empty((2, T))
    # the first terms of every other alpha's series, shared: g_k = A0^-k c0
    g1 = C0.copy()
    cholesky_solve_upper_rows(U, g1, running)
    g2 = g1.copy()
    cholesky_solve_upper_rows(U, g2, running)
    g3 = g2.copy()
    cholesky_solve_upper_rows(U, g3, running)
    gn = np.empty((4, Q))  # their norms, and c0's
    for q in range(Q):
        gn[0, q] = cn0[q]
        gn[1, q] = _norm(g1[q])
        gn[2, q] = _norm(g2[q])
        gn[3, q] = _norm(g3[q])
    # an upper bound on |U|_F^2 = trace(U'U), U'U = A0 + E with |E| <= gamma_{m+1} |U'||U|
    # (and the trace's own sum rounded)
    trace0 = 0.0
    for r in range(m):
        trace0 += diag[r] + alpha0
    fro2 = trace0 / (1.0 - (2 * m + 2) * _EPS)
    gamma_solve = (3 * m + 8) * _EPS  # a solve's backward error, the shift's rounding included
    started = np.zeros(n_alphas, dtype=np.bool_)
    proven = np.zeros(n_alphas, dtype=np.bool_)
    lam0 = 0.0  # a lower bound on the smallest eigenvalue of A0, once computed
    for level in range(2):
        if level == 1:
            trace = _inverse_trace(U, H[1])
            if not trace > 0.0:
                return False
            lam0 = 0.5 / trace  # halved: room for the computed inverse's rounding
        inv0 = _inverse_norm(alpha0, alpha0, lam0, slack)
        for q in range(Q):
            coef_err[q] = tol * (norm_m + alpha0) * inv0 * cn0[q]
        _decisions_and_bounds(F, fn, C0, coef_err, ybar, tol, dec0, err0)
        if _proven_alike(dec0, err0, dec0, err0, T, vals, errs) != 1:
            continue
        done = True
        for a in range(n_alphas):
            if a == a0 or proven[a]:
                continue
            alpha = alphas[a]
            inv = _inverse_norm(alpha, alpha0, lam0, slack)
            Ca = C[a]
            if not started[a]:
                started[a] = True
                delta = alpha0 - alpha
                for q in range(Q):
                    cq, c0q, g1q, g2q, g3q = Ca[q], C0[q], g1[q], g2[q], g3[q]
                    for j in range(m):
                        cq[j] = c0q[j] + delta * (g1q[j] + delta * (g2q[j] + delta * g3q[j]))
                    coef_err[q] = _series_error(gn[:, q], delta, inv, fro2, gamma_solve)
                _decisions_and_bounds(F, fn, Ca, coef_err, ybar, tol, dec, err)
                alike = _proven_alike(dec0, err0, dec, err, T, vals, errs)
                if alike == 1:
                    proven[a] = True
                    continue
                if alike < 0:  # a prediction that changes with alpha: choose
                    return False
            last = np.inf
            for step in range(_REFINEMENTS + 1):
                largest = 0.0
                for q in range(Q):  # the residual r - (M + alpha I) c, and the error bound
                    cq = Ca[q]
                    rq = R[q]
                    sq = res[q]
                    acc_c = 0.0
                    acc_r = 0.0
                    for r in range(m):
                        row = M[r]
                        acc = 0.0
                        for j in range(m):
                            acc += row[j] * cq[j]
                        v = rq[r] - acc - alpha * cq[r]
                        sq[r] = v
                        acc_r += v * v
                        acc_c += cq[r] * cq[r]
                    rounding = gamma * ((norm_m + alpha) * np.sqrt(acc_c) + rn[q])
                    coef_err[q] = (np.sqrt(acc_r) + rounding) * inv
                    largest = max(largest, np.sqrt(acc_r))
                _decisions_and_bounds(F, fn, Ca, coef_err, ybar, tol, dec, err)
                alike = _proven_alike(dec0, err0, dec, err, T, vals, errs)
                if alike == 1:
                    proven[a] = True
                    break
                if alike < 0:  # a prediction that changes with alpha: choose
                    return False
                if step == _REFINEMENTS or not largest < 0.5 * last:  # too slow: stop
                    break
                last = largest
                cholesky_solve_upper_rows(U, res, running)
                for q in range(Q):
                    cq = Ca[q]
                    sq = res[q]
                    for j in range(m):
                        cq[j] += sq[j]
            if not proven[a] and level == 1:
                # the alpha's own factorisation (where refinement converges slowly: the
                # smallest eigenvalue of M not far above the alphas' spread)
                V = H[1]
                if not _factor_shifted(M, diag, alpha, V):
                    return False
                Ca[:, :] = R
                cholesky_solve_upper_rows(V, Ca, running)
                for q in range(Q):
                    coef_err[q] = tol * (norm_m + alpha) * inv * _norm(Ca[q])
                _decisions_and_bounds(F, fn, Ca, coef_err, ybar, tol, dec, err)
                if _proven_alike(dec0, err0, dec, err, T, vals, errs) == 1:
                    proven[a] = True
            if not proven[a]:
                done = False
                break
        if done:
            for t in range(n_test):
                for q in range(Q):
                    out[t, q] = dec0[t, q]
            return True
    return False


@kernel(nogil=True, fastmath=_FASTMATH)
def ridge_cv_block(
    Xv, vox, order, runs, bounds, used, fold_blocks, subtract, train_pos, n_train, test_pos,
    n_test, gram_fold, targets, n_sets, alphas, fit_intercept, margin, gram_margin, predictions_only,
):  # fmt: skip
    """Leave-one-out choice of alpha and test decisions of every fold, for a block of
    spheres.

    Parameters
    ----------
    Xv : ndarray (n_voxels, n)
        Voxel-major data (float64, C-contiguous).
    vox : ndarray of int64 (B, p)
        Each sphere's rows of ``Xv``.
    order, runs, bounds, used, fold_blocks, subtract, test_pos, n_test
        As :class:`._ridge_kernel.RoleBlocks`.
    train_pos : ndarray of int64 (n_folds, max_train)
        Per fold, the block-order positions of its training samples, padded with 0.
    n_train : ndarray of int64 (n_folds,)
    gram_fold : ndarray of bool (n_folds,)
        Whether a fold is solved in the Gram form (no more training samples than features).
    targets : ndarray (n, L * T)
        The ``-1 / +1`` targets of ``L`` label sets of ``T`` columns each, samples in
        block order.
    n_sets : int
        ``L``.
    alphas : ndarray (A,)
    fit_intercept : bool
    margin : float
        Relative rounding margin, in units of ``eps * cond * (1 + amp)``, under which two
        alphas' scores are a near-tie in the covariance form; the bound of the proofs'
        rounding, in units of ``eps``.
    gram_margin : float
        The same in the Gram form, whose ``cond`` is that of ``K + s 11' + alpha I``.
    predictions_only : bool
        Whether only the decisions' predictions are needed: a fold whose alphas all predict
        alike (:func:`_agreeing_decisions`; in the Gram form on the centred Gram matrix,
        the dual coefficients and the test samples' centred products with the training
        samples) then skips the leave-one-out errors, its decisions those of the largest
        alpha and its chosen alpha -1 (not computed).

    Returns
    -------
    decisions : ndarray (B, n_folds, max_test, L * T)
        Decisions of each fold's test samples (plan order) with the chosen alpha of each
        label set; zeros beyond ``n_test``.
    best : ndarray of int64 (B, n_folds, L)
        Index of the chosen alpha; -1 where ``predictions_only`` skipped the choice.
    near : ndarray of bool (B, n_folds, L)
        Problems (and label sets) with a near-tie, or a failed factorisation: to be solved
        again on the eigendecomposition path.
    """
    B, p = vox.shape
    n = Xv.shape[1]
    Q = targets.shape[1]
    T = Q // n_sets
    F = n_train.shape[0]
    A_n = alphas.shape[0]
    a_min = np.argmin(alphas)
    nb = bounds.shape[0] - 1
    max_train = train_pos.shape[1]
    max_test = test_pos.shape[1]
    dec = np.zeros((B, F, max_test, Q))
    best = np.zeros((B, F, n_sets), dtype=np.int64)
    near = np.zeros((B, F, n_sets), dtype=np.bool_)
    any_cov = False
    any_gram = False
    for f in range(F):
        if gram_fold[f]:
            any_gram = True
        else:
            any_cov = True
    lev0 = 0.0
    mu_all = np.empty(p)
    # covariance form: the samples voxel-major, the role blocks' products
    Xt = np.empty((p, n)) if any_cov else np.empty((0, 0))
    grams = np.zeros((nb, p, p))
    sx = np.zeros((nb, p))
    xy = np.zeros((nb, Q, p))  # each block's products X'Y, transposed
    sy = np.zeros((nb, Q))
    total_g = np.empty((p, p))
    total_x = np.empty(p)
    total_xy = np.empty((Q, p))
    total_y = np.zeros(Q)
    Ytt = np.ascontiguousarray(targets.T)  # (Q, n)
    block_target_sums(Ytt, bounds, used, sy, total_y)
    A = np.empty((p, p))
    H = np.empty((p, p))
    mu = np.empty(p)
    Xtr = np.empty((max_train, p))
    W = np.empty((max_train, p))
    h = np.empty(max_train)
    Rt = np.empty((Q, p))
    Bt = np.empty((A_n, Q, p))
    Fte = np.empty((max_test, p))
    Hs = np.empty((2, p, p)) if predictions_only else np.empty((2, 0, 0))
    fit = np.empty((Q, max_train))
    # Gram form: the samples sample-major
    Xs = np.empty((n, p)) if any_gram else np.empty((0, 0))
    P = np.empty((n, n)) if any_gram else np.empty((0, 0))
    ybar = np.empty(Q)
    sse = np.empty((A_n, n_sets))
    chosen = np.empty(n_sets, dtype=np.int64)
    tied = np.empty(A_n)  # the alphas a near-tie leaves in play
    tried = 0  # folds whose predictions the block tried to prove alike, and proved
    proven = 0
    s_max = 0.0  # (per sphere, below)
    p_max = 0.0
    # the covariance form's voxels in slots that keep those shared with the sphere before in
    # place (:func:`._ridge_kernel.sphere_slots`), so that only the added ones' products are
    # formed
    slot = np.empty(p, dtype=np.int64)
    prev_slot = np.empty(p, dtype=np.int64)
    slot_rows = np.empty(p, dtype=np.int64)
    added = np.empty(p, dtype=np.int64)
    for sph in range(B):
        if any_cov:
            n_added = sphere_slots(
                vox[sph], vox[sph - 1] if sph > 0 else vox[sph, :0], prev_slot, slot, slot_rows, added
            )
            prev_slot[:] = slot
            gather_rows(Xv, slot_rows, runs, Xt, fit_intercept, mu_all)
            for k in range(used.shape[0]):  # (upper triangles: each fold's matrix mirrored)
                b = used[k]
                if n_added < 0:
                    block_products_rows(Xt, bounds, b, grams, sx)
                else:
                    block_products_added(Xt, bounds, b, grams, sx, added[:n_added])
                accumulate_upper(total_g, grams[b], k == 0)
                block_target_products(Xt, Ytt, bounds, b, xy)
                accumulate(total_xy, xy[b], k == 0)
                accumulate(total_x, sx[b], k == 0)
            # the largest diagonal of the sums of products: the scale of the rounding of
            # every fold's covariance (the proof's slack)
            s_max = 0.0
            for j in range(p):
                s_max = max(s_max, total_g[j, j])
        if any_gram:
            gather_sphere(Xv, vox[sph], order, Xs, fit_intercept, mu_all)
            matmul_into(Xs, Xs, P, True)
            # the largest diagonal of the samples' products: the scale of the rounding of
            # every fold's centred Gram matrix (the proof's slack)
            p_max = 0.0
            for j in range(n):
                p_max = max(p_max, P[j, j])
        for f in range(F):
            ntr = n_train[f]
            nf = float(ntr)
            lev0 = 1.0 / nf if fit_intercept else 0.0
            tpos = train_pos[f]
            kappa = 1.0
            amp = 0.0
            failed = False
            sse[:, :] = 0.0
            if not gram_fold[f]:
                # the fold's cross-products, sums and target products from the role blocks
                blocks, sub = fold_blocks[f], subtract[f]
                fold_products(total_xy, total_y, xy, sy, blocks, sub, Rt, ybar)
                fold_sum(total_x, sx, blocks, sub, mu)
                if fit_intercept:
                    # about the training mean: G - nf mu mu', X'Y - nf mu ybar'
                    for j in range(p):
                        mu[j] /= nf
                    for q in range(Q):
                        ybar[q] /= nf
                        for j in range(p):
                            Rt[q, j] -= nf * mu[j] * ybar[q]
                else:
                    mu[:] = 0.0
                    ybar[:] = 0.0
                fold_matrix_upper(total_g, grams, blocks, sub, nf if fit_intercept else 0.0, mu, 0.0, A)
                for r in range(1, p):  # both triangles (the proof and the 1-norms read rows)
                    for c in range(r):
                        A[r, c] = A[c, r]
                nte = n_test[f]
                for t in range(nte):  # the centred test samples (rows written contiguously)
                    x = Fte[t]
                    i = test_pos[f, t]
                    for j in range(p):
                        x[j] = Xt[j, i] - mu[j]
                # the rounding of A's computation, |E|_2 <= p max|E_ij|, each entry's error
                # (sums of n products, the subtraction of blocks, the mean's term) at most
                # (n + 16) eps times the largest diagonal of the sums (the proofs' slack)
                slack = p * (n + 16) * _EPS * s_max
                tried_fold = False
                if predictions_only and _keep_trying(tried, proven):
                    tried += 1
                    tried_fold = True
                    if _agreeing_decisions(
                        A, Rt, Fte[:nte], ybar, alphas, T, margin, Hs, Bt, dec[sph, f], slack
                    ):
                        proven += 1
                        best[sph, f, :] = -1
                        continue
                Yt = np.empty((Q, ntr))  # centred training targets, transposed
                for q in range(Q):
                    for i in range(ntr):
                        Yt[q, i] = targets[tpos[i], q] - ybar[q]
                for j in range(p):  # the centred training samples
                    row = Xt[j]
                    m = mu[j]
                    for i in range(ntr):
                        Xtr[i, j] = row[tpos[i]] - m
                Wf = W[:ntr]
                fitf = fit[:, :ntr]
                for a in range(A_n):
                    norm1 = _norm1_shifted(A, alphas[a], H)
                    if not cholesky_upper_into(H, H):
                        failed = True
                        break
                    if a == a_min:  # the largest condition number of the alphas'
                        rc = reciprocal_condition_upper(H, norm1)
                        if not rc > 0.0:
                            failed = True
                            break
                        kappa = 1.0 / rc
                    accumulate(W.ravel()[: ntr * p], Xtr.ravel()[: ntr * p], True)  # Wf = Xf
                    forward_upper_rows(H, Wf, ntr)  # rows z_i = U^-T x_i
                    for i in range(ntr):
                        acc = 0.0
                        for j in range(p):
                            acc += Wf[i, j] * Wf[i, j]
                        h[i] = acc
                    Ba = Bt[a]
                    Ba[:, :] = Rt
                    _solve_columns(H, Ba, fitf, Wf)
                    for i in range(ntr):
                        h[i] = 1.0 - h[i] - lev0  # the denominators
                        if not h[i] > 0.0:
                            failed = True
                        elif (1.0 - h[i]) / h[i] > amp:
                            amp = (1.0 - h[i]) / h[i]
                    if failed:
                        break
                    for q in range(Q):  # the residuals, in place of the fitted values
                        for i in range(ntr):
                            fitf[q, i] = Yt[q, i] - fitf[q, i]
                    _loo_sse(fitf, h, ntr, T, sse[a])
                if failed:
                    near[sph, f, :] = True
                    continue
                _choose(sse, 1.0 / (nf * T), kappa * (1.0 + amp), margin, chosen, near[sph, f])
                # a near-tie whose alphas in play all predict alike: the choice between them
                # cannot change a prediction
                if predictions_only and n_sets == 1 and near[sph, f, 0]:
                    proven_tie = _tie_proven_alike(
                        sse, 1.0 / (nf * T), kappa * (1.0 + amp), margin, chosen[0], alphas, tied,
                        tried_fold, A, Rt, Fte[:nte], ybar, T, margin, Hs, Bt, dec[sph, f], slack,
                    )  # fmt: skip
                    if proven_tie:
                        near[sph, f, 0] = False
                        best[sph, f, :] = -1
                        continue
                best[sph, f, :] = chosen
                for t in range(nte):
                    x = Fte[t]
                    for s in range(n_sets):
                        coef = Bt[chosen[s]]
                        for q in range(s * T, (s + 1) * T):
                            acc = 0.0
                            cq = coef[q]
                            for j in range(p):
                                acc += x[j] * cq[j]
                            dec[sph, f, t, q] = acc + ybar[q]
            else:
                nte = n_test[f]
                for q in range(Q):  # training targets' mean
                    acc = 0.0
                    if fit_intercept:
                        for i in range(ntr):
                            acc += targets[tpos[i], q]
                        acc /= nf
                    ybar[q] = acc
                # products of the samples centred on the training mean (the training rows)
                Rw = np.empty((ntr, n))
                for i in range(ntr):
                    for j in range(n):
                        Rw[i, j] = P[tpos[i], j]
                if fit_intercept:
                    for j in range(n):
                        acc = 0.0
                        for i in range(ntr):
                            acc += Rw[i, j]
                        acc /= nf
                        for i in range(ntr):
                            Rw[i, j] -= acc
                    for i in range(ntr):
                        acc = 0.0
                        for k in range(ntr):
                            acc += Rw[i, tpos[k]]
                        acc /= nf
                        for j in range(n):
                            Rw[i, j] -= acc
                K = np.empty((ntr, ntr))
                G = np.empty((ntr, ntr))
                for i in range(ntr):  # exactly symmetric: its upper triangle, mirrored
                    for k in range(i, ntr):
                        K[i, k] = Rw[i, tpos[k]]
                        K[k, i] = K[i, k]
                cross = np.empty((nte, ntr))
                for t in range(nte):
                    for i in range(ntr):
                        cross[t, i] = Rw[i, test_pos[f, t]]
                Yc = np.empty((Q, ntr))  # centred training targets, transposed
                for q in range(Q):
                    for i in range(ntr):
                        Yc[q, i] = targets[tpos[i], q] - ybar[q]
                # the rounding of K's computation (the products of p terms, two centrings
                # over ntr terms) and of its shift along 1 (below: |K_ij| + s <= 8 p_max, as
                # |x_i - mean|^2 <= 4 p_max): each entry within (p + 4 ntr + 24) eps of the
                # largest diagonal of the samples' products, |E|_2 ntr times that (the
                # proofs' slack)
                slack = ntr * (p + 4 * ntr + 24) * _EPS * p_max
                # with an intercept, K's null direction 1 gets the eigenvalue trace(K) / n
                # (K + s 11'): the same duals, denominators and decisions in exact
                # arithmetic (Yc, the denominators' correction and the test samples'
                # products are orthogonal to 1), without the 1 / alpha that direction gives
                # the inverse of K + alpha I, which the denominators' subtraction then
                # cancels and the proofs' bounds carry (scikit-learn's Gram form adds 11')
                Ks = _intercept_shifted(K, fit_intercept)
                tried_fold = False
                if predictions_only and ntr >= _GRAM_PROOF_MIN and _keep_trying(tried, proven):
                    tried += 1
                    tried_fold = True
                    # the dual coefficients (K + alpha I)^-1 Yc and the decisions
                    # cross c + ybar: the covariance form's algebra, in the samples
                    Hg = np.empty((2, ntr, ntr))
                    Cg = np.empty((A_n, Q, ntr))
                    if _agreeing_decisions(
                        Ks, Yc, cross, ybar, alphas, T, margin, Hg, Cg, dec[sph, f], slack
                    ):
                        proven += 1
                        best[sph, f, :] = -1
                        continue
                duals = np.empty((A_n, Q, ntr))
                diag = np.empty(ntr)
                # the inverse as V V' with V = U^-1 (rows padded to four for row_gram)
                V = np.zeros(((ntr + 3) // 4 * 4, ntr))
                work = np.empty(ntr)
                col = np.empty(ntr)
                for a in range(A_n):
                    c = duals[a]
                    ok, cond, amp_a = _gram_alpha(
                        Ks, alphas[a], Yc, fit_intercept, a == a_min, G, V, work, col, diag, c
                    )
                    if not ok:
                        failed = True
                        break
                    if a == a_min:  # the largest condition number of the alphas'
                        kappa = cond
                    amp = max(amp, amp_a)
                    _loo_sse(c, diag, ntr, T, sse[a])
                if failed:
                    near[sph, f, :] = True
                    continue
                _choose(sse, 1.0 / (nf * T), kappa * (1.0 + amp), gram_margin, chosen, near[sph, f])
                # a near-tie (as in the covariance form)
                if predictions_only and n_sets == 1 and near[sph, f, 0]:
                    proven_tie = _tie_proven_alike(
                        sse, 1.0 / (nf * T), kappa * (1.0 + amp), gram_margin, chosen[0], alphas, tied,
                        tried_fold, Ks, Yc, cross, ybar, T, margin, np.empty((2, ntr, ntr)),
                        np.empty((A_n, Q, ntr)), dec[sph, f], slack,
                    )  # fmt: skip
                    if proven_tie:
                        near[sph, f, 0] = False
                        best[sph, f, :] = -1
                        continue
                best[sph, f, :] = chosen
                for t in range(nte):
                    for s in range(n_sets):
                        c = duals[chosen[s]]
                        for q in range(s * T, (s + 1) * T):
                            acc = 0.0
                            cq = c[q]
                            for i in range(ntr):
                                acc += cross[t, i] * cq[i]
                            dec[sph, f, t, q] = acc + ybar[q]
    return dec, best, near
