"""The engine against the reference, on the real Haxby 2001 slice (face vs house)."""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

from fastsearchlight import SearchLight
from fastsearchlight.engine import run_generic
from fastsearchlight.images import load_mask, masked_data

RADIUS = 5.6
N_TEST = 216  # samples summed over the 4 test folds


@pytest.fixture(scope="module")
def ours(haxby_slice):
    d = haxby_slice
    return SearchLight(mask_img=d["mask"], radius=RADIUS, cv=KFold(4)).fit(d["func"], d["y"])


def test_batched_engine_is_used(ours):
    assert ours.engine_ == "batched"
    assert ours.n_elements_ == 530
    assert ours.fold_scores_.shape == (530, 4)


def test_matches_tightly_solved_linearsvc(haxby_slice, ours):
    d = haxby_slice
    X = masked_data(d["func"], load_mask(d["mask"], "mask", d["func"]))
    ref = run_generic(
        X, ours.neighbourhoods_, LinearSVC(tol=1e-8, max_iter=1_000_000), d["y"],
        ours.cv_plan_, None, n_jobs=2,
    )  # fmt: skip
    same = np.all(np.isclose(ours.fold_scores_, ref), axis=1)
    assert same.mean() >= 0.995
    samples_apart = np.abs(ours.fold_scores_ - ref).sum(axis=1) * (N_TEST / 4)
    assert samples_apart.max() <= 2 + 1e-9


def test_matches_nilearn_searchlight_at_its_defaults(haxby_slice, ours):
    from nilearn.decoding import SearchLight as NilearnSearchLight

    d = haxby_slice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnSearchLight(mask_img=d["mask"], radius=RADIUS, cv=KFold(4), n_jobs=2)
        ref.fit(d["func"], d["y"])
    a, b = ours.masked_scores_, ref.masked_scores_
    identical = np.isclose(a, b)
    assert identical.mean() >= 0.95
    assert np.abs(a - b).max() * N_TEST <= 2 + 1e-9
    np.testing.assert_array_equal(ours.process_mask_, ref.process_mask_)
    assert ours.scores_.shape == ref.scores_.shape
    # the map's peak is the classic example's (about 0.88)
    assert abs(a.max() - b.max()) <= 2 / N_TEST
    assert 0.8 <= a.max() <= 0.95


def test_leave_one_run_out_on_the_25mm_whole_brain(haxby_25mm):
    from sklearn.model_selection import LeaveOneGroupOut

    d = haxby_25mm
    sl = SearchLight(mask_img=d["mask"], radius=30.0, cv=LeaveOneGroupOut())
    sl.fit(d["func"], d["y"], groups=d["groups"])
    assert sl.fold_scores_.shape == (129, 12)
    X = masked_data(d["func"], load_mask(d["mask"], "mask", d["func"]))
    ref = run_generic(
        X, sl.neighbourhoods_, LinearSVC(tol=1e-8, max_iter=1_000_000), d["y"],
        sl.cv_plan_, None, n_jobs=1,
    )  # fmt: skip
    assert np.all(np.isclose(sl.fold_scores_, ref), axis=1).mean() >= 0.99


def test_naive_bayes_sphere_sums_match_scikit_learn_on_every_sphere(haxby_slice):
    """Naive Bayes runs through sphere sums; every sphere's fold scores equal those of
    scikit-learn's GaussianNB fitted per sphere (on the same float64 data)."""
    from sklearn.naive_bayes import GaussianNB

    d = haxby_slice
    ours = SearchLight(mask_img=d["mask"], radius=RADIUS, cv=KFold(4), estimator="gnb", n_jobs=2)
    ours.fit(d["func"], d["y"])
    X = masked_data(d["func"], load_mask(d["mask"], "mask", d["func"]))
    ref = run_generic(X, ours.neighbourhoods_, GaussianNB(), d["y"], ours.cv_plan_, None, n_jobs=2)
    np.testing.assert_array_equal(ours.fold_scores_, ref)


def test_correlation_sphere_sums_match_the_classifier_on_every_sphere(haxby_slice):
    """The correlation classifier runs through sphere sums; every sphere's fold scores
    equal those of CorrelationClassifier fitted per sphere."""
    from fastsearchlight.estimators.correlation import CorrelationClassifier

    d = haxby_slice
    ours = SearchLight(mask_img=d["mask"], radius=RADIUS, cv=KFold(4), estimator="correlation")
    ours.fit(d["func"], d["y"])
    X = masked_data(d["func"], load_mask(d["mask"], "mask", d["func"]))
    ref = run_generic(X, ours.neighbourhoods_, CorrelationClassifier(), d["y"], ours.cv_plan_, None, n_jobs=2)
    np.testing.assert_array_equal(ours.fold_scores_, ref)
