"""Compiled L2-regularised logistic regression of every fold, sphere by sphere, from the
voxel-major data.

:func:`logistic_block` goes from each sphere's samples to every fold's test decisions (and,
when asked, its coefficients): one Newton solver per (sphere, fold) problem, binary
(:func:`_newton_binary`) or multinomial on the sum-to-zero subspace
(:func:`_newton_multinomial`), with the objective, stopping rule and line search described
in :mod:`.logistic`. Nothing larger than one sphere's samples, their Gram matrix and one
problem's Hessian is materialised.

With more features than training samples (``d > n_train``) a fold is solved in an
``n_train``-dimensional orthonormal basis of its training rows, from the Cholesky factor of
their Gram matrix: with ``X X' = L L'`` (``L`` lower triangular), ``Q = X' L^-T`` has
orthonormal columns spanning the rows of ``X`` and ``X Q = L``, so the design in the basis
is ``L`` itself, and ``w = Q g = X' L^-T g``. The Gram matrix of all the sphere's samples is
computed once per sphere (one ``syrk``); each fold picks its training block and factors it.
A fold whose Gram block is not positive definite, or too badly conditioned for the basis to
be orthonormal to rounding, is solved in the feature space instead.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._lapack import cholesky_solve_upper, cholesky_upper, gram_into, matmul_into, syrk_upper

__all__ = ["ITERATIONS", "logistic_block"]

#: Newton iterations and (sphere, fold) problems solved since import (a diagnostic counter,
#: updated by :class:`.logistic.BatchedLogisticRegression`)
ITERATIONS = np.zeros(2, dtype=np.int64)

_EPS = np.finfo(np.float64).eps
#: sums may be reordered (vectorised): the results stay exact to rounding; no assumptions
#: on NaN or infinities
_FASTMATH = {"reassoc", "contract"}
#: a fold's Gram block is used as a basis when its smallest squared pivot is at least this
#: times its largest diagonal entry (the basis is then orthonormal to about
#: ``eps / _BASIS_RCOND``); otherwise the fold is solved in the feature space
_BASIS_RCOND = 1e-6
#: Armijo's sufficient-decrease constant and the number of halvings of the step
_ARMIJO = 1e-4
_HALVINGS = 60


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _log1pexp(x):
    """``log(1 + exp(x))`` without overflow."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _expit(x):
    """``1 / (1 + exp(-x))`` without overflow."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _binary_loss(z, dz, s, t, sign):
    """Mean binary log-loss of the predictors ``z + s * dz`` (``sign`` = +-1 per sample)."""
    n = z.shape[0]
    acc = 0.0
    for i in range(n):
        acc += _log1pexp(-sign[i] * (z[i] + s * dz[i]))
    return acc / n


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _row_norm(A):
    """Mean Euclidean norm of the rows of ``A`` (the scale of the predictors' rounding)."""
    n, q = A.shape
    acc = 0.0
    for i in range(n):
        r = 0.0
        for j in range(q):
            r += A[i, j] * A[i, j]
        acc += math.sqrt(r)
    return acc / n


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _factor_solve(H, grad, step):
    """``step = -H^-1 grad`` for the symmetric ``H`` whose upper triangle is filled (it is
    overwritten by its Cholesky factor); LU on the mirrored matrix when ``H`` is not
    positive definite to rounding."""
    q = H.shape[0]
    Hc = H.copy()
    if cholesky_upper(H, H):
        for j in range(q):
            step[j] = -grad[j]
        cholesky_solve_upper(H, step, step)
        return
    for r in range(1, q):
        for c in range(r):
            Hc[r, c] = Hc[c, r]
    step[:] = -np.linalg.solve(Hc, grad)


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _newton_binary(A, t, pen, theta, tol, max_iter):
    """Minimise ``mean_i log(1 + exp(-s_i a_i . theta)) + 0.5 * sum_j pen_j theta_j^2``.

    Parameters
    ----------
    A : ndarray (n, q)
        Design (C-contiguous).
    t : ndarray (n,)
        Labels in {0, 1} (``s_i = 2 t_i - 1``).
    pen : ndarray (q,)
        Diagonal of the penalty.
    theta : ndarray (q,)
        Starting point, overwritten by the solution.
    tol : float
    max_iter : int

    Returns
    -------
    iterations : int
    converged : bool
        False when still running after ``max_iter`` iterations.
    """
    n, q = A.shape
    sign = 2.0 * t - 1.0
    z = np.empty(n)
    dz = np.empty(n)
    resid = np.empty(n)
    Aw = np.empty((n, q))
    H = np.empty((q, q))
    grad = np.empty(q)
    step = np.empty(q)
    for i in range(n):
        acc = 0.0
        for j in range(q):
            acc += A[i, j] * theta[j]
        z[i] = acc
    row_norm = _row_norm(A)
    inv_n = 1.0 / n
    for it in range(max_iter):
        # loss, residuals and rows scaled by the square roots of the weights
        f_loss = 0.0
        for i in range(n):
            f_loss += _log1pexp(-sign[i] * z[i])
            prob = _expit(z[i])
            resid[i] = (prob - t[i]) * inv_n
            sw = math.sqrt(prob * (1.0 - prob) * inv_n)
            for j in range(q):
                Aw[i, j] = sw * A[i, j]
        f_loss *= inv_n
        pen_val = 0.0
        theta_sq = 0.0
        for j in range(q):
            grad[j] = pen[j] * theta[j]
            pen_val += pen[j] * theta[j] * theta[j]
            theta_sq += theta[j] * theta[j]
        for i in range(n):
            r = resid[i]
            for j in range(q):
                grad[j] += A[i, j] * r
        syrk_upper(Aw, H, 0.0)
        for j in range(q):
            H[j, j] += pen[j]
        _factor_solve(H, grad, step)
        gmax = 0.0
        slope = 0.0
        for j in range(q):
            gmax = max(gmax, abs(grad[j]))
            slope += grad[j] * step[j]
        done = gmax <= tol
        for i in range(n):
            acc = 0.0
            for j in range(q):
                acc += A[i, j] * step[j]
            dz[i] = acc
        f0 = f_loss + 0.5 * pen_val
        slack = 16.0 * _EPS * (abs(f0) + row_norm * math.sqrt(theta_sq))
        # Armijo backtracking from the full step
        s = 1.0
        for _ls in range(_HALVINGS):
            ft = 0.0
            for j in range(q):
                v = theta[j] + s * step[j]
                ft += pen[j] * v * v
            ft = _binary_loss(z, dz, s, t, sign) + 0.5 * ft
            if ft <= f0 + _ARMIJO * s * slope + slack:
                break
            s *= 0.5
        else:
            s = 0.0
        dmax = 0.0
        tmax = 0.0
        for j in range(q):
            delta = s * step[j]
            theta[j] += delta
            dmax = max(dmax, abs(delta))
            tmax = max(tmax, abs(theta[j]))
        for i in range(n):
            z[i] += s * dz[i]
        # a step that no longer changes the parameters: nothing left to gain
        if done or dmax <= 1e-15 * (1.0 + tmax):
            return it + 1, True
    return max_iter, False


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _softmax_loss(U, dU, s, y, P, want_prob):
    """Mean softmax cross-entropy of the predictors ``U + s * dU`` of the first ``K - 1``
    classes (``(K - 1, n)``; the last class's is minus their sum); when ``want_prob``, the
    class probabilities into ``P`` ``(K, n)``."""
    m, n = U.shape
    zk = np.empty(m + 1)
    acc = 0.0
    for i in range(n):
        tot = 0.0
        for k in range(m):
            v = U[k, i] + s * dU[k, i]
            zk[k] = v
            tot += v
        zk[m] = -tot
        top = zk[0]
        for k in range(1, m + 1):
            top = max(top, zk[k])
        se = 0.0
        for k in range(m + 1):
            se += math.exp(zk[k] - top)
        lse = math.log(se) + top
        acc += lse - zk[y[i]]
        if want_prob:
            for k in range(m + 1):
                P[k, i] = math.exp(zk[k] - lse)
    return acc / n


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _multinomial_penalty(Theta, Step, s, pen):
    """``0.5 * (sum_k |W_k|^2 + |sum_k W_k|^2)`` (weighted by ``pen``) of the rows
    ``Theta + s * Step`` ``(K - 1, p)``."""
    m, p = Theta.shape
    acc = 0.0
    for j in range(p):
        if pen[j] == 0.0:
            continue
        tot = 0.0
        sq = 0.0
        for k in range(m):
            v = Theta[k, j] + s * Step[k, j]
            tot += v
            sq += v * v
        acc += pen[j] * (sq + tot * tot)
    return 0.5 * acc


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _newton_multinomial(A, y, n_classes, pen, Theta, tol, max_iter):
    """Minimise the mean softmax cross-entropy plus ``0.5 * (sum_k |W_k|^2 + |sum_k
    W_k|^2)`` (weighted by ``pen``) over the first ``K - 1`` parameter rows (the last is
    minus their sum).

    Parameters
    ----------
    A : ndarray (n, p)
        Design (C-contiguous).
    y : ndarray of int64 (n,)
        Class codes in ``0 .. K-1``.
    n_classes : int
    pen : ndarray (p,)
        Penalty weight of each column of the design.
    Theta : ndarray (K - 1, p)
        Starting point, overwritten by the solution.
    tol : float
    max_iter : int

    Returns
    -------
    iterations : int
    converged : bool
    """
    n, p = A.shape
    m = n_classes - 1
    q = m * p
    At = np.ascontiguousarray(A.T)  # (p, n)
    U = np.empty((m, n))
    dU = np.empty((m, n))
    P = np.empty((m + 1, n))
    Gu = np.empty((m, n))
    Ac = np.empty((n, p))
    blk = np.empty((p, p))
    H = np.empty((q, q))
    grad = np.empty(q)
    step = np.empty(q)
    Step = step.reshape(m, p)
    Grad = grad.reshape(m, p)
    c = np.empty(n)
    matmul_into(Theta, At, U, False)
    row_norm = _row_norm(A)
    inv_n = 1.0 / n
    for it in range(max_iter):
        f_loss = _softmax_loss(U, U, 0.0, y, P, True)
        # d u_k moves z_k by +1 and z_K by -1
        for k in range(m):
            for i in range(n):
                yi = y[i]
                rk = P[k, i] - (1.0 if yi == k else 0.0)
                rK = P[m, i] - (1.0 if yi == m else 0.0)
                Gu[k, i] = (rk - rK) * inv_n
        matmul_into(Gu, A, Grad, False)
        theta_max = 0.0
        for k in range(m):
            sq = 0.0
            for j in range(p):
                sq += Theta[k, j] * Theta[k, j]
            theta_max = max(theta_max, math.sqrt(sq))
        for j in range(p):
            tot = 0.0
            for k in range(m):
                tot += Theta[k, j]
            for k in range(m):
                Grad[k, j] += pen[j] * (Theta[k, j] + tot)
        # Hessian blocks (k, l), k <= l: A' diag(c_kl) A with
        # c_kl = M_kl - M_kK - M_Kl + M_KK, M = diag(P) - P P'
        for k in range(m):
            for l in range(k, m):
                for i in range(n):
                    pk = P[k, i]
                    pl = P[l, i]
                    pK = P[m, i]
                    v = (pk + pl) * pK + pK * (1.0 - pK) - pk * pl
                    if k == l:
                        v += pk
                    c[i] = v * inv_n
                if k == l:  # c >= 0: the symmetric product of the scaled rows
                    for i in range(n):
                        sw = math.sqrt(max(c[i], 0.0))
                        for j in range(p):
                            Ac[i, j] = sw * A[i, j]
                    syrk_upper(Ac, blk, 0.0)
                    for r in range(p):
                        for cc in range(r, p):
                            H[k * p + r, k * p + cc] = blk[r, cc]
                        H[k * p + r, k * p + r] += 2.0 * pen[r]
                else:
                    for i in range(n):
                        for j in range(p):
                            Ac[i, j] = c[i] * A[i, j]
                    matmul_into(At, Ac, blk, False)
                    for r in range(p):
                        for cc in range(p):
                            H[k * p + r, l * p + cc] = blk[r, cc]
                        H[k * p + r, l * p + r] += pen[r]
        _factor_solve(H, grad, step)
        gmax = 0.0
        slope = 0.0
        for j in range(q):
            gmax = max(gmax, abs(grad[j]))
            slope += grad[j] * step[j]
        done = gmax <= tol
        matmul_into(Step, At, dU, False)
        f0 = f_loss + _multinomial_penalty(Theta, Step, 0.0, pen)
        slack = 16.0 * _EPS * (abs(f0) + row_norm * theta_max)
        s = 1.0
        for _ls in range(_HALVINGS):
            ft = _softmax_loss(U, dU, s, y, P, False) + _multinomial_penalty(Theta, Step, s, pen)
            if ft <= f0 + _ARMIJO * s * slope + slack:
                break
            s *= 0.5
        else:
            s = 0.0
        dmax = 0.0
        tmax = 0.0
        for k in range(m):
            for j in range(p):
                delta = s * Step[k, j]
                Theta[k, j] += delta
                dmax = max(dmax, abs(delta))
                tmax = max(tmax, abs(Theta[k, j]))
            for i in range(n):
                U[k, i] += s * dU[k, i]
        if done or dmax <= 1e-15 * (1.0 + tmax):
            return it + 1, True
    return max_iter, False


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _gram_basis(Gall, train, nt, R):
    """The upper Cholesky factor ``R`` (``G = R' R``) of the training block ``G`` of the
    Gram matrix ``Gall``; False when it is not positive definite or its smallest squared
    pivot is below ``_BASIS_RCOND`` times its largest diagonal entry."""
    gmax = 0.0
    for a in range(nt):
        ia = train[a]
        for b in range(a, nt):
            R[a, b] = Gall[ia, train[b]]
        gmax = max(gmax, R[a, a])
    if not cholesky_upper(R, R):
        return False
    for a in range(nt):
        if R[a, a] * R[a, a] < _BASIS_RCOND * gmax:
            return False
    return True


@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def logistic_block(
    Xv, vox, train_idx, n_train, test_idx, n_test, y, n_classes, C, fit_intercept, tol, max_iter,
    want_coef,
):  # fmt: skip
    """Logistic-regression decisions of every fold on its test samples, for a block of
    spheres.

    Parameters
    ----------
    Xv : ndarray (n_voxels, n)
        Voxel-major data (float64, C-contiguous).
    vox : ndarray of int64 (B, d)
        Each sphere's rows of ``Xv``.
    train_idx : ndarray of int64 (n_folds, max_train)
        Each fold's training samples (padded).
    n_train : ndarray of int64 (n_folds,)
    test_idx : ndarray of int64 (n_folds, max_test)
        Each fold's test samples in plan order (padded).
    n_test : ndarray of int64 (n_folds,)
    y : ndarray of int64 (n,)
        Class codes.
    n_classes : int
    C : float
    fit_intercept : bool
    tol : float
    max_iter : int
    want_coef : bool
        Whether to return the coefficients.

    Returns
    -------
    dec : ndarray (B, n_folds, max_test, K)
        Decisions of each fold's test samples (zeros beyond ``n_test``); ``K = 1`` for two
        classes, else ``n_classes``.
    coef : ndarray (B, n_folds, K, d + 1)
        With ``want_coef`` (else of length 0): each fold's parameter rows (the weights, then
        the intercept, 0 without one), in the coordinates of the features shifted by their
        mean over all samples when ``fit_intercept``.
    mu : ndarray (B, d)
        That mean (zeros without an intercept).
    stats : ndarray of int64 (3,)
        Problems that did not converge, Newton iterations and problems solved.
    """
    B, d = vox.shape
    n = Xv.shape[1]
    F = train_idx.shape[0]
    K = 1 if n_classes == 2 else n_classes
    m = 1 if n_classes == 2 else n_classes - 1
    e = 1 if fit_intercept else 0
    p = d + e
    dec = np.zeros((B, F, test_idx.shape[1], K))
    coef = np.zeros((B if want_coef else 0, F, K, d + 1))
    mus = np.zeros((B, d))
    stats = np.zeros(3, dtype=np.int64)
    max_train = 0
    any_basis = False
    for f in range(F):
        max_train = max(max_train, n_train[f])
        any_basis = any_basis or d > n_train[f]
    Xf = np.empty((d, n))  # the sphere's features, voxel by voxel
    As = np.empty((n, p))  # its design, sample by sample
    Gall = np.empty((n, n)) if any_basis else np.empty((0, 0))
    Rb = np.empty((max_train, max_train))
    W = np.zeros((m, p))  # the last fold's optimum (the next fold's start)
    Wfull = np.zeros((K, p))
    v = np.empty(max_train)
    yt = np.empty(max_train, dtype=np.int64)
    tt = np.empty(max_train)
    for sph in range(B):
        rows = vox[sph]
        for j in range(d):
            src = Xv[rows[j]]
            mu = 0.0
            if fit_intercept:
                for i in range(n):
                    mu += src[i]
                mu /= n
            mus[sph, j] = mu
            for i in range(n):
                Xf[j, i] = src[i] - mu
        for i in range(n):
            for j in range(d):
                As[i, j] = Xf[j, i]
            if fit_intercept:
                As[i, d] = 1.0
        if any_basis:
            gram_into(Xf, Gall)
        W[:, :] = 0.0
        for f in range(F):
            nt = n_train[f]
            tr = train_idx[f, :nt]
            for a in range(nt):
                yt[a] = y[tr[a]]
                tt[a] = 1.0 if y[tr[a]] == 1 else 0.0
            basis = d > nt and _gram_basis(Gall, tr, nt, Rb)
            if basis:
                # design in the basis: L = R' (lower triangular), then the intercept column
                pb = nt + e
                A = np.zeros((nt, pb))
                for a in range(nt):
                    for b in range(a + 1):
                        A[a, b] = Rb[b, a]
                    if fit_intercept:
                        A[a, nt] = 1.0
                Theta = np.empty((m, pb))
                for k in range(m):  # the start W_k in the basis: g = L^-1 X W_k
                    for a in range(nt):
                        acc = 0.0
                        row = As[tr[a]]
                        for j in range(d):
                            acc += row[j] * W[k, j]
                        for b in range(a):
                            acc -= A[a, b] * Theta[k, b]
                        Theta[k, a] = acc / A[a, a]
                    if fit_intercept:
                        Theta[k, nt] = W[k, d]
            else:
                pb = p
                A = np.empty((nt, p))
                for a in range(nt):
                    A[a] = As[tr[a]]
                Theta = W.copy()
            pen = np.full(pb, 1.0 / (C * nt))
            if fit_intercept:
                pen[pb - 1] = 0.0
            if n_classes == 2:
                its, ok = _newton_binary(A, tt[:nt], pen, Theta[0], tol, max_iter)
            else:
                its, ok = _newton_multinomial(A, yt[:nt], n_classes, pen, Theta, tol, max_iter)
            stats[0] += 0 if ok else 1
            stats[1] += its
            stats[2] += 1
            if basis:  # back to the features: W_k = X' L^-T g
                for k in range(m):
                    for a in range(nt - 1, -1, -1):
                        acc = Theta[k, a]
                        for b in range(a + 1, nt):
                            acc -= Rb[a, b] * v[b]
                        v[a] = acc / Rb[a, a]
                    for j in range(d):
                        W[k, j] = 0.0
                    for a in range(nt):
                        row = As[tr[a]]
                        va = v[a]
                        for j in range(d):
                            W[k, j] += va * row[j]
                    if fit_intercept:
                        W[k, d] = Theta[k, nt]
            else:
                W[:, :] = Theta
            if n_classes == 2:
                Wfull[0] = W[0]
            else:
                Wfull[n_classes - 1] = 0.0
                for k in range(m):
                    Wfull[k] = W[k]
                    Wfull[n_classes - 1] -= W[k]
            for a in range(n_test[f]):
                row = As[test_idx[f, a]]
                for k in range(K):
                    acc = 0.0
                    for j in range(p):
                        acc += row[j] * Wfull[k, j]
                    dec[sph, f, a, k] = acc
            if want_coef:
                for k in range(K):
                    for j in range(p):
                        coef[sph, f, k, j] = Wfull[k, j]
    return dec, coef, mus, stats
