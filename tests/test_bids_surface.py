"""fMRIPrep's surface outputs through ``run --bids --space fsaverage5``: the surface study on
hemi-L/hemi-R GIfTI runs, labelled by events and cleaned with fMRIPrep's confounds.

Runs on small simulated fMRIPrep-like derivatives on fsaverage5 (the mesh ships with nilearn).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_bids import N_RUNS, N_VOLUMES, T_R, _labels_by_hand, _motion_confounds, _run_events

from fastsearchlight.cli import main

SPACE = "fsaverage5"


def _gifti(values: np.ndarray, path: Path) -> None:
    """One data array per volume (column), as fMRIPrep writes a surface run."""
    arrays = [nib.gifti.GiftiDataArray(np.ascontiguousarray(c, dtype=np.float32)) for c in values.T]
    nib.save(nib.gifti.GiftiImage(darrays=arrays), path)


def make_surface_bids(root: Path, seed: int = 0) -> Path:
    """Raw events and fMRIPrep-like surface derivatives (GIfTI per hemisphere and run, their
    sidecars with the repetition time, confounds) in ``root``."""
    from fastsearchlight.spaces.surface import load_mesh, vertex_discs

    rng = np.random.default_rng(seed)
    mesh = load_mesh(SPACE)
    raw = root / "sub-01" / "func"
    deriv = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    raw.mkdir(parents=True)
    deriv.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "sim", "BIDSVersion": "1.8.0"}))
    patch = vertex_discs(mesh.parts["left"], 8.0, "geodesic")[1000].indices
    for k in range(N_RUNS):
        events = _run_events(k)
        stem = f"sub-01_task-objects_run-{k + 1:02d}"
        events.to_csv(raw / f"{stem}_events.tsv", sep="\t", index=False)
        for hemi in ("L", "R"):
            n = mesh.parts["left" if hemi == "L" else "right"].n_vertices
            data = 800.0 + 10.0 * rng.standard_normal((n, N_VOLUMES)) + np.linspace(-15, 15, N_VOLUMES)
            if hemi == "L":
                for _, ev in events.iterrows():
                    first, m = int(ev.onset / T_R), int(ev.duration / T_R)
                    data[patch, first : first + m] += 12.0 if ev.trial_type == "face" else -12.0
            name = f"{stem}_hemi-{hemi}_space-{SPACE}_bold"
            _gifti(data, deriv / f"{name}.func.gii")
            (deriv / f"{name}.json").write_text(json.dumps({"RepetitionTime": T_R}))
        confounds = _motion_confounds(rng, N_VOLUMES)
        for name in ("white_matter", "csf"):  # what nilearn's 'scrubbing' strategy reads
            v = confounds[name].to_numpy()
            d = np.r_[np.nan, np.diff(v)]
            confounds[f"{name}_derivative1"], confounds[f"{name}_power2"] = d, v**2
            confounds[f"{name}_derivative1_power2"] = d**2
        confounds["framewise_displacement"] = np.r_[np.nan, np.where(np.arange(1, N_VOLUMES) == 20, 2.0, 0.1)]
        confounds["std_dvars"] = np.r_[np.nan, np.ones(N_VOLUMES - 1)]
        confounds.to_csv(deriv / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a")
    return root


@pytest.fixture(scope="module")
def surface_bids(tmp_path_factory):
    return make_surface_bids(tmp_path_factory.mktemp("bids_surface") / "ds")


def test_surface_space_is_the_surface_study_of_the_runs_cleaned_as_nilearn(surface_bids, tmp_path, capsys):
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.signal import clean
    from nilearn.surface import load_surf_data
    from sklearn.model_selection import LeaveOneGroupOut

    from fastsearchlight import SurfaceSearchLight

    deriv = surface_bids / "derivatives" / "fmriprep"
    out = tmp_path / "out"
    args = ["run", "--bids", str(surface_bids), "--derivatives", str(deriv), "--space", SPACE, "--subject", "01",
            "--task", "objects", "--confounds", "simple", "--detrend", "--estimator", "gnb", "--fold-maps",
            "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "discs in" in capsys.readouterr().out
    # by hand: each run's hemispheres cleaned with nilearn (its 'simple' fMRIPrep confounds),
    # the volumes labelled by the events, the searchlight on 10 mm geodesic discs
    labels, runs = _labels_by_hand(surface_bids)
    labels, runs = np.array(labels), np.array(runs)
    data = {"left": [], "right": []}
    for k in range(N_RUNS):
        stem = deriv / "sub-01" / "func" / f"sub-01_task-objects_run-{k + 1:02d}"
        files = {h: f"{stem}_hemi-{h[0].upper()}_space-{SPACE}_bold.func.gii" for h in data}
        confounds, _ = load_confounds_strategy(files["left"], denoise_strategy="simple")
        for hemi, path in files.items():
            series = load_surf_data(path).T.astype(np.float64)
            cleaned = clean(
                series, detrend=True, standardize="zscore_sample", confounds=confounds.to_numpy(), t_r=T_R
            )
            data[hemi].append(cleaned.astype(np.float32))
    keep = labels != "rest"
    data = {h: np.vstack(v)[keep].T for h, v in data.items()}
    sl = SurfaceSearchLight(SPACE, radius=10.0, estimator="gnb", cv=LeaveOneGroupOut())
    sl.fit(data, labels[keep], groups=runs[keep])
    for hemi in ("left", "right"):
        written = load_surf_data(str(out / f"searchlight_scores_hemi-{hemi[0].upper()}.func.gii"))
        np.testing.assert_array_equal(written, sl.scores_img_.data.parts[hemi].astype(np.float32))
    assert (out / "fold_scores_hemi-L.func.gii").is_file()
    from fastsearchlight.spaces.surface import load_mesh, vertex_discs

    patch = vertex_discs(load_mesh(SPACE).parts["left"], 8.0, "geodesic")[1000].indices
    left = sl.scores_img_.data.parts["left"]
    # the planted patch stands out (weakly: 'simple' leaves 12 of a run's 40 degrees of freedom)
    assert left[patch].mean() > 0.6 and np.delete(left, patch).mean() < 0.53
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["radius"] == 10.0 and summary["parameters"]["mesh"] == SPACE
    assert summary["cleaning"]["repetition time (s)"] == T_R and summary["cleaning"]["confounds"] == "simple"
    assert summary["data"]["runs"] == N_RUNS and len(summary["data"]["surface data"]) == 2 * N_RUNS
    assert summary["name"] == f"sub-01, task-objects, space-{SPACE}"


def test_surface_space_scrubs_as_nilearn_censors(surface_bids, tmp_path, capsys):
    # --confounds scrubbing: the volumes nilearn's strategy censors are left out before the
    # cleaning (as for volumes), with their labels; the rest cleaned with its confounds
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from nilearn.signal import clean
    from nilearn.surface import load_surf_data
    from sklearn.model_selection import LeaveOneGroupOut

    from fastsearchlight import SurfaceSearchLight

    deriv = surface_bids / "derivatives" / "fmriprep"
    out = tmp_path / "out"
    args = ["run", "--bids", str(surface_bids), "--derivatives", str(deriv), "--space", SPACE, "--subject", "01",
            "--task", "objects", "--confounds", "scrubbing", "--detrend", "--estimator", "gnb", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    labels, runs = _labels_by_hand(surface_bids)
    labels, runs = np.array(labels, dtype=object), np.array(runs)
    data, kept_all = {"left": [], "right": []}, []
    for k in range(N_RUNS):
        stem = deriv / "sub-01" / "func" / f"sub-01_task-objects_run-{k + 1:02d}"
        files = {h: f"{stem}_hemi-{h[0].upper()}_space-{SPACE}_bold.func.gii" for h in data}
        confounds, sample_mask = load_confounds_strategy(files["left"], denoise_strategy="scrubbing")
        kept = np.zeros(N_VOLUMES, dtype=bool)
        kept[sample_mask] = True
        kept_all.append(kept)
        for hemi, path in files.items():
            series = load_surf_data(path).T.astype(np.float64)[kept]
            cleaned = clean(
                series,
                detrend=True,
                standardize="zscore_sample",
                confounds=confounds.to_numpy()[kept],
                t_r=T_R,
            )
            data[hemi].append(cleaned.astype(np.float32))
    kept_all = np.concatenate(kept_all)
    assert 0 < (~kept_all).sum() < kept_all.size  # the planted motion spikes censor volumes
    labels, runs = labels[kept_all], runs[kept_all]
    keep = labels != "rest"
    data = {h: np.vstack(v)[keep].T for h, v in data.items()}
    sl = SurfaceSearchLight(SPACE, radius=10.0, estimator="gnb", cv=LeaveOneGroupOut())
    sl.fit(data, labels[keep].astype(str), groups=runs[keep])
    for hemi in ("left", "right"):
        written = load_surf_data(str(out / f"searchlight_scores_hemi-{hemi[0].upper()}.func.gii"))
        np.testing.assert_array_equal(written, sl.scores_img_.data.parts[hemi].astype(np.float32))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["volumes removed by the confound strategy"] == int((~kept_all).sum())


def _disc_masks(folder: Path, left_mm: float, right_mm: float) -> tuple[dict, list]:
    """GIfTI masks of a geodesic disc per hemisphere (around left vertex 1000, right 500):
    the boolean masks and the files."""
    from fastsearchlight.spaces.surface import load_mesh, vertex_discs

    mesh = load_mesh(SPACE)
    masks = {h: np.zeros(mesh.parts[h].n_vertices, bool) for h in ("left", "right")}
    masks["left"][vertex_discs(mesh.parts["left"], left_mm, "geodesic")[1000].indices] = True
    masks["right"][vertex_discs(mesh.parts["right"], right_mm, "geodesic")[500].indices] = True
    paths = []
    for hemi, m in masks.items():
        path = folder / f"mask_hemi-{hemi[0].upper()}.label.gii"
        nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(m.astype(np.int32))]), path)
        paths.append(str(path))
    return masks, paths


def test_surface_space_takes_gifti_masks(surface_bids, tmp_path, capsys):
    # a mask per hemisphere (as the cortex without the medial wall): the discs are those of
    # the mask vertices, over the mask vertices; a disc wholly inside the mask scores as
    # without the mask; nothing is written outside it
    from nilearn.surface import load_surf_data

    from fastsearchlight.spaces.surface import load_mesh, vertex_discs

    deriv = surface_bids / "derivatives" / "fmriprep"
    mesh = load_mesh(SPACE)
    discs = {h: vertex_discs(mesh.parts[h], 10.0, "geodesic") for h in ("left", "right")}
    masks, paths = _disc_masks(tmp_path, 30.0, 40.0)
    base = ["run", "--bids", str(surface_bids), "--derivatives", str(deriv), "--space", SPACE, "--subject", "01",
            "--task", "objects", "--confounds", "simple", "--estimator", "gnb", "--quiet"]  # fmt: skip
    assert main([*base, "--mask", *paths, "--out", str(tmp_path / "masked")]) == 0
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "masked" / "summary.json").read_text())
    assert summary["data"]["mask vertices"] == {h: int(m.sum()) for h, m in masks.items()}
    assert summary["results"]["discs"] == sum(int(m.sum()) for m in masks.values())
    for hemi, m in masks.items():
        name = f"searchlight_scores_hemi-{hemi[0].upper()}.func.gii"
        masked = load_surf_data(str(tmp_path / "masked" / name))
        whole = load_surf_data(str(tmp_path / "whole" / name))
        assert np.all(masked[~m] == 0)
        inside = np.flatnonzero(m)
        inside = [v for v in inside if m[discs[hemi][v].indices].all()]
        assert len(inside) > 20
        np.testing.assert_array_equal(masked[inside], whole[inside])
        edge = [v for v in np.flatnonzero(m) if not m[discs[hemi][v].indices].all()]
        assert len(edge) > 0  # (their discs lose the vertices outside the mask)


def _surface_first_level(deriv: Path, run: int, events, confounds=None, mask=None):
    """nilearn's FirstLevelModel of one surface run, by hand (the parameters the volumes use)."""
    import warnings

    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.surface import SurfaceImage, load_surf_data

    from fastsearchlight.spaces.surface import load_mesh

    mesh = load_mesh(SPACE)
    stem = deriv / "sub-01" / "func" / f"sub-01_task-objects_run-{run:02d}"
    data = {h: load_surf_data(f"{stem}_hemi-{h[0].upper()}_space-{SPACE}_bold.func.gii").astype(np.float64)
            for h in ("left", "right")}  # fmt: skip
    mask_img = SurfaceImage(mesh=mesh, data=mask) if mask is not None else None
    model = FirstLevelModel(t_r=T_R, mask_img=mask_img, hrf_model="glover", drift_model="cosine", high_pass=0.01,
                            noise_model="ar1", minimize_memory=True)  # fmt: skip
    with warnings.catch_warnings():  # nilearn notes that the given mask is used
        warnings.simplefilter("ignore", RuntimeWarning)
        return model.fit(SurfaceImage(mesh=mesh, data=data), events=events, confounds=confounds)


def _written_betas(out: Path, run: str, row: int) -> dict:
    """One beta map of the table's ``row``-th map of ``run``, per hemisphere, as written."""
    import pandas as pd
    from nilearn.surface import load_surf_data

    table = pd.read_csv(out / "betas" / "betas.tsv", sep="\t")
    entry = table[table.run == run].iloc[row]
    return {
        h: load_surf_data(str(out / "betas" / entry[f"{h}_file"]))[:, entry.volume] for h in ("left", "right")
    }


def test_surface_trial_betas_are_nilearns_lss_and_reused(surface_bids, tmp_path, capsys, monkeypatch):
    # --samples trials on a surface space: one least-squares-separate GLM per trial on the
    # run's two GIfTI files (fMRIPrep's confounds in the model), the maps kept in OUT/betas,
    # the searchlight on them with the runs as groups; a rerun reads them back
    import pandas as pd
    from nilearn.interfaces.fmriprep import load_confounds_strategy
    from sklearn.model_selection import LeaveOneGroupOut

    from fastsearchlight import SurfaceSearchLight, betas

    deriv = surface_bids / "derivatives" / "fmriprep"
    out = tmp_path / "out"
    args = ["run", "--bids", str(surface_bids), "--derivatives", str(deriv), "--space", SPACE, "--subject", "01",
            "--task", "objects", "--samples", "trials", "--confounds", "simple", "--estimator", "gnb", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    table = pd.read_csv(out / "betas" / "betas.tsv", sep="\t", dtype={"run": str})
    assert len(table) == 4 * N_RUNS and list(table.condition[:4]) == ["face", "house", "face", "house"]
    # trial 3 of run 2 by hand, with the run's 'simple' confounds
    events = pd.read_csv(surface_bids / "sub-01" / "func" / "sub-01_task-objects_run-02_events.tsv", sep="\t")
    events.loc[2, "trial_type"] = "target"
    left = deriv / "sub-01" / "func" / f"sub-01_task-objects_run-02_hemi-L_space-{SPACE}_bold.func.gii"
    confounds, _ = load_confounds_strategy(str(left), denoise_strategy="simple")
    model = _surface_first_level(deriv, 2, events, confounds=confounds)
    expected = model.compute_contrast("target", output_type="effect_size")
    got = _written_betas(out, "run-02", 2)
    for hemi in ("left", "right"):
        want = np.asarray(expected.data.parts[hemi])
        np.testing.assert_allclose(got[hemi], want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    # the searchlight ran on the written maps, labelled by condition, grouped by run
    from nilearn.surface import load_surf_data

    data = {h: np.column_stack([load_surf_data(str(out / "betas" / f)) for f in table[f"{h}_file"].unique()])
            for h in ("left", "right")}  # fmt: skip
    sl = SurfaceSearchLight(SPACE, radius=10.0, estimator="gnb", cv=LeaveOneGroupOut())
    sl.fit(data, table.condition.to_numpy(), groups=table.run.to_numpy())
    for hemi in ("left", "right"):
        written = load_surf_data(str(out / f"searchlight_scores_hemi-{hemi[0].upper()}.func.gii"))
        np.testing.assert_array_equal(written, sl.scores_img_.data.parts[hemi].astype(np.float32))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["samples analysed"] == 4 * N_RUNS and "fitted" in summary["data"]["beta maps"]
    assert summary["cleaning"] == "none (beta maps)"
    # a rerun reads the maps back: no model is fitted
    monkeypatch.setattr(betas, "fit_run_betas", lambda *a, **k: pytest.fail("refitted"))
    assert main([*args, "--force"]) == 0
    capsys.readouterr()
    again = json.loads((out / "summary.json").read_text())
    assert "read back" in again["data"]["beta maps"]
    assert again["results"]["max score"] == summary["results"]["max score"]


def test_surface_condition_betas_per_run_are_nilearns_within_the_mask(surface_bids, tmp_path, capsys):
    # --samples runs with GIfTI masks: one GLM per run over the mask's vertices, one map per
    # condition; nothing modelled outside the mask
    import pandas as pd

    deriv = surface_bids / "derivatives" / "fmriprep"
    masks, paths = _disc_masks(tmp_path, 30.0, 30.0)
    out = tmp_path / "out"
    args = ["run", "--bids", str(surface_bids), "--derivatives", str(deriv), "--space", SPACE, "--subject", "01",
            "--task", "objects", "--samples", "runs", "--estimator", "gnb", "--mask", *paths, "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["samples per condition"] == {"face": N_RUNS, "house": N_RUNS}
    events = pd.read_csv(surface_bids / "sub-01" / "func" / "sub-01_task-objects_run-03_events.tsv", sep="\t")
    model = _surface_first_level(deriv, 3, events, mask=masks)
    table = pd.read_csv(out / "betas" / "betas.tsv", sep="\t", dtype={"run": str})
    for condition in ("face", "house"):
        row = int(np.flatnonzero(table[table.run == "run-03"].condition.to_numpy() == condition)[0])
        got = _written_betas(out, "run-03", row)
        expected = model.compute_contrast(condition, output_type="effect_size")
        for hemi, m in masks.items():
            want = np.asarray(expected.data.parts[hemi])
            np.testing.assert_allclose(got[hemi], want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
            assert np.all(got[hemi][~m] == 0) and np.all(got[hemi][m] != 0)


def _write_mesh(part, path: Path) -> None:
    """One hemisphere's mesh as a GIfTI surface (coordinates and triangles)."""
    coords = nib.gifti.GiftiDataArray(
        np.asarray(part.coordinates, dtype=np.float32), intent="NIFTI_INTENT_POINTSET"
    )
    faces = nib.gifti.GiftiDataArray(np.asarray(part.faces, dtype=np.int32), intent="NIFTI_INTENT_TRIANGLE")
    nib.save(nib.gifti.GiftiImage(darrays=[coords, faces]), path)


def _in_space(src: Path, dst: Path, space: str) -> Path:
    """A copy of the dataset whose surface runs are named as on ``space``."""
    import shutil

    shutil.copytree(src, dst)
    for path in (dst / "derivatives").rglob(f"*space-{SPACE}*"):
        path.rename(path.with_name(path.name.replace(f"space-{SPACE}", f"space-{space}")))
    return dst


def test_fsnative_and_fslr_runs_on_their_own_meshes(surface_bids, tmp_path, capsys):
    # --space fsnative: the subject's pial surfaces from the derivatives' anat folder;
    # --space fsLR: the surface files given with --mesh. Here both meshes are fsaverage5's
    # geometry written as GIfTI, so the maps equal those of the fsaverage5 run
    from nilearn.surface import load_surf_data

    from fastsearchlight.spaces.surface import load_mesh

    mesh = load_mesh(SPACE)
    base = ["run", "--subject", "01", "--task", "objects", "--estimator", "gnb", "--quiet"]
    deriv = surface_bids / "derivatives" / "fmriprep"
    assert main([*base, "--bids", str(surface_bids), "--derivatives", str(deriv), "--space", SPACE,
                 "--out", str(tmp_path / "fsaverage5")]) == 0  # fmt: skip
    native = _in_space(surface_bids, tmp_path / "native", "fsnative")
    anat = native / "derivatives" / "fmriprep" / "sub-01" / "anat"
    anat.mkdir()
    for hemi in ("left", "right"):
        _write_mesh(mesh.parts[hemi], anat / f"sub-01_hemi-{hemi[0].upper()}_pial.surf.gii")
    assert main([*base, "--bids", str(native), "--derivatives", str(native / "derivatives" / "fmriprep"),
                 "--space", "fsnative", "--out", str(tmp_path / "fsnative")]) == 0  # fmt: skip
    fslr = _in_space(surface_bids, tmp_path / "fslr", "fsLR")
    templates = []
    for hemi in ("left", "right"):
        templates.append(tmp_path / f"tpl-fsLR_den-32k_hemi-{hemi[0].upper()}_midthickness.surf.gii")
        _write_mesh(mesh.parts[hemi], templates[-1])
    fslr_args = [*base, "--bids", str(fslr), "--derivatives", str(fslr / "derivatives" / "fmriprep"),
                 "--space", "fsLR"]  # fmt: skip
    assert main([*fslr_args, "--mesh", *map(str, templates[::-1]), "--out", str(tmp_path / "fslr-out")]) == 0
    capsys.readouterr()
    for hemi in ("L", "R"):
        name = f"searchlight_scores_hemi-{hemi}.func.gii"
        want = load_surf_data(str(tmp_path / "fsaverage5" / name))
        for out in ("fsnative", "fslr-out"):
            np.testing.assert_array_equal(load_surf_data(str(tmp_path / out / name)), want)
    summary = json.loads((tmp_path / "fsnative" / "summary.json").read_text())
    assert summary["parameters"]["mesh"] == [str(anat / f"sub-01_hemi-{h}_pial.surf.gii") for h in ("L", "R")]
    # fsLR without its mesh, a mesh of other vertices, --mesh with volumes: one-line errors
    small = tmp_path / "small_hemi-L.surf.gii"
    _write_mesh(type("Part", (), {"coordinates": np.eye(3), "faces": np.array([[0, 1, 2]])})(), small)
    for args, message in [
        ([*fslr_args, "--out", str(tmp_path / "e1")], "give the mesh the runs are on with --mesh"),
        ([*fslr_args, "--mesh", str(small), str(templates[1]), "--out", str(tmp_path / "e2")], "vertices"),
        ([*base, "--bids", str(surface_bids), "--mesh", str(small), "--out", str(tmp_path / "e3")],
         "--mesh goes with a surface --space"),
        ([*base, "--bids", str(fslr), "--derivatives", str(fslr / "derivatives" / "fmriprep"), "--space",
          "fsnative", "--out", str(tmp_path / "e4")], "no *_hemi-L_space-fsnative_bold.func.gii"),
    ]:  # fmt: skip
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    import shutil

    shutil.rmtree(anat)
    assert main([*base, "--bids", str(native), "--derivatives", str(native / "derivatives" / "fmriprep"),
                 "--space", "fsnative", "--out", str(tmp_path / "e5")]) == 2  # fmt: skip
    assert "no sub-01*_hemi-L_pial.surf.gii" in capsys.readouterr().err


def _copy_without(src: Path, dst: Path, pattern: str) -> Path:
    import shutil

    shutil.copytree(src, dst)
    for path in dst.rglob(pattern):
        path.unlink()
    return dst


def test_surface_space_errors_are_one_line(surface_bids, tmp_path, capsys):
    deriv = surface_bids / "derivatives" / "fmriprep"
    base = ["run", "--bids", str(surface_bids), "--subject", "01", "--task", "objects", "--quiet"]
    no_right = _copy_without(surface_bids, tmp_path / "no_right", "*run-02_hemi-R*.func.gii")
    no_tr = _copy_without(surface_bids, tmp_path / "no_tr", "*.json")
    cases = [
        (["--derivatives", str(deriv), "--space", "fsLR"], "no *_hemi-L_space-fsLR_bold.func.gii"),
        (["--space", SPACE], "give their folder with --derivatives"),
        (["--derivatives", str(deriv), "--space", SPACE, "--mask", "m.nii.gz"], "one GIfTI mask per hemisphere"),
        (["--derivatives", str(deriv), "--space", SPACE, "--samples", "trials", "--conditions", "cat", "dog"],
         "no event of the chosen conditions"),
        (["--derivatives", str(deriv), "--space", "fsaverage6"], "no *_hemi-L_space-fsaverage6_bold.func.gii"),
        (["--bids", str(no_right), "--derivatives", str(no_right / "derivatives" / "fmriprep"), "--space", SPACE],
         "no hemi-R file for the run of sub-01_task-objects_run-02_hemi-L"),
        (["--bids", str(no_tr), "--derivatives", str(no_tr / "derivatives" / "fmriprep"), "--space", SPACE],
         "no repetition time for sub-01_task-objects_run-01_hemi-L_space-fsaverage5_bold.func.gii"),
    ]  # fmt: skip
    for k, (args, message) in enumerate(cases):
        out = tmp_path / f"o{k}"
        assert main([*base, *args, "--out", str(out)]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not any(out.glob("*.gii")) if out.exists() else True
