"""Cleaning of the volumes run by run: the same as nilearn.signal.clean run by hand."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def series():
    rng = np.random.default_rng(3)
    n_runs, n = 3, 30
    runs = np.repeat(np.arange(n_runs), n)
    t = np.arange(n_runs * n)
    data = 100 + rng.standard_normal((n_runs * n, 12)) + 0.05 * t[:, None] + 3 * np.sin(t / 9)[:, None]
    confounds = rng.standard_normal((n_runs * n, 2))
    return data, runs, confounds


@pytest.mark.parametrize(
    "standardize, detrend, high_pass, with_confounds",
    [("zscore_sample", False, None, False), ("psc", True, 0.02, True), (None, True, None, True)],
)
def test_clean_runs_is_nilearn_clean_per_run(series, standardize, detrend, high_pass, with_confounds):
    from nilearn.signal import clean

    from fastsearchlight.cleaning import Cleaning, clean_runs

    data, runs, confounds = series
    confounds = confounds if with_confounds else None
    got = clean_runs(data, runs, Cleaning(standardize, detrend, high_pass), confounds=confounds, t_r=2.0)
    expected = np.vstack([
        clean(data[runs == r], detrend=detrend, standardize=standardize, high_pass=high_pass, t_r=2.0,
              confounds=None if confounds is None else confounds[runs == r])
        for r in np.unique(runs)
    ])  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert not np.allclose(got, data, atol=1e-3)  # something was done
    # and nilearn's own run handling (its filter one voxel at a time) gives the same values
    whole = clean(data, runs=runs, detrend=detrend, standardize=standardize, high_pass=high_pass, t_r=2.0,
                  confounds=confounds)  # fmt: skip
    np.testing.assert_array_equal(got, whole.astype(np.float32))


def test_runs_out_of_order_keep_each_volume_in_its_place(series):
    from nilearn.signal import clean

    from fastsearchlight.cleaning import Cleaning, clean_runs

    data, runs, _ = series
    runs = np.array([2, 0, 1])[runs]  # the first volumes belong to the last run
    got = clean_runs(data, runs, Cleaning("zscore_sample", True, 0.02), t_r=2.0)
    for r in range(3):
        by_hand = clean(data[runs == r], detrend=True, standardize="zscore_sample", high_pass=0.02, t_r=2.0)
        np.testing.assert_array_equal(got[runs == r], by_hand.astype(np.float32))


def test_no_cleaning_leaves_the_data(series):
    from fastsearchlight.cleaning import Cleaning, clean_runs

    data, runs, _ = series
    np.testing.assert_array_equal(
        clean_runs(data, runs, Cleaning(None, False, None)), data.astype(np.float32)
    )


def test_study_cleans_each_run_before_selecting(make_dataset, tmp_path):
    """--detrend --high-pass --confounds TABLE on a 4D file: the analysed volumes are the runs
    cleaned by nilearn.signal.clean (every volume of the run), then selected; recorded."""
    from nilearn.signal import clean

    from fastsearchlight._study_inputs import read_inputs
    from fastsearchlight.study import StudyConfig, run_study

    ds = make_dataset(n_per_class=45)
    n = ds["func"].shape[3]
    ds["groups"] = np.repeat(np.arange(3), n // 3)  # three runs of 30 volumes
    labels = np.where(np.arange(n) % 6 == 5, "rest", ds["y"])  # volumes left out, still cleaned
    pd.DataFrame({"labels": labels, "chunks": ds["groups"]}).to_csv(
        tmp_path / "labels.tsv", sep="\t", index=False
    )
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.standard_normal((n, 3)), columns=["a", "b", "c"]).to_csv(
        tmp_path / "confounds.tsv", sep="\t", index=False
    )
    func = ds["func"]
    func.header.set_zooms(func.header.get_zooms()[:3] + (2.0,))
    nib.save(func, tmp_path / "bold.nii.gz")
    nib.save(ds["mask"], tmp_path / "mask.nii.gz")
    config = StudyConfig(conditions=["face", "house"], detrend=True, high_pass=0.01,
                         confounds=str(tmp_path / "confounds.tsv"), radius=4.0, estimator="gnb")  # fmt: skip
    inputs = read_inputs(tmp_path / "bold.nii.gz", tmp_path / "labels.tsv", tmp_path / "mask.nii.gz", None, config,
                         False)  # fmt: skip
    mask = np.asarray(ds["mask"].dataobj) > 0
    X = np.asarray(func.dataobj)[mask].T.astype(np.float64)
    conf = pd.read_csv(tmp_path / "confounds.tsv", sep="\t").to_numpy()
    keep = np.isin(labels, ["face", "house"])
    expected = np.vstack([
        clean(X[ds["groups"] == r], detrend=True, standardize="zscore_sample", high_pass=0.01, t_r=2.0,
              confounds=conf[ds["groups"] == r])[keep[ds["groups"] == r]]
        for r in np.unique(ds["groups"])
    ])  # fmt: skip
    got = np.asarray(inputs.func_sel.dataobj)[mask].T
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    summary = run_study(tmp_path / "bold.nii.gz", tmp_path / "labels.tsv", tmp_path / "mask.nii.gz",
                        tmp_path / "out", config=config, quiet=True)  # fmt: skip
    recorded = json.loads((tmp_path / "out" / "summary.json").read_text())["data"]["cleaning"]
    assert recorded["detrend"] is True and recorded["high-pass (Hz)"] == 0.01
    assert recorded["standardize"] == "zscore_sample" and recorded["confounds"].endswith("confounds.tsv")
    assert summary["data"]["cleaning"] == recorded


def test_high_pass_needs_a_repetition_time(series):
    from fastsearchlight.cleaning import Cleaning, clean_runs
    from fastsearchlight.io import InputError

    data, runs, _ = series
    with pytest.raises(InputError, match="repetition time"):
        clean_runs(data, runs, Cleaning(high_pass=0.01), t_r=None)


def test_one_run_label_per_volume(series):
    from fastsearchlight.cleaning import Cleaning, clean_runs
    from fastsearchlight.io import InputError

    data, runs, _ = series
    with pytest.raises(InputError, match="89 run labels for 90 volumes"):
        clean_runs(data, runs[1:], Cleaning())
