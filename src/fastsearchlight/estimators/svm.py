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
than training samples (an n x n system instead of d x d). Each Newton point is reached by an
exact line search on the piecewise-quadratic objective. The method stops when
the active set no longer changes: then ``w`` satisfies the optimality conditions exactly (up
to rounding), a tighter optimum than liblinear's default tolerance.

The first Newton step starts from ``w = 0``, where every training sample is active.
With fewer features than training samples, everything runs in compiled code, sphere by
sphere, straight from the voxel-major data (:func:`._svm_kernel.newton_block`): the
sphere's samples, each training set's first matrix (from the Gram matrices of the left-out
parts), the Newton iterations of every problem, and the decisions. With more features than
training samples, the whole method runs on each sphere's Gram matrix, in the coefficients of
the training samples (:mod:`._svm_gram_kernel`), and the decisions come from the Gram matrix
without forming ``w``; there each problem starts from the active set of its optimum on the
sphere before, when the two spheres share at least half their voxels (a warm start: fewer
steps, the same optimum).
"""

from __future__ import annotations

import numpy as np

from .._work_arrays import work_array
from ..cv import CVPlan
from ._svm_gram_kernel import INVERSE_MEMBERS, follows_previous, gram_newton_spheres, sample_grams
from ._svm_kernel import CONVERGED, NEEDS_SVD, newton_block
from ._svm_newton import newton
from .base import BatchedClassifier, as_voxel_major, binary_targets

__all__ = ["BatchedLinearSVC"]


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
    inside = W != 0
    n_tr = int(inside.sum(axis=1).max())
    # each row's training samples first, in increasing order (a stable sort of the
    # outsiders' flags), then the padding
    # C order: the compiled kernel is then compiled for one layout (a slice of the argsort
    # would be a second, a whole compile more)
    index = np.ascontiguousarray(np.argsort(~inside, axis=1, kind="stable")[:, :n_tr])
    index[~np.take_along_axis(inside, index, axis=1)] = n
    Yq = np.append(Y, np.zeros((Q, 1)), axis=1)[np.arange(Q)[:, None], index]  # (Q, n_tr)
    Wq = (index < n).astype(np.float64)
    return index, Yq, Wq


class _GramPlan:
    """How the first Newton step forms each training set's Gram matrix, worked out once per
    call from the training sets ``kept`` (bool, (U, n)): which rows each set leaves out and
    keeps, whether the left-out part is the smaller one (then the set's Gram matrix is the
    sphere's minus that part's), and whether the left-out parts are disjoint (then the
    sphere's Gram matrix is the sum of theirs and of the rows never left out)."""

    def __init__(self, kept: np.ndarray) -> None:
        left = [np.flatnonzero(~keep) for keep in kept]
        self.subtract = np.array([len(ix) < keep.sum() for ix, keep in zip(left, kept)])
        every = np.concatenate(left)
        self.disjoint = bool(self.subtract.all()) and len(np.unique(every)) == len(every)
        rows = [ix if sub else np.flatnonzero(keep) for ix, sub, keep in zip(left, self.subtract, kept)]
        self.set_ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        self.set_rows = np.concatenate(rows).astype(np.int64)
        self.rest = np.flatnonzero(kept.all(axis=0)).astype(np.int64)

    def arrays(self) -> tuple:
        """The arguments ``set_ptr, set_rows, subtract, disjoint, rest`` of
        :func:`._svm_kernel.newton_block`."""
        return self.set_ptr, self.set_rows, self.subtract, self.disjoint, self.rest


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


#: problems with at least this share of features per training sample (the constant one
#: included) are solved in the training samples' coefficients, from each sphere's Gram
#: matrix (:mod:`._svm_gram_kernel`), the others in the weights (:mod:`._svm_kernel`). Near
#: ``d ~ n`` on raw-scale data the training sets are nearly separable: both methods take the
#: same tens of steps, but a step costs ``O(|A|^2)`` for an active set ``A`` that stays
#: small there, against ``O(d^2)``. Measured on one core with the same scores: W1 at 12 mm
#: (162 training samples, d up to 155), 2.54 s on 400 spheres with the primal kernel, 1.30 s
#: with this share (1.23 s at 80 features, but W1 at 10 mm then loses: its full spheres of
#: 80-84 features took 1.40 s on 1,000 spheres in the primal kernel, 1.76 s in the Gram one).
GRAM_SHARE = 0.55
#: problems with this share of features per training sample (from, below) first solve a
#: path of smaller ``C`` (:func:`._svm_gram_kernel.c_path`), where that path is not empty.
#: W1 12 mm's spheres cut by the mask to 89-113 voxels (162 training samples), one thread:
#: 0.61-0.64 of the time without it (stop 90). Above 0.72 the path cost more than it saved
#: (spheres of 114-125 voxels with the band up to 0.8: 1.08 of the time), and below 0.55, on
#: the Gram path, too (70-88 voxels: 1.30 of the time)
C_PATH_SHARE = (0.55, 0.72)

#: fewest features (the constant one included) at which the primal kernel starts the problems
#: of disjoint training sets (k-fold, leave-one-group-out) from each sphere's all-sample
#: matrix, factored once per sphere (``_svm_kernel._majorised_starts``), instead of factoring
#: every training set's own: below it a factorisation costs less than the steps it saves
MAJORISED_START_FEATURES = 96
#: and only when every training set holds at least this share of the samples (8 runs left
#: out one at a time: 0.875; KFold(4): 0.75): the all-sample matrix holds the left-out
#: samples too, and with a quarter of them out it is too far from a training set's matrix
#: for its steps to pay (W1 at 10 mm: 5% slower); and only when each training set serves
#: one problem: the factorisation saved is the training set's, which several problems (the
#: classes, permuted label vectors) share otherwise (W2 with 8 permutations: +2%, noise)
MAJORISED_START_SHARE = 0.8


def _majorise_from(kept: np.ndarray, problems_per_set: int) -> int:
    """The primal kernel's ``majorise_from`` for training sets ``kept`` (n_sets, n_samples)
    of ``problems_per_set`` problems each."""
    share = kept.sum(axis=1).min() / kept.shape[1]
    if share >= MAJORISED_START_SHARE and problems_per_set == 1:
        return MAJORISED_START_FEATURES
    return np.iinfo(np.int64).max


#: bytes of the Gram matrices, samples and outputs of the spheres of one call of the
#: Gram-space kernel (:meth:`BatchedLinearSVC._solve_gram`)
_GRAM_BATCH_BYTES = 4 << 20


def _on_gram_path(n_params: int, n_train: int) -> bool:
    """Whether problems with ``n_params`` parameters (the constant feature included) and
    ``n_train`` training samples are solved from the Gram matrix (:data:`GRAM_SHARE`)."""
    return n_params >= GRAM_SHARE * n_train


def _sorted_voxels(vox: np.ndarray) -> np.ndarray:
    """Each row of voxel indices in increasing order, its padding (-1) kept at its end."""
    top = np.iinfo(np.int64).max
    ordered = np.sort(np.where(vox < 0, top, vox).astype(np.int64), axis=1)
    ordered[ordered == top] = -1
    return ordered


def _rows(Xv: np.ndarray, vox: np.ndarray) -> np.ndarray:
    """The data rows ``Xv[vox]``, (spheres, voxels, samples), with zeros for padding (-1):
    a feature that is zero on every sample has zero weight at the optimum and changes no
    decision."""
    rows = Xv[np.maximum(vox, 0)]
    if (vox < 0).any():
        rows[vox < 0] = 0.0
    return rows


def _n_problems(n_folds: int, n_classes: int) -> int:
    """One-vs-rest problems per sphere and label vector."""
    return n_folds * (1 if n_classes == 2 else n_classes)


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
        Kept for compatibility; unused (every problem runs to convergence in the compiled
        iterations).
    batch_problems : int, default=256
        With more features than training samples, the spheres of one compiled call times
        their problems is at most about 16 times this (and their Gram matrices, samples and
        outputs at most about 4 MB).
    """

    reference = "sklearn.svm.LinearSVC(penalty='l2', loss='squared_hinge')"

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """The Newton iterations run in compiled code without the interpreter lock: on
        more features than training samples too, where one compiled call solves a whole
        batch of spheres from their Gram matrices (W3, n_jobs=2: 41 s in threads, 50 s in
        processes at load 3-4; 22-31 s and 22 s at load 2-3; threads share the data and
        start at once)."""
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

    def mixed_sizes_from(self, plan: CVPlan) -> int:
        """The spheres solved from their Gram matrices (:data:`GRAM_SHARE`) take blocks of
        several sizes, in the order of their seeds: each sphere's Gram matrix is then
        updated from its neighbour's, and its problems start from its neighbour's optima,
        where blocks of equal sizes leave most spheres at the mask's edge after a distant
        one (W1 at 12 mm: 35% of the Gram path's spheres, one thread: 0.94 of the fit's time)."""
        n_train = int(plan.train_masks.sum(axis=1).max())
        k = 1
        while not _on_gram_path(k + bool(self.fit_intercept), n_train):
            k += 1
        return k

    def bytes_per_sphere(self, n_samples, n_features, n_folds, n_classes):
        """Peak working memory per sphere. With fewer features than :data:`GRAM_SHARE`
        times the training samples, each problem's ``d x d`` systems and samples (an upper
        bound, from the batched numpy method); otherwise the Gram-space path's: the sphere's
        samples and Gram matrix, and each problem's decisions on every sample and weights."""
        d = n_features + 1
        n_problems = _n_problems(n_folds, n_classes)
        n_train = n_samples - n_samples // n_folds if n_folds > 1 else n_samples
        if _on_gram_path(d, n_train):
            return 8 * (n_samples * d + n_samples * n_samples + n_problems * (2 * n_samples + d + 4))
        return 8 * (2 * n_samples * d + n_problems * (n_samples * (d + 6) + 3 * d * d))

    def bytes_per_label_set(self, n_samples, n_features, n_folds, n_classes):
        """Each further label vector adds its problems' decisions on every sample, their
        weights and targets; the first matrices are shared by the label vectors of a fold."""
        return 8 * _n_problems(n_folds, n_classes) * (2 * n_samples + n_features + 4)

    def fit_weights(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray,
        *,
        training_sets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Solve every (sphere, problem) pair.

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
        Xv, vox = as_voxel_major(X)
        return self._solve(Xv, vox, Y, W, training_sets)[0]

    def _solve(
        self,
        Xv: np.ndarray,
        vox: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray,
        training_sets: np.ndarray | None = None,
        *,
        weights: bool = True,
        tolerant: bool = False,
        classes: int = 1,
        decisions: np.ndarray | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, np.ndarray]:
        """Weights and decisions of every (sphere, problem) pair, from voxel-major data.

        The first Newton step, from ``w = 0`` where every training sample is active, solves
        ``(I + 2C X_T^T X_T) w = 2C X_T^T y`` on the training set ``T``: its matrix depends
        on the training set only, so problems that share one (the classes and label
        vectors of a fold) share one factorisation. Its Gram matrix is the sphere's Gram
        matrix minus the part of the left-out samples when they are fewer (a quarter of the
        work for KFold(4)).

        With fewer features than :data:`GRAM_SHARE` times the training samples, one compiled
        call per block does everything sphere by sphere (:func:`._svm_kernel.newton_block`):
        the sphere's samples gathered from the data, the first systems, the Newton iterations
        and the decisions. With more, the problems are solved from each sphere's Gram matrix
        (:meth:`_solve_gram`).
        Problems whose values are too large for the normal equations are then solved from the
        SVD (:func:`._svm_newton.newton`).

        Parameters
        ----------
        Xv : ndarray (n_voxels, n_samples)
            Voxel-major data.
        vox : ndarray of int (n_spheres, n_features)
            Each sphere's rows of ``Xv``.
        Y, W, training_sets
            As :meth:`fit_weights`.
        weights : bool
            Whether the weights are wanted (on the Gram path they are not formed otherwise).
        tolerant : bool
            Without ``weights``: on the Gram path, points whose active set is proven
            optimal may be accepted without their refinement, with a bound on their
            decisions' error (for callers that need only the predictions).
        classes : int
            With ``tolerant``: the problems of each training set come in groups of
            ``classes``, one label vector's one-vs-rest problems (1 for two classes),
            whose predictions the bounds are checked for.
        decisions : ndarray (n_spheres, n_problems, n_samples) or None
            Where to write the decisions (a work array the caller reuses); None: a new
            array.

        Returns
        -------
        w : ndarray (n_spheres, n_problems, n_features + fit_intercept) or None
            Without ``weights``, the primal path's weights are those of a work array,
            overwritten by the calling thread's next call.
        decisions : ndarray (n_spheres, n_problems, n_samples)
            ``[x, intercept_scaling] . w`` of every problem on every sample.
        unsettled : ndarray of bool (n_spheres,) or None
            With ``tolerant`` on the Gram path: the spheres whose predictions on the
            samples outside a training set the decisions' bounds do not prove (to be
            solved again to rounding); else None.
        iterations : ndarray of int (n_spheres, n_problems)
            The Newton iterations each problem took (also stored as ``n_iter_``; callers
            that share the estimator between threads use this return value).
        """
        C = float(self.C)
        B, k = vox.shape
        n = Xv.shape[1]
        d = k + bool(self.fit_intercept)
        Q = Y.shape[0]
        if decisions is None:
            decisions = np.empty((B, Q, n))
        if training_sets is None:
            training_sets = _group_by_training_set(W)
        kept = W[training_sets[:, 0]] != 0  # (U, n)
        problems = None  # each problem's training samples, padded: where they are needed
        n_train = int(kept.sum(axis=1).max())
        if vox.size and vox[:, -1].min() < 0:  # spheres of several sizes: the Gram path's only
            smallest = int((vox >= 0).sum(axis=1).min())
            if not _on_gram_path(smallest + bool(self.fit_intercept), n_train):
                raise ValueError(
                    f"spheres of several sizes (rows padded with -1) must all be solved from their "
                    f"Gram matrices: one has {smallest} voxels, fewer than mixed_sizes_from gives."
                )
        if not _on_gram_path(d, n_train):
            problems = _padded_training_sets(Y, W, n)
            index, Yq, Wq = problems
            set_of = np.empty(Q, dtype=np.int64)
            for u, members in enumerate(training_sets):
                set_of[members] = u
            YW = np.zeros((Q, n + 1))
            YW[:, :n] = Y * (W != 0)
            w = np.empty((B, Q, d)) if weights else work_array("svc weights", (B, Q, d))
            w, status, iterations, decisions = newton_block(
                Xv, vox, bool(self.fit_intercept), float(self.intercept_scaling), *_GramPlan(kept).arrays(),
                index, Yq, Wq, set_of, YW, C, int(self.max_iter), _majorise_from(kept, training_sets.shape[1]),
                w, decisions,
            )  # fmt: skip
            # values too large for the normal equations: solved below, from the SVD
            converged = status != NEEDS_SVD
            unsettled = None
        else:
            # more features than training rows, or nearly as many: from each sphere's Gram
            # matrix
            w, decisions, converged, iterations, unsettled = self._solve_gram(
                Xv, vox, Y, kept, training_sets, weights, decisions, tolerant and not weights, classes
            )
        tail = np.flatnonzero(~converged.ravel())
        if tail.size:
            if problems is None:
                problems = _padded_training_sets(Y, W, n)
            spheres, local = np.unique(tail // Q, return_inverse=True)
            Xt = _rows(Xv, vox[spheres]).transpose(0, 2, 1)  # (spheres, n, k)
            ids = local.ravel() * Q + tail % Q
            _, Xs, Ys, Ws = self._gather_problems(Xt, ids, problems)
            ws = np.zeros((len(tail), d))
            its = np.zeros(len(tail), dtype=np.int32)
            newton(Xs, Ys, Ws, ws, C, self.max_iter, iterations=its)
            if w is not None:
                w.reshape(-1, d)[tail] = ws
            iterations.reshape(-1)[tail] += its
            tail_decisions = np.einsum("qnk,qk->qn", Xt[local.ravel()], ws[:, :k])
            if self.fit_intercept:
                tail_decisions += (ws[:, k] * float(self.intercept_scaling))[:, None]
            decisions.reshape(-1, n)[tail] = tail_decisions
        iterations = iterations.reshape(B, Q)
        self.n_iter_ = iterations
        return w, decisions, unsettled, iterations

    def _solve_gram(
        self,
        Xv: np.ndarray,
        vox: np.ndarray,
        Y: np.ndarray,
        kept: np.ndarray,
        training_sets: np.ndarray,
        weights: bool,
        decisions: np.ndarray,
        tolerant: bool = False,
        classes: int = 1,
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Problems with more features than training rows, solved from each sphere's Gram
        matrix ``G = Xz Xz^T`` (n x n, the constant feature included) by
        :func:`._svm_gram_kernel.gram_newton_spheres`: no ``d``-dimensional work beyond
        ``G``; without ``weights``, no weights formed at all (the kernel writes the
        decisions on every sample, from ``G``).

        Parameters
        ----------
        Xv, vox, Y, training_sets
            As :meth:`_solve`.
        kept : ndarray of bool (n_sets, n_samples)
            The training samples of each training set.
        weights : bool
            Whether to form the weights too.
        decisions : ndarray (n_spheres, n_problems, n_samples)
            Written with the decisions.
        tolerant, classes
            Without ``weights``: accept points proven to have the optimum's active set
            without their refinement, and flag the spheres whose predictions their bounds
            do not prove (see :meth:`_solve`).

        Returns
        -------
        w : ndarray (n_spheres, n_problems, n_features + fit_intercept) or None
        decisions : ndarray (n_spheres, n_problems, n_samples)
        converged : ndarray of bool (n_spheres, n_problems)
            False for the problems left to :func:`._svm_newton.newton` (values too large
            for the normal equations, iteration limit).
        iterations : ndarray of int32 (n_spheres, n_problems)
        unsettled : ndarray of bool (n_spheres,) or None
            With ``tolerant``.
        """
        C = float(self.C)
        B, k = vox.shape
        n = Xv.shape[1]
        d = k + bool(self.fit_intercept)
        Q = Y.shape[0]
        shift = float(self.intercept_scaling) ** 2 if self.fit_intercept else 0.0
        set_size = kept.sum(axis=1)
        set_rows = np.zeros((len(kept), int(set_size.max())), dtype=np.int64)
        for u, keep in enumerate(kept):
            set_rows[u, : set_size[u]] = np.flatnonzero(keep)
        members = np.ascontiguousarray(training_sets, dtype=np.int64)
        Yc = np.ascontiguousarray(Y, dtype=np.float64)
        w = np.zeros((B, Q, d)) if weights else None
        converged = np.empty((B, Q), dtype=bool)
        iterations = np.empty((B, Q), dtype=np.int32)
        tolerant = tolerant and not weights
        bounds = np.zeros((B if tolerant else 0, Q))  # empty: every problem solved to rounding
        unsettled = np.zeros(B if tolerant else 0, dtype=bool)
        args = (set_rows, set_size, members, Yc, C, int(self.max_iter))
        # warm starts: each problem's active set at the previous sphere's optimum, used
        # where that sphere shares at least half the voxels, and the inverse path's jumps
        # from them and from cold starts (kept across batches)
        warm = (np.zeros((Q, set_rows.shape[1]), dtype=bool), np.zeros(Q, dtype=bool), np.zeros(5))
        # a path in C for the training sets near the edge of separability (C_PATH_SHARE),
        # and its warm starts (kept across batches, as the others)
        # (each sphere's own: a block may hold spheres of several sizes, padded with -1)
        share = ((vox >= 0).sum(axis=1) + bool(self.fit_intercept)) / set_size.max()
        on_path = (C_PATH_SHARE[0] <= share) & (share < C_PATH_SHARE[1])
        path_warm = (np.zeros((Q, set_rows.shape[1]), dtype=bool), np.zeros(Q, dtype=bool))
        ordered = _sorted_voxels(vox)
        # spheres per compiled call: their Gram matrices and samples are formed just before
        # the call reads them, so a batch that stays in the cache saves a pass through memory
        # (W1 at 12 mm: peak 1,075 -> 570 MB with blocks of 403 spheres)
        per_batch = max(1, min(16 * self.batch_problems // Q, _GRAM_BATCH_BYTES // (8 * n * (n + k + Q))))
        # the Gram matrices of a call's spheres after the last one of the call before, from
        # which the first is updated if it is a neighbour (the same matrices however many
        # spheres each call holds)
        grams = np.empty((min(B, per_batch) + 1, n, n))
        run = np.zeros(1, dtype=np.int64)
        last = 0
        for lo in range(0, B, per_batch):
            hi = min(B, lo + per_batch)
            if lo:
                grams[0] = grams[last]
            first = 1 if lo else 0
            last = first + hi - lo - 1
            sample_grams(Xv, ordered[lo - first : hi], shift, grams[: last + 1], first, run)
            G = grams[first : last + 1]
            follows = follows_previous(ordered[lo:hi], ordered[lo - 1] if lo else ordered[0, :0])
            if not weights:  # written straight into the output: no weights, no copies
                status, its = gram_newton_spheres(
                    G, *args, decisions[lo:hi], True, INVERSE_MEMBERS, *warm, on_path[lo:hi], *path_warm, follows,
                    bounds[lo:hi], int(classes), unsettled[lo:hi],
                )  # fmt: skip
            else:
                alpha = np.empty((hi - lo, Q, n))
                status, its = gram_newton_spheres(
                    G, *args, alpha, False, INVERSE_MEMBERS, *warm, on_path[lo:hi], *path_warm, follows, bounds, 1, unsettled
                )  # fmt: skip
                w[lo:hi, :, :k] = alpha @ np.swapaxes(_rows(Xv, vox[lo:hi]), 1, 2)
                if self.fit_intercept:
                    w[lo:hi, :, k] = float(self.intercept_scaling) * alpha.sum(axis=2)
                decisions[lo:hi] = alpha @ G
            converged[lo:hi] = status == CONVERGED
            iterations[lo:hi] = its
        return w, decisions, converged, iterations, (unsettled if tolerant else None)

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

    def fold_decisions(self, X, y, n_classes, plan: CVPlan):
        return self.many_fold_decisions(X, np.asarray(y)[None, :], n_classes, plan)[0]

    def many_fold_decisions(self, X, ys, n_classes, plan: CVPlan):
        """All label sets, folds and one-vs-rest classes solved in one batch."""
        Xv, vox = as_voxel_major(X)
        return self.many_fold_decisions_at(Xv, vox, ys, n_classes, plan)

    def many_fold_decisions_at(self, X, vox, ys, n_classes, plan: CVPlan):
        """:meth:`many_fold_decisions` of the spheres ``vox`` (rows of the voxel-major data
        ``X``), read from the data sphere by sphere (no block of every sphere's samples)."""
        return self._fold_decisions_at(X, vox, ys, n_classes, plan, False)

    def many_fold_decisions_for_predictions_at(self, X, vox, ys, n_classes, plan: CVPlan):
        """:meth:`many_fold_decisions_at` for scores that use only the predictions.

        On the Gram path (more features than training samples, or nearly as many) a
        problem's last point is accepted without its refinement when its margins prove its
        active set to be the optimum's; its decisions are then within a computed bound of
        the exact optimum's (on W3 about ``6e-10``, for decisions of order 1), not to
        rounding. A sphere's
        predictions are kept when that bound proves them to be the exact optimum's (each
        sign, or each largest class, apart from the others by more than their bounds);
        the few spheres where it does not are solved again to rounding. W3's permutation
        problems: 88% of them were refined."""
        return self._fold_decisions_at(X, vox, ys, n_classes, plan, True)

    def _fold_decisions_at(self, X, vox, ys, n_classes, plan: CVPlan, for_predictions: bool):
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
        Xv = np.ascontiguousarray(X, dtype=np.float64)
        vox = np.ascontiguousarray(vox, dtype=np.int64)
        # every problem's decisions on every sample, of which the test samples' are copied
        # out below: a work array that this thread's next blocks reuse
        decisions = work_array("svc decisions", (len(vox), Yq.shape[0], Xv.shape[1]))
        _, decisions, again, iterations = self._solve(
            Xv, vox, Yq, Wq, sets, weights=False, tolerant=for_predictions, classes=P, decisions=decisions
        )  # fmt: skip
        if again is not None and again.any():
            # spheres whose predictions the bounds do not prove: solved again to rounding.
            # The iterations are this call's own: threads share the estimator, so its
            # n_iter_ may be another thread's by now
            _, decisions[again], _, iterations[again] = self._solve(
                Xv, vox[again], Yq, Wq, sets, weights=False
            )
            self.n_iter_ = iterations
        out = []
        for k in range(K):
            folds = []
            for f, test in enumerate(plan.test_indices):
                q0 = (k * F + f) * P
                dec = decisions[:, q0 : q0 + P][:, :, test]  # (B, P, n_test), a copy
                folds.append(dec[:, 0] if n_classes == 2 else np.swapaxes(dec, 1, 2))
            out.append(folds)
        return out
