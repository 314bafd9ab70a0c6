"""Permutation statistics: calibration on null data, power on planted regions, resumability."""

import nibabel as nib
import numpy as np
import pytest
from sklearn.model_selection import KFold

from fastsearchlight import SearchLight
from fastsearchlight.simulate import simulate_haxby_like
from fastsearchlight.stats import NullStore, make_permutations, permutation_inference


def test_sample_permutations_stay_within_runs_and_are_seeded():
    y = np.tile([0, 1, 0, 1, 1, 0], 4)
    groups = np.repeat(np.arange(4), 6)
    a = make_permutations(y, groups, 50, random_state=3, permute="samples")
    b = make_permutations(y, groups, 50, random_state=3, permute="samples")
    np.testing.assert_array_equal(a.labels, b.labels)
    other = make_permutations(y, groups, 50, random_state=4, permute="samples")
    assert not np.array_equal(a.labels, other.labels)
    assert not a.exhaustive and a.n_possible == 20**4 and a.n_blocks == 24
    for labels in a.labels:
        for g in range(4):  # every run keeps its labels, shuffled among its samples
            assert sorted(labels[groups == g]) == sorted(y[groups == g])
    assert len({tuple(p) for p in a.labels}) == 50


def test_block_permutations_move_whole_blocks_within_runs():
    # run 0: blocks of lengths 3, 2, 3 (labels a, b, a); run 1: 4 (b), 4 (a)
    y = np.array(list("aaabbaaa") + list("bbbbaaaa"))
    groups = np.repeat([0, 1], 8)
    perms = make_permutations(y, groups, 200, random_state=0)
    assert perms.permute == "blocks" and perms.n_blocks == 5
    # run 0: 3 arrangements of (a, b, a); run 1: 2 of (b, a): 6 in all, enumerated
    assert perms.exhaustive and perms.n_possible == 6 and perms.n_permutations == 6
    assert perms.smallest_p == pytest.approx(1 / 6)
    assert len({tuple(p) for p in perms.labels}) == 6
    assert any((p == y).all() for p in perms.labels)  # the observed arrangement is one
    for labels in perms.labels:
        run0, run1 = labels[:8], labels[8:]
        # each block keeps one label
        for block in (slice(0, 3), slice(3, 5), slice(5, 8)):
            assert len(set(run0[block])) == 1
        assert len(set(run1[:4])) == 1 and len(set(run1[4:])) == 1
        assert sorted(set(run1)) == ["a", "b"]
    # more arrangements than asked: random draws, blocks still whole
    y = np.tile(np.repeat([0, 1, 0, 1, 1, 0], 3), 4)
    groups = np.repeat(np.arange(4), 18)
    drawn = make_permutations(y, groups, 30, random_state=1)
    # blocks per run: 0, 1, 0, 1 (6 samples), 0: 5!/(3! 2!) = 10 arrangements a run
    assert not drawn.exhaustive and drawn.n_possible == 10**4 and drawn.n_permutations == 30
    for labels in drawn.labels:
        assert (labels.reshape(-1, 3) == labels.reshape(-1, 3)[:, :1]).all()


def test_a_design_that_permutation_cannot_change_has_one_arrangement():
    y = np.repeat([0, 1, 0, 1], 5)  # one class per run
    groups = np.repeat(np.arange(4), 5)
    for permute in ("blocks", "samples"):
        perms = make_permutations(y, groups, 100, random_state=0, permute=permute)
        assert perms.exhaustive and perms.n_permutations == 1
        np.testing.assert_array_equal(perms.labels[0], y)


def test_exhaustive_pvalues_count_the_observed_arrangement_once():
    rng = np.random.default_rng(1)
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[1:3, 1:3, 1:3] = True
    null = rng.integers(0, 10, size=(8, mask.sum())) / 10.0
    observed = null[3].copy()  # the enumeration holds the observed arrangement
    res = permutation_inference(observed, null, mask, np.eye(4), exhaustive=True)
    np.testing.assert_array_equal(res.p_values, (null >= observed - 1e-12).sum(0) / 8)
    np.testing.assert_array_equal(res.p_fwe, (null.max(1)[None, :] >= observed[:, None]).sum(1) / 8)
    random = permutation_inference(observed, null, mask, np.eye(4))
    np.testing.assert_array_equal(random.p_values, (1 + (null >= observed).sum(0)) / 9)


def test_pvalues_and_fwe_on_a_toy_null():
    rng = np.random.default_rng(0)
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[1:4, 1:4, 1:4] = True
    null = rng.integers(0, 20, size=(199, mask.sum())) / 20.0
    observed = null[0].copy()
    observed[0] = 1.0  # a voxel above every null value
    res = permutation_inference(observed, null, mask, np.eye(4), cluster_alpha=0.01)
    assert res.p_values[0] == pytest.approx(1 / 200)
    # p = (1 + #null >= observed) / (1 + P), computed independently
    expected = (1 + (null >= observed[None, :] - 1e-9).sum(0)) / 200
    np.testing.assert_allclose(res.p_values, expected)
    expected_fwe = (1 + (null.max(1)[None, :] >= observed[:, None] - 1e-9).sum(1)) / 200
    np.testing.assert_allclose(res.p_fwe, expected_fwe)
    assert np.all(res.p_fwe >= res.p_values)


def fit_null_searchlight(seed, n_perm=99, signal=False, **kw):
    ds = simulate_haxby_like(
        shape=(12, 14, 12) if signal else (10, 12, 10), voxel_size=(3.5, 3.75, 3.75),
        n_regions=1, region_radius_mm=7.0 if signal else 5.0,
        effect_size=12.0 if signal else 0.0, random_state=seed,
    )  # fmt: skip
    y = ds.labels["labels"].to_numpy()
    groups = ds.labels["chunks"].to_numpy()
    # the simulated design is randomised volume by volume with independent noise: single
    # samples are exchangeable
    sl = SearchLight(mask_img=ds.mask_img, radius=5.6 if signal else 4.0, cv=KFold(4),
                     estimator="gnb", n_permutations=n_perm, random_state=seed,
                     permute="samples", **kw)  # fmt: skip
    return sl.fit(ds.func_img, y, groups=groups), ds


def test_null_data_family_wise_error_and_uniform_pvalues():
    false_positive_sets = 0
    pooled = []
    n_sets = 20
    for seed in range(n_sets):
        sl, _ = fit_null_searchlight(seed)
        false_positive_sets += bool(np.any(sl.p_fwe_ < 0.05))
        pooled.append(sl.p_values_)
    # at most about 5% of null data sets show any corrected false positive
    assert false_positive_sets <= 1  # 1 of 20 = 5%
    p = np.concatenate(pooled)
    # uncorrected p-values are uniform under the null (discrete with step 1/100)
    assert abs(p.mean() - 0.5) < 0.03
    for level in (0.05, 0.1, 0.25, 0.5):
        assert abs(np.mean(p <= level) - level) < 0.03


def test_planted_region_is_found_after_correction():
    sl, ds = fit_null_searchlight(7, signal=True)
    from scipy.ndimage import distance_transform_edt

    truth3d = np.asarray(ds.truth_img.dataobj) > 0
    truth = truth3d[sl.process_mask_]
    significant = sl.p_fwe_ < 0.05
    assert significant[truth].mean() >= 0.6  # most planted voxels
    # spheres that hold no planted voxel (centre farther than the radius) stay silent
    distance = distance_transform_edt(~truth3d, sampling=ds.func_img.header.get_zooms()[:3])
    far = (distance > 5.6)[sl.process_mask_]
    assert significant[far].mean() <= 0.01
    assert sl.clusters_ and sl.clusters_[0]["p_fwe_cluster"] < 0.05
    centre = np.asarray(ds.metadata["region_centers_mm"][0])
    peak = np.array([sl.clusters_[0][k] for k in ("peak_x_mm", "peak_y_mm", "peak_z_mm")])
    assert np.linalg.norm(peak - centre) < 8.0


def small_permuted(**kw):
    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=2)
    y = ds.labels["labels"].to_numpy()
    groups = ds.labels["chunks"].to_numpy()
    kw.setdefault("estimator", "svc")
    kw.setdefault("random_state", 11)
    sl = SearchLight(mask_img=ds.mask_img, radius=4.0, cv=KFold(4), n_permutations=12, **kw)
    return sl.fit(ds.func_img, y, groups=groups)


def test_same_seed_same_maps_whatever_jobs_or_chunking():
    a = small_permuted(n_jobs=1, keep_null=True)
    b = small_permuted(n_jobs=2, keep_null=True, permutation_batch=5, memory_mb=1)
    np.testing.assert_array_equal(a.null_scores_, b.null_scores_)
    np.testing.assert_array_equal(a.p_values_, b.p_values_)
    np.testing.assert_array_equal(a.p_fwe_, b.p_fwe_)
    c = small_permuted(keep_null=True, random_state=12)
    assert not np.array_equal(a.null_scores_, c.null_scores_)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    full = small_permuted(keep_null=True, permutation_batch=4)
    ckpt = tmp_path / "null.npy"
    calls = {"n": 0}
    original = NullStore.write

    def write_then_die(self, rows, scores):
        original(self, rows, scores)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(NullStore, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        small_permuted(checkpoint=ckpt, permutation_batch=4)
    monkeypatch.setattr(NullStore, "write", original)
    assert ckpt.exists()
    resumed = small_permuted(checkpoint=ckpt, permutation_batch=4, keep_null=True)
    np.testing.assert_array_equal(resumed.null_scores_, full.null_scores_)
    np.testing.assert_array_equal(resumed.p_fwe_, full.p_fwe_)
    assert not ckpt.exists()  # removed after a completed run


def test_checkpoint_of_another_analysis_is_refused(tmp_path):
    ckpt = tmp_path / "null.npy"
    small_permuted(checkpoint=ckpt, keep_checkpoint=True)
    with pytest.raises(ValueError, match="belongs to another analysis"):
        small_permuted(checkpoint=ckpt, estimator="gnb")


def small_dataset():
    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=2)
    return ds, ds.labels["labels"].to_numpy(), ds.labels["chunks"].to_numpy()


@pytest.mark.parametrize(
    "estimator", ["svc", "gnb", "lda", "ridge_classifier", "logistic_regression", "correlation",
                  "svc_l1"],
)  # fmt: skip
def test_pvalues_are_one_when_permutation_cannot_change_the_labels(estimator):
    from sklearn.model_selection import LeaveOneGroupOut

    ds, _, _ = small_dataset()
    n = ds.n_volumes
    groups = np.repeat(np.arange(4), n // 4)
    y = np.where(groups % 2 == 0, "face", "house")  # one class per run
    process = None
    if estimator == "svc_l1":  # scikit-learn's liblinear per sphere and fold, slow on these
        # separable training sets (22 ms a fit): 40 spheres are enough for this path
        keep = np.asarray(ds.mask_img.dataobj) != 0
        keep[tuple(np.argwhere(keep)[40:].T)] = False
        process = nib.Nifti1Image(keep.astype(np.uint8), ds.mask_img.affine)
    sl = SearchLight(mask_img=ds.mask_img, process_mask_img=process, radius=4.0, cv=LeaveOneGroupOut(),
                     estimator=estimator, n_permutations=20, random_state=0)  # fmt: skip
    sl.fit(ds.func_img, y, groups=groups)
    assert sl.permutation_info_["all arrangements enumerated"]
    assert sl.permutation_info_["permutations"] == 1
    np.testing.assert_array_equal(sl.p_values_, 1.0)
    np.testing.assert_array_equal(sl.p_fwe_, 1.0)
    assert all(c["p_fwe_cluster"] == 1.0 for c in sl.clusters_)


@pytest.mark.parametrize("estimator", ["svc", "gnb"])
def test_null_maps_are_the_maps_of_the_permuted_labels_and_pvalues_exact(estimator):
    ds, y, groups = small_dataset()
    kw = dict(mask_img=ds.mask_img, radius=4.0, cv=KFold(4), estimator=estimator)
    sl = SearchLight(n_permutations=15, random_state=5, keep_null=True, permute="samples", **kw)
    sl.fit(ds.func_img, y, groups=groups)
    assert sl.null_scores_.dtype == np.float64
    for row in (0, 7):  # a null map is the map of its labels, to the last bit
        again = SearchLight(**kw).fit(ds.func_img, sl.permuted_labels_[row], groups=groups)
        np.testing.assert_array_equal(sl.null_scores_[row], again.masked_scores_)
    # scores are multiples of 1/n_volumes here (four equal test folds): exact counts on that grid
    grid = lambda s: np.rint(np.asarray(s) * ds.n_volumes).astype(int)  # noqa: E731
    null, observed = grid(sl.null_scores_), grid(sl.masked_scores_)
    np.testing.assert_allclose(null / ds.n_volumes, sl.null_scores_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sl.p_values_, (1 + (null >= observed).sum(0)) / 16)
    np.testing.assert_array_equal(sl.p_fwe_, (1 + (null.max(1)[None] >= observed[:, None]).sum(1)) / 16)
    # ties with the observed score occur, and count (float32 storage lost them)
    assert (null == observed).any()


@pytest.mark.parametrize("smoothing", [0.0, 1.5])
@pytest.mark.parametrize("dh", ["auto", 0.05, 0.002])
@pytest.mark.parametrize("connectivity", [1, 3])
def test_tfce_equals_nilearn(dh, connectivity, smoothing):
    import warnings

    from nilearn.mass_univariate._utils import calculate_tfce
    from scipy import ndimage

    from fastsearchlight.stats import tfce

    rng = np.random.default_rng(connectivity)
    # smooth maps grow few clusters; rough ones many, merging at every threshold
    values = ndimage.gaussian_filter(rng.standard_normal((14, 12, 10)), smoothing) * 3
    structure = ndimage.generate_binary_structure(3, connectivity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn warns when it clips the number of steps
        expected = calculate_tfce(values[..., None], structure, dh=dh, two_sided_test=False)[..., 0]
    ours = tfce(values, structure, dh=dh)
    assert expected.max() > 0
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("connectivity", [1, 3])
def test_tfce_graph_of_a_mask_equals_tfce_of_the_map_it_lays_out(connectivity):
    from scipy import ndimage

    from fastsearchlight.stats import TfceGraph, tfce

    rng = np.random.default_rng(4)
    mask = rng.random((9, 8, 7)) < 0.8
    values = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0) * 4
    values[0, 0, :3] = [np.nan, np.inf, -np.inf]  # no cluster for non-finite values
    structure = ndimage.generate_binary_structure(3, connectivity)
    graph = TfceGraph.of_mask(mask, structure)
    expected = tfce(np.where(mask, values, 0.0), structure, dh=0.05)[mask]
    assert (expected > 0).sum() > 50
    for _ in range(2):  # the graph serves every map
        np.testing.assert_array_equal(graph(values[mask], dh=0.05), expected)
    np.testing.assert_array_equal(graph(-np.abs(values[mask])), 0.0)
    with pytest.raises(ValueError, match="elements"):
        graph(values.ravel())


def test_tfce_pvalues_find_a_planted_region_and_stay_silent_on_null():
    sl, ds = fit_null_searchlight(7, signal=True, n_perm=49, tfce=True)
    truth = (np.asarray(ds.truth_img.dataobj) > 0)[sl.process_mask_]
    assert (sl.p_fwe_tfce_[truth] < 0.05).mean() >= 0.6
    # TFCE's maximum-statistic p-values: from the maximum TFCE of each null map
    expected = (1 + (sl.max_tfce_null_[None, :] >= sl.tfce_[:, None]).sum(1)) / 50
    np.testing.assert_allclose(sl.p_fwe_tfce_, expected)
    assert np.asarray(sl.p_fwe_tfce_img_.dataobj).shape == sl.process_mask_.shape
    null, _ = fit_null_searchlight(3, n_perm=49, tfce=True)
    assert (null.p_fwe_tfce_ < 0.05).sum() == 0


@pytest.mark.parametrize(
    "params, message",
    [({"permute": "volumes"}, "permute"), ({"tfce_dh": 0}, "tfce_dh"), ({"tfce_dh": "fine"}, "tfce_dh"),
     ({"tfce": "yes"}, "tfce"), ({"n_permutations": 2.7}, "n_permutations")],
)  # fmt: skip
def test_permutation_parameters_are_checked_before_reading_the_data(params, message):
    # the images do not exist: the parameters are refused first
    with pytest.raises(ValueError, match=message):
        SearchLight(**params).fit("no-such-file.nii.gz", [0, 1])


def test_fingerprint_hashes_arrays_in_place_and_tells_their_values_apart():
    """The data's fingerprint (checkpoints) hashes C- and Fortran-ordered arrays (the
    searchlight's transposed voxel-major data) where they lie, and still tells any change of
    value, shape or dtype apart; other layouts are copied."""
    from fastsearchlight.stats._null_store import fingerprint

    rng = np.random.default_rng(0)
    voxel_major = rng.standard_normal((40, 12))
    X = voxel_major.T  # (samples, voxels), Fortran-ordered
    assert fingerprint(X) == fingerprint(voxel_major.copy().T)
    changed = voxel_major.copy()
    changed[7, 3] = np.nextafter(changed[7, 3], np.inf)
    assert fingerprint(changed.T) != fingerprint(X)
    assert fingerprint(voxel_major) != fingerprint(voxel_major.reshape(12, 40))
    assert fingerprint(voxel_major) != fingerprint(voxel_major.astype(np.float32))
    strided = voxel_major[:, ::2]
    assert fingerprint(strided) == fingerprint(np.ascontiguousarray(strided))
    assert fingerprint(np.zeros((0, 3))) != fingerprint(np.zeros((3, 0)))
