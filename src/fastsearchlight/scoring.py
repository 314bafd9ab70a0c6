"""Scores of many spheres at once, from decision values on a fold's test samples.

Each function reproduces the scikit-learn metric of the same name, applied per sphere:
``accuracy_score``, ``balanced_accuracy_score`` and ``roc_auc_score`` (binary).
"""

from __future__ import annotations

import numpy as np

#: scoring names the batched engine computes itself; anything else takes the generic path
BATCHED_SCORINGS = ("accuracy", "balanced_accuracy", "roc_auc")


def resolve_scoring(scoring) -> str | None:
    """Name of the batched metric for ``scoring``, or None if only the generic path can do it.

    ``None`` means the estimator's ``score`` method, which is accuracy for classifiers.
    """
    if scoring is None:
        return "accuracy"
    if isinstance(scoring, str) and scoring in BATCHED_SCORINGS:
        return scoring
    return None


def predictions(decisions: np.ndarray, n_classes: int) -> np.ndarray:
    """Class codes predicted from decision values (scikit-learn's rules)."""
    if n_classes == 2:
        return (decisions > 0).astype(np.intp)
    return np.argmax(decisions, axis=-1)


def batched_scores(
    metric: str, decisions: np.ndarray, y_test: np.ndarray, n_classes: int, proba_like=None
) -> np.ndarray:
    """Score every sphere on one fold.

    Parameters
    ----------
    metric : {"accuracy", "balanced_accuracy", "roc_auc"}
    decisions : ndarray (n_spheres, n_test) or (n_spheres, n_test, n_classes)
    y_test : ndarray (n_test,) of class codes
    n_classes : int
    proba_like : callable or None
        Maps decisions to the values scikit-learn's ROC AUC scorer would rank.

    Returns
    -------
    ndarray (n_spheres,)
    """
    if metric == "roc_auc":
        if n_classes != 2:
            raise ValueError(
                "scoring='roc_auc' needs two classes; with more, use 'accuracy' or "
                "'balanced_accuracy'."
            )
        values = proba_like(decisions) if proba_like is not None else decisions
        return roc_auc(values, y_test)
    if n_classes == 2:
        correct = (decisions > 0) == (y_test == 1)[None, :]
    else:
        correct = predictions(decisions, n_classes) == y_test[None, :]
    if metric == "accuracy":
        return np.count_nonzero(correct, axis=1) / correct.shape[1]
    if metric == "balanced_accuracy":
        present = np.unique(y_test)
        recalls = [correct[:, y_test == c].mean(axis=1) for c in present]
        return np.mean(recalls, axis=0)
    raise ValueError(f"Unknown batched metric {metric!r}.")


def roc_auc(values: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Area under the ROC curve per row, class 1 positive; ties count one half.

    Equal to ``sklearn.metrics.roc_auc_score`` (the Mann-Whitney statistic with average
    ranks). Raises like scikit-learn when a fold's test set holds one class only.
    """
    pos = y_test == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "Only one class present in a fold's test set: ROC AUC is not defined there. "
            "Use a stratified or group splitter that keeps both classes in every test set."
        )
    from scipy.stats import rankdata

    ranks = rankdata(values, axis=1, method="average")
    return (ranks[:, pos].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
