"""The surface study from the command line: ``simulate --surface`` then ``surface``; the
simulated data; errors."""

import json

import nibabel as nib
import numpy as np
import pytest
from nilearn.surface import load_surf_data

from fastsearchlight.cli import main
from fastsearchlight.simulate_surface import simulate_surface
from fastsearchlight.surface_study import (
    SURFACE_FOLD_MAPS,
    SURFACE_OUTPUTS,
    SURFACE_PERMUTATION_OUTPUTS,
    split_hemispheres,
)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "--surface", "--out", str(out), "--seed", "3"]) == 0
    return out


def test_simulated_files_hold_the_data_set(simulated):
    ds = simulate_surface(random_state=3)
    for hemi in ("left", "right"):
        tag = hemi[0].upper()
        np.testing.assert_array_equal(
            load_surf_data(str(simulated / f"bold_hemi-{tag}.func.gii")), ds.data[hemi]
        )
        truth = load_surf_data(str(simulated / f"truth_hemi-{tag}.shape.gii"))
        np.testing.assert_array_equal(truth > 0, ds.truth[hemi])
    assert ds.truth["left"].any() and ds.truth["right"].any()  # one patch in each hemisphere
    assert (simulated / "labels.txt").read_text().startswith("labels chunks\n")
    # in a patch the conditions differ in their mean pattern; elsewhere only noise
    y = ds.labels["labels"].to_numpy() == "face"
    diff = ds.data["left"][:, y].mean(axis=1) - ds.data["left"][:, ~y].mean(axis=1)
    assert np.abs(diff[ds.truth["left"]]).mean() > 3 * np.abs(diff[~ds.truth["left"]]).mean()


def test_surface_command_writes_maps_figures_and_report(simulated, tmp_path, capsys):
    ds = simulate_surface(random_state=3)
    # a mask around the patches (the rest of the cortex left out, as a medial wall would be)
    masks = []
    for hemi in ("left", "right"):
        coords = np.asarray(ds.image().mesh.parts[hemi].coordinates)
        centre = coords[ds.truth[hemi]].mean(axis=0)
        keep = (np.linalg.norm(coords - centre, axis=1) < 40).astype(np.float32)
        path = tmp_path / f"cortex_hemi-{hemi[0].upper()}.shape.gii"
        nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(keep)]), path)
        masks.append(str(path))
    out = tmp_path / "out"
    func = [str(simulated / "bold_hemi-R.func.gii"), str(simulated / "bold_hemi-L.func.gii")]
    code = main(["surface", "--func", *func, "--labels", str(simulated / "labels.txt"), "--mask", *masks,
                 "--estimator", "gnb", "--cv", "logo", "--permutations", "19", "--permute", "samples",
                 "--quiet", "--out", str(out)])  # fmt: skip
    assert code == 0
    for name in SURFACE_OUTPUTS + SURFACE_PERMUTATION_OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["radius"] == 10.0 and summary["parameters"]["distance"] == "geodesic"
    scores = load_surf_data(str(out / "searchlight_scores_hemi-L.func.gii"))
    assert scores.shape == (10242,) and (scores[~ds.truth["left"]] < 0.85).mean() > 0.95
    assert scores[ds.truth["left"]].mean() > 0.8
    logp = load_surf_data(str(out / "p_fwe_hemi-L.func.gii"))
    assert logp[ds.truth["left"]].max() == pytest.approx(np.log10(20))  # the smallest p, 1 / 20
    assert summary["results"]["discs"] == sum(summary["data"]["mask vertices"].values())
    assert "discs in" in capsys.readouterr().out
    assert not list(out.glob(".fastsearchlight-permutations*"))  # the checkpoint, once complete, is gone


def test_surface_command_errors_are_one_line(simulated, tmp_path, capsys):
    labels = str(simulated / "labels.txt")
    left = str(simulated / "bold_hemi-L.func.gii")
    cases = [
        (["--func", str(simulated / "labels.txt"), "--labels", labels], "hemisphere of"),
        (["--func", left, str(tmp_path / "missing_hemi-R.func.gii"), "--labels", labels], "does not exist"),
        (["--func", left, "--labels", labels, "--mesh", "fsaverage_big"], "unknown mesh"),
        (["--func", left, "--labels", labels, "--radius", "-2"], "radius"),
    ]
    (tmp_path / "short.txt").write_text("labels chunks\nface 0\nhouse 0\n")
    cases.append(
        (["--func", left, "--labels", str(tmp_path / "short.txt")], "2 rows but the surface data have 216")
    )
    for k, (args, message) in enumerate(cases):
        assert main(["surface", *args, "--quiet", "--out", str(tmp_path / f"o{k}")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_hemispheres_are_read_from_the_names(tmp_path):
    names = ["sub-1_run-1_hemi-L_bold.func.gii", "sub-1_run-1_hemi-R_bold.func.gii",
             "sub-1_run-2_hemi-L_bold.func.gii", "rh.run2.func.gii"]  # fmt: skip
    for n in names:
        (tmp_path / n).write_bytes(b"")
    parts = split_hemispheres([tmp_path / n for n in names])
    assert [p.split("/")[-1] for p in parts["left"]] == [names[0], names[2]]
    assert [p.split("/")[-1] for p in parts["right"]] == [names[1], names[3]]
    with pytest.raises(Exception, match="2 left-hemisphere files but 1 right"):
        split_hemispheres([tmp_path / n for n in names[:3]])


def _subject_maps(folder, n_subjects, effect, seed=0):
    """Score maps on fsaverage5 (chance 0.5 plus noise, plus ``effect`` on a patch), 0 (not
    tested) beyond 30 mm of vertex 500 of each hemisphere."""
    from fastsearchlight.spaces.surface import load_mesh, vertex_discs

    mesh = load_mesh("fsaverage5")
    patch = vertex_discs(mesh.parts["left"], 8.0, "geodesic")[500].indices
    rng = np.random.default_rng(seed)
    paths = []
    for s in range(n_subjects):
        for hemi in ("left", "right"):
            values = 0.5 + 0.05 * rng.standard_normal(mesh.parts[hemi].n_vertices)
            if hemi == "left":
                values[patch] += effect
            near = np.zeros(len(values), bool)
            near[vertex_discs(mesh.parts[hemi], 30.0, "geodesic")[500].indices] = True
            values[~near] = 0.0
            path = folder / f"sub-{s}" / f"searchlight_scores_hemi-{hemi[0].upper()}.func.gii"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(
                nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(values.astype(np.float32))]), path
            )
        paths.append(str(folder / f"sub-{s}" / "searchlight_scores_hemi-L.func.gii"))
    return paths, patch


def test_group_level_on_surface_maps(tmp_path, capsys):
    from fastsearchlight.stats import one_sample_t

    paths, patch = _subject_maps(tmp_path / "maps", 12, effect=0.1)
    out = tmp_path / "group"
    assert (
        main(["group", *paths, "--chance", "0.5", "--tfce", "--permutations", "99", "--out", str(out)]) == 0
    )
    assert "vertices with FWE p < 0.05" in capsys.readouterr().out
    t_left = load_surf_data(str(out / "group_t_hemi-L.func.gii"))
    data = np.stack([load_surf_data(p) for p in paths]).astype(np.float64) - 0.5
    tested = (data != -0.5).all(axis=0)
    assert 50 < tested.sum() < 1000
    np.testing.assert_allclose(t_left[tested], one_sample_t(data[:, tested])[0], rtol=1e-5)
    assert (t_left[~tested] == 0).all()
    from fastsearchlight.spaces.surface import load_mesh, vertex_discs

    # the patch (8 mm) and a ring of neighbours, which clusters and TFCE may reach
    near = vertex_discs(load_mesh("fsaverage5").parts["left"], 20.0, "geodesic")[500].indices
    for stem in ("group_logp_fwe", "group_logp_cluster_fwe", "group_logp_tfce_fwe"):
        logp = load_surf_data(str(out / f"{stem}_hemi-L.func.gii"))
        significant = logp > -np.log10(0.05)
        assert significant[patch].mean() > 0.5 and not np.delete(significant, near).any(), stem
        assert not (load_surf_data(str(out / f"{stem}_hemi-R.func.gii")) > -np.log10(0.05)).any()
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["sign flips"]["all enumerated"] and summary["sign flips"]["used"] == 99
    assert summary["data"]["vertices tested"]["left"] == tested.sum()
    assert main(["group", paths[0].replace("hemi-L", "hemi-Q"), paths[1], "--out", str(tmp_path / "g2")]) == 2
    assert "needs hemi-L or hemi-R" in capsys.readouterr().err


def test_one_hemisphere_and_euclidean_discs_from_the_command_line(simulated, tmp_path):
    out = tmp_path / "left"
    args = ["surface", "--func", str(simulated / "bold_hemi-L.func.gii"), "--labels", str(simulated / "labels.txt"),
            "--estimator", "gnb", "--distance", "euclidean", "--mesh", "fsaverage5:inflated", "--radius", "4",
            "--fold-maps", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        n for n in SURFACE_OUTPUTS + SURFACE_FOLD_MAPS if "hemi-R" not in n
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["vertices"] == {"left": 10242} and summary["parameters"]["distance"] == "euclidean"
    # as `run`: each vertex standardised within each run (nilearn.signal.clean), then leave one run out
    from nilearn.signal import clean
    from sklearn.model_selection import LeaveOneGroupOut

    from fastsearchlight import SurfaceSearchLight

    ds = simulate_surface(random_state=3)
    runs = ds.labels["chunks"].to_numpy()
    data = clean(ds.data["left"].T.astype(np.float64), runs=runs, standardize="zscore_sample", detrend=False)
    keep = ds.labels["labels"].isin(["face", "house"]).to_numpy()
    sl = SurfaceSearchLight("fsaverage5:inflated", radius=4.0, distance="euclidean", estimator="gnb",
                            cv=LeaveOneGroupOut())  # fmt: skip
    sl.fit({"left": data.T.astype(np.float32)[:, keep], "right": ds.data["right"][:, keep]}, ds.labels["labels"][keep],
           groups=runs[keep])  # fmt: skip
    scores = load_surf_data(str(out / "searchlight_scores_hemi-L.func.gii"))
    np.testing.assert_array_equal(scores, sl.scores_img_.data.parts["left"].astype(np.float32))
    # --fold-maps: one data array per fold (12 runs left out in turn), the fit's fold scores
    folds = nib.load(out / "fold_scores_hemi-L.func.gii")
    assert len(folds.darrays) == 12 and sl.fold_scores_.shape == (20484, 12)
    np.testing.assert_array_equal(
        np.column_stack([a.data for a in folds.darrays]),
        sl.fold_scores_img_.data.parts["left"].astype(np.float32),
    )
    assert summary["cleaning"]["standardize"] == "zscore_sample" and summary["parameters"]["cv"] == "auto"
    # the same mesh given as a surface file (FreeSurfer's lh. naming): the same map
    from fastsearchlight.spaces.surface import load_mesh

    part = load_mesh("fsaverage5:inflated").parts["left"]
    lh = tmp_path / "lh.inflated.surf.gii"
    nib.save(nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(np.asarray(part.coordinates, np.float32), intent="NIFTI_INTENT_POINTSET"),
        nib.gifti.GiftiDataArray(np.asarray(part.faces, np.int32), intent="NIFTI_INTENT_TRIANGLE")]), lh)  # fmt: skip
    files = [
        *args[: args.index("--mesh") + 1],
        str(lh),
        *args[args.index("--mesh") + 2 : -1],
        str(tmp_path / "f"),
    ]
    assert main(files) == 0
    np.testing.assert_array_equal(
        load_surf_data(str(tmp_path / "f" / "searchlight_scores_hemi-L.func.gii")), scores
    )
    assert json.loads((tmp_path / "f" / "summary.json").read_text())["parameters"]["mesh"] == [str(lh)]


def test_high_pass_on_gifti_takes_the_repetition_time_from_t_r(simulated, tmp_path, capsys):
    from nilearn.signal import clean
    from nilearn.surface import PolyMesh
    from sklearn.model_selection import LeaveOneGroupOut

    from fastsearchlight import SurfaceSearchLight
    from fastsearchlight.spaces.surface import load_mesh

    # 2 runs of 108 samples (the filter needs runs longer than its padding, 18 samples)
    ds = simulate_surface(random_state=3)
    runs = ds.labels["chunks"].to_numpy() // 6
    labels = tmp_path / "labels.txt"
    labels.write_text("labels chunks\n" + "".join(f"{a} {r}\n" for a, r in zip(ds.labels["labels"], runs)))
    args = ["surface", "--func", str(simulated / "bold_hemi-L.func.gii"), "--labels", str(labels),
            "--estimator", "gnb", "--distance", "euclidean", "--radius", "4", "--high-pass", "0.02", "--quiet"]  # fmt: skip
    # GIfTI files hold no repetition time: without --t-r, one line naming it, and no output
    assert main([*args, "--out", str(tmp_path / "no_tr")]) == 2
    err = capsys.readouterr().err
    assert "--high-pass needs the repetition time" in err and "--t-r" in err and err.count("\n") == 1
    assert not (tmp_path / "no_tr").exists()
    assert main([*args, "--t-r", "0", "--out", str(tmp_path / "zero")]) == 2
    assert "--t-r must be a positive number" in capsys.readouterr().err
    out = tmp_path / "hp"
    assert main([*args, "--t-r", "2.5", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cleaning"]["high-pass (Hz)"] == 0.02 and summary["cleaning"]["repetition time (s)"] == 2.5
    # by hand: nilearn.signal.clean within each run, then the searchlight on the cleaned data
    raw = ds.data["left"].T.astype(np.float64)
    # (the filter on every vertex at once: clean(runs=...) filters one vertex at a time, to the
    # same values, tests/test_cleaning.py)
    filtered = np.vstack([
        clean(raw[runs == r], standardize="zscore_sample", detrend=False, high_pass=0.02, t_r=2.5,
              butterworth__copy=True)
        for r in np.unique(runs)
    ])  # fmt: skip
    unfiltered = clean(raw, runs=runs, standardize="zscore_sample", detrend=False)
    assert np.abs(filtered - unfiltered).max() > 0.5  # the filter changes the data
    keep = ds.labels["labels"].isin(["face", "house"]).to_numpy()
    mesh = PolyMesh(left=load_mesh("fsaverage5").parts["left"])
    scores = {}
    for name, data in (("filtered", filtered), ("unfiltered", unfiltered)):
        sl = SurfaceSearchLight(
            mesh, radius=4.0, distance="euclidean", estimator="gnb", cv=LeaveOneGroupOut()
        )
        sl.fit({"left": data.T.astype(np.float32)[:, keep]}, ds.labels["labels"][keep], groups=runs[keep])
        scores[name] = sl.scores_img_.data.parts["left"].astype(np.float32)
    written = load_surf_data(str(out / "searchlight_scores_hemi-L.func.gii"))
    np.testing.assert_array_equal(written, scores["filtered"])
    assert (written != scores["unfiltered"]).any()


def test_prevalence_inference_on_surface_studies(tmp_path, capsys):
    """Each surface study with permutations keeps its null maps; ``group --prevalence`` on
    their folders writes GIfTI maps equal to prevalence_inference on those arrays by hand."""
    import shutil

    from fastsearchlight.prevalence import prevalence_inference

    # two subjects: the same planted patches, each with noise of its own
    ds = simulate_surface(random_state=0, noise_sd=0.0)
    truth, rng, folders = ds.truth["left"], np.random.default_rng(1), []
    labels = tmp_path / "labels.txt"
    ds.labels.to_csv(labels, sep=" ", index=False)
    for s in range(2):
        data = ds.data["left"] + rng.normal(0.0, 20.0, ds.data["left"].shape)
        func = tmp_path / f"sub-{s}_hemi-L.func.gii"
        nib.save(
            nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(c) for c in data.T.astype(np.float32)]),
            func,
        )
        out = tmp_path / f"sub-{s}"
        assert main(["surface", "--func", str(func), "--labels", str(labels), "--estimator", "gnb", "--distance",
                     "euclidean", "--radius", "4", "--permutations", "20", "--quiet", "--out", str(out)]) == 0  # fmt: skip
        assert not list(out.glob(".fastsearchlight-permutations*"))  # the checkpoint became null_scores.npy
        folders.append(str(out))
    capsys.readouterr()
    out = tmp_path / "prevalence"
    assert main(["group", "--prevalence", *folders, "--permutations", "2000", "--out", str(out)]) == 0
    assert "prevalence gamma0" in capsys.readouterr().out
    observed, null, exhaustive = [], [], []
    for folder in folders:
        record = np.load(f"{folder}/permutation_record.npz")
        scores = load_surf_data(f"{folder}/searchlight_scores_hemi-L.func.gii")
        np.testing.assert_array_equal(record["observed"].astype(np.float32), scores)
        assert str(record["mesh"]) == "fsaverage5" and list(record["hemispheres"]) == ["left"]
        null.append(np.load(f"{folder}/null_scores.npy"))
        assert null[-1].shape == (20, 10242)
        observed.append(record["observed"])
        exhaustive.append(bool(record["exhaustive"]))
    expected = prevalence_inference(
        observed, null, includes_observed=exhaustive, n_permutations=2000, alpha=0.05, random_state=0
    )
    gamma = load_surf_data(str(out / "prevalence_gamma0_hemi-L.func.gii"))
    np.testing.assert_array_equal(gamma, expected.gamma0.astype(np.float32))
    logp = load_surf_data(str(out / "p_global_fwe_hemi-L.func.gii"))
    np.testing.assert_array_equal(logp, (-np.log10(expected.p_global_fwe)).astype(np.float32))
    # the patch planted in every subject, and nothing beyond the discs (4 mm) that reach it
    from fastsearchlight.spaces.surface import load_mesh, vertex_discs

    near = (
        np.asarray(vertex_discs(load_mesh("fsaverage5").parts["left"], 4.0, "euclidean")[truth].sum(axis=0))[
            0
        ]
        > 0
    )
    assert (gamma[truth] > 0).mean() > 0.5 and not (gamma[~near] > 0).any()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["mesh"] == "fsaverage5" and summary["data"]["vertices tested"] == 10242
    assert not list(out.glob("*hemi-R*")) and (out / "prevalence_gamma0_surface.png").stat().st_size > 0
    # studies on a mesh of files (as fsLR's): the same files, the same mesh
    mesh_files = json.dumps([str(tmp_path / "tpl_hemi-L.surf.gii"), str(tmp_path / "tpl_hemi-R.surf.gii")])
    for h, path in zip(("left", "right"), json.loads(mesh_files)):
        part = load_mesh("fsaverage5").parts[h]
        nib.save(nib.gifti.GiftiImage(darrays=[
            nib.gifti.GiftiDataArray(np.asarray(part.coordinates, np.float32), intent="NIFTI_INTENT_POINTSET"),
            nib.gifti.GiftiDataArray(np.asarray(part.faces, np.int32), intent="NIFTI_INTENT_TRIANGLE")]), path)  # fmt: skip
    on_files = []
    for k, folder in enumerate(folders):
        on_files.append(tmp_path / f"files-{k}")
        shutil.copytree(folder, on_files[-1])
        record = dict(np.load(on_files[-1] / "permutation_record.npz"))
        np.savez(on_files[-1] / "permutation_record.npz", **{**record, "mesh": np.array(mesh_files)})
    assert main(["group", "--prevalence", *map(str, on_files), "--permutations", "2000", "--out",
                 str(tmp_path / "p-files")]) == 0  # fmt: skip
    capsys.readouterr()
    np.testing.assert_array_equal(
        load_surf_data(str(tmp_path / "p-files" / "prevalence_gamma0_hemi-L.func.gii")), gamma
    )
    assert json.loads((tmp_path / "p-files" / "summary.json").read_text())["data"]["mesh"] == json.loads(
        mesh_files
    )
    # a study on another mesh: one line, nothing written
    other = tmp_path / "other"
    shutil.copytree(folders[0], other)
    record = dict(np.load(other / "permutation_record.npz"))
    np.savez(other / "permutation_record.npz", **{**record, "mesh": np.array("fsaverage6")})
    assert main(["group", "--prevalence", folders[1], str(other), "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err
    assert "not on the mesh" in err and err.count("\n") == 1 and not (tmp_path / "p2").exists()
