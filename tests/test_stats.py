"""Permutation statistics: calibration on null data, power on planted regions, resumability."""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from fastsearchlight import SearchLight
from fastsearchlight.simulate import simulate_haxby_like
from fastsearchlight.stats import NullStore, make_permutations, permutation_inference


def test_permutations_stay_within_runs_and_are_seeded():
    y = np.tile([0, 1, 0, 1, 1, 0], 4)
    groups = np.repeat(np.arange(4), 6)
    a = make_permutations(y, groups, 50, random_state=3)
    b = make_permutations(y, groups, 50, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, make_permutations(y, groups, 50, random_state=4))
    for perm in a:
        assert np.array_equal(groups[perm], groups)  # every sample stays in its run
        assert sorted(perm) == list(range(len(y)))
    assert len({tuple(p) for p in a}) == 50


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


def fit_null_searchlight(seed, n_perm=99, signal=False):
    ds = simulate_haxby_like(
        shape=(12, 14, 12) if signal else (10, 12, 10), voxel_size=(3.5, 3.75, 3.75),
        n_regions=1, region_radius_mm=7.0 if signal else 5.0,
        effect_size=12.0 if signal else 0.0, random_state=seed,
    )  # fmt: skip
    y = ds.labels["labels"].to_numpy()
    groups = ds.labels["chunks"].to_numpy()
    sl = SearchLight(mask_img=ds.mask_img, radius=5.6 if signal else 4.0, cv=KFold(4),
                     estimator="gnb", n_permutations=n_perm, random_state=seed)  # fmt: skip
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
