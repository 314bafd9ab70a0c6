"""Prevalence inference (Allefeld, Goergen & Haynes 2016): small cases by hand, simulations
with known prevalence, and the command line on study folders."""

import itertools
import json

import nibabel as nib
import numpy as np
import pytest

from fastsearchlight.prevalence import gamma0_bound, prevalence_inference, prevalence_p


def test_gamma0_is_where_the_majority_null_is_rejected_at_alpha():
    for n in (2, 5, 20):
        for p in (1e-4, 1e-3, 0.01):
            g = gamma0_bound(np.array([p]), 0.05, n)[0]
            assert 0 < g < 1
            # the majority null gamma <= g has p-value alpha exactly (eq. 24 solved for gamma0)
            assert prevalence_p(np.array([p]), g, n)[0] == pytest.approx(0.05, rel=1e-10)
    assert prevalence_p(np.array([0.2]), 0.0, 3)[0] == pytest.approx(0.2)  # gamma0 = 0: global null
    assert gamma0_bound(np.array([0.05, 0.5]), 0.05, 4).tolist() == [0.0, 0.0]


def test_small_case_by_hand():
    # 2 subjects, 2 voxels; each has 2 null maps beside its observed one: 3 x 3 = 9 combinations
    observed = [np.array([0.8, 0.5]), np.array([0.7, 0.6])]
    null = [np.array([[0.5, 0.6], [0.4, 0.4]]), np.array([[0.6, 0.5], [0.75, 0.3]])]
    res = prevalence_inference(observed, null, n_permutations=100)
    assert res.exhaustive and res.n_second_level == 9
    sets = [np.vstack([o, z]) for o, z in zip(observed, null)]
    m = np.array([np.minimum(sets[0][i], sets[1][j]) for i, j in itertools.product(range(3), range(3))])
    m_obs = np.minimum(*observed)
    np.testing.assert_array_equal(res.min_statistic, [0.7, 0.5])
    np.testing.assert_allclose(res.p_global, (m >= m_obs).mean(0))
    np.testing.assert_allclose(res.p_global_fwe, (m.max(1)[:, None] >= m_obs[None]).mean(0))
    # voxel 0: min(0.8, 0.7) and min(0.8, 0.75) reach the observed 0.7 -> 2/9
    assert res.p_global[0] == pytest.approx(2 / 9)
    np.testing.assert_allclose(res.gamma0, gamma0_bound(res.p_global_fwe, 0.05, 2))


def test_known_prevalence_is_bounded_and_found():
    rng = np.random.default_rng(0)
    n_subjects, n_voxels, n_null = 10, 300, 200
    everyone = slice(0, 100)  # effect in every subject
    some = slice(100, 200)  # effect in 3 of 10 subjects
    observed, null = [], []
    for k in range(n_subjects):
        z = 0.5 + 0.04 * rng.standard_normal((n_null, n_voxels))
        o = 0.5 + 0.04 * rng.standard_normal(n_voxels)
        o[everyone] += 0.3
        if k < 3:
            o[some] += 0.3
        observed.append(o)
        null.append(z)
    res = prevalence_inference(observed, null, n_permutations=10000, random_state=1)
    assert not res.exhaustive
    assert res.gamma0_max == pytest.approx(gamma0_bound(np.array([1e-4]), 0.05, 10)[0])
    # where everyone has it: the largest bound the permutations allow, above one half
    assert np.all(res.gamma0[everyone] > 0.5)
    np.testing.assert_allclose(res.gamma0[everyone], res.gamma0_max)
    # where 30% have it, a majority is never claimed; where nobody has it, nothing
    assert np.all(res.gamma0[some] < 0.3)
    assert np.all(res.gamma0[200:] == 0)


def test_prevalence_from_study_folders(tmp_path, capsys):
    from fastsearchlight.cli import main
    from fastsearchlight.simulate import simulate_haxby_like, write_dataset

    folders = []
    for s in range(3):
        ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0,
                                 effect_size=12.0, random_state=s, design="blocked", block_length=3)  # fmt: skip
        write_dataset(ds, tmp_path / f"data{s}")
        out = tmp_path / f"sub-{s}"
        assert main(["run", "--func", str(tmp_path / f"data{s}" / "bold.nii.gz"),
                     "--labels", str(tmp_path / f"data{s}" / "labels.txt"),
                     "--mask", str(tmp_path / f"data{s}" / "mask.nii.gz"), "--estimator", "gnb",
                     "--radius", "4", "--permutations", "20", "--cv", "logo", "--quiet",
                     "--out", str(out)]) == 0  # fmt: skip
        null = np.load(out / "null_scores.npy")
        assert null.dtype == np.float64 and null.shape[0] == 20
        folders.append(str(out))
    assert not list(tmp_path.glob("sub-*/.fastsearchlight-permutations*"))  # checkpoint moved
    capsys.readouterr()
    out = tmp_path / "prevalence"
    assert main(["group", "--prevalence", *folders, "--permutations", "2000", "--out", str(out)]) == 0
    assert "prevalence gamma0" in capsys.readouterr().out
    for name in ("p_global.nii.gz", "p_global_fwe.nii.gz", "prevalence_gamma0.nii.gz", "report.html"):
        assert (out / name).is_file()
    gamma = nib.load(out / "prevalence_gamma0.nii.gz").get_fdata()
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= gamma.max() <= summary["results"]["largest gamma0 these permutations can reject"] + 1e-4
    # a folder without null maps is one clear line
    assert main(["group", "--prevalence", folders[0], str(tmp_path / "data0"), "--out",
                 str(tmp_path / "p2")]) == 2  # fmt: skip
    assert "run the subject's study with --permutations" in capsys.readouterr().err
