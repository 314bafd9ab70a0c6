"""BatchedGaussianNB against scikit-learn's GaussianNB fitted per sphere and fold."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sphere_cases import CASES, N_RUNS, SPLITTERS, make_spheres  # noqa: F401

from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators.naive_bayes import BatchedGaussianNB, JointLogLikelihoodDifference


def reference(est, X, y, plan):
    """scikit-learn's joint log-likelihoods, probabilities and predictions per fold."""
    jll, proba, pred = [], [], []
    for tr, te in zip(plan.train_indices, plan.test_indices):
        fits = [clone(est).fit(Xs[tr], y[tr]) for Xs in X]
        jll.append(np.array([m.predict_joint_log_proba(Xs[te]) for m, Xs in zip(fits, X)]))
        proba.append(np.array([m.predict_proba(Xs[te]) for m, Xs in zip(fits, X)]))
        pred.append(np.array([m.predict(Xs[te]) for m, Xs in zip(fits, X)]))
    return jll, proba, pred


def assert_decisions_match(ours, ref):
    """Same predictions; decision values equal to rtol 1e-6 (relative to each sphere's
    largest value for values near 0)."""
    if ref.ndim == 2:
        assert np.array_equal(ours > 0, ref > 0)
    else:
        assert np.array_equal(ours.argmax(-1), ref.argmax(-1))
    scale = np.abs(ref).reshape(len(ref), -1).max(axis=1)
    scale = scale.reshape((-1,) + (1,) * (ref.ndim - 1))
    assert np.all(np.abs(ours - ref) <= 1e-6 * (np.abs(ref) + scale))


@pytest.mark.parametrize("n_classes, raw, splitter, n_features", CASES)
def test_matches_gaussian_nb(n_classes, raw, splitter, n_features):
    X, y, groups = make_spheres(n_features + 7 * n_classes, n_classes, raw, n_features)
    plan = make_cv_plan(SPLITTERS[splitter], y, groups if splitter == "logo" else None)
    est = BatchedGaussianNB()
    ours = est.fold_decisions(X, y, n_classes, plan)
    jll, proba, pred = reference(GaussianNB(), X, y, plan)
    for f, te in enumerate(plan.test_indices):
        ref = jll[f][..., 1] - jll[f][..., 0] if n_classes == 2 else jll[f]
        assert ours[f].shape == ref.shape
        assert_decisions_match(ours[f], ref)
        ours_pred = (ours[f] > 0).astype(int) if n_classes == 2 else ours[f].argmax(-1)
        assert np.array_equal(ours_pred, pred[f])
        # probabilities as scikit-learn computes them
        ref_p = proba[f][..., 1] if n_classes == 2 else proba[f]
        np.testing.assert_allclose(est.proba_like(ours[f]), ref_p, rtol=0, atol=1e-12)


@pytest.mark.parametrize("params", [{"var_smoothing": 1e-3}, {"var_smoothing": 0.0}, {"priors": [0.3, 0.7]}])
def test_parameters_are_honoured(params):
    X, y, groups = make_spheres(3, 2, True, 6, n_spheres=10)
    if params.get("var_smoothing") == 0.0:
        X[::3, :, 3] += 1e-3 * np.arange(X.shape[1])  # no zero variance without smoothing
    plan = make_cv_plan(StratifiedKFold(4), y)
    ours = BatchedGaussianNB(**params).fold_decisions(X, y, 2, plan)
    jll, _, _ = reference(GaussianNB(**params), X, y, plan)
    for a, j in zip(ours, jll):
        assert_decisions_match(a, j[..., 1] - j[..., 0])


def test_feature_constant_within_a_class_and_shuffle_split():
    """Variance exactly 0 in one class (only epsilon left), overlapping test sets."""
    X, y, groups = make_spheres(4, 3, True, 5, n_spheres=10)
    X[:, y == 1, 2] = 1012.345
    plan = make_cv_plan(ShuffleSplit(4, test_size=0.25, random_state=0), y)
    est = BatchedGaussianNB()
    ours = est.fold_joint_log_likelihoods(X, y, 3, plan)
    jll, proba, _ = reference(GaussianNB(), X, y, plan)
    for a, b, pr in zip(ours, jll, proba):
        assert_decisions_match(a, b)
        np.testing.assert_allclose(est.proba_like(a), pr, rtol=0, atol=1e-12)


def test_roc_auc_ties_of_saturated_probabilities_are_reproduced():
    """With well separated classes scikit-learn's probabilities saturate to exactly 1.0
    (at a level that depends on the joint log-likelihoods): the AUC is reproduced."""
    X, y, _ = make_spheres(5, 2, True, 19, n_spheres=30, effect=3.0)
    y_flip = y.copy()
    y_flip[::9] = 1 - y_flip[::9]  # some confidently misclassified samples
    plan = make_cv_plan(StratifiedKFold(4), y_flip)
    est = BatchedGaussianNB()
    ours = est.fold_decisions(X, y_flip, 2, plan)
    _, proba, _ = reference(GaussianNB(), X, y_flip, plan)
    n_saturated = 0
    for f, te in enumerate(plan.test_indices):
        assert isinstance(ours[f], JointLogLikelihoodDifference)
        p_ours, p_ref = est.proba_like(ours[f]), proba[f][..., 1]
        assert np.array_equal(p_ours == 1.0, p_ref == 1.0)
        assert np.array_equal(p_ours == 0.0, p_ref == 0.0)
        n_saturated += int((p_ref == 1.0).sum())
        for s in range(len(X)):
            assert roc_auc_score(y_flip[te], p_ours[s]) == roc_auc_score(y_flip[te], p_ref[s])
    assert n_saturated > 100


def test_proba_like_of_plain_decisions_and_of_jll():
    X, y, _ = make_spheres(6, 2, False, 8, n_spheres=10)
    plan = make_cv_plan(KFold(4), y)
    est = BatchedGaussianNB()
    ours = est.fold_decisions(X, y, 2, plan)
    jlls = est.fold_joint_log_likelihoods(X, y, 2, plan)
    _, proba, _ = reference(GaussianNB(), X, y, plan)
    for d, j, pr in zip(ours, jlls, proba):
        plain = np.array(d)  # no joint log-likelihoods attached
        assert type(plain) is np.ndarray
        np.testing.assert_allclose(est.proba_like(plain), pr[..., 1], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(est.proba_like(j), est.proba_like(d))
        assert d[:2].jll is None  # derived arrays do not carry mismatched values


def test_invalid_priors_raise():
    X, y, _ = make_spheres(7, 2, False, 3, n_spheres=2)
    plan = make_cv_plan(KFold(3), y)
    with pytest.raises(ValueError, match="sum of the priors"):
        BatchedGaussianNB(priors=[0.5, 0.6]).fold_decisions(X, y, 2, plan)
    with pytest.raises(ValueError, match="Number of priors"):
        BatchedGaussianNB(priors=[1.0]).fold_decisions(X, y, 2, plan)
