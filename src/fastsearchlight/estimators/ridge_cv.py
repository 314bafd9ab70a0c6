"""Batched ridge classifier with efficient leave-one-out choice of alpha, as ``RidgeClassifierCV``.

For every (sphere, fold) problem this reproduces scikit-learn's
``RidgeClassifierCV(alphas, fit_intercept)`` with its default ``cv=None`` (efficient
leave-one-out, "generalised cross-validation"), fitted on the fold's training samples:

1. Targets are ``-1 / +1`` (``LabelBinarizer(pos_label=1, neg_label=-1)``): one column for
   two classes (class 1 positive), one column per class otherwise.
2. With ``fit_intercept`` the training features and targets are centred, so the intercept is
   not penalised: ``Xc = X - mean(X)``, ``Yc = Y - mean(Y)``.
3. For every alpha the exact leave-one-out residuals of the ridge fit are::

       looe_i = (Yc - Xc B_alpha)_i / (1 - h_ii - 1/n)

   with ``B_alpha = (Xc'Xc + alpha I)^-1 Xc'Yc`` and ``h_ii`` the diagonal of
   ``Xc (Xc'Xc + alpha I)^-1 Xc'``; the ``1/n`` term is the leverage of the (unpenalised)
   intercept column, which is orthogonal to the centred features. Without an intercept
   there is no centring and no ``1/n`` term.
4. The score of an alpha is minus the mean of ``looe**2`` over samples and target columns;
   the best alpha is the first one with the highest score (a later alpha replaces the
   current best only if its score is strictly higher, as scikit-learn does).
5. The returned model is the ridge fit with that alpha; the decision is
   ``(X - mean(X_train)) B + mean(Y_train)``.

scikit-learn computes the same quantities from an eigendecomposition of the ``d x d``
centred covariance when the training set has more samples than features, and of the
``n x n`` Gram matrix otherwise; both give the same leave-one-out errors (with centred
features the Gram matrix maps the constant vector to ``alpha`` times itself). Here the
covariance form is always used: one batched ``eigh`` of the ``(n_spheres, d, d)`` centred
covariance per fold serves every alpha.

Conditioning: before anything else, every sphere's features are shifted by their mean over
all samples. With an intercept this is an exact reparametrisation (the fitted coefficients
do not change, the intercept absorbs the shift) and it removes the large common offset of
raw BOLD values (~1000) from every product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..cv import CVPlan
from .base import BatchedClassifier, binary_targets


class BatchedRidgeClassifierCV(BatchedClassifier):
    """Batched equivalent of ``sklearn.linear_model.RidgeClassifierCV`` (``cv=None``).

    Parameters
    ----------
    alphas : sequence of float, default=(0.1, 1.0, 10.0)
        Candidate regularisation strengths, all > 0. The one with the lowest mean squared
        leave-one-out error on the training set is used (the first one on ties).
    fit_intercept : bool, default=True
        Whether to fit an unpenalised intercept (features and targets are centred).

    Notes
    -----
    Work per fold: one centred covariance and one ``eigh`` per sphere, then for each alpha
    a few products of size ``n_train x n_features``.
    """

    reference = "sklearn.linear_model.RidgeClassifierCV(cv=None)"

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = (0.1, 1.0, 10.0),
        fit_intercept: bool = True,
    ):
        self.alphas = alphas
        self.fit_intercept = fit_intercept

    def _checked_alphas(self) -> np.ndarray:
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0:
            raise ValueError("alphas must be a non-empty 1-d sequence of floats.")
        if not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"alphas must be finite and > 0, got {alphas!r}.")
        return alphas

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        n_targets = 1 if n_classes == 2 else n_classes
        # shifted copy of X, one fold's centred training block and its rotation, their
        # squares, fitted values / residuals per target, the covariance and eigenvectors
        per = n_samples * n_features * 5 + n_samples * n_targets * 4 + 3 * n_features**2
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
            ``(n_spheres, n_test)`` for two classes, else ``(n_spheres, n_test, n_classes)``.
        """
        return self._run(X, y, n_classes, plan)[0]

    def fold_alphas(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[np.ndarray]:
        """The alpha chosen by leave-one-out for every sphere on every fold.

        Parameters
        ----------
        X, y, n_classes, plan
            As for :meth:`fold_decisions`.

        Returns
        -------
        list of ndarray of shape (n_spheres,), one per fold
        """
        return self._run(X, y, n_classes, plan)[1]

    def _run(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Decisions and chosen alphas of every fold."""
        alphas = self._checked_alphas()
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 3:
            raise ValueError(f"X must have shape (n_spheres, n_samples, n_features), got {X.shape}.")
        Y = binary_targets(y, n_classes).T  # (n_samples, n_targets)
        if self.fit_intercept:
            Z = X - X.mean(axis=1, keepdims=True)
        else:
            Z = X

        decisions, chosen = [], []
        for train, test in zip(plan.train_indices, plan.test_indices):
            dec, best = self._fit_decide(Z[:, train], Y[train], Z[:, test], alphas)
            decisions.append(dec[..., 0] if n_classes == 2 else dec)
            chosen.append(alphas[best])
        return decisions, chosen

    def _fit_decide(
        self, Z_train: np.ndarray, Y_train: np.ndarray, Z_test: np.ndarray, alphas: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Alpha selection and fit on one fold.

        Returns the decision values ``(n_spheres, n_test, n_targets)`` and the index of the
        chosen alpha of every sphere.
        """
        n_train = Z_train.shape[1]
        if self.fit_intercept:
            x_mean = Z_train.mean(axis=1, keepdims=True)  # (S, 1, d)
            Xc = Z_train - x_mean
            y_mean = Y_train.mean(axis=0)  # (T,)
            Yc = Y_train - y_mean
            intercept_leverage = 1.0 / n_train
        else:
            x_mean = 0.0
            Xc = Z_train
            y_mean = np.zeros(Y_train.shape[1])
            Yc = Y_train
            intercept_leverage = 0.0

        cov = np.matmul(Xc.transpose(0, 2, 1), Xc)  # (S, d, d)
        evals, V = np.linalg.eigh(cov)  # (S, d), (S, d, d)
        U = np.matmul(Xc, V)  # (S, n, d): training data in the eigenbasis
        UtY = np.einsum("snd,nt->sdt", U, Yc)  # (S, d, T) = V' Xc' Yc
        U2 = U * U

        best_score = None
        best_D = None
        best = np.zeros(Xc.shape[0], dtype=np.intp)
        for a, alpha in enumerate(alphas):
            D = 1.0 / (evals + alpha)  # (S, d)
            leverage = np.matmul(U2, D[..., None])[..., 0]  # (S, n)
            fitted = np.matmul(U, UtY * D[..., None])  # (S, n, T)
            denom = 1.0 - leverage - intercept_leverage
            looe = (Yc[None] - fitted) / denom[..., None]
            score = -np.mean(looe * looe, axis=(1, 2))  # (S,)
            if best_score is None:
                best_score, best_D = score, D
            else:
                better = score > best_score  # strict: ties keep the earlier alpha
                best_score = np.where(better, score, best_score)
                best_D = np.where(better[:, None], D, best_D)
                best[better] = a

        coef = np.matmul(V, UtY * best_D[..., None])  # (S, d, T)
        return np.matmul(Z_test - x_mean, coef) + y_mean, best
