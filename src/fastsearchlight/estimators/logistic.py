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

Method: Newton's method with the Hessian (for two classes its products summed in single
precision, the gradient, steps and objective in double, where that rounding is at most 1% of
the penalty: :func:`._logistic_kernel._single_precision_safe`; the same iterations on the
benchmark's data, 0.87 of the kernel's time; and, but at a last Newton step, without the
rows whose weighted squared norms are together at most 1% of the smallest positive penalty:
:data:`._logistic_kernel._LEFT_OUT`, 0.96 of it), one problem at a time in one compiled
kernel (:func:`._logistic_kernel.logistic_block`) that reads the spheres from the
voxel-major data sphere by sphere and releases the interpreter lock. Each Newton step
solves one ``(q, q)`` system by Cholesky (``q = p`` for two classes, the Hessian
``A' diag(w) A + R`` formed by ``syrk``; ``q = (n_classes - 1) * p`` otherwise, its blocks
``A' diag(c_kl) A`` by ``syrk`` and ``gemm``), with ``p = n_features + 1`` (``n_features``
without an intercept), and is followed by an Armijo backtracking line search (step halved
from 1 until the objective decreases by at least ``1e-4`` times the decrease predicted by
the slope, give or take a slack for the objective's rounding noise) so that it converges
from any start. Two classes, from the origin: where a full step is taken and the objective
still falls beyond it, one Newton step along its line follows (an extrapolation, kept only
if it lowers the objective further), since the first full steps undershoot the optimum's
large margins. Once a full step has shrunk the largest gradient component to at most 0.3 of
the one before (the region of fast convergence), the next steps reuse that Hessian's factor
(chord steps: a gradient and two triangular solves, no new Hessian) for as long as each full
step keeps shrinking it so. A problem stops once its largest absolute gradient component is
``<= tol``, after its last steps: one Newton step with a new Hessian (which, being inside
the region of fast convergence, takes it far below ``tol``); or, for two classes in the
features, chord steps while each shrinks it to at most 0.3 of the one before, until it is
``<= 1e-4 tol`` (at most eight, else that Newton step): near the optimum the factor at hand
is as good as a new one, and the new Hessian was a sixth of a binary problem's (W1 10 mm:
0.93-0.96 of the kernel's time, every decision nearer the optimum's); or when a step no
longer changes its parameters; problems still running after ``max_iter`` iterations raise a
``RuntimeWarning``. Every fold starts from zero, except in the basis of its training rows
(below), where it starts from its optimal predictors on the sphere before when that sphere
shares at least half the voxels. Other starts took more iterations on the benchmark
workloads: the previous fold's optimum 12.9 against 10.7 per problem on the Haxby-sized
KFold(4) data at 10 mm, 8.9 against 7.8 on run-wise betas; the same fold's optimum on the
neighbouring sphere, in the features, 14.5 against 11.2 at 10 mm. A binary fold started at
the origin, where every weight is 1/4, takes its first Hessian from the Gram matrix of all the
sphere's rows minus that of its left-out part when the folds' left-out parts are disjoint
(``KFold``, ``LeaveOneGroupOut``): one pass over the rows serves every fold (as the svc
kernel's first matrices, :func:`._svm_kernel.training_grams`).

More features than training samples: the optimal weights are combinations of the training
rows (the gradients of the loss and of the penalty are; with an intercept, of the rows
centred on their training mean, since the residuals then sum to zero), so the fold is solved
in an orthonormal basis ``Q`` of them (``w = Q g``, ``|w| = |g|``): the same problem in
``n_train - 1`` (``n_train`` without an intercept) instead of ``n_features`` coordinates.
With the Gram matrix of the (centred) training rows factored as ``X X' = L L'``,
``Q = X' L^-T`` and the design in that basis is ``L`` itself; the Gram matrix of all samples
is computed once per sphere. A fold whose Gram block is singular or badly conditioned (then
``Q`` would not be orthonormal to rounding) is solved in the feature space.

Conditioning: with an intercept, every sphere's features are first shifted by their mean
over all samples. This is an exact reparametrisation (``w`` does not change, the intercept
absorbs the shift) that removes the large common offset of raw BOLD values (~1000) and
keeps the Hessian well conditioned; test decision values are computed in the same shifted
coordinates, which equals ``X_test @ w + b`` of the original problem.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..cv import CVPlan
from ._logistic_kernel import logistic_block
from ._svm_gram_kernel import follows_previous
from .base import BatchedClassifier, SphereBySphere, as_voxel_major
from .svm import _GramPlan

__all__ = ["BatchedLogisticRegression"]


class BatchedLogisticRegression(SphereBySphere, BatchedClassifier):
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
        the sum-to-zero subspace) is at most ``tol``, after its last steps (one Newton
        step, or for two classes in the features chord steps down to ``1e-4 tol``); or when
        steps no longer change its parameters.
    max_iter : int, default=100
        Maximum number of iterations per (sphere, fold) problem, Newton and chord steps
        (on average 17 on the Haxby-sized data at 10 mm, 12 on run-wise betas).

    Attributes
    ----------
    n_iter_ : int
        Iterations (Newton and chord steps) of the last fit (the last label vector), summed
        over its (sphere, fold) problems.
    n_problems_ : int
        Its (sphere, fold) problems.
    n_feature_space_ : int
        Its problems with more features than training samples solved in the feature space
        (their training rows' Gram matrix was not a usable basis: repeated samples).
    n_hessians_ : int
        Its Hessians formed and factored; the other iterations were chord steps.
    n_proven_ : int
        Its problems stopped once their test predictions were proven to be the optimum's
        (:meth:`many_fold_decisions_for_predictions_at` only).
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
        """Peak working memory per sphere: its voxel indices and the decisions (the kernel's
        temporaries are those of one sphere)."""
        return 8 * n_samples * (n_features + 2 * n_classes)

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Logistic-regression decisions of every sphere on every fold's test set.

        Parameters are those of :meth:`BatchedClassifier.fold_decisions`.

        Returns
        -------
        list of ndarray, one per fold
            ``(n_spheres, n_test)`` for two classes (``X @ w + b``), else
            ``(n_spheres, n_test, n_classes)`` (``X @ W.T + b``).
        """
        return self._fit_all(*as_voxel_major(X), y, n_classes, plan, False)[0]

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
        return self._fit_all(*as_voxel_major(X), y, n_classes, plan, True)[1]

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """The fits run in one compiled kernel without the interpreter lock
        (:func:`._logistic_kernel.logistic_block`)."""
        return True

    def many_fold_decisions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions` of the spheres ``vox`` (rows of the voxel-major data
        ``X``), read sphere by sphere by the compiled kernel."""
        return [self._fit_all(X, vox, y, n_classes, plan, False)[0] for y in np.atleast_2d(ys)]

    def many_fold_decisions_for_predictions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions_at` for scores that use only the predictions.

        A multinomial fold solved in the basis of its training rows (more features than
        training samples) stops once its test predictions are proven to be the exact
        optimum's, by a bound on its test decisions from the duality gap (the weights) and
        the intercept's optimality condition (the intercepts); see
        ``_logistic_kernel._predictions_proven``. Its decisions are then within that bound
        of the optimum's, not exact to rounding. Other folds are solved as by
        :meth:`many_fold_decisions_at`."""
        return [self._fit_all(X, vox, y, n_classes, plan, False, True)[0] for y in np.atleast_2d(ys)]

    def _fit_all(
        self,
        Xv: np.ndarray,
        vox: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        plan: CVPlan,
        want_coef: bool,
        prove: bool = False,
    ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]] | None]:
        """Fit the spheres ``vox`` (rows of the voxel-major data ``Xv``) on every fold: the
        decision values of every fold and, with ``want_coef``, its (coef, intercept). With
        ``prove``, multinomial folds in the basis of their training rows may stop once their
        test predictions are proven."""
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C!r}.")
        n_classes = int(n_classes)
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}.")
        y = np.ascontiguousarray(y, dtype=np.int64)
        n_train = np.array([len(tr) for tr in plan.train_indices], dtype=np.int64)
        n_test = np.array([len(te) for te in plan.test_indices], dtype=np.int64)
        train_idx = np.zeros((plan.n_folds, max(1, int(n_train.max()))), dtype=np.int64)
        test_idx = np.zeros((plan.n_folds, max(1, int(n_test.max()))), dtype=np.int64)
        for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
            train_idx[f, : len(tr)] = tr
            test_idx[f, : len(te)] = te
        vox = np.ascontiguousarray(vox, dtype=np.int64)
        # warm starts where a fold is solved in the basis of its training rows (more
        # features than training samples, besides the intercept)
        if vox.shape[1] > n_train.min() - int(bool(self.fit_intercept)):
            follows = follows_previous(np.sort(vox, axis=1), np.zeros(0, dtype=np.int64))
        else:
            follows = np.zeros(0, dtype=bool)
        dec, coef, mu, stats = logistic_block(
            np.ascontiguousarray(Xv, dtype=np.float64), vox, train_idx, n_train, test_idx, n_test, y,
            n_classes, float(self.C), bool(self.fit_intercept), float(self.tol), int(self.max_iter),
            bool(want_coef), follows, _GramPlan(plan.train_masks).arrays(), bool(prove),
        )  # fmt: skip
        self.n_iter_, self.n_problems_, self.n_feature_space_, self.n_hessians_, self.n_proven_ = (
            int(v) for v in stats[1:]
        )
        if stats[0]:
            warnings.warn(
                f"BatchedLogisticRegression: {int(stats[0])} (sphere, fold) problems did not "
                f"converge in max_iter={self.max_iter} iterations.",
                RuntimeWarning,
                stacklevel=3,
            )
        folds = [dec[:, f, : n_test[f]] for f in range(plan.n_folds)]
        decisions = [d[..., 0] for d in folds] if n_classes == 2 else folds
        if not want_coef:
            return decisions, None
        d = vox.shape[1]
        coefficients = []
        for f in range(plan.n_folds):
            # back to the original coordinates: b = b_shifted - W . mean(X)
            rows = coef[:, f]
            w = rows[..., :d].copy()
            if self.fit_intercept:
                intercept = rows[..., d] - np.einsum("skd,sd->sk", w, mu)
            else:
                intercept = np.zeros(rows.shape[:2])
            coefficients.append((w, intercept))
        return decisions, coefficients
