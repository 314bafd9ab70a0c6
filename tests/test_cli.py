"""The command line end to end: the shipped slice, a simulated set, and bad input."""

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from fastsearchlight.cli import main
from fastsearchlight.datasets import haxby_slice
from fastsearchlight.simulate import simulate_haxby_like, write_dataset
from fastsearchlight.study import OUTPUT_NAMES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_outputs(out, reference_affine):
    for name in OUTPUT_NAMES:
        assert (out / name).is_file(), name
    for name in ("searchlight_scores.nii.gz", "f_scores.nii.gz", "mean_img.nii.gz"):
        img = nib.load(out / name)
        np.testing.assert_allclose(img.affine, reference_affine, atol=1e-5)
        assert np.all(np.isfinite(img.get_fdata()))
    for name in ("searchlight.png", "f_scores.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE
        from matplotlib.image import imread

        pixels = imread(out / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 0.01  # not a blank picture
    html = (out / "report.html").read_text()
    assert 'src="searchlight.png"' in html and 'src="f_scores.png"' in html
    assert not list(out.glob(".fastsearchlight-*"))  # no staging left behind
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    # the setting of nilearn's classic example: four folds, volumes not standardised (the
    # defaults are leave-one-run-out and volumes standardised per run, as nilearn's decoders)
    assert main(["demo", "--out", str(out), "--quiet", "--cv", "kfold:4", "--standardize", "none"]) == 0
    return out


def test_demo_on_the_shipped_slice(demo_out):
    files = haxby_slice()
    summary = check_outputs(demo_out, nib.load(files.func).affine)
    r = summary["results"]
    assert r["spheres"] == 530
    assert 0.8 <= r["max score"] <= 0.95  # nilearn gives about 0.88 on these data
    assert summary["data"]["volumes analysed"] == 216
    assert summary["data"]["volumes per condition"] == {"face": 108, "house": 108}
    assert summary["timings"]["searchlight"] < 60
    assert summary["software"]["fastsearchlight"]
    f = nib.load(demo_out / "f_scores.nii.gz").get_fdata()
    assert 0 < f.max() <= 10


def test_nothing_is_overwritten_without_force(demo_out, capsys):
    before = (demo_out / "summary.json").read_text()
    assert main(["demo", "--out", str(demo_out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err
    assert (demo_out / "summary.json").read_text() == before


def test_console_script_is_installed_and_forces(demo_out):
    exe = shutil.which("fastsearchlight") or str(
        __import__("pathlib").Path(sys.executable).parent / "fastsearchlight"
    )
    res = subprocess.run([exe, "demo", "--out", str(demo_out), "--quiet", "--force",
                          "--estimator", "gnb"], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "530 spheres" in res.stdout
    assert json.loads((demo_out / "summary.json").read_text())["parameters"]["estimator"] == "gnb"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    ds = simulate_haxby_like(shape=(18, 22, 18), n_regions=1, random_state=1)
    write_dataset(ds, root)
    return root, ds


def test_run_recovers_the_planted_region(simulated, tmp_path):
    root, ds = simulated
    out = tmp_path / "out"
    code = main(["run", "--func", str(root / "bold.nii.gz"), "--labels", str(root / "labels.txt"),
                 "--mask", str(root / "mask.nii.gz"), "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    check_outputs(out, ds.func_img.affine)
    scores = nib.load(out / "searchlight_scores.nii.gz").get_fdata()
    truth = np.asarray(ds.truth_img.dataobj) > 0
    mask = np.asarray(ds.mask_img.dataobj) > 0
    best = np.argsort(scores[mask])[::-1][:10]
    assert truth[mask][best].mean() >= 0.9  # the best voxels are planted ones
    # far from the region the map stays near chance
    from scipy.ndimage import distance_transform_edt

    far = mask & (distance_transform_edt(~truth, sampling=ds.func_img.header.get_zooms()[:3]) > 12)
    assert abs(np.mean(scores[far]) - 0.5) < 0.03
    assert np.quantile(scores[far], 0.99) < 0.7


def test_run_reads_tsv_and_csv_tables(simulated, tmp_path):
    root, ds = simulated
    for sep, ext in (("\t", "tsv"), (",", "csv")):
        table = tmp_path / f"events.{ext}"
        ds.labels.rename(columns={"labels": "trial_type", "chunks": "run"}).to_csv(
            table, sep=sep, index=False
        )
        out = tmp_path / ext
        code = main(["run", "--func", str(root / "bold.nii.gz"), "--labels", str(table),
                     "--mask", str(root / "mask.nii.gz"), "--label-column", "trial_type",
                     "--group-column", "run", "--cv", "logo", "--estimator", "lda",
                     "--out", str(out), "--quiet"])  # fmt: skip
        assert code == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["parameters"]["n_folds"] == 12


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--func": "missing.nii.gz"}, "not found"),
        ({"--conditions": ["face", "dog"]}, "unknown condition"),
        ({"--label-column": "trial"}, "label column 'trial'"),
        ({"--mask": "SMALL"}, "shape"),
        ({"--cv": "bogus:3"}, "unknown cv"),
        ({"--mask": ["a.nii.gz", "b.nii.gz"]}, "--mask takes one NIfTI mask for volumes"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(simulated, tmp_path, capsys, change, message):
    root, ds = simulated
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), ds.func_img.affine), small)
    args = {"--func": str(root / "bold.nii.gz"), "--labels": str(root / "labels.txt"),
            "--mask": str(root / "mask.nii.gz")}  # fmt: skip
    for key, value in change.items():
        args[key] = str(tmp_path / value) if value == "missing.nii.gz" else value
    if args["--mask"] == "SMALL":
        args["--mask"] = str(small)
    argv = ["run", "--out", str(tmp_path / "out"), "--quiet"]
    for key, value in args.items():
        argv += [key] + (value if isinstance(value, list) else [value])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("fastsearchlight: error:") and message in err
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_interrupted_run_leaves_no_output(simulated, tmp_path, monkeypatch):
    from fastsearchlight import report

    root, _ = simulated

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", boom)
    out = tmp_path / "out"
    code = main(["run", "--func", str(root / "bold.nii.gz"), "--labels", str(root / "labels.txt"),
                 "--mask", str(root / "mask.nii.gz"), "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 130
    assert not out.exists()  # the folder the run created is removed again


def test_simulate_command(tmp_path):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--shape", "14", "16", "14", "--regions", "1"]) == 0
    assert (out / "bold.nii.gz").is_file() and (out / "truth.nii.gz").is_file()
    assert main(["simulate", "--out", str(out), "--shape", "14", "16", "14", "--regions", "1"]) == 2


def test_haxby_offline_says_how_to_point_at_a_copy(tmp_path, capsys):
    assert main(["haxby", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and "haxby2001" in err


def test_haxby_with_a_local_copy(simulated, tmp_path):
    """nilearn's fetcher finds a local copy laid out as it leaves downloads: nothing is fetched."""
    root, ds = simulated
    base = tmp_path / "data" / "haxby2001"
    subj = base / "subj2"
    subj.mkdir(parents=True)
    shutil.copy(root / "bold.nii.gz", subj / "bold.nii.gz")
    shutil.copy(root / "labels.txt", subj / "labels.txt")
    shutil.copy(root / "mask.nii.gz", base / "mask.nii.gz")
    for name in ("mask4_vt", "mask8b_face_vt", "mask8b_house_vt", "mask8_face_vt",
                 "mask8_house_vt", "anat"):  # fmt: skip
        shutil.copy(root / "mask.nii.gz", subj / f"{name}.nii.gz")
    (base / "MD5SUMS").write_text("")
    out = tmp_path / "out"
    code = main(["haxby", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--quiet",
                 "--estimator", "gnb"])  # fmt: skip
    assert code == 0
    check_outputs(out, ds.func_img.affine)


def test_demo_with_permutations_writes_corrected_maps(tmp_path):
    out = tmp_path / "perm"
    assert main(["demo", "--out", str(out), "--quiet", "--permutations", "20", "--estimator", "gnb"]) == 0
    for name in ("p_uncorrected.nii.gz", "p_fwe.nii.gz", "clusters.tsv", "null_distribution.png"):
        assert (out / name).is_file(), name
    logp = nib.load(out / "p_fwe.nii.gz").get_fdata()
    assert 0 <= logp.min() and logp.max() <= np.log10(21) + 1e-6
    import pandas as pd

    clusters = pd.read_csv(out / "clusters.tsv", sep="\t")
    assert list(clusters["cluster"]) == list(range(1, len(clusters) + 1))
    html = (out / "report.html").read_text()
    assert 'src="null_distribution.png"' in html and "Clusters" in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["permutation test"]["n_permutations"] == 20
    assert not list(out.glob(".fastsearchlight-permutations*"))  # checkpoint removed when done


def test_permutations_with_tfce_and_block_scheme_write_their_outputs(tmp_path):
    import json

    import nibabel as nib

    out = tmp_path / "stats"
    code = main(["demo", "--out", str(out), "--permutations", "9", "--tfce", "--quiet",
                 "--radius", "4", "--permute", "blocks"])  # fmt: skip
    assert code == 0
    logp = nib.load(out / "p_fwe_tfce.nii.gz").get_fdata()
    assert np.all(logp >= 0)
    summary = json.loads((out / "summary.json").read_text())
    test = summary["permutation test"]
    assert test["labels permuted"] == "whole blocks within runs"
    assert "spheres with TFCE FWE p < 0.05" in test
    assert summary["parameters"]["permute"] == "blocks" and summary["parameters"]["tfce"]
    # the corrected results are drawn, and there is one cluster table
    html = (out / "report.html").read_text()
    for name in ("searchlight_fwe.png", "searchlight_clusters.png", "searchlight_tfce.png"):
        assert (out / name).is_file() and f'src="{name}"' in html
    assert "Top regions" not in html and html.count("<h2>Clusters (") == 1
    # the demo's 12 runs of one face and one house block: 2**12 arrangements, 9 drawn, so a
    # peak beating every permutation shows as "<= 1/(9+1)"
    assert test["minimum achievable p"] == pytest.approx(0.1)
    assert "&lt;= 0.1" in html


def test_bad_tfce_step_is_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "x"), "--tfce-dh", "-1", "--quiet"]) == 2
    assert "--tfce-dh" in capsys.readouterr().err
