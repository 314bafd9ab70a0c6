"""SearchLight: nilearn's interface, outputs, both engines, and clear errors."""

import warnings

import nibabel as nib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, LeaveOneGroupOut, StratifiedKFold
from sklearn.svm import LinearSVC

from fastsearchlight import SearchLight


def fit(data, **kw):
    kw.setdefault("mask_img", data["mask"])
    kw.setdefault("radius", 4.0)
    kw.setdefault("cv", KFold(4))
    groups = kw.pop("groups", None)
    return SearchLight(**kw).fit(data["func"], data["y"], groups=groups)


def test_outputs_have_nilearns_meaning(small_dataset):
    sl = fit(small_dataset)
    mask = np.asarray(small_dataset["mask"].dataobj) != 0
    assert sl.scores_.shape == mask.shape
    np.testing.assert_array_equal(sl.process_mask_, mask)
    np.testing.assert_array_equal(sl.scores_[mask], sl.masked_scores_)
    assert np.all(sl.scores_[~mask] == 0)
    np.testing.assert_allclose(sl.masked_scores_, sl.fold_scores_.mean(axis=1))
    img = sl.scores_img_
    np.testing.assert_allclose(img.affine, small_dataset["func"].affine)
    assert img.shape == mask.shape
    fimg = sl.fold_scores_img_
    assert fimg.shape == mask.shape + (4,)
    assert sl.n_elements_ == mask.sum()
    assert list(sl.classes_) == ["face", "house"]
    # the informative centre decodes, as planted
    centre = tuple(s // 2 for s in mask.shape)
    assert sl.scores_[centre] > 0.75


def test_drop_in_for_nilearn_with_a_generic_estimator(small_dataset):
    """Estimators with no batched form run per sphere and give nilearn's exact map."""
    from nilearn.decoding import SearchLight as NilearnSearchLight

    est = LogisticRegression(solver="liblinear")
    kwargs = dict(mask_img=small_dataset["mask"], radius=4.0, estimator=est, cv=KFold(4))
    ours = SearchLight(**kwargs).fit(small_dataset["func"], small_dataset["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnSearchLight(**kwargs).fit(small_dataset["func"], small_dataset["y"])
    assert ours.engine_ == "generic"
    np.testing.assert_allclose(ours.scores_, ref.scores_)


@pytest.mark.parametrize("scoring", ["balanced_accuracy", "roc_auc", "accuracy"])
def test_batched_scoring_equals_scikit_learn_scorers(make_dataset, scoring):
    data = make_dataset(n_per_class=30, seed=3)
    y = data["y"].copy()
    y[:4] = "face"  # unbalanced classes, so that balanced accuracy differs
    data = {**data, "y": y}
    batched = fit(data, scoring=scoring, cv=StratifiedKFold(3))
    assert batched.engine_ == "batched"
    tight = LinearSVC(tol=1e-10, max_iter=100000)
    generic = fit(data, scoring=scoring, cv=StratifiedKFold(3), estimator=tight)
    generic_engine = fit(data, scoring=lambda e, X, y: 0.0, cv=StratifiedKFold(3))
    assert generic_engine.engine_ == "generic"
    assert np.all(generic_engine.scores_ == 0)
    assert generic.engine_ == "batched"  # LinearSVC objects are batched too
    from fastsearchlight.engine import run_generic
    from fastsearchlight.images import load_mask, masked_data

    X = masked_data(data["func"], load_mask(data["mask"], "mask", data["func"]))
    ref = run_generic(X, batched.neighbourhoods_, tight, data["y"], batched.cv_plan_, scoring)
    np.testing.assert_allclose(batched.fold_scores_, ref, atol=1e-12)


def test_groups_and_leave_one_run_out(make_dataset):
    data = make_dataset(n_runs=4)
    sl = fit(data, cv=LeaveOneGroupOut(), groups=data["groups"])
    assert sl.fold_scores_.shape[1] == 4
    for train, test in zip(sl.cv_plan_.train_indices, sl.cv_plan_.test_indices):
        assert set(data["groups"][test]).isdisjoint(data["groups"][train])


def test_multiclass(make_dataset):
    data = make_dataset(n_classes=3, n_per_class=20)
    sl = fit(data, cv=StratifiedKFold(4))
    assert len(sl.classes_) == 3
    centre = tuple(s // 2 for s in sl.scores_.shape)
    assert sl.scores_[centre] > 0.6


def test_same_map_whatever_the_memory_budget_or_jobs(small_dataset):
    a = fit(small_dataset)
    b = fit(small_dataset, memory_mb=0.5)
    c = fit(small_dataset, n_jobs=2)
    np.testing.assert_array_equal(a.fold_scores_, b.fold_scores_)
    np.testing.assert_array_equal(a.fold_scores_, c.fold_scores_)


def test_process_mask_restricts_the_centres(small_dataset):
    process = np.zeros(small_dataset["mask"].shape, dtype=np.uint8)
    process[3, 4, 2:4] = 1
    sl = fit(small_dataset, process_mask_img=nib.Nifti1Image(process, small_dataset["mask"].affine))
    assert sl.n_elements_ == 2
    full = fit(small_dataset)
    np.testing.assert_allclose(sl.scores_[process > 0], full.scores_[process > 0])


def test_constant_voxels_do_not_crash_or_poison(small_dataset):
    data = np.asarray(small_dataset["func"].dataobj).copy()
    data[2, 2, 2] = 1000.0  # constant in time
    data[4, 5, 3] = 0.0  # all zeros
    func = nib.Nifti1Image(data, small_dataset["func"].affine)
    for est in ["svc", "gnb", "lda", "ridge_classifier", "correlation", "logistic_regression"]:
        sl = SearchLight(mask_img=small_dataset["mask"], radius=4.0, cv=KFold(4), estimator=est)
        sl.fit(func, small_dataset["y"])
        assert np.all(np.isfinite(sl.masked_scores_)), est
        assert np.all((sl.masked_scores_ >= 0) & (sl.masked_scores_ <= 1)), est


def test_progress_bar_only_when_verbose(small_dataset, capsys):
    fit(small_dataset, verbose=0)
    assert "sphere" not in capsys.readouterr().err
    fit(small_dataset, verbose=1)
    assert "sphere" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input
def test_labels_of_wrong_length(small_dataset):
    with pytest.raises(ValueError, match="48 volumes"):
        SearchLight(mask_img=small_dataset["mask"]).fit(small_dataset["func"], small_dataset["y"][:-1])


def test_groups_of_wrong_length(small_dataset):
    with pytest.raises(ValueError, match="groups"):
        SearchLight(mask_img=small_dataset["mask"], cv=LeaveOneGroupOut()).fit(
            small_dataset["func"], small_dataset["y"], groups=small_dataset["groups"][:5]
        )


def test_mask_of_other_shape_or_affine_is_placed_as_nilearn(small_dataset):
    """Masks off the functional grid are resampled onto it (nearest neighbour) and the map
    is made on the process mask's grid, as nilearn does (compared with nilearn in
    test_dropin.py)."""
    mask = small_dataset["mask"]
    other_shape = nib.Nifti1Image(np.ones((3, 3, 3), np.uint8), mask.affine)
    sl = SearchLight(mask_img=other_shape, estimator="gnb").fit(small_dataset["func"], small_dataset["y"])
    assert sl.scores_.shape == (3, 3, 3) and sl.n_elements_ == 27
    shifted = mask.affine.copy()
    shifted[0, 3] += 1.0  # centres 1 mm off the voxels of the data
    other_affine = nib.Nifti1Image(np.asarray(mask.dataobj), shifted)
    sl = SearchLight(mask_img=mask, process_mask_img=other_affine, estimator="gnb", radius=4.0).fit(
        small_dataset["func"], small_dataset["y"]
    )
    np.testing.assert_allclose(sl.scores_img_.affine, shifted)
    np.testing.assert_allclose(sl.mask_img_.affine, mask.affine)


def test_3d_image_where_4d_is_needed(small_dataset):
    with pytest.raises(TypeError, match="4D"):
        SearchLight(mask_img=small_dataset["mask"]).fit(small_dataset["mask"], small_dataset["y"])
    with pytest.raises(TypeError, match="3D"):
        SearchLight(mask_img=small_dataset["func"]).fit(small_dataset["func"], small_dataset["y"])


def test_empty_masks(small_dataset):
    empty = nib.Nifti1Image(np.zeros(small_dataset["mask"].shape, np.uint8), small_dataset["mask"].affine)
    with pytest.raises(ValueError, match="mask_img is empty"):
        SearchLight(mask_img=empty).fit(small_dataset["func"], small_dataset["y"])
    with pytest.raises(ValueError, match="process_mask_img is empty"):
        SearchLight(mask_img=small_dataset["mask"], process_mask_img=empty).fit(
            small_dataset["func"], small_dataset["y"]
        )


def test_one_class_only(small_dataset):
    y = np.full(len(small_dataset["y"]), "face")
    with pytest.raises(ValueError, match="single class"):
        SearchLight(mask_img=small_dataset["mask"]).fit(small_dataset["func"], y)


def test_nan_and_inf_voxels(small_dataset):
    data = np.asarray(small_dataset["func"].dataobj).copy()
    data[3, 3, 3, 5] = np.nan
    data[2, 3, 3, 7] = np.inf
    func = nib.Nifti1Image(data, small_dataset["func"].affine)
    with pytest.warns(UserWarning, match="NaN or infinite values in 2 voxel.*replaced with zeros"):
        filled = SearchLight(mask_img=small_dataset["mask"]).fit(func, small_dataset["y"])
    data[~np.isfinite(data)] = 0  # as nilearn
    zeros = nib.Nifti1Image(data, small_dataset["func"].affine)
    expected = SearchLight(mask_img=small_dataset["mask"]).fit(zeros, small_dataset["y"])
    np.testing.assert_array_equal(filled.scores_, expected.scores_)
    y = small_dataset["y"].astype(object)
    y[0] = None
    with pytest.raises(ValueError, match="missing"):
        SearchLight(mask_img=small_dataset["mask"]).fit(small_dataset["func"], y)


@pytest.mark.parametrize("radius", [-1.0, float("nan")])
def test_bad_radius(small_dataset, radius):
    with pytest.raises(ValueError, match="radius"):
        SearchLight(mask_img=small_dataset["mask"], radius=radius).fit(
            small_dataset["func"], small_dataset["y"]
        )


def test_fold_whose_training_set_lacks_a_class(small_dataset):
    order = np.argsort(small_dataset["y"], kind="stable")  # all faces first, then houses
    y = small_dataset["y"][order]
    func = nib.Nifti1Image(
        np.asarray(small_dataset["func"].dataobj)[..., order], small_dataset["func"].affine
    )
    # as nilearn (scikit-learn's error_score=nan): the fits fail, the scores are NaN
    from sklearn.exceptions import FitFailedWarning

    with pytest.warns(FitFailedWarning, match="sphere-fold fits failed.*at least 2 classes"):
        sl = SearchLight(mask_img=small_dataset["mask"], cv=KFold(2)).fit(func, y)
    assert sl.engine_ == "generic"
    assert np.all(np.isnan(sl.masked_scores_))


def test_unknown_estimator_and_estimator_class(small_dataset):
    with pytest.raises(ValueError, match="Unknown estimator 'svm'"):
        SearchLight(mask_img=small_dataset["mask"], estimator="svm").fit(
            small_dataset["func"], small_dataset["y"]
        )
    with pytest.raises(TypeError, match="instance"):
        SearchLight(mask_img=small_dataset["mask"], estimator=LinearSVC).fit(
            small_dataset["func"], small_dataset["y"]
        )


def test_missing_file_is_a_clear_error(small_dataset, tmp_path):
    with pytest.raises(ValueError, match="Could not read"):
        SearchLight(mask_img=small_dataset["mask"]).fit(str(tmp_path / "nope.nii.gz"), small_dataset["y"])


def test_transform_and_fit_transform_follow_nilearn(small_dataset):
    """nilearn's transform: per sphere, fit on placeholder labels (half 0, half 1) and take
    the absolute mean decision value. (nilearn's own transform passes voxel indices as
    world coordinates and fails on this affine; ours uses the fitted spheres.)"""
    kwargs = dict(mask_img=small_dataset["mask"], radius=4.0, cv=KFold(4))
    sl = SearchLight(**kwargs).fit(small_dataset["func"], small_dataset["y"])
    out = sl.transform(small_dataset["func"])
    assert out.shape == sl.scores_.shape
    from fastsearchlight.images import load_mask, masked_data

    X = masked_data(small_dataset["func"], load_mask(small_dataset["mask"], "m", small_dataset["func"]))
    n = X.shape[0]
    dummy = np.array([0] * (n // 2) + [1] * (n // 2))
    for s in (0, 7, 20):
        rows = sl.neighbourhoods_.voxels(s)
        est = LinearSVC(max_iter=10000, random_state=0).fit(X[:, rows], dummy)
        expected = abs(est.decision_function(X[:, rows]).mean())
        assert out[tuple(sl.neighbourhoods_.seeds_ijk[s])] == pytest.approx(expected, rel=1e-6)
    both = SearchLight(**kwargs).fit_transform(small_dataset["func"], small_dataset["y"])
    np.testing.assert_allclose(both, out)
