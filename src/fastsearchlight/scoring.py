"""Scores of many spheres at once, from decision values on a fold's test samples.

Each function reproduces the scikit-learn metric of the same name, applied per sphere:
``accuracy_score``, ``balanced_accuracy_score``, ``roc_auc_score`` (binary), and the
scorers "f1", "precision" and "recall" (binary, positive class 1, as scikit-learn's
default ``pos_label=1``; 0 where scikit-learn divides by zero and warns); and
``neg_log_loss`` of a two-class logistic model, used as an estimator's own score
(``LogisticRegressionCV.score``), never as a ``scoring`` name.
"""

from __future__ import annotations

import numpy as np

#: scoring names the batched engine computes itself; anything else takes the generic path
BATCHED_SCORINGS = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "precision", "recall")
#: scorings of the positive class, 1 (scikit-learn's default pos_label)
BINARY_SCORINGS = ("f1", "precision", "recall")
#: batched metrics computed from the predictions alone (not the decisions' values)
PREDICTION_SCORINGS = ("accuracy", "balanced_accuracy", *BINARY_SCORINGS)


def uses_predictions_only(metrics) -> bool:
    """Whether every batched metric (as :func:`batched_metric` names them) needs only the
    predicted classes."""
    return all(metric.partition(":")[0] in PREDICTION_SCORINGS for metric in metrics)


def resolve_scoring(scoring) -> str | None:
    """Name of the batched metric for ``scoring``, or None if only the generic path can do it.

    ``None`` means the estimator's ``score`` method, which is accuracy for classifiers.
    """
    if scoring is None:
        return "accuracy"
    if isinstance(scoring, str) and scoring in BATCHED_SCORINGS:
        return scoring
    return None


def batched_metric(scoring, classes) -> str | None:
    """The batched metric for ``scoring`` with these classes, or None for the generic path.

    The binary scorings need two classes, one of them 1 (scikit-learn's scorers take
    ``pos_label=1``); they become ``"f1:<code of class 1>"`` etc. Otherwise scikit-learn
    raises (string labels, three classes), and the generic path gives NaN with a warning,
    as nilearn.
    """
    metric = resolve_scoring(scoring)
    if metric in BINARY_SCORINGS:
        positive = [
            i for i, c in enumerate(classes)
            if isinstance(c, (int, float, np.integer, np.floating)) and c == 1
        ]  # fmt: skip
        if len(classes) != 2 or not positive:
            return None
        return f"{metric}:{positive[0]}"
    return metric


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
    if metric == "neg_log_loss":  # an estimator's own score (LogisticRegressionCV's)
        return neg_log_loss(decisions, y_test)
    if metric == "roc_auc":
        if n_classes != 2:
            raise ValueError(
                "scoring='roc_auc' needs two classes; with more, use 'accuracy' or 'balanced_accuracy'."
            )
        values = proba_like(decisions) if proba_like is not None else decisions
        return roc_auc(values, y_test)
    name, _, positive = metric.partition(":")
    if name in BINARY_SCORINGS:
        return _binary_score(
            name, predictions(decisions, n_classes) == int(positive), y_test == int(positive)
        )
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


def _binary_score(name: str, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """F1, precision or recall per row, with scikit-learn's arithmetic (0 where it would
    divide by zero)."""
    tp = np.count_nonzero(predicted & actual[None, :], axis=1)
    n_pred = np.count_nonzero(predicted, axis=1)
    n_true = np.full(tp.shape, np.count_nonzero(actual))
    numerator, denominator = {
        "precision": (tp, n_pred), "recall": (tp, n_true), "f1": (2 * tp, n_true + n_pred),
    }[name]  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, 0.0)


def neg_log_loss(decisions: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Minus the mean log-loss per row, of the probabilities ``expit(decision)`` of class 1
    (two classes), as scikit-learn's ``neg_log_loss`` scorer computes it for a logistic
    model: ``1 - p`` and ``p``, clipped to ``[eps, 1 - eps]``."""
    from scipy.special import expit

    eps = np.finfo(np.float64).eps
    p1 = expit(np.asarray(decisions, dtype=np.float64))
    p = np.where((y_test == 1)[None, :], p1, 1.0 - p1)
    return np.mean(np.log(np.clip(p, eps, 1.0 - eps)), axis=1)


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
