"""``fastsearchlight rsa``: outputs, their agreement with the estimator, errors, group level."""

import json

import nibabel as nib
import numpy as np
import pytest
from rsa_cases import design, volume

from fastsearchlight import RSASearchLight
from fastsearchlight.cli import main


@pytest.fixture
def study(tmp_path):
    conditions, runs = design(n_conditions=4, n_runs=3, per_run=2, seed=2, names="dcba")
    img, mask = volume(conditions, shape=(6, 6, 5), seed=2)
    img.to_filename(tmp_path / "bold.nii.gz")
    mask.to_filename(tmp_path / "mask.nii.gz")
    (tmp_path / "labels.txt").write_text(
        "labels chunks\n" + "".join(f"{c} {r}\n" for c, r in zip(conditions, runs)) + "rest 1\n"
    )
    extra = np.concatenate([img.get_fdata(), img.get_fdata()[..., :1]], axis=3).astype(np.float32)
    nib.Nifti1Image(extra, img.affine).to_filename(tmp_path / "bold.nii.gz")  # one "rest" volume more
    rng = np.random.default_rng(0)
    # model "two" given as a square RDM in the order d, c, b, a
    square = rng.random((4, 4))
    square = square + square.T
    np.savez(tmp_path / "models.npz", one=rng.random(6), two=square, conditions=np.array(list("dcba")))
    return tmp_path, img, mask, conditions, runs, square


def _args(path, out, *extra):
    return ["rsa", "--func", str(path / "bold.nii.gz"), "--labels", str(path / "labels.txt"),
            "--mask", str(path / "mask.nii.gz"), "--conditions", "a", "b", "c", "d",
            "--models", str(path / "models.npz"), "--radius", "4", "--out", str(out), "--quiet", *extra]  # fmt: skip


def test_rsa_command_outputs(study, capsys):
    path, img, mask, conditions, runs, square = study
    out = path / "out"
    assert main(_args(path, out, "--noise", "diag", "--permutations", "30", "--comparison", "corr")) == 0
    assert "spheres in" in capsys.readouterr().out
    files = {p.name for p in out.iterdir()}
    assert {"rdms.npy", "rdms.json", "model_one.nii.gz", "model_two.nii.gz", "p_fwe_two.nii.gz",
            "best_rdm.png", "model_one.png", "report.html", "summary.json"} <= files  # fmt: skip
    assert not [n for n in files if n.startswith(".")]  # no staging folder, no lock
    sl = RSASearchLight(mask, radius=4.0, method="crossnobis", noise="diag").fit(img, conditions, runs)
    np.testing.assert_array_equal(np.load(out / "rdms.npy"), sl.rdms_)
    info = json.loads((out / "rdms.json").read_text())
    assert info["conditions"] == ["a", "b", "c", "d"] and info["pairs"][0] == ["a", "b"]
    # the square model, given in the order d c b a, reordered to a b c d
    order = [3, 2, 1, 0]
    rows, cols = np.triu_indices(4, 1)
    expected = sl.model_fit(square[np.ix_(order, order)][rows, cols], "corr")[0]
    got = nib.load(out / "model_two.nii.gz").get_fdata()[sl.process_mask_]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    test = sl.permutation_test(square[np.ix_(order, order)][rows, cols], "corr", 30, 0)
    p_fwe = nib.load(out / "p_fwe_two.nii.gz").get_fdata()[sl.process_mask_]
    np.testing.assert_allclose(p_fwe, -np.log10(test.p_fwe[0]), atol=1e-12)
    # again without --force: refused in one line, nothing changed
    assert main(_args(path, out)) == 2
    assert "use --force" in capsys.readouterr().err


def test_group_on_model_maps(study, tmp_path):
    path = study[0]
    maps = []
    for seed in range(3):
        out = tmp_path / f"sub{seed}"
        assert main(_args(path, out, "--method", "euclidean", "--comparison", "cosine")) == 0
        maps.append(str(out / "model_one.nii.gz"))
    # cosine fits of positive distances lie in [0, 1]: group still tests them against 0
    fits = nib.load(maps[0]).get_fdata()
    assert fits.min() >= 0 and fits.max() <= 1
    with pytest.warns(UserWarning, match="distinct sign flips"):
        assert main(["group", *maps, "--chance", "0", "--out", str(tmp_path / "group"), "--quiet",
                     "--permutations", "20"]) == 0  # fmt: skip
    assert (tmp_path / "group" / "group_t.nii.gz").exists()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"models": "bad"}, "models file not found"),
        ({"model_shape": True}, "model 'one': model_rdms must have shape"),
        ({"condition": "zebra"}, "unknown condition"),
    ],
)
def test_rsa_command_errors(study, tmp_path, capsys, change, message):
    path = study[0]
    args = _args(path, tmp_path / "bad")
    if "models" in change:
        args[args.index("--models") + 1] = str(tmp_path / "missing.npz")
    if "model_shape" in change:
        np.savez(path / "models.npz", one=np.ones(5))
    if "condition" in change:
        args[args.index("--conditions") + 1] = "zebra"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
