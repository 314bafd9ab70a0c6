"""Which measure computes a searchlight: an estimator's batched equivalent, or the estimator
itself fitted per sphere."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..scoring import batched_metric

__all__ = ["batched_plan_ok", "choose_measure"]


def batched_plan_ok(plan, codes, n_classes: int, metric: str) -> bool:
    """Whether the batched estimators compute what scikit-learn would on these folds: every
    training set holds every class, and for ROC AUC and the log-loss there are two classes,
    both in every test set."""
    for train in plan.train_indices:
        if np.unique(codes[train]).size < n_classes:
            return False
    if metric in ("roc_auc", "neg_log_loss"):
        if n_classes != 2:
            return False
        return all(np.unique(codes[test]).size == 2 for test in plan.test_indices)
    return True


def choose_measure(estimator, scoring, classes, codes, plan) -> tuple[Any, tuple]:
    """The measure and metrics of a cross-validated searchlight.

    The estimator's batched equivalent (:func:`fastsearchlight.estimators.batched_equivalent`)
    with its batched metric, when there is one and it computes what scikit-learn would on
    these folds; otherwise the estimator itself with ``scoring``, one scikit-learn fit per
    sphere and fold, as nilearn (also where a fold leaves a class out of training or, for ROC
    AUC, out of testing, which scikit-learn scores or gives NaN).

    Parameters
    ----------
    estimator : scikit-learn estimator
    scoring : str, callable or None
    classes : ndarray or None
        The classes (None for a regressor).
    codes : ndarray
        Class code of each sample.
    plan : CVPlan
    """
    from ..estimators import batched_equivalent

    if classes is not None:
        batched = batched_equivalent(estimator)
        own = getattr(batched, "own_scoring", None) if scoring is None else None
        # f1 and friends: when one of two classes is 1
        metric = own if own is not None else batched_metric(scoring, classes)
        if (
            batched is not None
            and metric is not None
            and batched_plan_ok(plan, codes, len(classes), metric)
            and batched.handles(codes, len(classes), plan)
        ):
            return batched, (metric,)
    return estimator, (scoring,)
