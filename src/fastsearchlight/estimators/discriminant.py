"""Batched linear discriminant analysis.

:class:`BatchedLDA` reproduces scikit-learn's
``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=...)`` fitted on every sphere and
every fold, from the fold statistics of :mod:`._fold_statistics`: in the feature space
by one compiled kernel per block of spheres (:func:`._lda_kernel.lda_block`), or, with
Ledoit-Wolf shrinkage and more features than training samples, in the sample space.
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np

from ..cv import CVPlan
from ._fold_statistics import (
    block_grams,
    block_sums,
    gather,
    make_fold_blocks,
)
from ._lda_kernel import lda_block, lda_layout, lda_sample_block, lda_sample_rows
from .base import BatchedClassifier, as_voxel_major

# with the fold statistics callers import from this module
__all__ = ["BatchedLDA", "block_grams", "block_sums", "gather", "make_fold_blocks"]


class BatchedLDA(BatchedClassifier):
    """Linear discriminant analysis for every sphere and fold at once.

    Reproduces ``sklearn.discriminant_analysis.LinearDiscriminantAnalysis(
    solver="lsqr", shrinkage=shrinkage, priors=priors)``: class means and a
    within-class covariance estimated on each fold's training set, ``coef = cov^-1 @
    means.T`` and ``intercept = -0.5 * diag(means @ coef) + log(priors)``; for two
    classes the decision is the difference of the class-1 and class-0 rows.

    Parameters
    ----------
    solver : {"lsqr"}, default="lsqr"
        Only the least-squares solver is reproduced (the decisions of ``"eigen"`` are
        the same up to rounding when the covariance is invertible).
    shrinkage : "auto", float in [0, 1] or None, default="auto"
        Shrinkage of each class covariance, as scikit-learn applies it:

        - ``"auto"``: Ledoit-Wolf shrinkage of the standardised class data, rescaled to
          the data's units (a feature that is constant within a class keeps the scale 1,
          as scikit-learn's ``StandardScaler`` does);
        - float ``s``: ``(1 - s) * cov + s * trace(cov) / p * I``;
        - None: the empirical (biased) class covariance.

        The class covariances are averaged with the class priors as weights.
    priors : array-like of shape (n_classes,) or None, default=None
        Class priors; by default the class frequencies of the fold's training set.

    Notes
    -----
    With ``shrinkage=None`` (or 0) the covariance is singular when a feature has no
    within-class variance; scikit-learn's least-squares solution then gives such a
    feature a zero weight (its singular value is below the ``lstsq`` cut-off), which is
    reproduced by removing the features whose pooled variance is at most ``eps`` times the
    covariance trace. Other rank deficiencies (more features than training samples,
    collinear features) are not reproduced: the covariance is assumed invertible
    otherwise.
    """

    reference = "sklearn.discriminant_analysis.LinearDiscriminantAnalysis(solver='lsqr')"

    def __init__(
        self,
        solver: str = "lsqr",
        shrinkage: str | float | None = "auto",
        priors: np.ndarray | None = None,
    ) -> None:
        self.solver = solver
        self.shrinkage = shrinkage
        self.priors = priors

    def _check_params(self, n_classes: int) -> np.ndarray | None:
        if self.solver != "lsqr":
            raise ValueError(f"Only solver='lsqr' is implemented, got {self.solver!r}.")
        s = self.shrinkage
        if isinstance(s, str):
            if s != "auto":
                raise ValueError(f"shrinkage must be 'auto', a float or None, got {s!r}.")
        elif s is not None:
            if not isinstance(s, Real) or not 0.0 <= float(s) <= 1.0:
                raise ValueError(f"shrinkage must lie in [0, 1], got {s!r}.")
        if self.priors is None:
            return None
        priors = np.asarray(self.priors, dtype=np.float64).ravel()
        if priors.shape != (n_classes,):
            raise ValueError("The number of priors must match the number of classes.")
        if np.any(priors < 0):
            raise ValueError("priors must be non-negative")
        if abs(priors.sum() - 1.0) > 1e-5:
            warnings.warn("The priors do not sum to 1. Renormalizing", UserWarning, stacklevel=2)
            priors = priors / priors.sum()
        return priors

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """The fits run in compiled kernels without the interpreter lock
        (:mod:`._lda_kernel`)."""
        return True

    def _sample_space(self, n_features: int, n_train: int) -> bool:
        """Whether spheres of ``n_features`` voxels are solved in the sample space."""
        return self.shrinkage == "auto" and n_features > n_train

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """LDA decisions of every sphere on every fold's test set.

        Parameters and result are those of :meth:`BatchedClassifier.fold_decisions`; the
        values are ``LinearDiscriminantAnalysis.decision_function``'s.
        """
        priors = self._check_params(n_classes)
        Xv, vox = as_voxel_major(X)
        return self._kernel_decisions(Xv, vox, y, n_classes, plan, priors)

    def many_fold_decisions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions` of the spheres ``vox`` (rows of the voxel-major data
        ``X``), read sphere by sphere by the compiled kernels."""
        priors = self._check_params(n_classes)
        return [self._kernel_decisions(X, vox, y, n_classes, plan, priors) for y in np.atleast_2d(ys)]

    def _kernel_decisions(
        self,
        Xv: np.ndarray,
        vox: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        plan: CVPlan,
        priors: np.ndarray | None,
    ) -> list[np.ndarray]:
        """Decisions of the spheres ``vox`` (rows of the voxel-major data ``Xv``): one
        compiled call in the feature space (:func:`._lda_kernel.lda_block`) or, with
        Ledoit-Wolf shrinkage and more features than training samples, in the sample space
        (:func:`._lda_kernel.lda_sample_block`; the spheres it cannot solve there in the
        feature space).

        Returns
        -------
        list of ndarray, one per fold
            As :meth:`fold_decisions`.
        """
        blocks = make_fold_blocks(np.asarray(y), n_classes, plan)
        counts = blocks.train_counts
        if priors is None:
            prior = counts / counts.sum(axis=1, keepdims=True)
        else:
            prior = np.broadcast_to(priors, counts.shape).astype(np.float64)
        lay = lda_layout(blocks, plan)
        Xv = np.ascontiguousarray(Xv, dtype=np.float64)
        vox = np.ascontiguousarray(vox, dtype=np.int64)
        prior = np.ascontiguousarray(prior)
        s = self.shrinkage

        def feature_space(spheres: np.ndarray) -> np.ndarray:
            return lda_block(
                Xv, spheres, lay["order"], lay["bounds"], lay["block_class"], lay["class_bounds"],
                lay["used"], lay["fc_blocks"], lay["fc_sub"], lay["test_pos"], lay["n_test"], counts,
                prior, np.log(prior), s == "auto", 0.0 if s is None or s == "auto" else float(s),
            )  # fmt: skip

        if self._sample_space(vox.shape[1], int(counts.sum(axis=1).max())):
            dec, fallback = lda_sample_block(
                Xv, vox, lay["order"], lay["class_bounds"], lda_sample_rows(blocks), lay["test_pos"],
                lay["n_test"], counts, prior, np.log(prior),
            )  # fmt: skip
            if fallback.any():
                dec[fallback] = feature_space(vox[fallback])
        else:
            dec = feature_space(vox)
        folds = [dec[:, f, : lay["n_test"][f]] for f in range(plan.n_folds)]
        return [d[..., 0] for d in folds] if n_classes == 2 else folds

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        """Peak working memory per sphere: the spheres' voxel indices and the decisions (the
        kernels' temporaries are those of one sphere)."""
        return 8 * n_samples * (n_features + 2 * n_classes)
