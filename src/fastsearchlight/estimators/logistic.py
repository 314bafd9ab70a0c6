"""Batched L2-regularised logistic regression, as scikit-learn's ``LogisticRegression``.

For every (sphere, fold) problem this finds the minimiser of the objective of
``LogisticRegression(penalty="l2", C=C, fit_intercept=fit_intercept)`` (default ``lbfgs``
solver) on the fold's training samples:

- two classes (class 1 positive, labels ``t_i`` in {0, 1})::

      min_{w, b}  C * sum_i log(1 + exp(-s_i (x_i . w + b))) + 0.5 * |w|^2,   s_i = 2 t_i - 1

- more classes: the multinomial (softmax) model, one coefficient row ``W_k`` and intercept
  ``b_k`` per class, all ``n_classes`` rows penalised::

      min_{W, b}  C * sum_i [logsumexp_k(z_ik) - z_i,y_i] + 0.5 * sum_k |W_k|^2,
      z_ik = x_i . W_k + b_k

The intercepts are not penalised. scikit-learn minimises the same objective divided by
``C * n_train`` (mean loss plus ``|w|^2 / (2 C n_train)``), which has the same minimiser;
this module works with that scaled form, so ``tol`` bounds the same gradient as
scikit-learn's ``tol`` for ``lbfgs``.

Uniqueness. The binary objective is strictly convex. The multinomial loss does not change
when one vector is added to every ``W_k`` and one constant to every ``b_k``; the penalty
fixes the first (the optimum has ``sum_k W_k = 0``), and scikit-learn's ``lbfgs`` fixes the
second by ending at ``sum_k b_k = 0`` (it starts at 0 and every step it takes is orthogonal
to that direction). This module returns that point, so decision values, not only
predictions, agree. It optimises over the subspace ``sum_k W_k = 0, sum_k b_k = 0``
directly: the parameters are the first ``n_classes - 1`` rows ``(W_k, b_k)`` and the last
row is minus their sum, so the penalty becomes
``0.5 * (sum_{k<K} |W_k|^2 + |sum_{k<K} W_k|^2)``. The restricted problem is strictly convex
and its minimiser is the minimiser of the full problem.

Method: Newton's method with the exact Hessian, batched over the spheres of a block (one
``(q, q)`` system per sphere: ``q = n_features + 1`` for two classes and
``(n_classes - 1) * (n_features + 1)`` otherwise), with an Armijo backtracking line search
so that it converges from the zero start. A problem stops once its largest absolute
gradient component is ``<= tol``, after one last Newton step (which, being inside the
region of quadratic convergence, takes it to rounding level). Converged problems are
dropped from the working set; problems still running after ``max_iter`` iterations raise a
``RuntimeWarning``. Each fold starts from the previous fold's optimum of the same sphere
(the training sets overlap; the optimum reached does not depend on the start). Spheres are
processed in blocks of a few hundred so that each block's arrays stay in cache across the
passes of an iteration.

Conditioning: with an intercept, every sphere's features are first shifted by their mean
over all samples. This is an exact reparametrisation (``w`` does not change, the intercept
absorbs the shift) that removes the large common offset of raw BOLD values (~1000) and
keeps the Hessian well conditioned; test decision values are computed in the same shifted
coordinates, which equals ``X_test @ w + b`` of the original problem.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import expit, log_expit

from ..cv import CVPlan
from .base import BatchedClassifier

__all__ = ["BatchedLogisticRegression"]

_EPS = np.finfo(np.float64).eps

#: spheres per block of the Newton iterations (keeps a block's arrays in cache)
_BLOCK = 256


class _BinomialLoss:
    """Mean binary log-loss of the linear predictor ``z = A @ theta`` (labels in {0, 1})."""

    def __init__(self, t: np.ndarray):
        self.t = np.asarray(t, dtype=np.float64)  # (n,)
        self.sign = 2.0 * self.t - 1.0

    @staticmethod
    def linear(A: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Linear predictor ``(S, n)`` of parameters ``(S, p)``."""
        return np.matmul(A, theta[..., None])[..., 0]

    def value(self, z: np.ndarray) -> np.ndarray:
        """Mean loss of every problem, shape ``(S,)``."""
        return -np.mean(log_expit(self.sign * z), axis=-1)

    def derivatives(self, A: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        """Mean loss ``(S,)``, its gradient ``(S, p)`` and Hessian ``(S, p, p)``."""
        n = A.shape[1]
        prob = expit(z)
        resid = (prob - self.t) / n  # (S, n)
        grad = np.matmul(resid[:, None, :], A)[:, 0, :]
        weight = prob * (1.0 - prob) / n
        hess = np.matmul(A.transpose(0, 2, 1), weight[..., None] * A)
        return self.value(z), grad, hess


class _MultinomialLoss:
    """Mean softmax cross-entropy on the subspace ``sum_k (W_k, b_k) = 0``.

    The parameters are the rows ``0 .. K-2``, flattened class by class
    (``theta[k * p + j]``); the linear predictor ``u`` has shape ``(S, K-1, n)`` (class
    axis before the sample axis, so that sums over classes are plain array additions) and
    the predictor of the last class is ``-sum_k u_k``.
    """

    def __init__(self, y: np.ndarray, n_classes: int):
        self.y = np.asarray(y)
        self.n_classes = n_classes
        self.onehot = (np.arange(n_classes)[:, None] == self.y[None, :]).astype(np.float64)

    def linear(self, A: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Linear predictor ``(S, K-1, n)`` of parameters ``(S, (K-1) * p)``."""
        S, p = A.shape[0], A.shape[2]
        Theta = theta.reshape(S, self.n_classes - 1, p)
        return np.matmul(Theta, A.transpose(0, 2, 1))

    @staticmethod
    def _full_and_log_normaliser(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictors of all ``K`` classes ``(S, K, n)`` and ``logsumexp`` over them ``(S, n)``."""
        z = np.concatenate([u, -np.sum(u, axis=1, keepdims=True)], axis=1)
        top = np.max(z, axis=1)
        lse = np.log(np.sum(np.exp(z - top[:, None, :]), axis=1)) + top
        return z, lse

    def _value(self, z: np.ndarray, lse: np.ndarray) -> np.ndarray:
        z_true = z[:, self.y, np.arange(z.shape[2])]  # (S, n)
        return np.mean(lse - z_true, axis=-1)

    def value(self, u: np.ndarray) -> np.ndarray:
        """Mean loss of every problem, shape ``(S,)``."""
        return self._value(*self._full_and_log_normaliser(u))

    def derivatives(self, A: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, ...]:
        """Mean loss ``(S,)``, gradient ``(S, q)`` and Hessian ``(S, q, q)``, ``q = (K-1) p``."""
        S, n, p = A.shape
        m = self.n_classes - 1
        z, lse = self._full_and_log_normaliser(u)
        prob = np.exp(z - lse[:, None, :])  # (S, K, n)
        resid = (prob - self.onehot) / n
        # d u_k changes z_k by +1 and z_K by -1
        g_u = resid[:, :m] - resid[:, m:]  # (S, m, n)
        grad = np.matmul(g_u, A).reshape(S, m * p)
        # second derivative in u: M_kl - M_kK - M_Kl + M_KK with M = diag(P) - P P'
        pK = prob[:, m]
        common = pK * (1.0 - pK)  # M_KK
        At = A.transpose(0, 2, 1)
        hess = np.empty((S, m, p, m, p))
        for k in range(m):
            for l in range(k, m):
                c = (prob[:, k] + prob[:, l]) * pK + common - prob[:, k] * prob[:, l]
                if k == l:
                    c += prob[:, k]
                block = np.matmul(At, (c / n)[..., None] * A)
                hess[:, k, :, l, :] = block
                if l != k:
                    hess[:, l, :, k, :] = block  # each block is symmetric
        return self._value(z, lse), grad, hess.reshape(S, m * p, m * p)


def _newton(
    A: np.ndarray,
    loss: _BinomialLoss | _MultinomialLoss,
    R: np.ndarray,
    tol: float,
    max_iter: int,
    theta0: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Minimise ``loss(A, theta) + 0.5 * theta' R theta`` for every problem of the batch.

    Parameters
    ----------
    A : ndarray of shape (S, n, p)
        Design matrix of every problem (with a column of ones for the intercept).
    loss : loss object
        Provides ``linear``, ``value`` and ``derivatives``.
    R : ndarray of shape (q, q)
        Penalty matrix shared by all problems.
    tol : float
        A problem stops when the largest absolute gradient component is ``<= tol`` (after
        one last Newton step), or when its step no longer changes its parameters.
    max_iter : int
        Maximum number of Newton iterations.
    theta0 : ndarray of shape (S, q) or None
        Starting point (zero if None).

    Returns
    -------
    theta : ndarray of shape (S, q)
    n_unconverged : int
        Number of problems still running after ``max_iter`` iterations.
    """
    S, _, p = A.shape
    q = R.shape[0]
    n_rows = q // p
    theta_out = np.zeros((S, q))
    idx = np.arange(S)
    theta = np.zeros((S, q)) if theta0 is None else np.array(theta0, dtype=np.float64)
    z = loss.linear(A, theta)
    zshape = (-1,) + (1,) * (z.ndim - 1)
    # Rounding noise of the objective: the linear predictors carry errors of about
    # eps * |a_i| |theta_k|, and the mean loss moves by at most about as much.
    row_norm = np.sqrt(np.einsum("snp,snp->sn", A, A)).mean(axis=1)  # (S,)
    for _ in range(max_iter):
        f_loss, g_loss, H = loss.derivatives(A, z)
        H += R
        Rtheta = theta @ R
        grad = g_loss + Rtheta
        step = -np.linalg.solve(H, grad[..., None])[..., 0]
        done = np.max(np.abs(grad), axis=1) <= tol
        slope = np.sum(grad * step, axis=1)  # < 0: descent direction
        dz = loss.linear(A, step)
        f0 = f_loss + 0.5 * np.sum(theta * Rtheta, axis=1)
        theta_norm = np.sqrt(np.sum(theta.reshape(idx.size, n_rows, p) ** 2, axis=2)).max(axis=1)
        slack = 16 * _EPS * (np.abs(f0) + row_norm * theta_norm)

        t = _armijo_steps(loss, R, theta, z, step, dz, f0, slope, slack)
        delta = t[:, None] * step
        theta = theta + delta
        z = z + t.reshape(zshape) * dz
        # a step that no longer changes the parameters: nothing left to gain
        stalled = np.max(np.abs(delta), axis=1) <= 1e-15 * (1.0 + np.max(np.abs(theta), axis=1))
        finished = done | stalled
        if finished.any():
            theta_out[idx[finished]] = theta[finished]
            keep = ~finished
            idx, theta, z, A, row_norm = idx[keep], theta[keep], z[keep], A[keep], row_norm[keep]
            if idx.size == 0:
                break
    theta_out[idx] = theta
    return theta_out, int(idx.size)


def _armijo_steps(
    loss: _BinomialLoss | _MultinomialLoss,
    R: np.ndarray,
    theta: np.ndarray,
    z: np.ndarray,
    step: np.ndarray,
    dz: np.ndarray,
    f0: np.ndarray,
    slope: np.ndarray,
    slack: np.ndarray,
) -> np.ndarray:
    """Armijo backtracking, all problems at once; each keeps its own step length.

    Parameters
    ----------
    loss, R
        As for :func:`_newton`.
    theta : ndarray of shape (S, q)
        Current parameters.
    z : ndarray
        Their linear predictors (``loss.linear(A, theta)``).
    step : ndarray of shape (S, q)
        Newton steps.
    dz : ndarray
        Their linear predictors.
    f0 : ndarray of shape (S,)
        Current objective.
    slope : ndarray of shape (S,)
        Directional derivative along ``step`` (< 0: descent direction).
    slack : ndarray of shape (S,)
        Rounding noise of the objective, added to the decrease allowed.

    Returns
    -------
    ndarray of shape (S,)
        Step lengths, halved from 1 until the objective decreases enough; 0 where no
        decrease is found in 60 halvings (the problem sits at the rounding floor).
    """
    zshape = (-1,) + (1,) * (z.ndim - 1)
    t = np.ones(len(theta))
    pending = np.arange(len(theta))
    for _ls in range(60):
        tp = t[pending]
        th = theta[pending] + tp[:, None] * step[pending]
        zt = z[pending] + tp.reshape(zshape) * dz[pending]
        ft = loss.value(zt) + 0.5 * np.sum(th * (th @ R), axis=1)
        ok = ft <= f0[pending] + 1e-4 * tp * slope[pending] + slack[pending]
        t[pending[~ok]] *= 0.5
        pending = pending[~ok]
        if pending.size == 0:
            break
    t[pending] = 0.0
    return t


class BatchedLogisticRegression(BatchedClassifier):
    """Batched equivalent of ``sklearn.linear_model.LogisticRegression`` (L2 penalty).

    Binary problems use the logistic model, problems with more classes the multinomial
    (softmax) model, as scikit-learn's default ``lbfgs`` solver does. The optimum is found
    with Newton's method to near machine precision.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength (objective ``C * sum(log-loss) + 0.5 * |w|^2``).
    fit_intercept : bool, default=True
        Whether to fit an unpenalised intercept.
    tol : float, default=1e-10
        A problem stops when the largest absolute component of the gradient of the scaled
        objective (mean log-loss + ``|w|^2 / (2 C n_train)``; for several classes, taken on
        the sum-to-zero subspace) is at most ``tol``, after one last Newton step; or when
        Newton steps no longer change its parameters.
    max_iter : int, default=100
        Maximum number of Newton iterations (usually fewer than 15 are needed).
    """

    reference = "sklearn.linear_model.LogisticRegression(penalty='l2', solver='lbfgs')"

    def __init__(
        self,
        C: float = 1.0,
        fit_intercept: bool = True,
        tol: float = 1e-10,
        max_iter: int = 100,
    ):
        self.C = C
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        p = n_features + 1
        m = 1 if n_classes == 2 else n_classes - 1
        q = m * p
        # X, its shifted copy with the intercept column, decisions of every fold
        # (the Newton working arrays live in blocks of a few hundred spheres)
        per = n_samples * n_features + n_samples * p + 2 * n_samples * max(n_classes, 1) + q
        return 8 * per

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Logistic-regression decisions of every sphere on every fold's test set.

        Parameters are those of :meth:`BatchedClassifier.fold_decisions`.

        Returns
        -------
        list of ndarray, one per fold
            ``(n_spheres, n_test)`` for two classes (``X @ w + b``), else
            ``(n_spheres, n_test, n_classes)`` (``X @ W.T + b``).
        """
        return self._fit_all(X, y, n_classes, plan)[0]

    def fold_coefficients(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Coefficients and intercepts of every sphere's model on every fold (for the
        arguments of :meth:`fold_decisions`).

        Returns
        -------
        list of (coef, intercept), one per fold
            ``coef`` of shape ``(n_spheres, n_rows, n_features)`` and ``intercept`` of shape
            ``(n_spheres, n_rows)``, with ``n_rows = 1`` for two classes and ``n_classes``
            otherwise: scikit-learn's ``coef_`` and ``intercept_`` of every sphere, in the
            original coordinates of ``X``.
        """
        return self._fit_all(X, y, n_classes, plan)[1]

    def _fit_all(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
        """Fit every sphere on every fold: decision values and (coef, intercept) per fold."""
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C!r}.")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 3:
            raise ValueError(f"X must have shape (n_spheres, n_samples, n_features), got {X.shape}.")
        n_classes = int(n_classes)
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}.")
        S, _, d = X.shape
        p = d + 1 if self.fit_intercept else d
        n_rows = 1 if n_classes == 2 else n_classes

        decisions = [
            np.empty((S, len(test)) if n_classes == 2 else (S, len(test), n_classes))
            for test in plan.test_indices
        ]
        rows = [np.empty((S, n_rows, p)) for _ in plan.train_indices]
        n_unconverged = 0
        m = n_rows if n_classes == 2 else n_classes - 1  # rows of parameters optimised
        for start in range(0, S, _BLOCK):
            block = slice(start, start + _BLOCK)
            design = self._design(X[block])
            previous = None  # the previous fold's optimum, (B, m, p)
            for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
                A = np.take(design, train, axis=1)
                basis = None
                if d > len(train):
                    # the optimal coefficients are combinations of the training rows (the
                    # gradients of the loss and of the penalty are): optimise over an
                    # orthonormal basis V of them, w = V g, |w| = |g|, so the same problem
                    # in len(train) instead of d coordinates
                    basis = np.linalg.qr(A[..., :d].transpose(0, 2, 1))[0]  # (B, d, n_train)
                    A = _in_basis(A, basis, d)
                loss, R = self._fold_problem(y[train], n_classes, A.shape[2])
                # folds share most of their training samples: the previous fold's optimum
                # is a good starting point (the optimum reached does not depend on it)
                start_f = None
                if previous is not None:
                    start_f = previous if basis is None else _in_basis(previous, basis, d)
                    start_f = start_f.reshape(len(A), -1)
                theta, n_bad = _newton(A, loss, R, float(self.tol), int(self.max_iter), start_f)
                n_unconverged += n_bad
                Theta = theta.reshape(len(A), m, -1)
                if basis is not None:  # back to the coordinates of the design
                    Theta = _from_basis(Theta, basis)
                previous = Theta
                Theta = _full_rows(Theta.reshape(len(A), -1), n_classes, p)  # (B, n_rows, p)
                rows[f][block] = Theta
                dec = np.matmul(np.take(design, test, axis=1), Theta.transpose(0, 2, 1))
                decisions[f][block] = dec[..., 0] if n_classes == 2 else dec
        if n_unconverged:
            warnings.warn(
                f"BatchedLogisticRegression: {n_unconverged} (sphere, fold) problems did not "
                f"converge in max_iter={self.max_iter} Newton iterations.",
                RuntimeWarning,
                stacklevel=3,
            )

        # back to the original coordinates: b = b_shifted - W . mean(X)
        shift = X.mean(axis=1) if self.fit_intercept else None  # (S, d)
        coefficients = []
        for Theta in rows:
            coef = Theta[..., :d].copy()
            if self.fit_intercept:
                intercept = Theta[..., d] - np.einsum("skd,sd->sk", coef, shift)
            else:
                intercept = np.zeros((S, n_rows))
            coefficients.append((coef, intercept))
        return decisions, coefficients

    def _fold_problem(
        self, y_train: np.ndarray, n_classes: int, p: int
    ) -> tuple[_BinomialLoss | _MultinomialLoss, np.ndarray]:
        """Loss and penalty matrix of a fold, shared by all spheres.

        Parameters
        ----------
        y_train : ndarray of int of shape (n_train,)
            Class codes of the fold's training samples.
        n_classes : int
        p : int
            Number of parameters per row of coefficients (coordinates of the weights, then
            the intercept when there is one).

        Returns
        -------
        loss, R
        """
        pen = np.full(p, 1.0 / (self.C * len(y_train)))
        if self.fit_intercept:
            pen[-1] = 0.0
        if n_classes == 2:
            return _BinomialLoss(y_train == 1), np.diag(pen)
        m = n_classes - 1
        # 0.5 * (sum_{k<K} |W_k|^2 + |sum_{k<K} W_k|^2)
        return _MultinomialLoss(y_train, n_classes), np.kron(np.eye(m) + np.ones((m, m)), np.diag(pen))

    def _design(self, X: np.ndarray) -> np.ndarray:
        """Working design matrix of a block of spheres, all samples ``(B, n_samples, p)``.

        With an intercept: features shifted by their mean over all samples (an exact
        reparametrisation) and a column of ones appended.
        """
        if not self.fit_intercept:
            return X
        B, n, d = X.shape
        design = np.empty((B, n, d + 1))
        np.subtract(X, X.mean(axis=1, keepdims=True), out=design[..., :d])
        design[..., d] = 1.0
        return design


def _in_basis(A: np.ndarray, basis: np.ndarray, d: int) -> np.ndarray:
    """Rows ``(B, k, p)`` whose first ``d`` columns are weights (or features), expressed in
    an orthonormal basis ``(B, d, r)``: ``(B, k, r + p - d)``, the columns after ``d`` (the
    intercept's) unchanged."""
    return np.concatenate([np.matmul(A[..., :d], basis), A[..., d:]], axis=2)


def _from_basis(Theta: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_in_basis`: rows ``(B, k, r + e)`` of coordinates in the basis
    ``(B, d, r)`` (then ``e`` unchanged columns) as rows ``(B, k, d + e)``."""
    r = basis.shape[2]
    return np.concatenate([np.matmul(Theta[..., :r], basis.transpose(0, 2, 1)), Theta[..., r:]], axis=2)


def _full_rows(theta: np.ndarray, n_classes: int, p: int) -> np.ndarray:
    """Parameter rows ``(S, n_rows, p)``: one row for two classes, else all ``K`` rows
    rebuilt from the first ``K-1`` (they sum to zero)."""
    if n_classes == 2:
        return theta[:, None, :]
    Theta = theta.reshape(theta.shape[0], n_classes - 1, p)
    return np.concatenate([Theta, -np.sum(Theta, axis=1, keepdims=True)], axis=1)
