"""Correlation classifier (Haxby et al., 2001).

A test pattern is assigned to the class whose mean training pattern it correlates best
with (Pearson correlation across features). :class:`CorrelationClassifier` is a
scikit-learn estimator; :class:`BatchedCorrelation` fits it on every sphere and every fold
at once.

Patterns without variance across features (all features equal, for instance any pattern
of a single feature) have an undefined correlation: it is defined here as 0 so that no NaN
arises. A test pattern without variance thus gets the decision 0 (class 0 for two
classes, the first class otherwise), as does every test pattern when all class means lack
variance.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _validate_data = None
    from sklearn.utils.validation import check_array, check_X_y

from ..cv import CVPlan
from ._compiled import kernel
from ._fold_statistics import (
    FoldBlocks,
    block_sums,
    gather,
)
from .base import BatchedClassifier, class_mean_weights, fold_decisions_by_slab

__all__ = ["BatchedCorrelation", "CorrelationClassifier", "standardize_patterns"]

_EPS = np.finfo(np.float64).eps


def standardize_patterns(A: np.ndarray) -> np.ndarray:
    """Centre each pattern (last axis) on its mean and scale it to unit norm.

    The Pearson correlation of two patterns is the dot product of their standardised
    versions. Patterns whose features are all equal (or whose centred norm underflows)
    are mapped to zeros, which defines their correlation with anything as 0. Patterns
    of two features are mapped exactly to ``+-(-1, 1) / sqrt(2)`` (their correlations
    are then exactly -1, 0 or 1).

    Parameters
    ----------
    A : ndarray of shape (..., n_features)

    Returns
    -------
    ndarray of shape (..., n_features)
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim == 1:
        return standardize_patterns(A[None])[0]
    p = A.shape[-1]
    if p == 2:
        # exactly +-(-1, 1) / sqrt(2): correlations are exactly -1, 0 or 1, so that ties
        # (which are the rule with two features) are resolved identically everywhere
        sign = np.sign(A[..., 1] - A[..., 0])[..., None]
        return sign * np.array([-np.sqrt(0.5), np.sqrt(0.5)])
    mean = A.mean(axis=-1, keepdims=True)
    Z = A - mean
    norm = np.sqrt(np.einsum("...j,...j->...", Z, Z))[..., None]
    # The centred values of a constant pattern are rounding errors of its mean, at most
    # about p * eps * |mean| each: only patterns under that bound may be constant, and
    # only those are checked exactly.
    maybe = norm[..., 0] <= 2.0 * p**1.5 * _EPS * np.abs(mean[..., 0])
    if np.any(maybe):
        idx = np.nonzero(maybe)
        rows = A[idx]
        constant = np.all(rows == rows[:, :1], axis=-1)
        norm[tuple(i[constant] for i in idx)] = np.inf
    norm[norm == 0] = np.inf
    Z /= norm
    return Z


class CorrelationClassifier(ClassifierMixin, BaseEstimator):
    """Nearest class mean by Pearson correlation (Haxby et al., 2001).

    ``fit`` stores the mean training pattern of each class; ``decision_function`` gives
    the Pearson correlation (across features) of each pattern with each class mean.

    Notes
    -----
    A pattern without variance across features (all features equal) has correlation 0
    with everything, instead of NaN.

    The mixin comes before :class:`~sklearn.base.BaseEstimator` in the bases, as
    scikit-learn requires for the estimator to be recognised as a classifier (e.g. by
    :func:`~sklearn.base.is_classifier`, which makes ``cross_val_score`` use stratified
    folds).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    means_ : ndarray of shape (n_classes, n_features)
        Mean training pattern of each class.
    n_features_in_ : int
        Number of features seen during ``fit``.
    """

    def fit(self, X, y):
        """Store the mean pattern of each class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : CorrelationClassifier
        """
        if _validate_data is not None:
            X, y = _validate_data(self, X, y, dtype=np.float64)
        else:  # pragma: no cover
            X, y = check_X_y(X, y, dtype=np.float64)
            self.n_features_in_ = X.shape[1]
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"The number of classes has to be greater than one; got {len(self.classes_)} class"
            )
        self.means_ = np.stack([X[codes == k].mean(axis=0) for k in range(len(self.classes_))])
        return self

    def _check_X(self, X) -> np.ndarray:
        check_is_fitted(self)
        if _validate_data is not None:
            return _validate_data(self, X, dtype=np.float64, reset=False)
        X = check_array(X, dtype=np.float64)  # pragma: no cover
        if X.shape[1] != self.n_features_in_:  # pragma: no cover
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X  # pragma: no cover

    def correlations(self, X) -> np.ndarray:
        """Pearson correlation of each pattern with each class mean.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        X = self._check_X(X)
        return standardize_patterns(X) @ standardize_patterns(self.means_).T

    def decision_function(self, X) -> np.ndarray:
        """Correlations of the patterns ``X`` with the class means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Patterns, one per row, as for :meth:`correlations`.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the correlation with class 1's mean minus that with class
            0's (> 0 predicts ``classes_[1]``); otherwise the correlations.
        """
        corr = self.correlations(X)
        if len(self.classes_) == 2:
            return corr[:, 1] - corr[:, 0]
        return corr

    def predict(self, X) -> np.ndarray:
        """Class of the best-correlated mean (the first one in case of a tie) for each
        pattern (row) of ``X``, array-like of shape (n_samples, n_features).

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        d = self.decision_function(X)
        if d.ndim == 1:
            return self.classes_[(d > 0).astype(np.intp)]
        return self.classes_[np.argmax(d, axis=1)]


class BatchedCorrelation(BatchedClassifier):
    """:class:`CorrelationClassifier` for every sphere and fold at once.

    The class means of each fold's training set come from per-class sums computed once
    per sphere; each pattern is standardised once, whatever the fold.
    """

    reference = "fastsearchlight.estimators.correlation.CorrelationClassifier"

    def __init__(self) -> None:
        pass

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Correlations of every fold's test patterns with its training class means.

        Parameters and result are those of :meth:`BatchedClassifier.fold_decisions`; the
        values are ``CorrelationClassifier.decision_function``'s: ``(n_spheres, n_test)``
        for two classes, else ``(n_spheres, n_test, n_classes)``.
        """
        finish = (lambda corr: corr[..., 1] - corr[..., 0]) if n_classes == 2 else None
        return fold_decisions_by_slab(X, y, n_classes, plan, self._slab, finish=finish)

    # ------------------------------------------------------------------ sphere sums
    def sphere_sum_state(self, X: np.ndarray, plan: CVPlan, sums, lean: bool = False, pool=None) -> dict:
        """What the sphere-sum path needs that does not depend on the labels.

        A correlation is a ratio of sums over the sphere's voxels (of x m, x, m, x^2 and
        m^2), so :mod:`fastsearchlight.sphere_sums` computes it for every sphere with
        sparse products. Here: the sums of every test pattern and of its squares, per
        sphere.

        Parameters
        ----------
        X, plan, sums
            As for :meth:`fastsearchlight.sphere_sums.SphereSumModel.sphere_sum_state`.
        lean : bool
            Keep nothing per fold: compute the test patterns' sums when they are used
            (for a single label vector).
        pool : ThreadPoolExecutor or None
            Unused: the sums of the test patterns run on the threads of
            :meth:`sphere_sum_decisions`.

        Returns
        -------
        dict
        """
        X = np.asarray(X, dtype=np.float64)
        state = {"X": X, "test_indices": plan.test_indices, "folds": None}
        if not lean:  # several label vectors: the test patterns gathered once
            state["folds"] = [np.ascontiguousarray(X[:, te]) for te in plan.test_indices]
        return state

    def sphere_sum_label_sets(self, state, ys, n_classes, plan, pool=None) -> list:
        """Class means of every voxel, per fold, for several label vectors (one matrix
        product for all of them).

        Returns None for a label vector with a class absent from a fold's training set.
        """
        ys = np.atleast_2d(ys)
        n_sets, n_folds = ys.shape[0], plan.n_folds
        weights, _, valid = class_mean_weights(ys, n_classes, plan)
        means = (state["X"] @ weights).reshape(-1, n_sets, n_folds, n_classes)
        out = []
        for k in range(n_sets):
            if not valid[k]:
                out.append(None)
                continue
            mean = np.ascontiguousarray(means[:, k])  # (V, F, C)
            out.append({"mean": mean})
        return out

    def sphere_sum_decisions(self, state, stats, n_classes, plan, sums, pool, max_columns):
        """Decisions of every sphere on every fold, from sums over the sphere's voxels.

        With ``p`` voxels, ``Sx = sum x``, ``Sm = sum m`` (``m``: a class mean), the
        correlation is ``(sum x m - Sx Sm / p) / (|x - x_bar| |m - m_bar|)``; the decisions
        here are the correlations times ``|x - x_bar|`` (the same for every class, so the
        same predictions). Each is computed with a rounding error bounded from the sums of
        squares (Cauchy-Schwarz); a sphere is reported uncertain when a decision is within
        that bound (plus a margin for the reference's own rounding) of the boundary, when a
        pattern or class mean may be constant, and when it has fewer than 3 voxels (the
        reference's exact rule for 2 features).

        Yields
        ------
        (fold, decisions, uncertain)
        """
        unit = np.finfo(np.float64).eps / 2.0
        p = sums.sizes.astype(np.float64)[:, None]  # (S, 1)
        # rounding of a sum over the sphere's p voxels, of the products with the sums of x
        # and m, and of their difference, relative to sqrt(sum x^2 sum m^2) (3p + 12 units
        # of rounding at most; twice that is used)
        k = (6.0 * p + 24.0) * unit
        small = sums.sizes < 3
        mean = stats["mean"]
        sum_m = sums.sum(mean, pool)  # (S, F, C)
        sum_mm = sums.sum(mean * mean, pool)
        nm2 = sum_mm - sum_m * sum_m / p[:, :, None]  # squared norms of the centred means
        err_nm2 = k[:, :, None] * sum_mm
        flat_m = np.any(~(nm2 > 4.0 * err_nm2), axis=2)  # (S, F): a mean may be constant
        inv_nm = 1.0 / np.sqrt(np.maximum(nm2, err_nm2))
        # per sphere, fold and class: the error of num / |m| is at most
        # k sqrt(sum x^2) sqrt(sum m^2) / |m| + |x - x_bar| * 2 err(|m|^2) / |m|^2
        coef_x = k[:, :, None] * np.sqrt(sum_mm) * inv_nm
        coef_n = 2.0 * err_nm2 / np.maximum(nm2, err_nm2)
        for f in range(plan.n_folds):
            if state["folds"] is None:
                x = np.ascontiguousarray(state["X"][:, state["test_indices"][f]])
            else:
                x = state["folds"][f]
            fold = _test_pattern_sums(x, np.ascontiguousarray(mean[:, f, :]), sums, pool)
            sx, root_xx, nx, sxm = fold["sum_x"], fold["root_xx"], fold["norm_x"], fold["sum_xm"]
            a = inv_nm[:, f, :]  # (S, C)
            shift = sum_m[:, f, :] * a / p  # (S, C)
            unsure = small | flat_m[:, f] | fold["flat_x"]
            if n_classes == 2:
                # (num_1 / |m_1|) - (num_0 / |m_0|), num_c = sum x m_c - sum x sum m_c / p
                decisions = sxm[:, 1, :] * a[:, 1:2]
                decisions -= sxm[:, 0, :] * a[:, 0:1]
                decisions -= sx * (shift[:, 1:2] - shift[:, 0:1])
                room = root_xx * coef_x[:, f, :].sum(axis=1, keepdims=True)
                room += nx * (coef_n[:, f, :].sum(axis=1, keepdims=True) + 1e-12)
                room *= 1.01
                unsure |= np.any(~(np.abs(decisions) > room), axis=1)
            else:
                decisions = sxm * a[:, :, None] - sx[:, None, :] * shift[:, :, None]
                decisions = decisions.transpose(0, 2, 1)  # (S, T, C)
                room = root_xx * coef_x[:, f, :].max(axis=1, keepdims=True)
                room += nx * coef_n[:, f, :].max(axis=1, keepdims=True)
                room *= 2.02
                room += 1e-12 * nx
                top2 = -np.partition(-decisions, 1, axis=2)[:, :, :2]
                unsure |= np.any(~(top2[:, :, 0] - top2[:, :, 1] > room), axis=1)
            yield f, decisions, unsure

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        """Peak working memory per sphere: the input block, its standardised patterns
        and the decisions (the temporaries are bounded by the slab size)."""
        return 8 * n_samples * (n_features + 2 * n_classes)

    @staticmethod
    def _slab(X: np.ndarray, blocks: FoldBlocks) -> list[np.ndarray]:
        """Correlations (n_spheres, n_test, n_classes) of every fold for a slab."""
        Xp = gather(X, blocks)  # (n, S, p)
        means = blocks.fold_class_sums(block_sums(Xp, blocks))  # (F, C, S, p)
        means *= (1.0 / blocks.train_counts)[:, :, None, None]
        M = standardize_patterns(means).transpose(0, 2, 3, 1)  # (F, S, p, C)
        Z = standardize_patterns(Xp)
        return [
            blocks.test_decisions(lambda rows, c, f=f: np.matmul(Z[rows].transpose(1, 0, 2), M[f]), f)
            for f in range(blocks.n_folds)
        ]


def _test_pattern_sums(x: np.ndarray, mean: np.ndarray, sums, pool=None) -> dict:
    """A fold's sums over every sphere of its test patterns ``x`` (n_voxels, n_test), of
    their squares and of their products with the class means ``mean`` (n_voxels,
    n_classes), in one pass over the spheres' voxels (:func:`_sphere_sums`, on the threads
    of ``pool``); the root of the sums of squares and the centred norms of the patterns;
    and which spheres may hold a constant pattern."""
    unit = np.finfo(np.float64).eps / 2.0
    p = sums.sizes.astype(np.float64)[:, None]  # (S, 1)
    a = sums.adjacency
    n_test, n_classes = x.shape[1], mean.shape[1]
    sx = np.empty((sums.n_spheres, n_test))
    sxx = np.empty((sums.n_spheres, n_test))
    sxm = np.empty((sums.n_spheres, n_classes, n_test))
    rows = sums._rows if pool is not None else [(0, sums.n_spheres)]

    def part(bounds):
        _sphere_sums(a.indptr, a.indices, x, mean, bounds[0], bounds[1], sx, sxx, sxm)

    if len(rows) > 1:
        list(pool.map(part, rows))
    else:
        part(rows[0])
    nx2 = sxx - sx * sx / p  # squared norm of the centred pattern
    return {
        "sum_x": sx,
        "sum_xm": sxm,
        # only bounds are made from these: single precision (6e-8 relative) is enough, as
        # the bounds are widened by 1% where they are used
        "root_xx": np.sqrt(sxx).astype(np.float32),
        "norm_x": np.sqrt(np.maximum(nx2, 0.0)).astype(np.float32),
        # a pattern that may be constant (its norm within rounding of 0)
        "flat_x": np.any(~(nx2 > 4.0 * (6.0 * p + 24.0) * unit * sxx), axis=1),
    }


@kernel(nogil=True, fastmath={"reassoc", "contract"})
def _sphere_sums(indptr, indices, x, mean, lo, hi, sx, sxx, sxm):
    """For the spheres ``lo:hi`` (rows of the adjacency ``indptr``, ``indices``): the sums
    over their voxels of the test patterns ``x`` (n_voxels, n_test), of their squares and
    of their products with each class mean ``mean`` (n_voxels, n_classes), into ``sx``,
    ``sxx`` (n_spheres, n_test) and ``sxm`` (n_spheres, n_classes, n_test)."""
    n_test = x.shape[1]
    n_classes = mean.shape[1]
    for s in range(lo, hi):
        for t in range(n_test):
            sx[s, t] = 0.0
            sxx[s, t] = 0.0
        for c in range(n_classes):
            for t in range(n_test):
                sxm[s, c, t] = 0.0
        for k in range(indptr[s], indptr[s + 1]):
            v = indices[k]
            xv = x[v]
            for t in range(n_test):
                u = xv[t]
                sx[s, t] += u
                sxx[s, t] += u * u
            for c in range(n_classes):
                m = mean[v, c]
                for t in range(n_test):
                    sxm[s, c, t] += xv[t] * m
