"""The finite Newton method for batches of L2-regularised squared-hinge problems (see
:mod:`fastsearchlight.estimators.svm`), in the primal (d x d systems) or, with more features
than training rows, from the rows' Gram matrix (n x n systems): the same Newton points."""

from __future__ import annotations

import numpy as np

__all__ = ["needs_svd", "newton", "ridge_svd", "solve_spd"]


def solve_spd(H: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``H x = b`` for a stack of symmetric positive definite matrices."""
    return np.linalg.solve(H, b[..., None])[..., 0]


#: The Newton systems ``(I + 2C X_A^T X_A) w = 2C X_A^T y_A`` are solved from these normal
#: equations unless rounding at the scale of their largest entry would change the identity
#: (the regulariser) by more than this fraction: data of large values (~1e7) leave nothing
#: of the identity in ``H`` (a singular or meaningless solve); those problems are solved
#: from the singular value decomposition of ``X_A`` instead, which never forms ``X^T X``.
_NORMAL_EQUATIONS_TOL = 1e-6


def needs_svd(H: np.ndarray) -> np.ndarray:
    """Which matrices ``H = I + 2C X^T X`` (..., d, d) are too large for their identity."""
    return np.finfo(np.float64).eps * np.diagonal(H, axis1=-2, axis2=-1).max(axis=-1) > _NORMAL_EQUATIONS_TOL


def ridge_svd(Xa: np.ndarray, Y: np.ndarray, C: float) -> np.ndarray:
    """``(I + 2C Xa^T Xa)^-1 2C Xa^T Y`` from the SVD of ``Xa`` (N, n, d), ``Y`` (N, n, M).

    With ``Xa = U S V^T``, the solution is ``V diag(2C s / (1 + 2C s^2)) U^T Y``: exact to
    rounding at any scale of the data.
    """
    U, s, Vt = np.linalg.svd(Xa, full_matrices=False)
    gain = (2.0 * C) * s / (1.0 + (2.0 * C) * s * s)
    return np.swapaxes(Vt, -1, -2) @ (gain[..., None] * (np.swapaxes(U, -1, -2) @ Y))


def _exact_line_search(wd, ss, m, delta, W, C, n_steps=30):
    """Minimise ``phi(t) = 0.5|w + t s|^2 + C sum_i W_i max(0, 1 - m_i - t delta_i)^2``.

    ``phi'`` is increasing and piecewise linear, so Newton's method on it, started at
    ``t = 1`` (the Newton point), ends in a few steps on the exact minimiser. Problems leave
    the batch as soon as their step length is settled.

    Parameters
    ----------
    wd, ss : ndarray (N,)
        ``w . s`` and ``s . s``.
    m, delta : ndarray (N, n)
        Margins ``y_i x_i . w`` and their directional change ``y_i x_i . s``.
    W : ndarray (N, n)
        0/1 training weights.
    """
    t = np.ones_like(wd)
    idx = None  # every problem, on the first step (no copies)
    one_minus_m = 1.0 - m
    for _ in range(n_steps):
        if idx is None:
            tt, dl, om, Wi, wdi, ssi = t, delta, one_minus_m, W, wd, ss
        else:
            tt, dl, om, Wi, wdi, ssi = t[idx], delta[idx], one_minus_m[idx], W[idx], wd[idx], ss[idx]
        act = Wi * ((om - tt[:, None] * dl) > 0.0)
        ad = act * dl
        num = wdi - 2.0 * C * np.einsum("nk,nk->n", ad, om)
        den = ssi + 2.0 * C * np.einsum("nk,nk->n", ad, dl)
        t_new = -num / den
        moving = np.abs(t_new - tt) > 1e-13 * np.maximum(1.0, np.abs(tt))
        if idx is None:
            t = t_new
            idx = np.flatnonzero(moving)
        else:
            t[idx] = t_new
            idx = idx[moving]
        if idx.size == 0:
            break
    return t


def newton(Xs, Ys, Ws, w, C, max_iter, first_point=None, iterations=None):
    """Finite Newton iterations on a batch of problems, from ``w`` (updated in place).

    Parameters
    ----------
    Xs : ndarray (N, n, d)
        Training samples of each problem (padding rows have weight 0).
    Ys, Ws : ndarray (N, n)
        +-1 targets and 0/1 weights.
    w : ndarray (N, d)
        Starting weights; overwritten with the result.
    C : float
    max_iter : int
    first_point : ndarray (N, d) or None
        With ``w = 0``: the Newton point of the first step (the ridge solution on all
        training samples, which are all active at ``w = 0``), computed by the caller.

    Returns
    -------
    converged : ndarray of bool (N,)
    """
    N, n, d = Xs.shape
    eye = np.eye(d)
    # more features than training rows: the Newton point from the rows' Gram matrix
    dual = n < d
    K = Xs @ np.swapaxes(Xs, 1, 2) if dual else None
    converged = np.zeros(N, dtype=bool)
    todo = np.arange(N)
    ms = np.einsum("nkd,nd->nk", Xs, w) * Ys if w.any() else np.zeros((N, n))
    for it in range(max_iter):
        if iterations is not None:
            iterations[todo] += 1
        act = Ws * (ms < 1.0)
        wt = w[todo]
        if it == 0 and first_point is not None:
            step = first_point - wt
        elif dual:
            step = _dual_newton_point(K, Xs, Ys, act, C) - wt
        else:
            H = (np.swapaxes(Xs, 1, 2) * act[:, None, :]) @ Xs
            H *= 2.0 * C
            H += eye
            rhs = 2.0 * C * np.einsum("nk,nkd->nd", act * Ys, Xs)
            svd = needs_svd(H)
            if svd.any():
                H[svd] = np.eye(d)  # solved below
            step = solve_spd(H, rhs)
            if svd.any():
                Xa = Xs[svd] * act[svd][:, :, None]
                step[svd] = ridge_svd(Xa, (act * Ys)[svd][:, :, None], C)[..., 0]
            step -= wt
        delta = (Xs @ step[:, :, None])[:, :, 0]
        delta *= Ys
        t = _exact_line_search(
            np.einsum("nd,nd->n", wt, step), np.einsum("nd,nd->n", step, step), ms, delta, Ws, C
        )
        w[todo] = wt + t[:, None] * step
        ms = ms + t[:, None] * delta
        same = np.all((Ws * (ms < 1.0)) == act, axis=1)
        tiny = np.max(np.abs(t[:, None] * step), axis=1) <= 1e-13 * (1.0 + np.max(np.abs(w[todo]), axis=1))
        done = same | tiny
        converged[todo[done]] = True
        if done.all():
            break
        keep = ~done
        todo, Xs, Ys, Ws, ms = todo[keep], Xs[keep], Ys[keep], Ws[keep], ms[keep]
        if dual:
            K = K[keep]
    return converged


def _dual_newton_point(
    K: np.ndarray, Xs: np.ndarray, Ys: np.ndarray, act: np.ndarray, C: float
) -> np.ndarray:
    """The Newton point ``(I + 2C X_A^T X_A)^-1 2C X_A^T y_A`` from the active rows' Gram
    matrix, ``X_A^T (I / 2C + X_A X_A^T)^-1 y_A`` (the same point: push-through identity),
    for problems with more features than training rows (run-wise betas, large spheres):
    an n x n system instead of d x d.

    Parameters
    ----------
    K : ndarray (N, n, n)
        ``Xs Xs^T`` of each problem's training rows.
    Xs : ndarray (N, n, d)
    Ys, act : ndarray (N, n)
        +-1 targets and the 0/1 active set.
    """
    n = K.shape[1]
    M = K * (act[:, :, None] * act[:, None, :])
    svd = needs_svd(2.0 * C * M + np.eye(n))
    M[:, np.arange(n), np.arange(n)] += 1.0 / (2.0 * C)
    if svd.any():
        M[svd] = np.eye(n)  # solved below
    alpha = solve_spd(M, act * Ys) * act
    point = np.einsum("nk,nkd->nd", alpha, Xs)
    if svd.any():
        Xa = Xs[svd] * act[svd][:, :, None]
        point[svd] = ridge_svd(Xa, (act * Ys)[svd][:, :, None], C)[..., 0]
    return point
