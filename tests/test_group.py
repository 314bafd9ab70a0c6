"""Group level: sign-flipping one-sample test of score maps against chance."""

import json

import nibabel as nib
import numpy as np

from fastsearchlight.cli import main


def write_maps(root, n_subjects=8, effect=0.12, seed=0, shape=(8, 9, 7)):
    rng = np.random.default_rng(seed)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    blob = np.zeros(shape, dtype=bool)
    blob[2:5, 3:6, 2:5] = True
    paths = []
    for s in range(n_subjects):
        data = 0.5 + 0.03 * rng.standard_normal(shape)
        data[blob] += effect
        p = root / f"sub-{s:02d}_scores.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), p)
        paths.append(str(p))
    return paths, blob


def test_group_finds_the_shared_effect(tmp_path):
    maps, blob = write_maps(tmp_path)
    out = tmp_path / "group"
    assert main(["group", *maps, "--out", str(out), "--permutations", "500", "--quiet"]) == 0
    logp = nib.load(out / "group_logp_fwe.nii.gz").get_fdata()
    sig = logp > -np.log10(0.05)
    assert sig[blob].mean() > 0.9
    assert sig[~blob].mean() < 0.02
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["subjects"] == 8
    html = (out / "report.html").read_text()
    assert "group_mean_scores.png" in html and "group_logp_fwe.png" in html


def test_group_null_maps_give_no_corrected_effect(tmp_path):
    maps, _ = write_maps(tmp_path, effect=0.0, seed=3)
    out = tmp_path / "group"
    assert main(["group", *maps, "--out", str(out), "--permutations", "500", "--quiet"]) == 0
    logp = nib.load(out / "group_logp_fwe.nii.gz").get_fdata()
    assert (logp > -np.log10(0.05)).sum() <= 2


def test_group_refuses_maps_in_other_spaces(tmp_path, capsys):
    maps, _ = write_maps(tmp_path, n_subjects=3)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "odd.nii.gz")
    assert main(["group", *maps, str(tmp_path / "odd.nii.gz"), "--out", str(tmp_path / "g")]) == 2
    assert "same space" in capsys.readouterr().err
    assert main(["group", maps[0], "--out", str(tmp_path / "g")]) == 2
