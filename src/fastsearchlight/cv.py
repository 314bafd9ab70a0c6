"""Cross-validation plan: the folds, computed once and shared by every sphere.

The splitter is resolved with scikit-learn's :func:`~sklearn.model_selection.check_cv`,
exactly as :func:`~sklearn.model_selection.cross_val_score` does it, so ``cv=None``, an
int, or any splitter object mean what they mean in scikit-learn.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CVPlan:
    """Train/test split of the samples for every fold.

    Attributes
    ----------
    train_indices : list of ndarray
        Indices of the training samples of each fold.
    test_indices : list of ndarray
        Indices of the test samples of each fold.
    n_samples : int
        Number of samples the plan was made for.
    """

    train_indices: list[np.ndarray]
    test_indices: list[np.ndarray]
    n_samples: int

    @property
    def n_folds(self) -> int:
        return len(self.train_indices)

    @property
    def train_masks(self) -> np.ndarray:
        """Boolean array (n_folds, n_samples): True where a sample trains the fold."""
        masks = np.zeros((self.n_folds, self.n_samples), dtype=bool)
        for f, idx in enumerate(self.train_indices):
            masks[f, idx] = True
        return masks


def make_cv_plan(cv, y: np.ndarray, groups=None, *, classifier: bool = True) -> CVPlan:
    """Resolve ``cv`` as scikit-learn does and materialise its folds once.

    Parameters
    ----------
    cv : int, cross-validation generator, iterable or None
        Anything :func:`sklearn.model_selection.check_cv` accepts.
    y : ndarray of shape (n_samples,)
        Targets (used by stratified splitters).
    groups : array-like of shape (n_samples,) or None
        Group labels (runs) for group-aware splitters.
    classifier : bool
        Whether the estimator is a classifier (``cv=None`` or an int then means
        stratified folds, as in scikit-learn).

    Returns
    -------
    CVPlan
    """
    from sklearn.model_selection import check_cv

    splitter = check_cv(cv, y, classifier=classifier)
    n_samples = len(y)
    dummy_X = np.zeros((n_samples, 1))
    train, test = [], []
    with warnings.catch_warnings():
        # splitters that do not use groups say so; groups are simply not needed there
        warnings.filterwarnings("ignore", message="The groups parameter is ignored")
        splits = list(splitter.split(dummy_X, y, groups))
    for tr, te in splits:
        train.append(np.asarray(tr, dtype=np.intp))
        test.append(np.asarray(te, dtype=np.intp))
    if not train:
        raise ValueError("The cross-validation splitter produced no folds.")
    for f, (tr, te) in enumerate(zip(train, test)):
        if len(tr) == 0 or len(te) == 0:
            raise ValueError(f"Fold {f} of the cross-validation has an empty train or test set.")
        for what, idx in (("train", tr), ("test", te)):
            bad = idx[(idx < 0) | (idx >= n_samples)]
            if bad.size:
                raise ValueError(
                    f"Fold {f} of the cross-validation has {what} index {int(bad[0])}, outside "
                    f"0..{n_samples - 1} (there are {n_samples} samples): give indices of the "
                    "samples passed to fit."
                )
    return CVPlan(train, test, n_samples)
