"""Batched ridge classifier.

:class:`BatchedRidgeClassifier` reproduces scikit-learn's ``RidgeClassifier`` fitted on
every sphere and every fold. With fewer features than training samples, one compiled
kernel (:func:`._ridge_kernel.ridge_block`) goes from each sphere's samples to every fold's
test decisions: the cross-products of the samples grouped by their role in the folds,
each fold's centred normal equations from them, a Cholesky solve. With more features, the
kernel (sample-space) system of each fold is solved.
"""

from __future__ import annotations

import numpy as np

from ..cv import CVPlan
from ._fold_statistics import sphere_slabs
from ._ridge_kernel import ridge_block, role_blocks
from .base import BatchedClassifier, as_voxel_major, binary_targets

__all__ = ["BatchedRidgeClassifier"]


class BatchedRidgeClassifier(BatchedClassifier):
    """Ridge classifier for every sphere and fold at once.

    Reproduces ``sklearn.linear_model.RidgeClassifier(alpha=alpha,
    fit_intercept=fit_intercept)``: targets in {-1, +1} (one column for class 1 with two
    classes, one column per class otherwise), least squares with an L2 penalty ``alpha``
    on the coefficients; with ``fit_intercept`` the data and targets are centred on the
    training set and the intercept is not penalised.

    Parameters
    ----------
    alpha : float, default=1.0
        Regularisation strength, > 0.
    fit_intercept : bool, default=True
        Whether to fit an intercept.
    """

    reference = "sklearn.linear_model.RidgeClassifier"

    def __init__(self, alpha: float = 1.0, fit_intercept: bool = True) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """With fewer features than training samples the fits run in one compiled kernel
        without the interpreter lock (:func:`._ridge_kernel.ridge_block`)."""
        return n_features <= n_train

    def _check_alpha(self) -> None:
        if not np.ndim(self.alpha) == 0 or not self.alpha > 0:
            raise ValueError(f"alpha must be a positive scalar, got {self.alpha!r}.")

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Ridge decisions of every sphere on every fold's test set.

        Parameters and result are those of :meth:`BatchedClassifier.fold_decisions`; the
        values are ``RidgeClassifier.decision_function``'s.
        """
        return self.many_fold_decisions(X, np.asarray(y)[None], n_classes, plan)[0]

    def many_fold_decisions(
        self, X: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`fold_decisions` for several label vectors; the spheres' normal equations
        are solved once for all of them (see :meth:`many_fold_decisions_at`)."""
        self._check_alpha()
        X = np.asarray(X, dtype=np.float64)
        n_features = X.shape[2]
        if n_features > max(len(tr) for tr in plan.train_indices):
            return [self._dual_decisions(X, np.asarray(y), n_classes, plan) for y in np.atleast_2d(ys)]
        return self._primal_decisions(*as_voxel_major(X), ys, n_classes, plan)

    def many_fold_decisions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions` of the spheres ``vox`` (rows of the voxel-major data
        ``X``); with fewer features than training samples, read sphere by sphere by the
        compiled kernel (no block of every sphere's samples)."""
        self._check_alpha()
        if vox.shape[1] > max(len(tr) for tr in plan.train_indices):
            return super().many_fold_decisions_at(X, vox, ys, n_classes, plan)
        return self._primal_decisions(X, vox, ys, n_classes, plan)

    def _primal_decisions(
        self, Xv: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """Decisions of the feature-space normal equations (fewer features than training
        samples), every label vector's targets solved together.

        Parameters
        ----------
        Xv : ndarray (n_voxels, n_samples)
            Voxel-major data.
        vox : ndarray of int (n_spheres, n_features)
            Each sphere's rows of ``Xv``.
        ys : ndarray of int (n_label_sets, n_samples)
        n_classes : int
        plan : CVPlan

        Returns
        -------
        list (per label vector) of list (per fold) of ndarray
            As :meth:`fold_decisions`.
        """
        ys = np.atleast_2d(ys)
        rb = role_blocks(plan)
        targets = np.concatenate([binary_targets(y, n_classes) for y in ys]).T  # (n, K * P)
        n_problems = targets.shape[1] // len(ys)
        dec = ridge_block(
            np.ascontiguousarray(Xv, dtype=np.float64), np.ascontiguousarray(vox, dtype=np.int64),
            rb.runs, rb.bounds, rb.used, rb.fold_blocks, rb.subtract, rb.n_train, rb.test_pos,
            rb.n_test, rb.test_span, np.ascontiguousarray(targets[rb.order]), float(self.alpha),
            bool(self.fit_intercept),
        )  # fmt: skip
        out = []
        for k in range(len(ys)):
            cols = slice(k * n_problems, (k + 1) * n_problems)
            folds = [dec[:, f, : rb.n_test[f], cols] for f in range(plan.n_folds)]
            out.append([d[..., 0] for d in folds] if n_classes == 2 else folds)
        return out

    def _dual_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Decisions in the sample space, when every fold has more features than training
        samples (scikit-learn's ``RidgeClassifier`` then solves the kernel system too).

        With ``Xc`` the training samples centred on their mean (not centred without an
        intercept) and ``Yc`` the targets likewise, the coefficients are
        ``Xc' (Xc Xc' + alpha I)^-1 Yc`` and a test decision is
        ``(x - mean) . coef + mean(Y)``. Every inner product comes from one Gram matrix of
        all samples per sphere (centred on the fold's training mean by rows and columns),
        so a fold costs one ``n_train x n_train`` solve.

        Parameters and result as :meth:`fold_decisions`.
        """
        n_spheres, n_samples, _ = X.shape
        targets = binary_targets(y, n_classes).T  # (n, K)
        outs = [np.empty((n_spheres, len(te), targets.shape[1])) for te in plan.test_indices]
        for sl in sphere_slabs(n_spheres, n_samples, n_samples):
            Z = X[sl]
            if self.fit_intercept:  # the origin does not change the centred products
                Z = Z - Z.mean(axis=1, keepdims=True)
            gram = np.matmul(Z, Z.transpose(0, 2, 1))  # (S, n, n)
            for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
                g_tr = gram[:, tr]  # (S, n_train, n): training rows
                Y = targets[tr]
                if self.fit_intercept:
                    row_mean = g_tr.mean(axis=1, keepdims=True)  # (S, 1, n): <mean, x_j>
                    g_tr = g_tr - row_mean
                    centre = g_tr[:, :, tr].mean(axis=2, keepdims=True)  # (S, n_train, 1)
                    y_mean = Y.mean(axis=0)
                else:
                    centre, y_mean = 0.0, np.zeros(Y.shape[1])
                # <x_i - mean, x_j - mean> for training i and every j
                k_all = g_tr - centre
                K = k_all[:, :, tr] + self.alpha * np.eye(len(tr))
                dual = np.linalg.solve(K, np.broadcast_to(Y - y_mean, (K.shape[0],) + Y.shape))
                outs[f][sl] = np.matmul(k_all[:, :, te].transpose(0, 2, 1), dual) + y_mean
        if n_classes == 2:
            return [dec[..., 0] for dec in outs]
        return outs

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        """Peak working memory per sphere: the input block and the decisions (the
        temporaries are bounded by the slab size)."""
        return 8 * n_samples * (n_features + 2 * n_classes)
