"""Issue 14's study outputs and options: the report opens with the answer, figures share their
cuts, -log10 p is sequential, numbers are rounded, the command line and the inputs' checksums are
recorded; --cv auto, --conditions all, --estimator-param, --fold-maps, help with examples."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from fastsearchlight.cli import main


def _write(ds, root):
    import pandas as pd

    nib.save(ds["func"], root / "bold.nii.gz")
    nib.save(ds["mask"], root / "mask.nii.gz")
    pd.DataFrame({"labels": ds["y"], "chunks": ds["groups"]}).to_csv(
        root / "labels.tsv", sep="\t", index=False
    )
    return [str(root / n) for n in ("bold.nii.gz", "labels.tsv", "mask.nii.gz")]


@pytest.fixture
def study_files(make_dataset, tmp_path):
    return _write(make_dataset(n_classes=3), tmp_path)


def _run(study_files, out, *extra):
    func, labels, mask = study_files
    argv = ["run", "--func", func, "--labels", labels, "--mask", mask, "--radius", "4", "--out", str(out), "--quiet",
            *extra]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "summary.json").read_text()), argv


def test_options_reach_the_searchlight(study_files, tmp_path):
    """--conditions all, --estimator-param, --fold-maps and the default cv give the map of
    SearchLight called with the same parameters."""
    from sklearn.model_selection import LeaveOneGroupOut

    from fastsearchlight import SearchLight
    from fastsearchlight._study_inputs import read_inputs
    from fastsearchlight.study import StudyConfig

    summary, argv = _run(study_files, tmp_path / "out", "--conditions", "all", "--estimator", "logistic_regression",
                         "--estimator-param", "C=0.05", "--fold-maps")  # fmt: skip
    params = summary["parameters"]
    assert params["conditions"] is None and params["estimator_args"] == {"C": 0.05}
    assert params["cv_splitter"] == "LeaveOneGroupOut()" and params["n_folds"] == 4
    assert sorted(summary["data"]["volumes per condition"]) == ["cat", "face", "house"]
    config = StudyConfig(conditions=None, radius=4.0)
    inputs = read_inputs(*study_files[:3], None, config, False)
    sl = SearchLight(inputs.mask_img, radius=4.0, estimator="logistic_regression", estimator_args={"C": 0.05},
                     cv=LeaveOneGroupOut()).fit(inputs.func_sel, inputs.y, groups=inputs.groups)  # fmt: skip
    np.testing.assert_array_equal(nib.load(tmp_path / "out" / "searchlight_scores.nii.gz").get_fdata(),
                                  sl.scores_img_.get_fdata())  # fmt: skip
    folds = nib.load(tmp_path / "out" / "fold_scores.nii.gz")
    assert folds.shape[3] == 4
    np.testing.assert_array_equal(folds.get_fdata(), sl.fold_scores_img_.get_fdata())
    # the command line and a checksum of each input
    assert summary["command line"] == "fastsearchlight " + " ".join(argv)
    for path in study_files:
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
        assert summary["data"]["input checksums"][path] == f"sha256:{digest}"


def test_cv_auto_without_runs_is_kfold(study_files, tmp_path):
    summary, _ = _run(study_files, tmp_path / "out", "--group-column", "none")
    assert summary["parameters"]["cv_splitter"].startswith("KFold(n_splits=4")


@pytest.mark.parametrize("value", ["C", "=3", "C 0.1"])
def test_bad_estimator_param_is_one_line(study_files, tmp_path, capsys, value):
    func, labels, mask = study_files
    code = main(["run", "--func", func, "--labels", labels, "--mask", mask, "--estimator-param", value,
                 "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "NAME=VALUE" in err and len(err.splitlines()) == 1


def test_report_opens_with_the_answer(study_files, tmp_path):
    summary, _ = _run(study_files, tmp_path / "out", "--permutations", "19", "--estimator", "gnb")
    html = (tmp_path / "out" / "report.html").read_text()
    body = html[html.index("<main>") :]
    first = body.index("<h2>")
    assert body[first:].startswith("<h2>Answer</h2>")
    answer = body[first : body.index("<h2>", first + 1)]
    for name in ("searchlight.png", "searchlight_fwe.png", "searchlight_clusters.png", "score_histogram.png"):
        assert f'src="{name}"' in answer, name
    assert 'src="f_scores.png"' not in answer and 'src="f_scores.png"' in html
    best = summary["results"]["max score"]
    assert f"Best accuracy {best:.2f}" in answer
    assert html.count("<h2>Clusters (") == 1 and "Top regions" not in html
    # rounded: no number in the tables with more than 4 significant digits after the point
    import re

    tables = html[html.index("<h2>Clusters (") :]
    tables = tables[: tables.index("</table>")]
    assert not re.search(r"\d\.\d{4,}", tables)


def test_files_follow_the_umask(study_files, tmp_path):
    import os

    old = os.umask(0o027)
    try:
        _run(study_files, tmp_path / "out")
    finally:
        os.umask(old)
    for name in ("searchlight_scores.nii.gz", "report.html", "summary.json", "searchlight.png"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o640, name


@pytest.mark.parametrize("command", ["run", "demo", "group", "batch", "simulate", "haxby"])
def test_help_shows_defaults_and_an_example(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "example" in out and f"fastsearchlight {command}" in out
    if command in ("run", "demo"):
        assert "auto (default: logo" in out and "(default 0)" in out
        assert "zscore_sample (default" in out
    if command == "group":  # a default the help text did not say is added
        assert "seed of the sign flips (default: 0)" in " ".join(out.split())


def test_study_figures_share_their_cuts(study_files, tmp_path, monkeypatch):
    """Every map figure of a study (map, corrected maps, F-test) cuts at the same place:
    through the family-wise significant spheres when there are, else the map."""
    import nilearn.plotting

    from fastsearchlight import plotting

    calls = []
    original = nilearn.plotting.plot_img
    monkeypatch.setattr(
        nilearn.plotting, "plot_img", lambda img, **kw: calls.append(kw) or original(img, **kw)
    )
    summary, _ = _run(study_files, tmp_path / "out", "--permutations", "19", "--estimator", "gnb",
                      "--conditions", "face", "house")  # fmt: skip
    assert len(calls) == 4  # map, voxel FWE, cluster FWE, F-test
    assert all(c["cut_coords"] == calls[0]["cut_coords"] for c in calls)
    p_fwe = 10 ** -nib.load(tmp_path / "out" / "p_fwe.nii.gz").get_fdata()
    scores = nib.load(tmp_path / "out" / "searchlight_scores.nii.gz")
    kept = nib.Nifti1Image(np.where(p_fwe < 0.05, scores.get_fdata(), 0.0), scores.affine)
    if summary["permutation test"]["spheres with FWE p < 0.05 (max statistic)"]:
        assert calls[0]["cut_coords"] == plotting.map_cuts(kept)[1]
    else:
        assert calls[0]["cut_coords"] == plotting.map_cuts(scores)[1]


@pytest.mark.parametrize("with_means", [True, False])
def test_group_figures_have_a_background(tmp_path, with_means, monkeypatch):
    import nilearn.plotting

    from fastsearchlight.group import run_group

    rng = np.random.default_rng(0)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    maps = []
    for s in range(4):
        folder = tmp_path / f"sub-{s}"
        folder.mkdir()
        nib.save(nib.Nifti1Image((0.55 + 0.05 * rng.standard_normal((6, 7, 5))).astype(np.float32), affine),
                 folder / "searchlight_scores.nii.gz")  # fmt: skip
        if with_means:
            nib.save(nib.Nifti1Image(rng.uniform(100, 200, (6, 7, 5)).astype(np.float32), affine),
                     folder / "mean_img.nii.gz")  # fmt: skip
        maps.append(folder / "searchlight_scores.nii.gz")
    calls = []
    original = nilearn.plotting.plot_img
    monkeypatch.setattr(
        nilearn.plotting, "plot_img", lambda img, **kw: calls.append(kw) or original(img, **kw)
    )
    summary = run_group(maps, tmp_path / "group", n_permutations=16, quiet=True)
    expected = "mean of the subjects' mean images" if with_means else "nilearn's MNI152 template"
    assert summary["data"]["figure background"] == expected
    assert len(calls) == 2 and all(c["bg_img"] is not None and c["colorbar"] for c in calls)
    assert calls[0]["cut_coords"] == calls[1]["cut_coords"] and calls[1]["cmap"] == "viridis"
    if with_means:
        mean = np.mean([nib.load(m.parent / "mean_img.nii.gz").get_fdata() for m in maps], axis=0)
        np.testing.assert_allclose(calls[0]["bg_img"].get_fdata(), mean, rtol=1e-6)
