"""Batched linear SVM: L2-regularised squared-hinge loss, as scikit-learn's ``LinearSVC``.

Problem solved for every (sphere, fold, one-vs-rest class) at once::

    min_w  0.5 * |w|^2 + C * sum_{i in train} max(0, 1 - y_i * w . [x_i, s])^2

where ``s = intercept_scaling`` is a constant extra feature, so the intercept ``w[-1] * s`` is
regularised, exactly as liblinear does it for ``LinearSVC(fit_intercept=True)``. The problem is
strictly convex, so its minimiser is unique and any exact solver lands on it.

Method: the finite Newton method for the primal L2-SVM (Keerthi & DeCoste, 2005, JMLR 6:
341-361). With ``A`` the set of training samples whose margin is below 1, the Newton point is
the ridge-regression solution restricted to ``A``::

    (I + 2C X_A^T X_A) w = 2C X_A^T y_A

reached by an exact line search on the piecewise-quadratic objective. The method stops when
the active set no longer changes: then ``w`` satisfies the optimality conditions exactly (up
to rounding), a tighter optimum than liblinear's default tolerance.

The first Newton step starts from ``w = 0``, where every training sample is active: its
Hessian is the fold's training Gram matrix (the sphere's full Gram matrix minus the fold's
test samples' part), shared by every class of the fold. Problems that have converged leave
the batch, so later iterations only work on the few that have not.
"""

from __future__ import annotations

import numpy as np

from ..cv import CVPlan
from .base import BatchedClassifier, binary_targets


def _solve_spd(H: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``H x = b`` for a stack of symmetric positive definite matrices."""
    return np.linalg.solve(H, b[..., None])[..., 0]


def _exact_line_search(wd, ss, m, delta, W, C, n_steps=20):
    """Minimise ``phi(t) = 0.5|w + t s|^2 + C sum_i W_i max(0, 1 - m_i - t delta_i)^2``.

    ``phi'`` is increasing and piecewise linear, so Newton's method on it, started at
    ``t = 1`` (the Newton point), ends in a few steps on the exact minimiser.

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
    for _ in range(n_steps):
        act = W * ((1.0 - m - t[:, None] * delta) > 0.0)
        num = wd - 2.0 * C * np.einsum("nk,nk->n", act * delta, 1.0 - m)
        den = ss + 2.0 * C * np.einsum("nk,nk->n", act, delta * delta)
        t_new = -num / den
        if np.array_equal(t_new, t):
            break
        if np.all(np.abs(t_new - t) <= 1e-15 * np.maximum(1.0, np.abs(t))):
            t = t_new
            break
        t = t_new
    return t


class BatchedLinearSVC(BatchedClassifier):
    """Batched equivalent of ``sklearn.svm.LinearSVC(penalty="l2", loss="squared_hinge")``.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength.
    fit_intercept : bool, default=True
        Whether to add the constant feature ``intercept_scaling`` (regularised intercept,
        as liblinear).
    intercept_scaling : float, default=1.0
        Value of the constant feature.
    max_iter : int, default=100
        Maximum number of Newton iterations (the method usually stops in under 10).
    """

    reference = "sklearn.svm.LinearSVC(penalty='l2', loss='squared_hinge')"

    def __init__(
        self,
        C: float = 1.0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        max_iter: int = 100,
    ):
        self.C = C
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.max_iter = max_iter

    def _augment(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if not self.fit_intercept:
            return X
        bias = np.full(X.shape[:2] + (1,), float(self.intercept_scaling))
        return np.concatenate([X, bias], axis=2)

    def bytes_per_sphere(self, n_samples, n_features, n_folds, n_classes):
        d = n_features + 1
        n_problems = n_folds * (1 if n_classes == 2 else n_classes)
        return 8 * (2 * n_samples * d + n_problems * (n_samples * (d + 6) + 3 * d * d))

    def fit_weights(self, X: np.ndarray, Y: np.ndarray, W: np.ndarray) -> np.ndarray:
        """Solve every (sphere, problem) pair.

        Parameters
        ----------
        X : ndarray (n_spheres, n_samples, n_features)
        Y : ndarray (n_problems, n_samples)
            +-1 targets of each problem.
        W : ndarray (n_problems, n_samples)
            0/1 sample weights of each problem (1 = training sample).

        Returns
        -------
        ndarray (n_spheres, n_problems, n_features + fit_intercept)
        """
        C = float(self.C)
        Xa = self._augment(X)
        B, n, d = Xa.shape
        Q = Y.shape[0]
        N = B * Q
        eye = np.eye(d)
        # --- first Newton step from w = 0: ridge on the training set, from Gram matrices
        H = np.empty((B, Q, d, d))
        full = np.swapaxes(Xa, 1, 2) @ Xa
        rows, inverse = np.unique(W, axis=0, return_inverse=True)
        for u, row in enumerate(rows):
            out = row == 0  # e.g. the fold's test samples: training Gram = full - theirs
            Xo = Xa[:, out, :]
            H[:, inverse.ravel() == u] = (full - np.swapaxes(Xo, 1, 2) @ Xo)[:, None]
        H *= 2.0 * C
        H += eye
        rhs = 2.0 * C * ((W * Y)[None] @ Xa)  # (B, Q, d)
        w = _solve_spd(H, rhs).reshape(N, d)
        # the exact line search from 0 along the ridge solution
        sph = np.repeat(np.arange(B), Q)
        prob = np.tile(np.arange(Q), B)
        margins = np.einsum("bnd,bqd->bqn", Xa, w.reshape(B, Q, d)).reshape(N, n) * Y[prob]
        t = _exact_line_search(
            np.zeros(N), np.einsum("nd,nd->n", w, w), np.zeros((N, n)), margins, W[prob], C
        )
        w *= t[:, None]
        margins *= t[:, None]
        todo = np.arange(N)
        for _ in range(self.max_iter):
            if todo.size == 0:
                break
            Xs = Xa[sph[todo]]  # (N', n, d)
            Yt, Wt = Y[prob[todo]], W[prob[todo]]
            m = margins[todo]
            act = Wt * (m < 1.0)
            H = (np.swapaxes(Xs, 1, 2) * act[:, None, :]) @ Xs
            H *= 2.0 * C
            H += eye
            rhs = 2.0 * C * np.einsum("nk,nkd->nd", act * Yt, Xs)
            w_new = _solve_spd(H, rhs)
            s = w_new - w[todo]
            delta = np.einsum("nkd,nd->nk", Xs, s) * Yt
            t = _exact_line_search(
                np.einsum("nd,nd->n", w[todo], s), np.einsum("nd,nd->n", s, s), m, delta, Wt, C
            )
            w[todo] += t[:, None] * s
            m_new = m + t[:, None] * delta
            margins[todo] = m_new
            same = np.all((Wt * (m_new < 1.0)) == act, axis=1)
            tiny = np.max(np.abs(t[:, None] * s), axis=1) <= 1e-13 * (
                1.0 + np.max(np.abs(w[todo]), axis=1)
            )
            todo = todo[~(same | tiny)]
        return w.reshape(B, Q, d)

    def fold_decisions(self, X, y, n_classes, plan: CVPlan):
        Y = binary_targets(y, n_classes)  # (P, n)
        P = Y.shape[0]
        masks = plan.train_masks.astype(np.float64)  # (F, n)
        F = masks.shape[0]
        # problem q = f * P + p
        w = self.fit_weights(X, np.tile(Y, (F, 1)), np.repeat(masks, P, axis=0))
        Xa = self._augment(X)
        out = []
        for f, test in enumerate(plan.test_indices):
            dec = np.einsum("bnd,bpd->bnp", Xa[:, test, :], w[:, f * P : (f + 1) * P, :])
            out.append(dec[:, :, 0] if n_classes == 2 else dec)
        return out
