"""Estimators: names, scikit-learn objects, and their batched equivalents.

:func:`resolve_estimator` turns the ``estimator`` argument of :class:`SearchLight` (a name or
a scikit-learn estimator object) into the scikit-learn estimator it stands for, and
:func:`batched_equivalent` finds the batched estimator that computes the same thing for all
spheres at once, when there is one. Everything else runs through the generic path (one
scikit-learn fit per sphere and fold), so any estimator works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import BatchedClassifier

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

__all__ = [
    "BatchedClassifier",
    "NAMES",
    "resolve_estimator",
    "batched_equivalent",
]


def _nilearn_estimators() -> dict:
    """nilearn's estimator names, with the same parameters nilearn gives them."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.linear_model import LassoCV, LogisticRegressionCV, RidgeClassifierCV, RidgeCV
    from sklearn.svm import SVR, LinearSVC

    svc = (LinearSVC, {"penalty": "l2"}, {"max_iter": 10000, "random_state": 0})
    logistic = {"solver": "liblinear"}
    try:  # scikit-learn >= 1.8 spells the penalty with l1_ratios
        LogisticRegressionCV(l1_ratios=(0,))
        l1, l2 = {"l1_ratios": (1,)}, {"l1_ratios": (0,)}
        extra = {"use_legacy_attributes": False, "scoring": "neg_log_loss"}
        try:
            LogisticRegressionCV(**extra)
        except TypeError:
            extra = {}
    except TypeError:
        l1, l2, extra = {"penalty": "l1"}, {"penalty": "l2"}, {}
    return {
        "svc": svc,
        "svc_l2": svc,
        "svc_l1": (LinearSVC, {"penalty": "l1", "dual": False}, {"max_iter": 10000, "random_state": 0}),
        "logistic": (LogisticRegressionCV, {**logistic, **l2, **extra}, {}),
        "logistic_l2": (LogisticRegressionCV, {**logistic, **l2, **extra}, {}),
        "logistic_l1": (LogisticRegressionCV, {**logistic, **l1, **extra}, {}),
        "ridge_classifier": (RidgeClassifierCV, {}, {}),
        "dummy_classifier": (DummyClassifier, {"strategy": "stratified"}, {"random_state": 0}),
        "ridge": (RidgeCV, {}, {}),
        "ridge_regressor": (RidgeCV, {}, {}),
        "lasso": (LassoCV, {}, {}),
        "lasso_regressor": (LassoCV, {}, {}),
        "svr": (SVR, {"kernel": "linear"}, {"max_iter": 10000}),
        "dummy_regressor": (DummyRegressor, {"strategy": "mean"}, {}),
    }


def _own_estimators() -> dict:
    """Names this package adds for its other batched classifiers."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.naive_bayes import GaussianNB

    from .correlation import CorrelationClassifier

    lda = (LinearDiscriminantAnalysis, {}, {"solver": "lsqr", "shrinkage": "auto"})
    return {
        "gnb": (GaussianNB, {}, {}),
        "naive_bayes": (GaussianNB, {}, {}),
        "lda": lda,
        "ridge_classifier_fixed": (RidgeClassifier, {}, {}),
        "logistic_regression": (LogisticRegression, {}, {}),
        "correlation": (CorrelationClassifier, {}, {}),
    }


#: every estimator name :class:`SearchLight` accepts
NAMES = (
    "svc", "svc_l2", "svc_l1", "logistic", "logistic_l2", "logistic_l1", "ridge_classifier",
    "dummy_classifier", "ridge", "ridge_regressor", "lasso", "lasso_regressor", "svr",
    "dummy_regressor", "gnb", "naive_bayes", "lda", "ridge_classifier_fixed",
    "logistic_regression", "correlation",
)  # fmt: skip


def resolve_estimator(estimator, estimator_args=None, random_state=0) -> BaseEstimator:
    """The scikit-learn estimator that ``estimator`` names or is.

    Parameters
    ----------
    estimator : str or scikit-learn estimator
        One of :data:`NAMES` (nilearn's names mean what they mean in nilearn) or an
        estimator instance (cloned, never modified).
    estimator_args : dict or None
        Extra constructor parameters for a named estimator (as nilearn).
    random_state : int or None
        Passed to named estimators that take one.
    """
    from sklearn.base import BaseEstimator, clone

    if isinstance(estimator, str):
        table = _nilearn_estimators()
        if estimator not in table:
            table = _own_estimators()
        if estimator not in table:
            raise ValueError(
                f"Unknown estimator {estimator!r}. Use one of {', '.join(NAMES)}, or a "
                "scikit-learn estimator instance."
            )
        cls, fixed, defaults = table[estimator]
        params = dict(defaults)
        if "random_state" in params and random_state is not None:
            params["random_state"] = random_state
        params.update(estimator_args or {})
        params.update(fixed)
        try:
            return cls(**params)
        except TypeError as exc:
            raise TypeError(f"Bad estimator_args for {estimator!r}: {exc}") from None
    if isinstance(estimator, type):
        raise TypeError(
            f"estimator must be an instance, not the class {estimator.__name__}; "
            f"write {estimator.__name__}()."
        )
    if not isinstance(estimator, BaseEstimator) or not hasattr(estimator, "fit"):
        raise TypeError(
            f"estimator must be a name or a scikit-learn estimator, got {type(estimator).__name__}."
        )
    if estimator_args:
        estimator = clone(estimator).set_params(**estimator_args)
    return clone(estimator)


def batched_equivalent(estimator: BaseEstimator) -> BatchedClassifier | None:
    """The batched classifier computing exactly what ``estimator`` computes, or None.

    Only configurations whose optimum or closed form is reproduced are recognised; any other
    parameter value (class weights, L1 penalties, other solvers whose optimum differs) falls
    back to the generic path.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import (
        LogisticRegression,
        LogisticRegressionCV,
        RidgeClassifier,
        RidgeClassifierCV,
    )
    from sklearn.naive_bayes import GaussianNB
    from sklearn.svm import LinearSVC

    from .correlation import BatchedCorrelation, CorrelationClassifier

    p = estimator.get_params(deep=False)
    kind = type(estimator)
    if kind is LinearSVC:
        if (
            p["penalty"] == "l2"
            and p["loss"] == "squared_hinge"
            and p.get("multi_class", "ovr") == "ovr"
            and p["class_weight"] is None
        ):
            from .svm import BatchedLinearSVC

            return BatchedLinearSVC(
                C=p["C"], fit_intercept=p["fit_intercept"], intercept_scaling=p["intercept_scaling"]
            )
        return None
    if kind is GaussianNB:
        from .naive_bayes import BatchedGaussianNB

        return BatchedGaussianNB(var_smoothing=p["var_smoothing"], priors=p["priors"])
    if kind is LinearDiscriminantAnalysis:
        if p["solver"] in ("lsqr", "eigen") and p.get("covariance_estimator") is None:
            from .discriminant import BatchedLDA

            return BatchedLDA(solver="lsqr", shrinkage=p["shrinkage"], priors=p["priors"])
        return None
    if kind is RidgeClassifier:
        if p["class_weight"] is None and not p["positive"]:
            from .ridge import BatchedRidgeClassifier

            return BatchedRidgeClassifier(alpha=p["alpha"], fit_intercept=p["fit_intercept"])
        return None
    if kind is RidgeClassifierCV:
        if (
            p["cv"] is None
            and p["scoring"] is None
            and p["class_weight"] is None
            and not p.get("store_cv_results", False)
        ):
            from .ridge_cv import BatchedRidgeClassifierCV

            return BatchedRidgeClassifierCV(alphas=tuple(p["alphas"]), fit_intercept=p["fit_intercept"])
        return None
    if kind is LogisticRegression:
        penalty = p.get("penalty", "deprecated")
        l2 = penalty in ("l2", "deprecated") and (p.get("l1_ratio") in (0, 0.0, None))
        if (
            l2
            and p["solver"] in ("lbfgs", "newton-cg", "newton-cholesky")
            and p["class_weight"] is None
            and p["C"] not in (float("inf"),)
        ):
            from .logistic import BatchedLogisticRegression

            return BatchedLogisticRegression(C=p["C"], fit_intercept=p["fit_intercept"])
        return None
    if kind is LogisticRegressionCV:
        return _logistic_cv_equivalent(p)
    if kind is CorrelationClassifier:
        return BatchedCorrelation()
    return None


def _logistic_cv_equivalent(p: dict) -> BatchedClassifier | None:
    """The batched ``LogisticRegressionCV`` for nilearn's ``"logistic"``/``"logistic_l2"``
    configuration (liblinear, L2, primal, inner stratified folds, refit), or None."""
    import numpy as np

    penalty, l1_ratios = p.get("penalty", "deprecated"), p.get("l1_ratios")
    if penalty == "deprecated":
        l2 = l1_ratios is None or bool(np.all(np.asarray(l1_ratios, dtype=float) == 0))
    else:
        l2 = penalty == "l2"
    cv, scoring, Cs = p["cv"], p["scoring"], p["Cs"]
    if isinstance(Cs, (int, np.integer)):
        Cs_ok = Cs >= 1
    else:
        Cs_ok = len(np.atleast_1d(Cs)) >= 1 and bool(np.all(np.asarray(Cs, dtype=float) > 0))
    if not (
        l2
        and Cs_ok
        and p["solver"] == "liblinear"
        and not p["dual"]
        and p["class_weight"] is None
        and p.get("refit", True) is True
        and (cv is None or (isinstance(cv, (int, np.integer)) and cv >= 2))
        and scoring in ("neg_log_loss", "accuracy", None, "warn")
        and p["intercept_scaling"] > 0
    ):
        return None
    from .logistic_cv import BatchedLogisticRegressionCV

    return BatchedLogisticRegressionCV(
        Cs=Cs if isinstance(Cs, (int, np.integer)) else tuple(np.asarray(Cs, dtype=float)),
        n_inner=5 if cv is None else int(cv),
        scoring="neg_log_loss" if scoring == "neg_log_loss" else "accuracy",
        fit_intercept=p["fit_intercept"],
        intercept_scaling=float(p["intercept_scaling"]),
    )


def is_classification(estimator: BaseEstimator) -> bool:
    """Whether ``estimator`` is a classifier (the searchlight then needs class labels)."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return True
    if is_regressor(estimator):
        return False
    return True
