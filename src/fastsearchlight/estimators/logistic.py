"""Batched L2-regularised logistic regression, as scikit-learn's ``LogisticRegression``.

For every (sphere, fold) problem this finds the minimiser of the objective of
``LogisticRegression(penalty="l2", C=C, fit_intercept=fit_intercept)`` (default ``lbfgs``
solver) on the fold's training samples:

- two classes (class 1 positive, labels ``t_i`` in {0, 1})::

      min_{w, b}  C * sum_i log(1 + exp(-s_i (x_i . w + b))) + 0.5 * |w|^2,   s_i = 2 t_i - 1

- more classes: the multinomial (softmax) model, one coefficient row ``W_k`` and intercept
  ``b_k`` per class::

      min_{W, b}  C * sum_i [logsumexp_k(z_ik) - z_i,y_i] + 0.5 * sum_k |W_k|^2,
      z_ik = x_i . W_k + b_k

The intercept is not penalised. scikit-learn minimises the same objective divided by
``C * n_samples`` (mean loss plus ``|w|^2 / (2 C n_samples)``), which has the same
minimiser; this module works with that scaled form, so ``tol`` means what scikit-learn's
``tol`` means for ``lbfgs``: a bound on the largest absolute gradient component.

Both objectives are strictly convex in ``w`` / ``W`` and (for two classes) in ``b``, so the
optimum is unique and any exact solver reaches the same decision values. In the multinomial
model the loss does not change when the same constant is added to every intercept; the
intercepts are made unique by the constraint ``sum_k b_k = 0``, which is where scikit-learn's
``lbfgs`` ends (it starts at 0 and all its steps are orthogonal to that direction). At the
optimum ``sum_k W_k = 0`` holds too (because of the penalty), so decision values, not only
predictions, agree.

Method: Newton's method with the exact Hessian, batched over all spheres of a fold
(one ``(p, p)`` system per sphere, ``p = n_features + 1`` for two classes and
``n_classes * (n_features + 1)`` for the multinomial model), with an Armijo backtracking
line search so that it converges from the zero start. Problems that have converged are
dropped from the working set. For the multinomial model the null direction of the
intercepts is removed by adding ``mu / 2 * (sum_k b_k)^2`` to the objective: it is zero on
every Newton iterate (the steps are orthogonal to that direction) and makes the Hessian
positive definite.

Conditioning: with an intercept, every sphere's features are first shifted by their mean
over all samples. This is an exact reparametrisation (``w`` does not change, the
intercept absorbs the shift), which removes the large common offset of raw BOLD values
(~1000) and makes the Hessian well conditioned; the test-set decision values are computed
in the same shifted coordinates, which equals ``X_test @ w + b`` of the original problem.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import log_expit, logsumexp

from ..cv import CVPlan
from .base import BatchedClassifier

_EPS = np.finfo(np.float64).eps


class _BinomialLoss:
    """Mean binary log-loss of ``z = A @ theta`` for labels ``t`` in {0, 1}."""

    def __init__(self, t: np.ndarray):
        self.t = t.astype(np.float64)  # (n,)
        self.sign = 2.0 * self.t - 1.0

    def linear(self, A: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Linear predictor ``(S, n)`` of parameters ``(S, p)``."""
        return np.matmul(A, theta[..., None])[..., 0]

    def value(self, z: np.ndarray) -> np.ndarray:
        return -np.mean(log_expit(self.sign * z), axis=-1)

    def gradient_hessian(self, A: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = A.shape[1]
        prob = np.exp(log_expit(z))  # P(class 1)
        resid = (prob - self.t) / n  # (S, n)
        grad = np.matmul(resid[:, None, :], A)[:, 0, :]  # (S, p)
        weight = prob * (1.0 - prob) / n
        hess = np.matmul(A.transpose(0, 2, 1), weight[..., None] * A)  # (S, p, p)
        return grad, hess


class _MultinomialLoss:
    """Mean softmax cross-entropy of ``z = A @ Theta_k`` for class codes ``y``.

    Parameters are flattened class by class: ``theta[k * p + j]`` is coefficient ``j`` of
    class ``k``.
    """

    def __init__(self, y: np.ndarray, n_classes: int):
        self.n_classes = n_classes
        self.onehot = (np.asarray(y)[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)

    def linear(self, A: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Linear predictor ``(S, n, K)`` of parameters ``(S, K * p)``."""
        S, p = A.shape[0], A.shape[2]
        Theta = theta.reshape(S, self.n_classes, p)
        return np.matmul(A, Theta.transpose(0, 2, 1))

    def value(self, z: np.ndarray) -> np.ndarray:
        lse = logsumexp(z, axis=-1)  # (S, n)
        z_true = np.sum(z * self.onehot, axis=-1)
        return np.mean(lse - z_true, axis=-1)

    def gradient_hessian(self, A: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        S, n, p = A.shape
        K = self.n_classes
        prob = np.exp(z - logsumexp(z, axis=-1, keepdims=True))  # (S, n, K)
        resid = (prob - self.onehot) / n
        grad = np.matmul(resid.transpose(0, 2, 1), A).reshape(S, K * p)
        At = A.transpose(0, 2, 1)
        hess = np.empty((S, K, p, K, p))
        for k in range(K):
            for l in range(k, K):
                w = prob[..., k] * ((k == l) - prob[..., l]) / n  # (S, n)
                block = np.matmul(At, w[..., None] * A)
                hess[:, k, :, l, :] = block
                if l != k:
                    hess[:, l, :, k, :] = block  # blocks are symmetric matrices
        return grad, hess.reshape(S, K * p, K * p)


def _newton(
    A: np.ndarray,
    loss: _BinomialLoss | _MultinomialLoss,
    R: np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int]:
    """Minimise ``loss(A @ theta) + 0.5 * theta' R theta`` for every problem of the batch.

    Parameters
    ----------
    A : ndarray of shape (S, n, p)
        Design matrix of every problem (with a column of ones for the intercept).
    loss : loss object
        Provides ``linear``, ``value`` and ``gradient_hessian``.
    R : ndarray of shape (q, q)
        Penalty matrix shared by all problems (positive definite on the directions the
        loss does not fix).
    tol : float
        Stop a problem when the largest absolute gradient component is ``<= tol``, or when
        its Newton step no longer changes its parameters (relative change below ``1e-14``).
    max_iter : int
        Maximum number of Newton iterations.

    Returns
    -------
    theta : ndarray of shape (S, q)
    n_unconverged : int
        Number of problems still running after ``max_iter`` iterations.
    """
    S = A.shape[0]
    q = R.shape[0]
    theta_out = np.zeros((S, q))
    idx = np.arange(S)
    theta = np.zeros((S, q))
    A_act = A
    # Rounding noise of the objective: the linear predictors carry errors of about
    # eps * |a_i| |theta|, and the loss moves by at most about as much.
    row_norm = np.sqrt(np.einsum("snp,snp->sn", A, A)).mean(axis=1)  # (S,)
    K = q // A.shape[2]
    for _ in range(max_iter):
        z = loss.linear(A_act, theta)
        g_loss, H = loss.gradient_hessian(A_act, z)
        H += R
        Rtheta = theta @ R
        grad = g_loss + Rtheta
        step = -np.linalg.solve(H, grad[..., None])[..., 0]
        # Problems whose gradient is small take this last step and stop: the step is then
        # in the region of quadratic convergence, so it brings them to rounding level.
        done = np.max(np.abs(grad), axis=1) <= tol
        slope = np.sum(grad * step, axis=1)  # < 0: descent direction
        dz = loss.linear(A_act, step)
        f0 = loss.value(z) + 0.5 * np.sum(theta * Rtheta, axis=1)
        theta_norm = np.sqrt(np.sum(theta.reshape(idx.size, K, -1) ** 2, axis=2)).max(axis=1)
        slack = 16 * _EPS * (np.abs(f0) + row_norm * theta_norm)

        # Armijo backtracking, all problems at once; each keeps its own step length.
        t = np.ones(idx.size)
        pending = np.arange(idx.size)
        for _ls in range(60):
            tp = t[pending]
            th = theta[pending] + tp[:, None] * step[pending]
            zt = z[pending] + tp.reshape((-1,) + (1,) * (z.ndim - 1)) * dz[pending]
            ft = loss.value(zt) + 0.5 * np.sum(th * (th @ R), axis=1)
            ok = ft <= f0[pending] + 1e-4 * tp * slope[pending] + slack[pending]
            t[pending[~ok]] *= 0.5
            pending = pending[~ok]
            if pending.size == 0:
                break
        t[pending] = 0.0  # no decrease found: the problem sits at the rounding floor

        delta = t[:, None] * step
        theta = theta + delta
        # a step that no longer changes the parameters: nothing left to gain
        stalled = np.max(np.abs(delta), axis=1) <= 1e-15 * (1.0 + np.max(np.abs(theta), axis=1))
        finished = done | stalled
        if finished.any():
            theta_out[idx[finished]] = theta[finished]
            keep = ~finished
            idx, theta, A_act = idx[keep], theta[keep], A_act[keep]
            row_norm = row_norm[keep]
            if idx.size == 0:
                break
    theta_out[idx] = theta
    return theta_out, int(idx.size)


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
        objective (mean log-loss + ``|w|^2 / (2 C n_train)``) is at most ``tol``, or when
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
        K = 1 if n_classes == 2 else n_classes
        q = K * p
        # shifted X, training design and its weighted copy (+ compaction copy), linear
        # predictors and probabilities, Hessian (+ factorisation)
        per = n_samples * n_features + 3 * n_samples * p + 8 * n_samples * K + 3 * q * q
        return 8 * per

    def fold_decisions(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[np.ndarray]:
        """Fit every sphere on every fold's training set; decide on its test set.

        Parameters
        ----------
        X : ndarray of shape (n_spheres, n_samples, n_features)
        y : ndarray of int of shape (n_samples,)
            Class codes in ``0 .. n_classes-1``.
        n_classes : int
        plan : CVPlan

        Returns
        -------
        list of ndarray, one per fold
            ``(n_spheres, n_test)`` for two classes (``X @ w + b``), else
            ``(n_spheres, n_test, n_classes)`` (``X @ W.T + b``).
        """
        design, n_classes, fits = self._fit_all(X, y, n_classes, plan)
        decisions = []
        for test, theta in zip(plan.test_indices, fits):
            A_test = design[:, test]
            if n_classes == 2:
                decisions.append(np.matmul(A_test, theta[..., None])[..., 0])
            else:
                W = theta.reshape(theta.shape[0], n_classes, -1)
                decisions.append(np.matmul(A_test, W.transpose(0, 2, 1)))
        return decisions

    def fold_coefficients(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Coefficients and intercepts of every sphere's model on every fold.

        Parameters
        ----------
        X, y, n_classes, plan
            As for :meth:`fold_decisions`.

        Returns
        -------
        list of (coef, intercept), one per fold
            ``coef`` of shape ``(n_spheres, n_rows, n_features)`` and ``intercept`` of shape
            ``(n_spheres, n_rows)``, with ``n_rows = 1`` for two classes and ``n_classes``
            otherwise: scikit-learn's ``coef_`` and ``intercept_`` of every sphere, in the
            original coordinates of ``X``.
        """
        X = np.asarray(X, dtype=np.float64)
        _, n_classes, fits = self._fit_all(X, y, n_classes, plan)
        S, d = X.shape[0], X.shape[2]
        n_rows = 1 if n_classes == 2 else n_classes
        shift = X.mean(axis=1) if self.fit_intercept else np.zeros((S, d))  # (S, d)
        out = []
        for theta in fits:
            Theta = theta.reshape(S, n_rows, -1)
            coef = Theta[..., :d].copy()
            if self.fit_intercept:
                intercept = Theta[..., d] - np.einsum("skd,sd->sk", coef, shift)
            else:
                intercept = np.zeros((S, n_rows))
            out.append((coef, intercept))
        return out

    def _fit_all(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> tuple[np.ndarray, int, list[np.ndarray]]:
        """Fit every fold.

        Returns the design matrix ``(n_spheres, n_samples, p)`` in the working coordinates
        (features shifted by their mean, column of ones appended, if ``fit_intercept``), the
        number of classes, and for every fold the parameters ``(n_spheres, K * p)`` in those
        coordinates (``K = 1`` for two classes, class by class otherwise; intercept last).
        """
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C!r}.")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 3:
            raise ValueError(f"X must have shape (n_spheres, n_samples, n_features), got {X.shape}.")
        n_classes = int(n_classes)
        if self.fit_intercept:
            Z = X - X.mean(axis=1, keepdims=True)
            Z = np.concatenate([Z, np.ones(Z.shape[:2] + (1,))], axis=2)
        else:
            Z = X
        p = Z.shape[2]

        fits = []
        n_unconverged = 0
        for train in plan.train_indices:
            lam = 1.0 / (self.C * len(train))
            pen = np.full(p, lam)
            if self.fit_intercept:
                pen[-1] = 0.0
            if n_classes == 2:
                loss = _BinomialLoss(y[train] == 1)
                R = np.diag(pen)
            else:
                loss = _MultinomialLoss(y[train], n_classes)
                R = np.diag(np.tile(pen, n_classes))
                if self.fit_intercept:
                    # fixes the common shift of the intercepts (sum_k b_k = 0)
                    e = np.zeros(n_classes * p)
                    e[p - 1 :: p] = 1.0
                    R += np.outer(e, e)
            theta, n_bad = _newton(Z[:, train], loss, R, float(self.tol), int(self.max_iter))
            n_unconverged += n_bad
            fits.append(theta)
        if n_unconverged:
            warnings.warn(
                f"BatchedLogisticRegression: {n_unconverged} (sphere, fold) problems did not "
                f"converge in max_iter={self.max_iter} Newton iterations.",
                RuntimeWarning,
                stacklevel=3,
            )
        return Z, n_classes, fits
