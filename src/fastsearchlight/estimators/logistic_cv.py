"""Batched ``LogisticRegressionCV(solver="liblinear")`` with an L2 penalty (nilearn's
``"logistic"`` and ``"logistic_l2"``).

What scikit-learn computes, per (sphere, outer fold), on the outer fold's training samples:

1. inner folds: ``StratifiedKFold(cv)`` (``cv=None``: 5) on those samples, in their order;
2. for every inner fold and every ``C`` of ``Cs`` (an int ``k`` means
   ``logspace(-4, 4, k)``), liblinear's L2-regularised logistic regression on the inner
   training samples (``s = intercept_scaling`` is a constant extra feature, so the
   intercept ``w[-1] * s`` is penalised like every coefficient)::

       min_w  0.5 * |w|^2 + C * sum_i log(1 + exp(-y_i w . [x_i, s])),   y_i in {-1, +1}

   scored on the inner test samples (``neg_log_loss``: minus the mean log-loss of the
   probabilities ``expit(decision)``, clipped to ``[eps, 1 - eps]``; ``accuracy`` for
   ``scoring=None``);
3. the ``C`` whose scores summed over the inner folds is largest (the first on ties);
4. the same problem on all the outer training samples with that ``C``, whose decisions on
   the outer test samples are returned.

Only two classes: scikit-learn >= 1.8 raises for liblinear on more (the routing keeps those
designs on the per-sphere path, which reports the error as scikit-learn does).

Every problem is strictly convex, so its minimiser is unique. It is found with Newton's
method (exact Hessian, Armijo backtracking from the zero start) on the objective divided by
``C * n_train`` (mean log-loss plus ``|w|^2 / (2 C n_train)``), all (sphere, inner fold, C)
problems of an outer fold at once: the inner training sets are 0/1 sample weights on the
outer training samples, the Hessians of all problems of a sphere come from one matrix
product with the packed outer products ``a_i a_i^T`` of its samples. A problem stops once
every gradient component is below ``tol`` times its feature's scale (after one last Newton
step, which takes it to rounding level): the exact optimum, where liblinear stops at its
tolerance (``tol=1e-4`` by default), so decisions agree with a tightly solved liblinear.
With more parameters than outer training samples, the problems are solved in the row space
of the training design (an exact reduction, see :meth:`_outer_fold_in_row_space`).
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from scipy.special import expit, log_expit

from ..cv import CVPlan
from .base import BatchedClassifier

__all__ = ["BatchedLogisticRegressionCV"]

_EPS = np.finfo(np.float64).eps
#: working memory of one block of spheres in the Newton iterations (bytes)
_BLOCK_BYTES = 24 * 2**20


def _hessians(outer: np.ndarray, Dw: np.ndarray, lam: np.ndarray, p: int) -> np.ndarray:
    """Hessians ``A^T diag(Dw_q) A + lam_q I`` of every problem, shape (B, Q, p, p).

    ``outer`` (B, n, p(p+1)/2) holds the upper triangles of ``a_i a_i^T``; ``Dw`` is
    (B, n, Q), ``lam`` (B, Q).
    """
    iu, ju = np.triu_indices(p)
    packed = np.matmul(Dw.transpose(0, 2, 1), outer)  # (B, Q, T)
    H = np.empty(packed.shape[:2] + (p, p))
    H[..., iu, ju] = packed
    H[..., ju, iu] = packed
    H[..., np.arange(p), np.arange(p)] += lam[..., None]
    return H


def _line_search(
    work: dict, step: np.ndarray, dZ: np.ndarray, slope: np.ndarray, done: np.ndarray
) -> np.ndarray:
    """Step lengths along the Newton steps, all problems at once (B, Q).

    Each problem's objective ``phi(t)`` is convex along its step, with slope
    ``phi'(0) = slope < 0``. The full step is kept where ``phi'(1) <= 0`` (then ``phi``
    decreases all the way), which needs only the probabilities the next iteration uses.
    Elsewhere, Armijo backtracking on the objective (halving from 1, with a rounding
    allowance; 0 after 60 halvings: the problem sits at the rounding floor), computed for
    those problems only. Problems marked ``done`` take their last, full step. ``work["Z"]``
    and ``work["prob"]`` are replaced by the predictors and probabilities at the new points.
    """
    Z, theta, lam, omega_t, t01 = work["Z"], work["theta"], work["lam"], work["omega_t"], work["t01"]
    Zt = Z + dZ
    prob = expit(Zt)
    d1 = np.einsum("bnq,bnq,nq->bq", prob - t01[:, None], dZ, omega_t)
    d1 += lam * np.einsum("bqp,bqp->bq", theta + step, step)
    t = np.where(work["active"], 1.0, 0.0)
    bi, qi = np.nonzero(work["active"] & ~done & (d1 > 0))
    if bi.size:
        sign = 2.0 * t01 - 1.0
        z0, dz, w = Z[bi, :, qi], dZ[bi, :, qi], omega_t[:, qi].T  # (P, n)
        th, st, lm = theta[bi, qi], step[bi, qi], lam[bi, qi]

        def cost(tt):
            x = th + tt[:, None] * st
            return -np.sum(w * log_expit(sign * (z0 + tt[:, None] * dz)), axis=1) + 0.5 * lm * np.sum(
                x * x, axis=1
            )

        f0 = cost(np.zeros(bi.size))
        tt, pending = np.ones(bi.size), np.ones(bi.size, dtype=bool)
        for _ in range(60):
            ok = cost(tt) <= f0 + 1e-4 * tt * slope[bi, qi] + 16 * _EPS * (np.abs(f0) + 1.0)
            pending &= ~ok
            if not pending.any():
                break
            tt[pending] *= 0.5
        tt[pending] = 0.0
        t[bi, qi] = tt
        Zt[bi, :, qi] = z0 + tt[:, None] * dz
        prob[bi, :, qi] = expit(Zt[bi, :, qi])
    work["Z"], work["prob"] = Zt, prob
    return t


def _newton(A, outer, sign, omega_t, lam, theta, scale, tol, max_iter):
    """Minimise ``sum_i omega_iq log(1 + exp(-y_i a_i . theta_q)) + lam_q |theta_q|^2 / 2``.

    Parameters
    ----------
    A : ndarray (B, n, p)
        Design of every sphere (the constant column last).
    outer : ndarray (B, n, p(p+1)/2)
        Packed outer products of its rows (:func:`_hessians`).
    sign : ndarray (n,)
        Targets in {-1, +1}.
    omega_t : ndarray (n, Q)
        Sample weights of every problem (shared by the spheres).
    lam : ndarray (B, Q)
        Penalty of every problem.
    theta : ndarray (B, Q, p)
        Starting point.
    scale : ndarray (B, p)
        Scale of every feature; a problem stops when ``|gradient_j| <= tol * scale_j``
        for every ``j``, after one last Newton step.
    tol : float
    max_iter : int

    Returns
    -------
    theta : ndarray (B, Q, p)
    n_unconverged : int
        Problems still running after ``max_iter`` iterations.
    """
    out = np.array(theta, dtype=np.float64)
    p = A.shape[2]
    rows, cols = np.arange(A.shape[0]), np.arange(lam.shape[1])
    work = {"theta": out.copy(), "lam": lam, "omega_t": omega_t, "t01": (sign > 0).astype(np.float64)}
    work["Z"] = np.matmul(A, work["theta"].transpose(0, 2, 1))  # (B, n, Q)
    work["prob"] = expit(work["Z"])
    work["active"] = np.ones(lam.shape, dtype=bool)
    for _ in range(max_iter):
        theta, prob, lam = work["theta"], work["prob"], work["lam"]
        resid = (prob - work["t01"][:, None]) * work["omega_t"]
        G = np.matmul(A.transpose(0, 2, 1), resid).transpose(0, 2, 1) + lam[..., None] * theta
        done = np.all(np.abs(G) <= tol * scale[:, None, :], axis=2)
        H = _hessians(outer, prob * (1.0 - prob) * work["omega_t"], lam, p)
        step = -np.linalg.solve(H, G[..., None])[..., 0]
        step[~work["active"]] = 0.0
        dZ = np.matmul(A, step.transpose(0, 2, 1))
        t = _line_search(work, step, dZ, np.einsum("bqp,bqp->bq", G, step), done)
        theta += t[..., None] * step
        # converged (after this last step), or no decrease left: at the rounding floor
        work["active"] &= ~(done | (t == 0.0))
        out[np.ix_(rows, cols)] = theta
        keep_r, keep_c = work["active"].any(axis=1), work["active"].any(axis=0)
        if not keep_r.any():
            break
        if not (keep_r.all() and keep_c.all()):  # drop finished spheres and problems
            rows, cols = rows[keep_r], cols[keep_c]
            A, outer, scale = A[keep_r], outer[keep_r], scale[keep_r]
            work["omega_t"] = work["omega_t"][:, keep_c]
            for key in ("theta", "lam", "active"):
                work[key] = work[key][keep_r][:, keep_c]
            for key in ("Z", "prob"):
                work[key] = work[key][keep_r][:, :, keep_c]
    return out, int(work["active"].sum())


def _packed_outer(A: np.ndarray) -> np.ndarray:
    """Upper triangles of ``a_i a_i^T`` for every row, shape (B, n, p(p+1)/2)."""
    iu, ju = np.triu_indices(A.shape[2])
    return A[..., iu] * A[..., ju]


def _neg_log_loss(Z: np.ndarray, t01: np.ndarray) -> np.ndarray:
    """Minus the log-loss of every sample (B, n, Q), as scikit-learn's ``neg_log_loss``
    scorer computes it: probabilities ``expit(z)`` and ``1 - expit(z)``, clipped to
    ``[eps, 1 - eps]``."""
    p1 = expit(Z)
    p = np.where(t01[:, None] > 0, p1, 1.0 - p1)
    return np.log(np.clip(p, _EPS, 1.0 - _EPS))


class BatchedLogisticRegressionCV(BatchedClassifier):
    """Batched equivalent of ``LogisticRegressionCV(solver="liblinear", l1_ratios=(0,))``
    for two classes (see the module docstring for what it computes).

    Parameters
    ----------
    Cs : int or sequence of float, default=10
        The values of ``C`` (an int ``k``: ``logspace(-4, 4, k)``).
    n_inner : int, default=5
        Number of stratified inner folds (scikit-learn's ``cv=None`` or an int).
    scoring : {"neg_log_loss", "accuracy"}, default="neg_log_loss"
        How the inner test folds score each ``C``.
    fit_intercept : bool, default=True
    intercept_scaling : float, default=1.0
        The constant feature liblinear appends (its weight is penalised).
    tol : float, default=1e-10
        Stop when every gradient component of the scaled objective is at most ``tol``
        times its feature's scale (``max(1, root mean square)``), after one last step.
    max_iter : int, default=100
        Maximum number of Newton iterations (usually fewer than 15 are needed).
    """

    reference = "sklearn.linear_model.LogisticRegressionCV(solver='liblinear', l1_ratios=(0,))"

    def __init__(
        self,
        Cs: int | tuple = 10,
        n_inner: int = 5,
        scoring: str = "neg_log_loss",
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        tol: float = 1e-10,
        max_iter: int = 100,
    ):
        self.Cs = Cs
        self.n_inner = n_inner
        self.scoring = scoring
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.tol = tol
        self.max_iter = max_iter

    @property
    def own_scoring(self) -> str | None:
        """What ``score`` computes (``scoring=None`` in a searchlight): the inner scoring,
        as ``LogisticRegressionCV.score`` (None: accuracy)."""
        return "neg_log_loss" if self.scoring == "neg_log_loss" else None

    @property
    def Cs_(self) -> np.ndarray:
        """The values of ``C``, as scikit-learn's ``Cs_``."""
        if isinstance(self.Cs, Integral):
            return np.logspace(-4, 4, int(self.Cs))
        return np.asarray(self.Cs, dtype=np.float64)

    def inner_folds(self, y_train: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The inner (train, test) folds of an outer training set, as scikit-learn makes
        them (``StratifiedKFold(n_inner)`` on its labels, in their order)."""
        from sklearn.model_selection import StratifiedKFold

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # few members of a class: same folds
            splits = StratifiedKFold(self.n_inner).split(np.zeros((len(y_train), 1)), y_train)
            return [(np.asarray(tr), np.asarray(te)) for tr, te in splits]

    def handles(self, codes: np.ndarray, n_classes: int, plan: CVPlan) -> bool:
        """Whether scikit-learn fits these folds: two classes, and every inner training set
        (of every outer fold) holds both (otherwise liblinear raises, and the per-sphere
        path reports it as scikit-learn does)."""
        if n_classes != 2:
            return False
        for train in plan.train_indices:
            y_train = np.asarray(codes)[train]
            try:
                folds = self.inner_folds(y_train)
            except ValueError:
                return False
            if any(np.unique(y_train[tr]).size < 2 for tr, _ in folds):
                return False
        return True

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        p = n_features + 1
        # the sphere's data and design, decisions of every fold; the Newton working arrays
        # live in blocks of _BLOCK_BYTES (or of one sphere, when it needs more)
        own = 8 * (n_samples * (n_features + p) + 2 * n_samples)
        return own + max(0, self._working_bytes(n_samples, p) - _BLOCK_BYTES)

    def _working_bytes(self, n: int, p: int) -> int:
        """Working memory of one sphere in the Newton iterations: its packed outer
        products, and per (inner fold, C) problem the predictors and weights of the
        samples, a Hessian and its factorisation."""
        Q = len(self.Cs_) * self.n_inner
        return 8 * (n * (p * (p + 1) // 2 + 4 * p) + Q * (8 * n + 3 * p * p))

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Decisions ``X @ coef + intercept`` of every sphere's refitted model on every
        outer fold's test samples, shape (n_spheres, n_test) per fold.

        Parameters are those of :meth:`BatchedClassifier.fold_decisions`.
        """
        return self.fit_folds(X, y, n_classes, plan)[0]

    def fit_folds(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        """Fit every sphere on every outer fold.

        Returns
        -------
        decisions : list of ndarray (n_spheres, n_test), one per fold
        best : ndarray of int (n_spheres, n_folds)
            Position in :attr:`Cs_` of the chosen ``C``.
        coefficients : list of ndarray (n_spheres, n_features + 1), one per fold
            ``coef_`` then ``intercept_`` of the refitted models (intercept 0 without one).
        """
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 3:
            raise ValueError(f"X must have shape (n_spheres, n_samples, n_features), got {X.shape}.")
        if int(n_classes) != 2:
            raise ValueError("LogisticRegressionCV with liblinear handles two classes only.")
        if self.scoring not in ("neg_log_loss", "accuracy"):
            raise ValueError(f"scoring must be 'neg_log_loss' or 'accuracy', got {self.scoring!r}.")
        S, n, d = X.shape
        p = d + 1 if self.fit_intercept else d
        block = max(1, _BLOCK_BYTES // self._working_bytes(n, p))
        decisions = [np.empty((S, len(te))) for te in plan.test_indices]
        best = np.empty((S, plan.n_folds), dtype=np.intp)
        coefs = [np.zeros((S, d + 1)) for _ in plan.train_indices]
        n_bad = 0
        for start in range(0, S, block):
            sl = slice(start, start + block)
            A = self._design(X[sl])
            path = None
            for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
                # the previous outer fold's solutions start this one's (similar training
                # sets; the optimum reached does not depend on the start)
                theta, best[sl, f], bad, path = self._outer_fold_in_row_space(A[:, train], y[train], path)
                n_bad += bad
                decisions[f][sl] = np.matmul(A[:, test], theta[..., None])[..., 0]
                coefs[f][sl, :d] = theta[:, :d]
                if self.fit_intercept:
                    coefs[f][sl, d] = theta[:, d] * self.intercept_scaling
        if n_bad:
            warnings.warn(
                f"BatchedLogisticRegressionCV: {n_bad} problems did not converge in "
                f"max_iter={self.max_iter} Newton iterations.",
                RuntimeWarning,
                stacklevel=3,
            )
        return decisions, best, coefs

    def _design(self, X: np.ndarray) -> np.ndarray:
        """``[X, intercept_scaling]`` (or ``X`` without an intercept), shape (B, n, p)."""
        if not self.fit_intercept:
            return X
        return np.concatenate([X, np.full(X.shape[:2] + (1,), float(self.intercept_scaling))], axis=2)

    def _outer_fold_in_row_space(
        self, A: np.ndarray, y: np.ndarray, start: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """:meth:`_outer_fold`, in the row space of the training design when there are more
        parameters than training samples.

        Every problem's penalty is ``|theta|^2`` (the intercept included), so its optimum
        is a combination of its training rows: with ``V`` (p, n) an orthonormal basis of
        the outer training rows, ``theta = V gamma`` and the problem in ``gamma`` has the
        design ``A V`` (n columns instead of p) and the penalty ``|gamma|^2``: the same
        problem, exactly, in fewer dimensions. Arguments and results as
        :meth:`_outer_fold`, in the original coordinates.
        """
        B, n, p = A.shape
        if p <= n:
            return self._outer_fold(A, y, start)
        V = np.linalg.qr(A.transpose(0, 2, 1))[0]  # (B, p, n)
        if start is not None:
            start = np.matmul(start, V)
        theta, best, bad, path = self._outer_fold(np.matmul(A, V), y, start)
        Vt = V.transpose(0, 2, 1)
        return np.matmul(theta[:, None, :], Vt)[:, 0], best, bad, np.matmul(path, Vt)

    def _outer_fold(
        self, A: np.ndarray, y: np.ndarray, start: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Choose ``C`` by the inner folds and refit, for a block of spheres.

        Parameters
        ----------
        A : ndarray (B, n_train, p)
            Design of the outer fold's training samples.
        y : ndarray of int (n_train,)
            Their class codes.
        start : ndarray (B, n_inner * n_Cs, p) or None
            Starting point of the (inner fold, C) problems (zero if None).

        Returns
        -------
        theta : ndarray (B, p)
            Refitted parameters.
        best : ndarray of int (B,)
            Position of the chosen ``C``.
        n_unconverged : int
        path : ndarray (B, n_inner * n_Cs, p)
            Solutions of the (inner fold, C) problems.
        """
        B, n, p = A.shape
        Cs = self.Cs_
        folds = self.inner_folds(y)
        sign = np.where(y == 1, 1.0, -1.0)
        t01 = (y == 1).astype(np.float64)
        K, nC = len(folds), len(Cs)
        # problems (inner fold, C): weights 1 / n_train at the inner training samples
        omega = np.zeros((K, n))
        test_w = np.zeros((K, n))
        for k, (tr, te) in enumerate(folds):
            omega[k, tr] = 1.0 / len(tr)
            test_w[k, te] = 1.0 / len(te)
        omega_t = np.repeat(omega, nC, axis=0).T  # (n, K * nC)
        sizes = np.array([len(tr) for tr, _ in folds], dtype=np.float64)
        lam = np.broadcast_to(1.0 / np.outer(sizes, Cs).ravel(), (B, K * nC)).copy()
        scale = np.maximum(1.0, np.sqrt(np.mean(A * A, axis=1)))  # (B, p)
        outer = _packed_outer(A)
        theta = np.zeros((B, K * nC, p)) if start is None or start.shape[1] != K * nC else start
        theta, bad = _newton(A, outer, sign, omega_t, lam, theta, scale, float(self.tol), int(self.max_iter))

        Z = np.matmul(A, theta.transpose(0, 2, 1))  # (B, n, K * nC)
        if self.scoring == "neg_log_loss":
            per_sample = _neg_log_loss(Z, t01)
        else:
            per_sample = ((Z > 0) == (t01[:, None] > 0)).astype(np.float64)
        scores = np.einsum("bnq,nq->bq", per_sample, np.repeat(test_w, nC, axis=0).T)
        total = scores.reshape(B, K, nC).sum(axis=1)
        best = np.argmax(total, axis=1)  # the first of equal scores, as numpy's argmax

        # refit on all the outer training samples, from the mean of the inner solutions
        refit_start = theta.reshape(B, K, nC, p)[np.arange(B), :, best].mean(axis=1)[:, None, :]
        lam_refit = (1.0 / (Cs[best] * n))[:, None]
        refit, bad_refit = _newton(
            A,
            outer,
            sign,
            np.full((n, 1), 1.0 / n),
            lam_refit,
            refit_start,
            scale,
            float(self.tol),
            int(self.max_iter),
        )
        return refit[:, 0], best, bad + bad_refit, theta
