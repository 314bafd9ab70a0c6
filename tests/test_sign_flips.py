"""The group level's sign-flipping test: against brute force and against nilearn."""

import itertools
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fastsearchlight.sign_flips import one_sample_t, sign_flip_test, sign_patterns


def blob_data(n_subjects, seed=0, effect=0.1, shape=(7, 8, 6)):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    blob = np.zeros(shape, dtype=bool)
    blob[2:5, 2:5, 2:4] = True
    data = 0.03 * rng.standard_normal((n_subjects,) + shape)
    data[:, blob] += effect
    return data[:, mask], mask, blob[mask]


def test_few_subjects_use_every_sign_pattern_and_match_brute_force():
    data, mask, _ = blob_data(5)
    res = sign_flip_test(data, mask, n_permutations=1000, cluster_threshold=0.01, with_tfce=True)
    assert res.exhaustive and res.n_permutations == 32
    # brute force: every pattern, t by scipy's definition
    from scipy import stats

    t_obs = stats.ttest_1samp(data, 0.0).statistic
    np.testing.assert_allclose(res.t, t_obs, rtol=1e-10)
    max_t = np.array([
        stats.ttest_1samp(np.array(s)[:, None] * data, 0.0).statistic.max()
        for s in itertools.product((1, -1), repeat=5)
    ])  # fmt: skip
    expected = (max_t[None, :] >= t_obs[:, None] - 1e-9).sum(1) / 32
    np.testing.assert_array_equal(res.p_fwe, expected)
    assert res.p_fwe.min() == pytest.approx(1 / 32)  # the smallest p of an exact test


def test_three_subjects_give_eight_flips_and_say_so(tmp_path):
    from fastsearchlight.group import run_group

    paths = []
    data, mask, _ = blob_data(3)
    for s, row in enumerate(data):
        vol = np.zeros(mask.shape)
        vol[mask] = 0.5 + row
        paths.append(tmp_path / f"s{s}.nii.gz")
        nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), paths[-1])
    with pytest.warns(UserWarning, match="only 8 distinct sign flips"):
        summary = run_group(paths, tmp_path / "g", n_permutations=5000, quiet=True)
    assert summary["sign flips"] == {
        "used": 8, "distinct possible": 8, "all enumerated": True, "smallest possible p": 0.125,
        "cluster-forming t": pytest.approx(22.327, abs=1e-3),
    }  # fmt: skip
    logp = nib.load(tmp_path / "g" / "group_logp_fwe.nii.gz").get_fdata()
    assert logp.max() == pytest.approx(-np.log10(0.125), abs=1e-6)  # stored as float32


def test_t_map_equals_nilearn_and_fwe_pvalues_agree():
    from nilearn.glm.second_level import non_parametric_inference
    from nilearn.maskers import NiftiMasker

    data, mask, blob = blob_data(12, seed=3, effect=0.04)
    affine = np.eye(4)
    imgs = []
    for row in data:
        vol = np.zeros(mask.shape)
        vol[mask] = row
        imgs.append(nib.Nifti1Image(vol, affine))
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = non_parametric_inference(
            imgs, design_matrix=pd.DataFrame({"intercept": np.ones(12)}), mask=mask_img,
            model_intercept=True, n_perm=4000, two_sided_test=False, random_state=0,
            threshold=0.01,
        )  # fmt: skip
    masker = NiftiMasker(mask_img, standardize=None).fit()
    ours = sign_flip_test(data, mask, n_permutations=4000, cluster_threshold=0.01)
    assert not ours.exhaustive  # 2**12 = 4096 > 4000
    np.testing.assert_allclose(ours.t, np.ravel(masker.transform(ref["t"])), rtol=1e-10)
    p_ref = 10 ** -np.ravel(masker.transform(ref["logp_max_t"]))
    # both are Monte Carlo estimates from 4000 flips: within a few binomial standard errors
    se = np.sqrt(p_ref * (1 - p_ref) / 4000) + 1e-3
    assert np.all(np.abs(ours.p_fwe - p_ref) < 5 * se)
    p_size_ref = 10 ** -np.ravel(masker.transform(ref["logp_max_size"]))
    se = np.sqrt(p_size_ref * (1 - p_size_ref) / 4000) + 1e-3
    assert np.all(np.abs(ours.p_cluster_fwe - p_size_ref) < 5 * se)
    assert (ours.p_fwe[blob] < 0.05).any()


def test_sign_patterns_are_seeded_and_t_handles_constant_voxels():
    a, ex = sign_patterns(20, 100, 1)
    b, _ = sign_patterns(20, 100, 1)
    assert not ex and a.shape == (100, 20) and np.array_equal(a, b)
    t = one_sample_t(np.ones((4, 3)))
    assert np.all(t == 0)
    with pytest.raises(ValueError, match="at least one permutation"):
        sign_patterns(4, 0, 0)


def test_threads_and_chunks_do_not_change_the_test():
    data, mask, _ = blob_data(9, seed=3, effect=0.03)
    kwargs = dict(n_permutations=100, random_state=0, cluster_threshold=0.05, with_tfce=True)
    one = sign_flip_test(data, mask, n_jobs=1, chunk=32, **kwargs)
    assert (one.p_cluster_fwe < 1).any() and (one.tfce > 0).any()
    for n_jobs, chunk in [(2, 32), (2, 7), (1, 1000)]:
        other = sign_flip_test(data, mask, n_jobs=n_jobs, chunk=chunk, **kwargs)
        for name in ("t", "p_fwe", "p_cluster_fwe", "tfce", "p_fwe_tfce"):
            np.testing.assert_array_equal(getattr(other, name), getattr(one, name), err_msg=name)
        # BLAS may round a product of another number of patterns differently
        np.testing.assert_allclose(other.max_t_null, one.max_t_null, rtol=1e-13)


def test_t_is_zero_where_every_subject_agrees():
    from scipy import stats

    data = np.array([[0.0, 1.0, 2.0, 0.5], [0.0, 1.0, 3.0, -0.5], [0.0, 1.0, 4.0, 0.25]])
    t = one_sample_t(data, np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0]]))
    assert t.shape == (2, 4)
    # no spread: no evidence (not inf or nan), under every pattern for zeros
    np.testing.assert_array_equal(t[:, 0], 0.0)
    assert t[0, 1] == 0.0
    np.testing.assert_allclose(t[0, 2:], stats.ttest_1samp(data[:, 2:], 0.0).statistic, rtol=1e-12)
    flipped = data * np.array([1.0, -1.0, 1.0])[:, None]
    np.testing.assert_allclose(t[1, 1:], stats.ttest_1samp(flipped[:, 1:], 0.0).statistic, rtol=1e-12)
