"""The functional searchlight: ``nilearn.decoding.searchlight.search_light`` on this engine."""

from __future__ import annotations

import warnings

import numpy as np

from . import engine
from .core import Problem, choose_measure, compute_scores, make_executor, prefers_threads, voxel_major
from .cv import make_cv_plan
from .estimators import is_classification
from .neighbourhoods import Neighbourhoods


def _adjacency(A, n_voxels: int):
    """``A`` as a CSR matrix of bool with sorted columns (nilearn's ``A.rows`` order)."""
    from scipy import sparse

    if not sparse.issparse(A):
        raise TypeError(f"A must be a scipy sparse matrix (spheres x voxels), got {type(A).__name__}.")
    if A.ndim != 2 or A.shape[1] != n_voxels:
        raise ValueError(f"A has shape {A.shape} but X has {n_voxels} voxels (columns).")
    A = sparse.csr_matrix(A, dtype=bool)
    A.eliminate_zeros()
    A.sort_indices()
    return A


def search_light(X, y, estimator, A, groups=None, scoring=None, cv=None, n_jobs=-1, verbose=0):
    """Mean cross-validated score of ``estimator`` on each neighbourhood of ``A``.

    nilearn's ``search_light`` (same signature, same scores), with all spheres and folds at
    once where the estimator and scoring have a batched equivalent (see
    :mod:`fastsearchlight.estimators`), and one scikit-learn fit per sphere and fold
    otherwise (on ``X`` and ``y`` as given). The folds are computed once and shared by every
    sphere. A fit or score that fails gives NaN, with a warning.

    Parameters
    ----------
    X : array-like (n_samples, n_voxels)
        Data.
    y : array-like (n_samples,) or None
        Targets. None computes nilearn's ``transform`` values instead: per sphere, the
        estimator is fitted on placeholder labels (first half 0, second half 1) and the mean
        of its ``decision_function`` on ``X`` is returned.
    estimator : scikit-learn estimator instance
    A : scipy sparse matrix (n_spheres, n_voxels)
        Row ``s`` marks the voxels of sphere ``s``.
    groups : array-like (n_samples,) or None
        Groups (runs) for group-aware splitters.
    scoring : str, callable or None
        scikit-learn scoring; None is the estimator's ``score``.
    cv : int, splitter, iterable or None
        As scikit-learn's ``check_cv`` reads it (None: 5 folds, stratified for classifiers).
    n_jobs : int, default=-1
        Parallel workers (-1: all cores).
    verbose : int, default=0
        Progress bar when > 0.

    Returns
    -------
    ndarray (n_spheres,)
        Scores, float64.
    """
    check_searchlight_estimator(estimator, scoring=scoring, y=y)
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2D (samples x voxels), got shape {X.shape}.")
    A = _adjacency(A, X.shape[1])
    hoods = Neighbourhoods(A, np.zeros((A.shape[0], 3), dtype=np.int64))
    if y is None:
        return _decision_means(X, estimator, hoods, n_jobs)
    y = np.asarray(y)
    if len(y) != X.shape[0]:
        raise ValueError(f"y has {len(y)} entries but X has {X.shape[0]} samples (rows).")
    if groups is not None and len(groups) != X.shape[0]:
        raise ValueError(f"groups has {len(groups)} entries but X has {X.shape[0]} samples (rows).")
    if not uses_cv(estimator):
        return engine.run_without_cv(X, hoods, estimator, y, groups, n_jobs=n_jobs, verbose=verbose)[:, 0]
    classification = is_classification(estimator)
    classes, codes = np.unique(y, return_inverse=True) if classification else (None, y)
    plan = make_cv_plan(cv, codes, groups, classifier=classification)
    measure, metrics = estimator, (scoring,)
    if classification and classes.size >= 2 and np.all(hoods.sizes > 0):
        measure, metrics = choose_measure(estimator, scoring, classes, codes, plan)
    batched = measure is not estimator
    problem = Problem(
        voxel_major(X) if batched else X, hoods, plan, measure, metrics, len(classes) if classification else 2
    )
    labels = codes if batched else y
    executor = make_executor("loky", n_jobs, None, threads=batched and prefers_threads(measure, hoods, plan))
    scores = compute_scores(problem, labels[None, :], executor, verbose=verbose)[0, ..., 0]
    return scores.mean(axis=1)


def check_searchlight_estimator(estimator, *, scoring, y) -> None:
    """Raise a TypeError if the searchlight cannot use ``estimator`` (nilearn's checks): it
    must be a scikit-learn estimator instance, with ``decision_function`` when ``y`` is None,
    ``score`` when ``scoring`` is None, and what :func:`uses_cv` asks of estimators that do
    their own validation."""
    from sklearn.base import BaseEstimator

    if isinstance(estimator, type):
        raise TypeError(f"The searchlight's estimator must be an *instance*, got class {estimator.__name__}.")
    if not isinstance(estimator, BaseEstimator):
        raise TypeError(
            f"estimator must derive from sklearn.base.BaseEstimator, got {type(estimator).__name__}."
        )
    if y is None and not hasattr(estimator, "decision_function"):
        raise TypeError("With y=None the searchlight needs the estimator's decision_function(X).")
    if scoring is None and not hasattr(estimator, "score"):
        raise TypeError("The searchlight with scoring=None needs the estimator's score(X, y).")
    uses_cv(estimator)


def uses_cv(estimator) -> bool:
    """Whether the searchlight cross-validates ``estimator`` (nilearn's
    ``nilearn_searchlight_uses_cv`` attribute, True by default). An estimator with
    ``nilearn_searchlight_uses_cv = False`` is fitted on all samples of each sphere, with
    ``fit(X, y, groups=groups)``, and scored by its ``score(X, y, groups=groups)``; it must
    take these arguments."""
    if getattr(estimator, "nilearn_searchlight_uses_cv", True):
        return True
    from sklearn.utils.validation import has_fit_parameter

    name = type(estimator).__name__
    if not hasattr(estimator, "score"):
        raise TypeError(
            f"{name}: nilearn_searchlight_uses_cv is False, so it must implement score(X, y, groups)."
        )
    if not has_fit_parameter(estimator, "groups"):
        raise TypeError(
            f"{name}: nilearn_searchlight_uses_cv is False, so it must accept a 'groups' "
            "parameter in fit (the searchlight calls fit(X, y, groups=groups))."
        )
    return False


def _decision_means(X, estimator, hoods, n_jobs):
    """nilearn's values for ``y=None``: the mean decision value of the estimator fitted on
    placeholder labels (half 0, half 1), per sphere."""
    from joblib import Parallel, delayed

    half = X.shape[0] // 2
    dummy = np.array([0] * half + [1] * half)
    rows = [hoods.voxels(s) for s in range(hoods.n_spheres)]
    starts = list(range(0, len(rows), 64))
    parts = Parallel(n_jobs=engine.effective_n_jobs(n_jobs))(
        delayed(_decision_block)(estimator, X, rows[s : s + 64], dummy) for s in starts
    )
    return np.concatenate(parts) if parts else np.zeros(0)


def _decision_block(estimator, X, rows, dummy):
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    out = np.empty(len(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, row in enumerate(rows):
            X_sphere = X[:, row]
            fitted = clone(estimator).fit(X_sphere, dummy)
            out[i] = np.mean(fitted.decision_function(X_sphere))
    return out
