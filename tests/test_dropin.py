"""Drop-in behaviour: the generic path gives nilearn's maps to the bit, on the user's labels
and data, with NaN (and a warning) where scikit-learn's cross-validation gives NaN."""

import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.decoding import SearchLight as NilearnSearchLight
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score, make_scorer, precision_score
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

from fastsearchlight import SearchLight


@pytest.fixture
def data(small_dataset):
    """The small data set, with spheres centred on a block of 27 voxels around the blob."""
    d = small_dataset
    process = np.zeros(d["mask"].shape, dtype=np.uint8)
    process[2:5, 3:6, 2:5] = 1
    return {**d, "process": nib.Nifti1Image(process, d["mask"].affine)}


def both(data, y=None, func=None, **kw):
    """Ours and nilearn's SearchLight on the same data: (ours, nilearn's, our warnings)."""
    y = data["y"] if y is None else y
    func = data["func"] if func is None else func
    kw = {"mask_img": data["mask"], "process_mask_img": data["process"], "radius": 4.0,
          "cv": KFold(4), **kw}  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = SearchLight(**kw).fit(func, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NilearnSearchLight(**kw).fit(func, y)
    return ours, ref, caught


def assert_identical(ours, ref):
    np.testing.assert_array_equal(ours.masked_scores_, ref.masked_scores_)
    np.testing.assert_array_equal(ours.scores_, ref.scores_)


def integer_labels(data):
    return np.where(data["y"] == "face", 1, 2)


# ------------------------------------------------------------------ the user's labels
@pytest.mark.parametrize(
    "labels, estimator, scoring",
    [
        ("strings", LinearSVC(class_weight={"face": 2, "house": 1}), None),
        ("strings", "svc_l1", make_scorer(f1_score, pos_label="face")),
        ("integers", "svc_l1", "f1"),
        ("integers", "svc_l1", "precision"),
        ("integers", "svc_l1", make_scorer(precision_score, pos_label=1, zero_division=0)),
    ],
    ids=["class_weight", "pos_label_string", "f1_integers", "precision_integers", "pos_label_1"],
)
def test_the_generic_path_sees_the_users_labels(data, labels, estimator, scoring):
    y = data["y"] if labels == "strings" else integer_labels(data)
    ours, ref, _ = both(data, y=y, estimator=estimator, scoring=scoring)
    assert ours.engine_ == "generic"
    assert_identical(ours, ref)
    assert np.ptp(ours.masked_scores_) > 0  # not a constant map


def test_a_custom_scorer_receives_the_users_labels(data):
    seen = set()

    def scorer(estimator, X, y):
        seen.update(np.unique(y).tolist())
        seen.update(np.unique(estimator.predict(X)).tolist())
        return 0.5

    ours, _, _ = both(data, scoring=scorer)
    assert seen == {"face", "house"}
    assert np.all(ours.masked_scores_ == 0.5)


def test_f1_of_string_labels_is_nan_with_a_warning(data):
    """scikit-learn cannot take pos_label=1 among strings: every score fails, NaN."""
    ours, ref, caught = both(data, estimator="svc_l1", scoring="f1")
    assert np.all(np.isnan(ours.masked_scores_)) and np.all(np.isnan(ref.masked_scores_))
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("108 of 108 sphere-fold scores failed" in m and "pos_label" in m for m in messages)


# ------------------------------------------------------------------ the data's dtype
@pytest.mark.parametrize("estimator", ["ridge", "lasso", "svr", "dummy_regressor"])
def test_regressors_are_nilearns_to_the_bit(data, estimator):
    target = np.random.default_rng(0).standard_normal(len(data["y"]))
    target += (data["y"] == "face") * 2.0
    kw = {}
    if estimator == "lasso":  # LassoCV: 5 inner folds x 100 alphas, 0.1 s a fit; 6 spheres
        process = np.zeros(data["mask"].shape, dtype=np.uint8)
        process[3:5, 3:6, 3] = 1
        kw["process_mask_img"] = nib.Nifti1Image(process, data["mask"].affine)
    ours, ref, _ = both(data, y=target, estimator=estimator, **kw)
    assert ours.engine_ == "generic"
    assert_identical(ours, ref)


class _RecordsDtype(ClassifierMixin, BaseEstimator):
    dtypes: list = []

    def fit(self, X, y):
        type(self).dtypes.append(X.dtype)
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


@pytest.mark.parametrize("with_mask", [True, False])
@pytest.mark.parametrize("image_dtype", [np.float32, np.float64, np.int16])
def test_the_estimator_gets_the_dtype_nilearn_gives_it(data, with_mask, image_dtype):
    values = np.asarray(data["func"].dataobj)
    func = nib.Nifti1Image(values.astype(image_dtype), data["func"].affine)
    expected = set()
    for cls in (SearchLight, NilearnSearchLight):
        _RecordsDtype.dtypes = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(mask_img=data["mask"] if with_mask else None, process_mask_img=data["process"], radius=1.0,
                estimator=_RecordsDtype(), cv=KFold(2)).fit(func, data["y"])  # fmt: skip
        expected.add(frozenset(_RecordsDtype.dtypes))
    assert len(expected) == 1, expected


# ------------------------------------------------------------------ NaN where nilearn gives NaN
def test_a_class_missing_from_a_training_set_is_scored_as_nilearn(data):
    """Three classes, the third all in fold 0's test set: scikit-learn trains on two there."""
    y = data["y"].astype(object)
    y[:12] = "cat"  # KFold(4): fold 0 tests samples 0-11
    ours, ref, _ = both(data, y=y)
    assert ours.engine_ == "generic"  # the batched classifiers need every class in training
    assert_identical(ours, ref)
    assert np.all(ours.fold_scores_[:, 0] == 0)  # cats are never predicted


def test_fits_that_fail_score_nan_with_a_warning(data):
    from sklearn.exceptions import FitFailedWarning

    y = data["y"]
    faces, houses = np.flatnonzero(y == "face"), np.flatnonzero(y == "house")
    folds = [(faces[:20], np.r_[faces[20:], houses[:4]]),  # trains on one class: fails
             (np.r_[faces[:20], houses[:20]], np.r_[faces[20:], houses[20:]])]  # fmt: skip
    ours, ref, caught = both(data, cv=folds, estimator=LinearSVC(class_weight="balanced"))
    assert_identical(ours, ref)
    assert np.all(np.isnan(ours.fold_scores_[:, 0])) and np.all(np.isfinite(ours.fold_scores_[:, 1]))
    assert any(issubclass(w.category, FitFailedWarning) and "27 of 54 sphere-fold fits failed"
               in str(w.message) for w in caught)  # fmt: skip


def test_roc_auc_of_a_one_class_test_set_is_nan(data):
    y = data["y"]
    faces, houses = np.flatnonzero(y == "face"), np.flatnonzero(y == "house")
    folds = [(np.r_[faces[:12], houses], faces[12:]),  # tests faces only: no ROC AUC
             (np.r_[faces[:12], houses[:12]], np.r_[faces[12:], houses[12:]])]  # fmt: skip
    ours, ref, caught = both(data, cv=folds, scoring="roc_auc")
    assert ours.engine_ == "generic"
    assert_identical(ours, ref)
    assert np.all(np.isnan(ours.fold_scores_[:, 0])) and np.all(np.isfinite(ours.fold_scores_[:, 1]))
    assert any("ROC AUC score is not defined" in str(w.message) for w in caught)  # scikit-learn's


def test_a_regressor_with_a_classification_metric_is_nan(data):
    target = np.linspace(0.0, 1.0, len(data["y"]))
    ours, ref, caught = both(data, y=target, estimator="ridge", scoring="accuracy")
    assert np.all(np.isnan(ours.masked_scores_)) and np.all(np.isnan(ref.masked_scores_))
    assert any("sphere-fold scores failed" in str(w.message) for w in caught)


@pytest.mark.parametrize("estimator", ["svc", LinearSVC(class_weight="balanced")])
def test_nan_voxels_are_zero_filled_as_nilearn(data, estimator):
    values = np.asarray(data["func"].dataobj).copy()
    values[3, 4, 3, :5] = np.nan  # in the blob, inside every sphere's reach
    values[2, 4, 3, 7] = -np.inf
    func = nib.Nifti1Image(values, data["func"].affine)
    ours, ref, caught = both(data, func=func, estimator=estimator)
    assert any("replaced with zeros" in str(w.message) for w in caught)
    values[~np.isfinite(values)] = 0
    zeros = nib.Nifti1Image(values, data["func"].affine)
    ours_zeros, ref_zeros, _ = both(data, func=zeros, estimator=estimator)
    np.testing.assert_array_equal(ours.scores_, ours_zeros.scores_)
    np.testing.assert_array_equal(ref.scores_, ref_zeros.scores_)
    if ours.engine_ == "generic":
        assert_identical(ours, ref)


# ------------------------------------------------------------------ smaller gaps
def test_fit_transform_takes_groups_by_position(data):
    sl = SearchLight(mask_img=data["mask"], process_mask_img=data["process"], radius=4.0,
                     cv=KFold(4))  # fmt: skip
    out = sl.fit_transform(data["func"], data["y"], data["groups"])
    assert out.shape == data["mask"].shape


@pytest.mark.parametrize(
    "estimator, kind",
    [
        ("svc", "classifier"),
        ("gnb", "classifier"),
        ("ridge", "regressor"),
        (LinearSVC(), "classifier"),
        ("lasso", "regressor"),
    ],  # fmt: skip
)
def test_estimator_type_follows_the_estimator(estimator, kind):
    from sklearn.base import is_classifier, is_regressor

    sl = SearchLight(estimator=estimator)
    assert is_classifier(sl) == (kind == "classifier")
    assert is_regressor(sl) == (kind == "regressor")
    if estimator != "gnb":  # a name of ours only
        assert is_classifier(NilearnSearchLight(estimator=estimator)) == (kind == "classifier")


def test_random_state_is_not_passed_to_the_estimator(data):
    ours, ref, _ = both(data, estimator="dummy_classifier", random_state=7)
    assert_identical(ours, ref)
    assert ours.estimator_.random_state == 0


def test_radius_zero_is_the_centre_voxel(data):
    ours, ref, _ = both(data, radius=0, estimator=LinearSVC(class_weight="balanced"))
    assert np.all(ours.sphere_sizes_ == 1)
    assert_identical(ours, ref)


def test_mask_img_keeps_the_masks_dtype(data):
    ours, ref, _ = both(data, estimator="dummy_classifier")
    assert ours.mask_img_.get_data_dtype() == ref.mask_img_.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(ours.mask_img_.get_fdata(), ref.mask_img_.get_fdata())


def test_a_custom_estimator_is_warned_about(data):
    with pytest.warns(UserWarning, match="Use a custom estimator at your own risk"):
        SearchLight(mask_img=data["mask"], process_mask_img=data["process"], radius=1.0,
                    estimator=LinearSVC(), cv=KFold(2)).fit(data["func"], data["y"])  # fmt: skip


@pytest.mark.parametrize("scoring", ["f1", "precision", "recall"])
@pytest.mark.parametrize("labels", [(1, 2), (0, 1), (-1, 1)])
def test_f1_precision_recall_are_batched_and_equal_scikit_learn(scoring, labels):
    """Binary scorings of the positive class 1, computed from the batched decisions, equal
    scikit-learn's scorer on the same fits (an exactly solved estimator, per sphere)."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import KFold, cross_val_score

    from fastsearchlight import SearchLight
    from fastsearchlight.simulate import simulate_haxby_like

    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=4)
    y = np.where(ds.labels["labels"].to_numpy() == "face", labels[0], labels[1])
    sl = SearchLight(mask_img=ds.mask_img, radius=4.0, estimator="ridge_classifier_fixed",
                     cv=KFold(4), scoring=scoring).fit(ds.func_img, y)  # fmt: skip
    assert sl.engine_ == "batched"
    X = ds.func_img.get_fdata()[np.asarray(ds.mask_img.dataobj) > 0].T
    for s in range(0, sl.n_elements_, 17):
        vox = sl.neighbourhoods_.voxels(s)
        ref = cross_val_score(RidgeClassifier(), X[:, vox], y, cv=KFold(4), scoring=scoring)
        np.testing.assert_allclose(sl.fold_scores_[s], ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("which", ["mask", "process_mask"])
def test_masks_on_another_grid_are_placed_as_nilearn_places_them(which):
    """A 2 mm mask with 3 mm data (the common case): nilearn resamples the mask onto the
    data and centres spheres at the process mask's voxels by world coordinates, making the
    map on the process mask's grid."""
    import nibabel as nib
    from nilearn.decoding import SearchLight as NilearnSearchLight
    from nilearn.image import resample_img
    from sklearn.model_selection import KFold

    from fastsearchlight import SearchLight
    from fastsearchlight.simulate import simulate_haxby_like

    ds = simulate_haxby_like(shape=(9, 10, 9), voxel_size=(3.0, 3.0, 3.0), n_regions=1,
                             region_radius_mm=5.0, random_state=1)  # fmt: skip
    y = ds.labels["labels"].to_numpy()
    fine = resample_img(ds.mask_img, target_affine=np.diag([2.0, 2.0, 2.0]),
                        interpolation="nearest", force_resample=True, copy_header=True)  # fmt: skip
    box = np.zeros(fine.shape, dtype=np.uint8)
    box[5:8, 6:9, 5:8] = 1  # 27 voxels: svc_l1 runs liblinear per sphere and fold, twice
    roi = nib.Nifti1Image(box * (np.asarray(fine.dataobj) > 0), fine.affine)
    kw = {"mask_img": roi} if which == "mask" else {"mask_img": ds.mask_img, "process_mask_img": roi}
    common = dict(radius=4.0, estimator="svc_l1", cv=KFold(3))  # per sphere: bit for bit
    ours = SearchLight(**kw, **common).fit(ds.func_img, y)
    ref = NilearnSearchLight(**kw, **common).fit(ds.func_img, y)
    assert ours.scores_.shape == ref.scores_.shape == roi.shape
    np.testing.assert_allclose(ours.scores_img_.affine, roi.affine)
    np.testing.assert_allclose(ours.scores_, ref.scores_, rtol=0, atol=1e-12)
