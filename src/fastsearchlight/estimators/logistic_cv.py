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
   the outer test samples are returned; its constant feature is 1 whatever
   ``intercept_scaling`` (scikit-learn's refit does not pass ``intercept_scaling`` on, as of
   1.9).

Only two classes: scikit-learn >= 1.8 raises for liblinear on more (the routing keeps those
designs on the per-sphere path, which reports the error as scikit-learn does).

Every problem is strictly convex, so its minimiser is unique. Each is solved in one
compiled kernel (:func:`._logistic_cv_kernel.logistic_cv_block`), sphere by sphere from the
voxel-major data, with the interpreter lock released: Newton's method (exact Hessian by
``syrk``, Cholesky, Armijo backtracking, and chord steps reusing an earlier factor near the
optimum; the binary solver of :mod:`._logistic_kernel`, the penalty on every coordinate) on
the objective divided by ``C * n_train`` (mean log-loss plus ``|w|^2 / (2 C n_train)``). The refit stops once every gradient component is below ``tol``
times its feature's scale (after its last steps: chord steps with the factor at hand down
to ``1e-4`` of that where they contract the gradient fast, else one Newton step, which
takes it to rounding level):
the exact optimum, where liblinear stops at its tolerance (``tol=1e-4`` by default), so
decisions agree with a tightly solved liblinear. An inner problem stops earlier, once its
test score is proven within :data:`SCORE_BOUND` of its optimum's (accuracy: its test
predictions proven the optimum's); the ``C`` is chosen from the proven intervals, and where
they leave it in doubt the ``C`` concerned are solved to ``tol`` first, so the chosen ``C``
is the exact problems'. Within an inner fold the ``C`` are solved
in increasing order, each from the previous one's solution; the refit starts from the mean
of the inner solutions at the chosen ``C``. With more parameters than outer training samples,
the problems are solved in an orthonormal basis of the training rows (an exact reduction:
every coordinate is penalised, so every optimum is a combination of those rows).
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np

from ..cv import CVPlan
from ._logistic_cv_kernel import logistic_cv_block
from .base import BatchedClassifier, SphereBySphere, as_voxel_major

__all__ = ["BatchedLogisticRegressionCV"]


#: an inner problem stops once its test score (``neg_log_loss``) is proven within this of
#: the optimum's, or (accuracy) its test predictions proven the optimum's; the ``C`` is
#: chosen from the proven intervals, and where they leave it in doubt the problems of the
#: ``C`` concerned run on to ``tol`` first (:func:`._logistic_cv_kernel.logistic_cv_block`).
#: 0: every inner problem runs to ``tol``
SCORE_BOUND = 0.01


class BatchedLogisticRegressionCV(SphereBySphere, BatchedClassifier):
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
        The refit (and an inner problem not stopped on a proof before) stops when every
        gradient component of the scaled objective is at most ``tol`` times its feature's
        scale (``max(1, root mean square)``), after its last steps (the refit: chord steps
        down to ``1e-4 tol`` or one Newton step; an inner problem: one Newton step).
    max_iter : int, default=100
        Maximum number of iterations per problem, Newton and chord steps.

    Attributes
    ----------
    n_iter_ : int
        Iterations (Newton and chord steps) of the (inner fold, ``C``) problems of the last
        fit (the last label vector), summed.
    n_problems_ : int
        Its (sphere, outer fold, inner fold, ``C``) problems.
    n_iter_refit_ : int
        Iterations of its refits, summed.
    n_refits_ : int
        Its (sphere, outer fold) refits.
    n_hessians_ : int
        Hessians factored in its problems and refits (the other iterations were chord
        steps).
    n_proven_ : int
        Inner problems stopped before ``tol`` on a proof that their test score is within
        :data:`SCORE_BOUND` of the optimum's (accuracy: that their test predictions are the
        optimum's).
    n_run_on_ : int
        Those of them run on to ``tol`` afterwards, where the proven scores left the choice
        of ``C`` in doubt.
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
        """Peak working memory per sphere: its voxel indices and the decisions (the kernel's
        temporaries are those of one sphere)."""
        return 8 * n_samples * (n_features + 4)

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """The fits run in one compiled kernel without the interpreter lock
        (:func:`._logistic_cv_kernel.logistic_cv_block`)."""
        return True

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Decisions ``X @ coef + intercept`` of every sphere's refitted model on every
        outer fold's test samples, shape (n_spheres, n_test) per fold.

        Parameters are those of :meth:`BatchedClassifier.fold_decisions`.
        """
        return self.fit_folds(X, y, n_classes, plan)[0]

    def many_fold_decisions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions` of the spheres ``vox`` (rows of the voxel-major data
        ``X``), read sphere by sphere by the compiled kernel."""
        return [self._fit_all(X, vox, y, n_classes, plan)[0] for y in np.atleast_2d(ys)]

    def fit_folds(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        """Fit every sphere ``X`` (n_spheres, n_samples, n_features) on every outer fold.

        Returns
        -------
        decisions : list of ndarray (n_spheres, n_test), one per fold
        best : ndarray of int (n_spheres, n_folds)
            Position in :attr:`Cs_` of the chosen ``C``.
        coefficients : list of ndarray (n_spheres, n_features + 1), one per fold
            ``coef_`` then ``intercept_`` of the refitted models (intercept 0 without one).
        """
        return self._fit_all(*as_voxel_major(X), y, n_classes, plan)

    def _fit_all(
        self, Xv: np.ndarray, vox: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
        """:meth:`fit_folds` of the spheres ``vox`` (rows of the voxel-major data ``Xv``)."""
        if int(n_classes) != 2:
            raise ValueError("LogisticRegressionCV with liblinear handles two classes only.")
        if self.scoring not in ("neg_log_loss", "accuracy"):
            raise ValueError(f"scoring must be 'neg_log_loss' or 'accuracy', got {self.scoring!r}.")
        y = np.ascontiguousarray(y, dtype=np.int64)
        F = plan.n_folds
        n_train = np.array([len(tr) for tr in plan.train_indices], dtype=np.int64)
        n_test = np.array([len(te) for te in plan.test_indices], dtype=np.int64)
        train_idx = np.zeros((F, max(1, int(n_train.max()))), dtype=np.int64)
        test_idx = np.zeros((F, max(1, int(n_test.max()))), dtype=np.int64)
        folds = []
        for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
            train_idx[f, : len(tr)] = tr
            test_idx[f, : len(te)] = te
            folds.append(self.inner_folds(y[tr]))
        K = len(folds[0])
        inner_ntr = np.array([[len(a) for a, _ in fo] for fo in folds], dtype=np.int64)
        inner_nte = np.array([[len(b) for _, b in fo] for fo in folds], dtype=np.int64)
        inner_tr = np.zeros((F, K, max(1, int(inner_ntr.max()))), dtype=np.int64)
        inner_te = np.zeros((F, K, max(1, int(inner_nte.max()))), dtype=np.int64)
        for f, fo in enumerate(folds):
            for k, (a, b) in enumerate(fo):
                inner_tr[f, k, : len(a)] = a
                inner_te[f, k, : len(b)] = b
        vox = np.ascontiguousarray(vox, dtype=np.int64)
        dec, best, coef, stats = logistic_cv_block(
            np.ascontiguousarray(Xv, dtype=np.float64), vox, train_idx, n_train, test_idx, n_test, y,
            inner_tr, inner_ntr, inner_te, inner_nte, np.ascontiguousarray(self.Cs_, dtype=np.float64),
            bool(self.fit_intercept), float(self.intercept_scaling), 1.0, self.scoring == "neg_log_loss",
            float(self.tol), int(self.max_iter), float(SCORE_BOUND),
        )  # fmt: skip
        self.n_iter_, self.n_problems_, self.n_iter_refit_, self.n_refits_, self.n_hessians_ = (
            int(v) for v in stats[1:6]
        )
        self.n_proven_, self.n_run_on_ = int(stats[6]), int(stats[7])
        if stats[0]:
            warnings.warn(
                f"BatchedLogisticRegressionCV: {int(stats[0])} problems did not converge in "
                f"max_iter={self.max_iter} iterations.",
                RuntimeWarning,
                stacklevel=3,
            )
        decisions = [dec[:, f, : n_test[f]] for f in range(F)]
        coefs = [coef[:, f] for f in range(F)]
        return decisions, best.astype(np.intp), coefs
