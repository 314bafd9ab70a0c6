"""One scikit-learn fit per sphere and fold, as nilearn computes a searchlight."""

from __future__ import annotations

import warnings

import numpy as np

from ..shared import exit_with_parent

__all__ = ["generic_block", "merge_failures", "no_cv_block", "warn_failures"]


def generic_block(estimator, X, rows, y, folds, scorings):
    """Per-fold scores ``(len(rows), n_folds, len(scorings))`` of a list of spheres, one
    scikit-learn fit per sphere and fold, scored by every scoring.

    What ``cross_val_score`` computes with ``error_score=np.nan`` (nilearn's call): a fit or
    a score that raises gives NaN. Returns the scores and the failures, as a dict
    ``{(stage, message): count}`` with ``stage`` "fit" or "score".
    """
    exit_with_parent()
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import check_scoring

    scorers = [check_scoring(estimator, scoring=scoring) for scoring in scorings]
    out = np.empty((len(rows), len(folds), len(scorers)))
    failures: dict[tuple[str, str], int] = {}

    def failed(stage, exc):
        key = (stage, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        failures[key] = failures.get(key, 0) + 1
        return np.nan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r, row in enumerate(rows):
            X_sphere = X[:, row]
            for f, (train, test) in enumerate(folds):
                try:
                    fitted = clone(estimator).fit(X_sphere[train], y[train])
                except Exception as exc:  # noqa: BLE001 - scikit-learn's error_score=nan
                    out[r, f] = failed("fit", exc)
                    continue
                for m, scorer in enumerate(scorers):
                    try:
                        out[r, f, m] = scorer(fitted, X_sphere[test], y[test])
                    except Exception as exc:  # noqa: BLE001
                        out[r, f, m] = failed("score", exc)
    return out, failures


def no_cv_block(estimator, X, rows, y, groups):
    """Scores of a list of spheres of an estimator scored on its own training data
    (``nilearn_searchlight_uses_cv = False``): ``fit(X, y, groups=groups)`` then
    ``score(X, y, groups=groups)`` on all samples."""
    exit_with_parent()
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    out = np.empty((len(rows), 1))
    failures: dict[tuple[str, str], int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r, row in enumerate(rows):
            X_sphere = X[:, row]
            for stage in ("fit", "score"):
                try:
                    if stage == "fit":
                        fitted = clone(estimator).fit(X_sphere, y, groups=groups)
                    else:
                        out[r, 0] = fitted.score(X_sphere, y, groups=groups)
                except Exception as exc:  # noqa: BLE001
                    key = (stage, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
                    failures[key] = failures.get(key, 0) + 1
                    out[r, 0] = np.nan
                    break
    return out, failures


def warn_failures(failures: dict, n_total: int) -> None:
    """One warning per stage for the sphere fits or scores that failed (their scores are NaN),
    as scikit-learn's ``cross_val_score`` warns with ``error_score=np.nan``."""
    from sklearn.exceptions import FitFailedWarning

    for stage, category in (("fit", FitFailedWarning), ("score", UserWarning)):
        found = {msg: n for (s, msg), n in failures.items() if s == stage}
        if not found:
            continue
        count = sum(found.values())
        common = max(found, key=found.get)
        what = "fits" if stage == "fit" else "scores"
        warnings.warn(
            f"{count} of {n_total} sphere-fold {what} failed and score NaN; the most "
            f"frequent error ({found[common]} times): {common}",
            category,
            stacklevel=3,
        )


def merge_failures(total: dict, more: dict) -> None:
    for key, n in more.items():
        total[key] = total.get(key, 0) + n
