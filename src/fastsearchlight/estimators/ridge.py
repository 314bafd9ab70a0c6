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
)
from .base import BatchedClassifier, fold_decisions_by_slab

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

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        """Peak working memory per sphere: the input block and the decisions (the
        temporaries are bounded by the slab size)."""
        return 8 * n_samples * (n_features + 2 * n_classes)
