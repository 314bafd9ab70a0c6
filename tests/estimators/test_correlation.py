"""CorrelationClassifier (Haxby 2001) and its batched version BatchedCorrelation."""

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.model_selection import (
    ShuffleSplit,
    cross_val_score,
)
from sklearn.utils.estimator_checks import check_estimator
from sphere_cases import CASES, N_RUNS, SPLITTERS, make_spheres  # noqa: F401

from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators.correlation import (
    BatchedCorrelation,
    CorrelationClassifier,
    standardize_patterns,
)


def make_spheres_c(*args, **kwargs):
    return make_spheres(*args, constant_pattern=True, **kwargs)


def reference(X, y, plan):
    """CorrelationClassifier's decision values and predictions per fold."""
    dec, pred = [], []
    for tr, te in zip(plan.train_indices, plan.test_indices):
        fits = [CorrelationClassifier().fit(Xs[tr], y[tr]) for Xs in X]
        dec.append(np.array([m.decision_function(Xs[te]) for m, Xs in zip(fits, X)]))
        pred.append(np.array([m.predict(Xs[te]) for m, Xs in zip(fits, X)]))
    return dec, pred


def test_correlations_are_pearson():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6)) * 3 + 100
    y = np.repeat(["cat", "face", "house", "shoe"], 10)
    est = CorrelationClassifier().fit(X, y)
    assert list(est.classes_) == ["cat", "face", "house", "shoe"]
    np.testing.assert_allclose(est.means_[1], X[10:20].mean(axis=0))
    corr = est.decision_function(X)
    expected = np.corrcoef(np.vstack([X, est.means_]))[:40, 40:]
    np.testing.assert_allclose(corr, expected, rtol=1e-12, atol=1e-12)
    assert np.array_equal(est.predict(X), est.classes_[expected.argmax(axis=1)])


def test_two_classes_decision_is_difference_of_correlations():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5))
    y = np.repeat([3, 7], 15)
    est = CorrelationClassifier().fit(X, y)
    corr = est.correlations(X)
    d = est.decision_function(X)
    np.testing.assert_allclose(d, corr[:, 1] - corr[:, 0])
    assert np.array_equal(est.predict(X), np.where(d > 0, 7, 3))


def test_zero_variance_patterns_correlate_zero():
    X = np.array([[1.0, 2.0, 4.0], [2.0, 2.0, 2.0], [0.1, 0.1, 0.1], [3.0, 1.0, 2.0]])
    y = np.array([0, 0, 1, 1])
    est = CorrelationClassifier().fit(X, y)
    corr = est.correlations(np.array([[5.0, 5.0, 5.0], [1.0, 0.0, 3.0]]))
    assert np.all(np.isfinite(corr))
    assert np.all(corr[0] == 0.0)  # constant test pattern
    # one feature: every pattern is constant, every decision 0, the first class wins
    est1 = CorrelationClassifier().fit(X[:, :1], y)
    assert np.all(est1.decision_function(X[:, :1]) == 0.0)
    assert np.all(est1.predict(X[:, :1]) == 0)
    # constant patterns whose mean is not exactly representable
    Z = standardize_patterns(np.full((3, 7), 0.1) * np.array([[1.0], [3.0], [-7.3]]))
    assert np.all(Z == 0.0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_scikit_learn_conventions():
    assert is_classifier(CorrelationClassifier())
    # fitting two-feature blobs to 83% accuracy is beyond a correlation across two
    # features, which only carries the sign of their difference
    check_estimator(
        CorrelationClassifier(),
        expected_failed_checks={"check_classifiers_train": "two features carry only a sign"},
    )
    rng = np.random.default_rng(2)
    y = np.arange(60) % 2
    X = 0.5 * rng.standard_normal((60, 8)) + np.outer(2 * y - 1, np.linspace(-1, 1, 8))
    assert cross_val_score(CorrelationClassifier(), X, y, cv=5).mean() > 0.8
    with pytest.raises(ValueError, match="features"):
        clone(CorrelationClassifier()).fit(X, y).predict(X[:, :3])


@pytest.mark.parametrize("n_classes, raw, splitter, n_features", CASES)
def test_batched_matches_classifier(n_classes, raw, splitter, n_features):
    X, y, groups = make_spheres_c(n_features + 7 * n_classes, n_classes, raw, n_features)
    plan = make_cv_plan(SPLITTERS[splitter], y, groups if splitter == "logo" else None)
    ours = BatchedCorrelation().fold_decisions(X, y, n_classes, plan)
    dec, pred = reference(X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert a.shape == b.shape
        assert np.all(np.isfinite(a))
        ours_pred = (a > 0).astype(int) if n_classes == 2 else a.argmax(-1)
        assert np.array_equal(ours_pred, p)
        # correlations lie in [-1, 1]: absolute agreement
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_batched_overlapping_test_sets():
    X, y, _ = make_spheres_c(31, 3, True, 9, n_spheres=5)
    plan = make_cv_plan(ShuffleSplit(5, test_size=0.3, random_state=0), y)
    ours = BatchedCorrelation().fold_decisions(X, y, 3, plan)
    dec, pred = reference(X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert np.array_equal(a.argmax(-1), p)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
