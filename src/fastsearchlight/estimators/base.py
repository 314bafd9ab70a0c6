"""Interface of the batched estimators.

A batched estimator fits one classifier per (sphere, fold) problem, for a whole block of
spheres of the same size at once, with vectorised linear algebra. It returns decision values
on each fold's test samples; scoring is done elsewhere (:mod:`fastsearchlight.scoring`).

Conventions
-----------
- ``X`` has shape ``(n_spheres, n_samples, n_features)``: the data of every sphere of the
  block, all samples (train and test of every fold), in float64.
- ``y`` holds class codes ``0 .. n_classes-1`` (the position of the label in the sorted
  ``classes_``, as scikit-learn's ``LabelEncoder`` gives).
- For two classes, a fold's decision array has shape ``(n_spheres, n_test)``; a value > 0
  predicts class 1, otherwise class 0 (scikit-learn's rule for ``decision_function``).
- For more classes it has shape ``(n_spheres, n_test, n_classes)``; the prediction is the
  first argmax (scikit-learn's rule).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from ..cv import CVPlan
from ._fold_statistics import FoldBlocks, make_fold_blocks, sphere_slabs

__all__ = [
    "BatchedClassifier",
    "as_slice",
    "SphereBySphere",
    "as_voxel_major",
    "binary_targets",
    "class_mean_weights",
    "fold_decisions_by_slab",
]


class BatchedClassifier(ABC):
    """Base class of the batched classifiers.

    Subclasses store their hyper-parameters in ``__init__`` and implement
    :meth:`fold_decisions`.
    """

    #: name of the scikit-learn estimator this one reproduces (for messages and docs)
    reference: str = ""
    #: batched metric of the estimator's own ``score`` (what ``scoring=None`` means), when
    #: it is not accuracy
    own_scoring: str | None = None

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """Whether fits of spheres of up to ``n_features`` voxels on ``n_train`` training
        samples spend their time in code that releases the interpreter lock (compiled
        kernels, BLAS): local parallel runs then use threads, which share the data and
        start at once, instead of worker processes. False unless an estimator says so."""
        return False

    @abstractmethod
    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
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
            ``(n_spheres, n_test)`` for two classes, else
            ``(n_spheres, n_test, n_classes)``.
        """

    def many_fold_decisions(
        self, X: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`fold_decisions` for several label vectors (e.g. permutations) at once.

        ``ys`` has shape (n_label_sets, n_samples). The sphere data ``X`` is gathered once
        for all of them; estimators that can solve all label sets in one batch override
        this.
        """
        return [self.fold_decisions(X, y, n_classes, plan) for y in ys]

    def many_fold_decisions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions` of the spheres ``vox`` (n_spheres, n_features), rows of
        the voxel-major data ``X`` (n_voxels, n_samples).

        By default the spheres' samples are gathered into one block; estimators that read
        the data sphere by sphere override this.
        """
        return self.many_fold_decisions(X[vox].transpose(0, 2, 1), ys, n_classes, plan)

    def many_fold_decisions_for_predictions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions_at`, for scores that use only the predictions (signs,
        or the largest class): an estimator may return decisions that are not exact to
        rounding, as long as their predictions are proven to be the exact ones'. By default
        the exact decisions."""
        return self.many_fold_decisions_at(X, vox, ys, n_classes, plan)

    def mixed_sizes_from(self, plan: CVPlan) -> int | None:
        """The fewest voxels from which this estimator takes blocks of spheres of several
        sizes, each row of voxel indices padded with -1 at its end
        (:meth:`.Neighbourhoods.blocks`); None (the default): blocks of equal sizes only."""
        return None

    def handles(self, codes: np.ndarray, n_classes: int, plan: CVPlan) -> bool:
        """Whether this estimator computes what scikit-learn would on these labels and folds
        (beyond the checks of the routing); estimators with narrower support override it."""
        return True

    def proba_like(self, decisions: np.ndarray) -> np.ndarray:
        """Scores used for ROC AUC, as scikit-learn's scorer would take them.

        scikit-learn's ``roc_auc`` scorer uses ``decision_function`` when the estimator
        has one, else ``predict_proba[:, 1]``. Estimators of the second kind override
        this to map their decision values to the probability scikit-learn computes (so
        that ties from saturated probabilities are reproduced).
        """
        return decisions

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        """Estimated peak working memory per sphere, in bytes, to size chunks."""
        return 8 * n_samples * (n_features + 1) * 4

    def bytes_per_label_set(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        """Working memory per sphere of each label vector beyond the first, in bytes: what
        :meth:`bytes_per_sphere` holds once however many label vectors (permutations) are
        solved together, such as the samples or their cross-products, is not counted again.
        By default the decisions of every sample for every class, and their scores."""
        return 8 * n_samples * 2 * max(2, n_classes)


class SphereBySphere:
    """Mixin of the batched classifiers whose compiled kernel reads the voxel-major data
    sphere by sphere (they implement :meth:`BatchedClassifier.many_fold_decisions_at`):
    :meth:`many_fold_decisions` lays the spheres' samples out voxel by voxel once, for every
    label vector, and hands them to it."""

    def many_fold_decisions(
        self, X: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`fold_decisions` for several label vectors, the spheres' samples laid out
        voxel by voxel once for all of them."""
        return self.many_fold_decisions_at(*as_voxel_major(X), ys, n_classes, plan)


def binary_targets(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Targets in {-1, +1} of the one-vs-rest problems, shape (n_problems, n_samples).

    One problem for two classes (class 1 positive, as scikit-learn), else one per class.
    """
    if n_classes == 2:
        return np.where(y == 1, 1.0, -1.0)[None, :]
    return np.where(y[None, :] == np.arange(n_classes)[:, None], 1.0, -1.0)


def class_mean_weights(ys: np.ndarray, n_classes: int, plan: CVPlan):
    """Weights that turn sums over samples into every fold's training class means, for
    several label vectors at once (``data @ weights``).

    Parameters
    ----------
    ys : ndarray of int (n_label_sets, n_samples)
    n_classes : int
    plan : CVPlan

    Returns
    -------
    weights : ndarray (n_samples, n_label_sets * n_folds * n_classes)
        ``1 / count`` at the training samples of each (label vector, fold, class), in that
        order; zero for the label vectors that are not ``valid``.
    counts : ndarray (n_label_sets, n_folds, n_classes)
        Training samples of each class.
    valid : ndarray of bool (n_label_sets,)
        Whether every class is present in every fold's training set.
    """
    ys = np.atleast_2d(ys)
    n_sets, n_folds = ys.shape[0], plan.n_folds
    counts = np.stack(
        [np.stack([np.bincount(y[tr], minlength=n_classes) for tr in plan.train_indices]) for y in ys]
    ).astype(np.float64)  # (K, F, C)
    valid = np.all(counts > 0, axis=(1, 2))
    weights = np.zeros((plan.n_samples, n_sets, n_folds, n_classes))
    for k in np.flatnonzero(valid):
        for f, tr in enumerate(plan.train_indices):
            weights[tr, k, f, ys[k, tr]] = 1.0 / counts[k, f, ys[k, tr]]
    return weights.reshape(plan.n_samples, -1), counts, valid


def as_slice(index: np.ndarray) -> slice | np.ndarray:
    """``index`` as a slice when it is a run of consecutive increasing positions (read then
    as a view, without a copy), else unchanged."""
    index = np.asarray(index)
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return slice(int(index[0]), int(index[0]) + index.size)
    return index


def fold_decisions_by_slab(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    plan: CVPlan,
    slab: Callable[[np.ndarray, FoldBlocks], list[np.ndarray]],
    *,
    finish: Callable[[np.ndarray], np.ndarray] | None = None,
    class_axis: bool | None = None,
) -> list[np.ndarray]:
    """Every fold's decisions for all spheres, computed slab of spheres by slab.

    The loop shared by the estimators built on fold statistics
    (:mod:`._fold_statistics`): the samples are grouped into fold blocks once, the
    spheres are cut into cache-sized slabs, and ``slab`` decides every fold for one slab.

    Parameters
    ----------
    X, y, n_classes, plan
        As for :meth:`BatchedClassifier.fold_decisions`.
    slab : callable
        ``slab(X[spheres], blocks)``: one decision array per fold, test samples in plan
        order, for the spheres of the slab.
    finish : callable or None
        Applied to each of those arrays before it is stored (e.g. to reduce two columns
        of a two-class problem to one decision).
    class_axis : bool or None
        Whether the stored decisions have a last axis of ``n_classes``; by default, for
        more than two classes only.

    Returns
    -------
    list of ndarray, one per fold
        ``(n_spheres, n_test, n_classes)`` with a class axis, else ``(n_spheres, n_test)``.
    """
    X = np.asarray(X, dtype=np.float64)
    n_spheres, n_samples, n_features = X.shape
    blocks = make_fold_blocks(y, n_classes, plan)
    if class_axis is None:
        class_axis = n_classes != 2
    tail = (n_classes,) if class_axis else ()
    outs = [np.empty((n_spheres, len(te)) + tail) for te in plan.test_indices]
    for sl in sphere_slabs(n_spheres, n_samples, n_features):
        for f, dec in enumerate(slab(X[sl], blocks)):
            outs[f][sl] = dec if finish is None else finish(dec)
    return outs


def as_voxel_major(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spheres' samples ``X`` ``(S, n, p)`` as voxel-major data ``(S * p, n)`` (float64, the
    layout the compiled kernels read) and each sphere's rows of it ``(S, p)``."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"X must have shape (n_spheres, n_samples, n_features), got {X.shape}.")
    S, n, p = X.shape
    Xv = np.ascontiguousarray(X.transpose(0, 2, 1)).reshape(S * p, n)
    return Xv, np.arange(S * p, dtype=np.int64).reshape(S, p)
