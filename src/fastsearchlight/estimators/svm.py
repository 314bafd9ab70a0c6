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

or, the same point, ``w = X_A^T (I / 2C + X_A X_A^T)^-1 y_A`` when there are more features
than training samples (an n x n system instead of d x d): then the whole method runs on each
sphere's Gram matrix, in the coefficients of the training samples
(:mod:`._svm_gram_kernel`), and the decisions come from the Gram matrix without forming
``w``. Each Newton point is reached by an exact line search on the piecewise-quadratic objective. The method stops when
the active set no longer changes: then ``w`` satisfies the optimality conditions exactly (up
to rounding), a tighter optimum than liblinear's default tolerance.

The first Newton step starts from ``w = 0``, where every training sample is active.
Problems run in cache-sized batches; those that have converged leave the batch, so later
iterations only work on the few that have not. (Computing the first Hessians for a whole
block at once, as the sphere's Gram matrix minus the test fold's part, was measured slower:
the block's matrices do not stay in cache.)
"""

from __future__ import annotations

import numpy as np

from ..cv import CVPlan
from ._svm_gram_kernel import INVERSE_MEMBERS, gram_newton_spheres
from ._svm_kernel import CONVERGED, NEEDS_SVD, newton_spheres
from ._svm_newton import newton
from .base import BatchedClassifier, as_slice, binary_targets

__all__ = ["BatchedLinearSVC"]


def _gram(X: np.ndarray, rows) -> np.ndarray:
    """``X[:, rows]^T X[:, rows]`` for a stack ``X`` (b, n, d)."""
    part = X[:, rows]
    return np.swapaxes(part, 1, 2) @ part


def _padded_training_sets(Y: np.ndarray, W: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each problem's training samples, padded with a zero sample (index ``n``) of weight 0.

    Parameters
    ----------
    Y, W : ndarray (n_problems, n_samples)
        Targets and 0/1 sample weights, as in :meth:`BatchedLinearSVC.fit_weights`.
    n : int
        Number of samples.

    Returns
    -------
    index : ndarray of int (n_problems, n_train)
        Training samples of each problem, then ``n``.
    Yq, Wq : ndarray (n_problems, n_train)
        Their targets (0 at the padding) and weights (1, 0 at the padding).
    """
    Q = Y.shape[0]
    train = [np.flatnonzero(row) for row in W]
    n_tr = max(len(t) for t in train)
    index = np.full((Q, n_tr), n)
    for q, t in enumerate(train):
        index[q, : len(t)] = t
    Yq = np.append(Y, np.zeros((Q, 1)), axis=1)[np.arange(Q)[:, None], index]  # (Q, n_tr)
    Wq = (index < n).astype(np.float64)
    return index, Yq, Wq


class _GramPlan:
    """How the first Newton step forms each training set's Gram matrix, worked out once per
    fit from the training sets ``kept`` (bool, (U, n)): which rows each set leaves out and
    keeps (runs of samples as slices, read without a copy), whether the left-out part is the
    smaller one, and whether the left-out parts are disjoint."""

    def __init__(self, kept: np.ndarray) -> None:
        left = [np.flatnonzero(~keep) for keep in kept]
        self.smaller = [len(ix) < keep.sum() for ix, keep in zip(left, kept)]
        every = np.concatenate(left)
        self.disjoint = all(self.smaller) and len(np.unique(every)) == len(every)
        self.left = [as_slice(ix) for ix in left]
        self.kept = [as_slice(np.flatnonzero(keep)) for keep in kept]
        rest = np.flatnonzero(kept.all(axis=0))
        self.rest = as_slice(rest) if rest.size else None
        self.every = slice(0, kept.shape[1])


def _group_by_training_set(W: np.ndarray) -> np.ndarray:
    """Problems grouped by their training set (rows of ``W``), shape (n_sets, n_members).

    Raises
    ------
    ValueError
        If the training sets are not shared by the same number of problems.
    """
    _, inverse, counts = np.unique(W != 0, axis=0, return_inverse=True, return_counts=True)
    if np.any(counts != counts[0]):
        raise ValueError("Every training set must be shared by the same number of problems.")
    return np.argsort(inverse.ravel(), kind="stable").reshape(len(counts), counts[0])


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
    max_iter : int, default=200
        Maximum number of Newton iterations (the method usually stops in under 10).
    first_iter : int, default=8
        Newton iterations given to each cache-sized batch of problems; the problems still
        unconverged after them are finished together.
    batch_problems : int, default=256
        Problems per cache-sized batch.
    """

    reference = "sklearn.svm.LinearSVC(penalty='l2', loss='squared_hinge')"

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """The Newton iterations run in compiled code without the interpreter lock: on
        more features than training samples too, where one compiled call solves a whole
        batch of spheres from their Gram matrices (W3, n_jobs=2, load 3-4: 41 s in threads,
        50 s in processes)."""
        return True

    def __init__(
        self,
        C: float = 1.0,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        max_iter: int = 200,
        first_iter: int = 8,
        batch_problems: int = 256,
    ):
        self.C = C
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.max_iter = max_iter
        self.first_iter = first_iter
        self.batch_problems = batch_problems

    def _augment(self, X: np.ndarray, pad: int = 0) -> np.ndarray:
        """``X`` with the constant feature appended (one copy), and ``pad`` zero samples."""
        B, n, k = X.shape
        d = k + bool(self.fit_intercept)
        out = np.empty((B, n + pad, d))
        out[:, :n, :k] = X
        if self.fit_intercept:
            out[:, :n, k] = float(self.intercept_scaling)
        out[:, n:, :] = 0.0
        return out

    def bytes_per_sphere(self, n_samples, n_features, n_folds, n_classes):
        d = n_features + 1
        n_problems = n_folds * (1 if n_classes == 2 else n_classes)
        return 8 * (2 * n_samples * d + n_problems * (n_samples * (d + 6) + 3 * d * d))

    def fit_weights(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray,
        *,
        training_sets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Solve every (sphere, problem) pair.

        Problems run in small batches of whole spheres that stay in the processor's cache
        for the first Newton iterations, which settle nearly all of them; the few that need
        more iterations are then finished together in one batch.

        The first Newton step, from ``w = 0`` where every training sample is active, solves
        ``(I + 2C X_T^T X_T) w = 2C X_T^T y`` on the training set ``T``: its matrix depends
        on the training set only, so problems that share one (the classes and label
        vectors of a fold) share one factorisation, solved for all their targets at once.
        Its Gram matrix is the sphere's Gram matrix minus the part of the left-out samples
        when they are fewer (a quarter of the work for KFold(4)).

        Parameters
        ----------
        X : ndarray (n_spheres, n_samples, n_features)
        Y : ndarray (n_problems, n_samples)
            +-1 targets of each problem.
        W : ndarray (n_problems, n_samples)
            0/1 sample weights of each problem (1 = training sample).
        training_sets : ndarray of int (n_sets, n_members) or None
            Problems grouped by training set (each row: problems with the same rows of
            ``W``, every row the same length); by default, grouped from ``W``.

        Returns
        -------
        ndarray (n_spheres, n_problems, n_features + fit_intercept)
            The weights; ``n_iter_`` (n_spheres, n_problems) holds the Newton iterations
            each problem took.
        """
        C = float(self.C)
        B, n = X.shape[:2]
        d = X.shape[2] + bool(self.fit_intercept)
        Q = Y.shape[0]
        N = B * Q
        problems = _padded_training_sets(Y, W, n)
        if training_sets is None:
            training_sets = _group_by_training_set(W)
        if problems[0].shape[1] < d:  # more features than training rows: on the Gram matrix
            return self._fit_gram(X, Y, W, training_sets, decisions=False)
        kept = W[training_sets[:, 0]] != 0  # (U, n)
        gram_plan = _GramPlan(kept)
        YW = np.zeros((Q, n + 1))
        YW[:, :n] = Y * (W != 0)

        w = np.zeros((N, d))
        converged = np.zeros(N, dtype=bool)
        iterations = np.zeros(N, dtype=np.int32)
        index, Yq, Wq = problems
        set_of = np.empty(Q, dtype=np.int64)
        for u, members in enumerate(training_sets):
            set_of[members] = u
        per_batch = max(1, self.batch_problems // Q)  # whole spheres
        for lo in range(0, B, per_batch):
            spheres = np.arange(lo, min(B, lo + per_batch))
            ids = (spheres[:, None] * Q + np.arange(Q)).ravel()
            Xz = self._augment(X[spheres[0] : spheres[-1] + 1], pad=1)  # zero sample at n
            H0, rhs = self._first_systems(Xz, YW, kept, C, gram_plan)
            wb, status, its = newton_spheres(Xz, index, Yq, Wq, set_of, H0, rhs, C, int(self.max_iter))
            w[ids], iterations[ids] = wb.reshape(-1, d), its.ravel()
            # values too large for the normal equations: solved below, from the SVD
            converged[ids] = status.ravel() != NEEDS_SVD
        tail = np.flatnonzero(~converged)
        if tail.size:
            _, Xs, Ys, Ws = self._gather_problems(X, tail, problems)
            ws = w[tail]
            ws[:] = 0.0  # left by the compiled iterations (values too large)
            its = np.zeros(len(tail), dtype=np.int32)
            newton(Xs, Ys, Ws, ws, C, self.max_iter, iterations=its)
            w[tail] = ws
            iterations[tail] += its
        self.n_iter_ = iterations.reshape(B, Q)
        return w.reshape(B, Q, d)

    def _fit_gram(
        self, X: np.ndarray, Y: np.ndarray, W: np.ndarray, training_sets: np.ndarray, *, decisions: bool
    ) -> np.ndarray:
        """Problems with more features than training rows, solved from each sphere's Gram
        matrix ``G = Xz Xz^T`` (n x n, the constant feature included) by
        :func:`._svm_gram_kernel.gram_newton_spheres`: no ``d``-dimensional work beyond
        ``G``, and with ``decisions``, no weights formed at all (the kernel writes the
        decisions on every sample, from ``G``). Problems left unconverged by the kernel (values too
        large for the normal equations, iteration limit) are solved by
        :func:`._svm_newton.newton`.

        Parameters
        ----------
        X, Y, W, training_sets
            As for :meth:`fit_weights` (``training_sets`` given).
        decisions : bool
            Return the decisions on every sample instead of the weights.

        Returns
        -------
        ndarray
            The weights (n_spheres, n_problems, n_features + fit_intercept), or the
            decisions (n_spheres, n_problems, n_samples); ``n_iter_`` set as by
            :meth:`fit_weights`.
        """
        C = float(self.C)
        B, n, k = X.shape
        d = k + bool(self.fit_intercept)
        Q = Y.shape[0]
        shift = float(self.intercept_scaling) ** 2 if self.fit_intercept else 0.0
        kept = W[training_sets[:, 0]] != 0  # (U, n)
        set_size = kept.sum(axis=1)
        set_rows = np.zeros((len(kept), int(set_size.max())), dtype=np.int64)
        for u, keep in enumerate(kept):
            set_rows[u, : set_size[u]] = np.flatnonzero(keep)
        members = np.ascontiguousarray(training_sets, dtype=np.int64)
        Yc = np.ascontiguousarray(Y, dtype=np.float64)
        out = np.empty((B, Q, n if decisions else d))
        converged = np.empty((B, Q), dtype=bool)
        iterations = np.empty((B, Q), dtype=np.int32)
        per_batch = max(1, 16 * self.batch_problems // Q)  # n x n matrices: many spheres
        for lo in range(0, B, per_batch):
            hi = min(B, lo + per_batch)
            Xb = np.asarray(X[lo:hi], dtype=np.float64)
            G = Xb @ np.swapaxes(Xb, 1, 2)
            G += shift
            if decisions:  # written straight into the output: no weights, no copies
                status, its = gram_newton_spheres(
                    G,
                    set_rows,
                    set_size,
                    members,
                    Yc,
                    C,
                    int(self.max_iter),
                    out[lo:hi],
                    True,
                    INVERSE_MEMBERS,
                )
            else:
                alpha = np.empty((hi - lo, Q, n))
                status, its = gram_newton_spheres(
                    G, set_rows, set_size, members, Yc, C, int(self.max_iter), alpha, False, INVERSE_MEMBERS
                )
                out[lo:hi, :, :k] = alpha @ Xb
                if self.fit_intercept:
                    out[lo:hi, :, k] = float(self.intercept_scaling) * alpha.sum(axis=2)
            converged[lo:hi] = status == CONVERGED
            iterations[lo:hi] = its
        tail = np.flatnonzero(~converged.ravel())
        if tail.size:
            problems = _padded_training_sets(Y, W, n)
            Xz, Xs, Ys, Ws = self._gather_problems(X, tail, problems)
            ws = np.zeros((len(tail), d))
            its = np.zeros(len(tail), dtype=np.int32)
            newton(Xs, Ys, Ws, ws, C, self.max_iter, iterations=its)
            sph = tail // Q
            if decisions:
                local = np.unique(sph, return_inverse=True)[1].ravel()
                values = np.einsum("qjd,qd->qj", Xz[local, :n], ws)
            else:
                values = ws
            out.reshape(B * Q, -1)[tail] = values
            iterations.reshape(-1)[tail] += its
        self.n_iter_ = iterations
        return out

    def _gather_problems(
        self, X: np.ndarray, ids: np.ndarray, problems: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Training samples of problems ``ids``, from their spheres with the constant
        feature and a zero sample appended (a small copy, that stays in cache).

        Parameters
        ----------
        X : ndarray (n_spheres, n_samples, n_features)
        ids : ndarray of int
            Problems, numbered ``sphere * n_problems + problem``, in increasing order.
        problems : (index, Yq, Wq)
            From :func:`_padded_training_sets`.

        Returns
        -------
        Xz : ndarray (n_spheres_of_ids, n_samples + 1, n_features + fit_intercept)
            The spheres of the problems, augmented.
        Xs, Ys, Ws : ndarray
            Training samples ``(len(ids), n_train, d)``, targets and weights
            ``(len(ids), n_train)`` of each problem.
        """
        index, Yq, Wq = problems
        Q, n_tr = index.shape
        d = X.shape[2] + bool(self.fit_intercept)
        sph, prob = np.divmod(ids, Q)
        lo, hi = sph[0], sph[-1] + 1
        if ids.size == (hi - lo) * Q and np.array_equal(ids, np.arange(lo * Q, hi * Q)):
            # every problem of a run of spheres: slices and a take along the samples,
            # no fancy-index copies
            Xz = self._augment(X[lo:hi], pad=1)  # zero sample at n
            Xs = np.take(Xz, index, axis=1).reshape(len(ids), n_tr, d)
        else:
            spheres, local = np.unique(sph, return_inverse=True)
            Xz = self._augment(X[spheres], pad=1)
            Xs = Xz[local.ravel()[:, None], index[prob]]
        return Xz, Xs, Yq[prob], Wq[prob]

    @staticmethod
    def _first_systems(Xb, YW, kept, C, plan=None):
        """The first Newton step's systems of a batch of whole spheres: matrices
        ``I + 2C X_T^T X_T`` (b, U, d, d), one per sphere and training set, and right-hand
        sides ``2C X_T^T y`` (b, Q, d), one per sphere and problem (solved by the kernel).

        The matrix of training set ``T`` is ``I + 2C X_T^T X_T``. When the samples left out
        of the training sets are disjoint (k-fold, leave-one-group-out), the Gram matrix of
        each left-out part is computed once, and the sphere's Gram matrix is their sum
        (plus the samples never left out): each sample enters one product instead of two.

        Parameters
        ----------
        Xb : ndarray (b, n + 1, d)
            The spheres' samples (the last one a zero pad).
        YW : ndarray (Q, n + 1)
            Each problem's targets times its training weights (0 outside its training set).
        kept : ndarray of bool (U, n)
            The training samples of each training set.
        plan : _GramPlan or None
            Worked out from ``kept`` (once per fit, by the caller), if not given.
        """
        b, _, d = Xb.shape
        U = kept.shape[0]
        H = np.empty((b, U, d, d))
        plan = _GramPlan(kept) if plan is None else plan
        if plan.disjoint:
            # disjoint left-out parts: H_u = (sum of every part's Gram) - (the part of u)
            parts = [_gram(Xb, rows) for rows in plan.left]
            total = parts[0].copy()
            for part in parts[1:]:
                total += part
            if plan.rest is not None:
                total += _gram(Xb, plan.rest)
            for u, part in enumerate(parts):
                np.subtract(total, part, out=H[:, u])
        else:
            total = _gram(Xb, plan.every) if any(plan.smaller) else None
            for u in range(U):
                if plan.smaller[u]:  # the sphere's Gram matrix minus the left-out part
                    np.subtract(total, _gram(Xb, plan.left[u]), out=H[:, u])
                else:
                    H[:, u] = _gram(Xb, plan.kept[u])
        H *= 2.0 * C
        H += np.eye(d)
        return H, (2.0 * C) * (YW @ Xb)

    def fold_decisions(self, X, y, n_classes, plan: CVPlan):
        return self.many_fold_decisions(X, np.asarray(y)[None, :], n_classes, plan)[0]

    def many_fold_decisions(self, X, ys, n_classes, plan: CVPlan):
        """All label sets, folds and one-vs-rest classes solved in one batch."""
        ys = np.atleast_2d(ys)
        K = ys.shape[0]
        masks = plan.train_masks.astype(np.float64)  # (F, n)
        F = masks.shape[0]
        Ys = [binary_targets(y, n_classes) for y in ys]  # each (P, n)
        P = Ys[0].shape[0]
        # problem q = (k * F + f) * P + p
        Yq = np.concatenate([np.tile(Yk, (F, 1)) for Yk in Ys])
        Wq = np.tile(np.repeat(masks, P, axis=0), (K, 1))
        # problems of fold f: (k * F + f) * P + p for every label set k and class p
        sets = ((np.arange(K)[None, :, None] * F + np.arange(F)[:, None, None]) * P
                + np.arange(P)[None, None, :]).reshape(F, K * P)  # fmt: skip
        k = X.shape[2]
        if int(masks.sum(axis=1).max()) < k + bool(self.fit_intercept):
            # more features than training rows: the decisions straight from the Gram matrices
            decisions = np.swapaxes(self._fit_gram(X, Yq, Wq, sets, decisions=True), 1, 2)
        else:
            w = self.fit_weights(X, Yq, Wq, training_sets=sets)  # (B, K*F*P, d)
            # every sample, every problem: (B, n, K*F*P)
            decisions = np.swapaxes(w[:, :, :k] @ np.swapaxes(np.asarray(X, dtype=np.float64), 1, 2), 1, 2)
            if self.fit_intercept:
                decisions += (w[:, :, k] * float(self.intercept_scaling))[:, None, :]
        out = []
        for k in range(K):
            folds = []
            for f, test in enumerate(plan.test_indices):
                q0 = (k * F + f) * P
                dec = decisions[:, test, q0 : q0 + P]
                folds.append(dec[:, :, 0] if n_classes == 2 else dec)
            out.append(folds)
        return out
