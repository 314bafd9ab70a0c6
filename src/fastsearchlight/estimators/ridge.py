"""Batched ridge classifier.

:class:`BatchedRidgeClassifier` reproduces scikit-learn's ``RidgeClassifier`` fitted on
every sphere and every fold. The normal equations of each fold are assembled from
per-class statistics computed once per sphere (see
:class:`~fastsearchlight.estimators.discriminant.FoldBlocks`): the training scatter
matrix is the within-class scatter plus the between-class scatter, and with targets that
are constant within a class ``X.T @ Y`` only needs the class means.
"""

from __future__ import annotations

import numpy as np

from ..cv import CVPlan
from ._fold_statistics import (
    FoldBlocks,
    Workspace,
    block_grams,
    block_sums,
    diagonal_view,
    gather_centered,
    linear_test_decisions,
    solve_batched,
    sphere_slabs,
)
from .base import BatchedClassifier, binary_targets, fold_decisions_by_slab

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

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Ridge decisions of every sphere on every fold's test set.

        Parameters and result are those of :meth:`BatchedClassifier.fold_decisions`; the
        values are ``RidgeClassifier.decision_function``'s.
        """
        if not np.ndim(self.alpha) == 0 or not self.alpha > 0:
            raise ValueError(f"alpha must be a positive scalar, got {self.alpha!r}.")
        n_features = np.shape(X)[2]
        if n_features > max(len(tr) for tr in plan.train_indices):
            return self._dual_decisions(np.asarray(X, dtype=np.float64), np.asarray(y), n_classes, plan)
        ws = Workspace()
        return fold_decisions_by_slab(
            X, y, n_classes, plan, lambda Xs, blocks: self._slab(Xs, blocks, ws),
            finish=(lambda dec: dec[..., 0]) if n_classes == 2 else None,
        )  # fmt: skip

    def _slab(self, X: np.ndarray, blocks: FoldBlocks, ws: Workspace) -> list[np.ndarray]:
        """Decisions (n_spheres, n_test, n_targets) of every fold for a slab of spheres."""
        n_spheres, _, p = X.shape
        n_classes, n_folds = blocks.n_classes, blocks.n_folds
        U, ref, shift = gather_centered(X, blocks)  # (n, S, p), (C, S, p)

        counts = blocks.train_counts  # (F, C)
        n_train = counts.sum(axis=1)  # (F,)
        mean_u = blocks.fold_class_sums(block_sums(U, blocks))  # (F, C, S, p)
        mean_u *= (1.0 / counts)[:, :, None, None]
        # class means in the common frame X - ref[0]
        means = mean_u + shift[None]

        # targets of each class: +1 on its own column, -1 elsewhere (class 1 only for two
        # classes), shape (C, K)
        if n_classes == 2:
            codes = np.array([[-1.0], [1.0]])
        else:
            codes = 2.0 * np.eye(n_classes) - 1.0
        if self.fit_intercept:
            origin = np.einsum("fc,fcsj->fsj", counts / n_train[:, None], means)  # (F, S, p)
            y_mean = (counts / n_train[:, None]) @ codes  # (F, K)
        else:
            origin = np.broadcast_to(-ref[0], (n_folds,) + ref[0].shape)  # raw zero
            y_mean = np.zeros((n_folds, codes.shape[1]))
        dev = means - origin[:, None]  # (F, C, S, p): class means relative to the origin

        # scatter about the origin = within-class scatter + sum_c n_c dev_c dev_c^T, with
        # the within-class scatter = sum_c (G_c - n_c mean_u_c mean_u_c^T)
        bg = block_grams(U, blocks, ws.get("grams", (blocks.n_blocks, n_spheres, p, p)))
        A = blocks.fold_sums(bg)  # (F, S, p, p)
        vecs = np.concatenate([dev, mean_u], axis=1)  # (F, 2C, S, p)
        wts = np.concatenate([counts, -counts], axis=1)  # (F, 2C)
        left = (vecs * wts[:, :, None, None]).transpose(0, 2, 3, 1)  # (F, S, p, 2C)
        A += np.matmul(left, vecs.transpose(0, 2, 1, 3))
        diagonal_view(A)[...] += self.alpha

        # X^T Y about the origin: sum_c n_c dev_c codes_c (centring the targets too
        # changes nothing, as sum_c n_c dev_c = 0 about the training mean)
        rhs = np.matmul((dev * counts[:, :, None, None]).transpose(0, 2, 3, 1), codes)
        coef = solve_batched(A, rhs)  # (F, S, p, K)
        # decision = (x - origin) . coef + y_mean
        b = y_mean[:, None, :] - np.matmul(origin[:, :, None, :], coef)[:, :, 0, :]  # (F, S, K)
        return [linear_test_decisions(U, shift, blocks, f, coef[f], b[f]) for f in range(n_folds)]

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
