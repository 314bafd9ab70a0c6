"""BIDS and fMRIPrep inputs: volumes labelled by events, fMRIPrep confounds, beta series, errors.

Runs on a small simulated BIDS dataset with fMRIPrep-like derivatives (no shared data needed).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

SHAPE = (6, 7, 5)
N_RUNS = 4
N_VOLUMES = 40
T_R = 2.0
SPACE = "MNI152NLin2009cAsym"
#: volumes per block, in order, of every run (the conditions' order changes between runs)
BLOCKS = [
    ("rest", 4),
    ("A", 5),
    ("rest", 3),
    ("B", 5),
    ("rest", 3),
    ("A", 5),
    ("rest", 3),
    ("B", 5),
    ("rest", 7),
]


def _motion_confounds(rng, n: int) -> pd.DataFrame:
    cols = {}
    for name in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"):
        v = np.cumsum(rng.standard_normal(n)) * 0.05
        d = np.r_[np.nan, np.diff(v)]
        cols.update(
            {name: v, f"{name}_derivative1": d, f"{name}_power2": v**2, f"{name}_derivative1_power2": d**2}
        )
    cols["white_matter"] = rng.standard_normal(n)
    cols["csf"] = rng.standard_normal(n)
    cols["cosine00"] = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    return pd.DataFrame(cols)


def _run_events(k: int) -> pd.DataFrame:
    names = {"A": "face", "B": "house"} if k % 2 == 0 else {"A": "house", "B": "face"}
    rows, t = [], 0
    for kind, n in BLOCKS:
        if kind != "rest":
            rows.append({"onset": t * T_R, "duration": n * T_R, "trial_type": names[kind]})
        t += n
    return pd.DataFrame(rows)


def make_bids(root: Path, seed: int = 0) -> Path:
    """Raw dataset (events, a task sidecar) and fMRIPrep derivatives in ``root``."""
    rng = np.random.default_rng(seed)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-9.0, -10.0, -6.0]
    raw = root / "sub-01" / "func"
    deriv = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    raw.mkdir(parents=True)
    deriv.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "sim", "BIDSVersion": "1.8.0"}))
    (root / "task-objects_bold.json").write_text(json.dumps({"RepetitionTime": T_R}))
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    pattern = rng.standard_normal((2,) + SHAPE) * 6.0
    for k in range(N_RUNS):
        events = _run_events(k)
        data = 500.0 + 10.0 * rng.standard_normal(SHAPE + (N_VOLUMES,))
        for _, ev in events.iterrows():
            first, n = int(ev.onset / T_R), int(ev.duration / T_R)
            data[..., first : first + n] += pattern[int(ev.trial_type == "house")][..., None]
        stem = f"sub-01_task-objects_run-{k + 1:02d}"
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), raw / f"{stem}_bold.nii.gz")
        events.to_csv(raw / f"{stem}_events.tsv", sep="\t", index=False)
        drift = np.linspace(-20, 20, N_VOLUMES)
        preproc = data + drift + rng.standard_normal(SHAPE + (1,))
        nib.save(nib.Nifti1Image(preproc.astype(np.float32), affine),
                 deriv / f"{stem}_space-{SPACE}_desc-preproc_bold.nii.gz")  # fmt: skip
        nib.save(nib.Nifti1Image(mask, affine), deriv / f"{stem}_space-{SPACE}_desc-brain_mask.nii.gz")
        _motion_confounds(rng, N_VOLUMES).to_csv(
            deriv / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a"
        )
    nib.save(nib.Nifti1Image(mask, affine), root / "mask.nii.gz")
    return root


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory):
    return make_bids(tmp_path_factory.mktemp("bids") / "ds")


def _config(**kw):
    from fastsearchlight.study import StudyConfig

    kw.setdefault("radius", 4.0)
    kw.setdefault("estimator", "gnb")
    return StudyConfig(**kw)


def _labels_by_hand(root: Path, shift: float = 0.0) -> tuple[list, list]:
    """Each volume's label from the events, computed here from their definition."""
    labels, runs = [], []
    for k in range(N_RUNS):
        events = pd.read_csv(
            root / "sub-01" / "func" / f"sub-01_task-objects_run-{k + 1:02d}_events.tsv", sep="\t"
        )
        for i in range(N_VOLUMES):
            t = i * T_R
            hits = events[(events.onset + shift <= t) & (t < events.onset + events.duration + shift)]
            labels.append(hits.trial_type.iloc[0] if len(hits) else "rest")
            runs.append(f"run-{k + 1:02d}")
    return labels, runs


def test_volume_labels_by_events_and_shift():
    from fastsearchlight.bids import volume_labels

    events = pd.DataFrame(
        {"onset": [2.0, 7.0, 8.0], "duration": [4.0, 2.0, 3.0], "trial_type": ["a", "b", "c"]}
    )
    # volumes at 0, 2, 4, 6, 8, 10 s: a covers [2, 6), b [7, 9), c [8, 11): 8 s is in b and c
    assert list(volume_labels(events, 6, 2.0)) == [None, "a", "a", None, None, "c"]
    # moved 2 s later: a [4, 8), b [9, 11), c [10, 13)
    assert list(volume_labels(events, 6, 2.0, shift=2.0)) == [None, None, "a", "a", None, None]


@pytest.mark.parametrize("shift", [0.0, 4.0])
def test_bids_volumes_give_the_map_of_the_4d_file_and_labels_table(bids_root, tmp_path, shift):
    """The dataset read through --bids is the 4D file + labels table analysis, map for map."""
    from nilearn.image import concat_imgs

    from fastsearchlight.bids_study import BidsSpec, run_bids_study
    from fastsearchlight.study import run_study

    labels, runs = _labels_by_hand(bids_root, shift)
    pd.DataFrame({"labels": labels, "chunks": runs}).to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    bolds = sorted((bids_root / "sub-01" / "func").glob("*_bold.nii.gz"))
    nib.save(concat_imgs([str(b) for b in bolds]), tmp_path / "bold.nii.gz")
    config = _config(conditions=["face", "house"])
    table = run_study(tmp_path / "bold.nii.gz", tmp_path / "labels.tsv", bids_root / "mask.nii.gz",
                      tmp_path / "table", config=config, quiet=True)  # fmt: skip
    spec = BidsSpec(bids_root, "01", "objects", shift=shift)
    bids = run_bids_study(spec, tmp_path / "bids", mask=bids_root / "mask.nii.gz", config=config, quiet=True)
    a = nib.load(tmp_path / "table" / "searchlight_scores.nii.gz").get_fdata()
    b = nib.load(tmp_path / "bids" / "searchlight_scores.nii.gz").get_fdata()
    np.testing.assert_array_equal(a, b)
    assert bids["data"]["volumes per condition"] == table["data"]["volumes per condition"]
    assert (
        bids["parameters"]["cv_splitter"] == "LeaveOneGroupOut()" and bids["parameters"]["n_folds"] == N_RUNS
    )
    assert set(bids["data"]["input checksums"]) >= {str(b) for b in bolds}


def test_fmriprep_confounds_cleaned_as_nilearn(bids_root, tmp_path):
    """Preprocessed images, brain masks and the 'simple' confounds, cleaned run by run as
    nilearn.signal.clean does by hand."""
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.signal import clean

    from fastsearchlight.bids import find_runs, load_run_confounds
    from fastsearchlight.bids_study import BidsSpec, read_bids_inputs

    deriv = bids_root / "derivatives" / "fmriprep"
    subject = find_runs(bids_root, "sub-01", "objects", space=SPACE, derivatives=deriv)
    assert [r.bold.parent for r in subject.runs] == [deriv / "sub-01" / "func"] * N_RUNS
    assert [r.t_r for r in subject.runs] == [T_R] * N_RUNS  # from the dataset's task sidecar
    config = _config(confounds="simple", detrend=True, conditions=None)
    load_run_confounds(subject, "simple")
    spec = BidsSpec(bids_root, "01", "objects", space=SPACE, derivatives=deriv)
    inputs, _ = read_bids_inputs(subject, spec, None, config, tmp_path)
    mask = np.asarray(nib.load(bids_root / "mask.nii.gz").dataobj) > 0
    expected, labels = [], []
    hand_labels, _ = _labels_by_hand(bids_root)
    for k, run in enumerate(subject.runs):
        data = np.asarray(nib.load(run.bold).dataobj)[mask].T
        confounds, _ = load_confounds_strategy(str(run.bold), denoise_strategy="simple")
        cleaned = clean(data.astype(np.float64), detrend=True, standardize="zscore_sample",
                        confounds=confounds.to_numpy(), t_r=T_R)  # fmt: skip
        keep = np.array(hand_labels[k * N_VOLUMES : (k + 1) * N_VOLUMES]) != "rest"
        expected.append(cleaned[keep])
        labels += list(np.array(hand_labels[k * N_VOLUMES : (k + 1) * N_VOLUMES])[keep])
    got = np.asarray(inputs.func_sel.dataobj)[mask].T
    np.testing.assert_allclose(got, np.vstack(expected), rtol=1e-5, atol=1e-5)
    assert list(inputs.y) == labels  # 'all': every labelled volume (rest is no event here)
    assert inputs.details["cleaning"]["confounds"] == "simple"


def _first_level(run_path: Path, mask, events):
    import warnings

    from nilearn.glm.first_level import FirstLevelModel

    model = FirstLevelModel(t_r=T_R, mask_img=mask, hrf_model="glover", drift_model="cosine", high_pass=0.01,
                            noise_model="ar1", minimize_memory=True)  # fmt: skip
    with warnings.catch_warnings():  # nilearn notes that the given mask is used
        warnings.simplefilter("ignore", RuntimeWarning)
        return model.fit(str(run_path), events=events)


def test_trial_betas_are_nilearns_lss_and_reused(bids_root, tmp_path, monkeypatch):
    from fastsearchlight import betas
    from fastsearchlight.bids_study import BidsSpec, run_bids_study

    spec = BidsSpec(bids_root, "01", "objects", samples="trials")
    mask = bids_root / "mask.nii.gz"
    summary = run_bids_study(spec, tmp_path, mask=mask, config=_config(permute="samples"), quiet=True)
    assert summary["data"]["volumes analysed"] == 4 * N_RUNS and "fitted" in summary["data"]["beta maps"]
    table = pd.read_csv(tmp_path / "betas" / "betas.tsv", sep="\t")
    assert list(table.condition[:4]) == ["face", "house", "face", "house"]
    # trial 3 of run 2, least-squares-separate, by hand
    events = pd.read_csv(bids_root / "sub-01" / "func" / "sub-01_task-objects_run-02_events.tsv", sep="\t")
    events.loc[2, "trial_type"] = "target"
    model = _first_level(
        bids_root / "sub-01" / "func" / "sub-01_task-objects_run-02_bold.nii.gz", str(mask), events
    )
    expected = model.compute_contrast("target", output_type="effect_size").get_fdata()
    row = table[(table.run == "run-02")].iloc[2]
    got = nib.load(tmp_path / "betas" / row.file).get_fdata()[..., row.volume]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)
    # a rerun reads the maps back: no model is fitted
    monkeypatch.setattr(betas, "fit_run_betas", lambda *a, **k: pytest.fail("refitted"))
    again = run_bids_study(
        spec, tmp_path, mask=mask, config=_config(permute="samples"), quiet=True, force=True
    )
    assert "read back" in again["data"]["beta maps"]
    assert again["results"]["max score"] == summary["results"]["max score"]


def test_condition_betas_per_run_are_nilearns(bids_root, tmp_path):
    from fastsearchlight.bids_study import BidsSpec, run_bids_study

    mask = bids_root / "mask.nii.gz"
    summary = run_bids_study(BidsSpec(bids_root, "01", "objects", samples="runs"), tmp_path, mask=mask,
                             config=_config(), quiet=True)  # fmt: skip
    assert summary["data"]["volumes per condition"] == {"face": N_RUNS, "house": N_RUNS}
    run = bids_root / "sub-01" / "func" / "sub-01_task-objects_run-03"
    events = pd.read_csv(f"{run}_events.tsv", sep="\t")
    model = _first_level(Path(f"{run}_bold.nii.gz"), str(mask), events)
    table = pd.read_csv(tmp_path / "betas" / "betas.tsv", sep="\t")
    for condition in ("face", "house"):
        row = table[(table.run == "run-03") & (table.condition == condition)].iloc[0]
        got = nib.load(tmp_path / "betas" / row.file).get_fdata()[..., row.volume]
        expected = model.compute_contrast(condition, output_type="effect_size").get_fdata()
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "nback"], "no bold images of sub-01, task-nback"),
        (["--task", "objects", "--confounds", "simple"], "give the derivatives folder"),
        (["--task", "objects", "--space", SPACE], "--derivatives"),
        (["--task", "objects", "--func", "x.nii.gz"], "leave out --func"),
        ([], "--bids needs --task"),
    ],
)
def test_bids_errors_are_one_line(bids_root, tmp_path, capsys, args, message):
    from fastsearchlight.cli import main

    out = tmp_path / "out"
    code = main(["run", "--bids", str(bids_root), "--subject", "01", *args, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("columns", [[], ["--label-column", "trial_type", "--group-column", "none"]])
def test_events_file_as_labels_table_says_what_to_do(bids_root, tmp_path, capsys, columns):
    from fastsearchlight.cli import main

    func = bids_root / "sub-01" / "func"
    code = main(["run", "--func", str(func / "sub-01_task-objects_run-01_bold.nii.gz"),
                 "--labels", str(func / "sub-01_task-objects_run-01_events.tsv"), *columns,
                 "--mask", str(bids_root / "mask.nii.gz"), "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "BIDS events file" in err and "--bids DIR --subject S --task T" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_process_mask_with_bids(bids_root, tmp_path):
    from fastsearchlight.bids import find_runs
    from fastsearchlight.bids_study import BidsSpec, read_bids_inputs

    mask = nib.load(bids_root / "mask.nii.gz")
    centres = np.zeros(mask.shape, dtype=np.uint8)
    centres[2:4, 2:4, 2] = 1
    nib.save(nib.Nifti1Image(centres, mask.affine), tmp_path / "centres.nii.gz")
    subject = find_runs(bids_root, "01", "objects")
    inputs, sources = read_bids_inputs(subject, BidsSpec(bids_root, "01", "objects"), bids_root / "mask.nii.gz",
                                       _config(), tmp_path, process_mask=tmp_path / "centres.nii.gz")  # fmt: skip
    np.testing.assert_array_equal(np.asarray(inputs.process_img.dataobj), centres)
    assert sources["process mask"] == tmp_path / "centres.nii.gz"
