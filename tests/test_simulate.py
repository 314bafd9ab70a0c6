"""Tests of the synthetic-data module."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from sklearn.model_selection import KFold, cross_val_score
from sklearn.svm import LinearSVC

from fastsearchlight import simulate as sim
from fastsearchlight.simulate import (
    SimulatedDataset,
    make_affine,
    make_brain_mask,
    simulate_haxby_like,
    write_dataset,
)

SMALL = dict(shape=(12, 14, 12), n_runs=3, n_per_class_per_run=4, n_regions=1)


@pytest.fixture(scope="module")
def small() -> SimulatedDataset:
    return simulate_haxby_like(**SMALL, random_state=3)


def _data(img: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(img.dataobj)


# --------------------------------------------------------------------------- geometry


def test_default_mask_has_haxby_size():
    mask = make_brain_mask((40, 64, 64), (3.5, 3.75, 3.75))
    assert mask.shape == (40, 64, 64)
    assert mask.dtype == bool
    assert mask.sum() >= 39_000
    # An ellipsoid inside the grid: it does not touch the faces of the grid.
    for axis in range(3):
        assert not np.take(mask, 0, axis=axis).any()
        assert not np.take(mask, -1, axis=axis).any()


def test_default_affine_is_haxby_affine():
    expected = np.array(
        [
            [-3.5, 0.0, 0.0, 68.25],
            [0.0, 3.75, 0.0, -118.125],
            [0.0, 0.0, 3.75, -118.125],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(make_affine((40, 64, 64), (3.5, 3.75, 3.75)), expected)
    unflipped = make_affine((40, 64, 64), (3.5, 3.75, 3.75), flip_x=False)
    assert unflipped[0, 0] == 3.5


# --------------------------------------------------------------------------- simulation


def test_shapes_dtypes_and_affine(small):
    n_vol = 3 * 2 * 4
    func = small.func_img
    assert isinstance(func, nib.Nifti1Image)
    assert func.shape == (12, 14, 12, n_vol)
    assert func.get_data_dtype() == np.float32
    assert _data(func).dtype == np.float32
    np.testing.assert_allclose(func.header.get_zooms(), (3.5, 3.75, 3.75, 2.5))
    np.testing.assert_allclose(func.affine, make_affine((12, 14, 12), (3.5, 3.75, 3.75)))
    for img in (small.mask_img, small.truth_img):
        assert img.shape == (12, 14, 12)
        assert img.get_data_dtype() == np.uint8
        np.testing.assert_allclose(img.affine, func.affine)
    assert list(small.labels.columns) == ["labels", "chunks"]
    assert len(small.labels) == n_vol == small.n_volumes
    assert small.conditions == ("face", "house")
    assert small.metadata["seed"] == 3
    assert small.metadata["n_volumes"] == n_vol


def test_default_parameters_give_haxby_workload_labels():
    # The design (labels) of the defaults, without generating the full 4D data.
    ds = simulate_haxby_like(shape=(16, 18, 16), n_regions=1)
    assert ds.func_img.shape[-1] == 216
    counts = ds.labels.groupby(["chunks", "labels"]).size()
    assert len(counts) == 24 and (counts == 9).all()


def test_same_seed_gives_identical_data(small):
    again = simulate_haxby_like(**SMALL, random_state=3)
    np.testing.assert_array_equal(_data(again.func_img), _data(small.func_img))
    np.testing.assert_array_equal(_data(again.mask_img), _data(small.mask_img))
    np.testing.assert_array_equal(_data(again.truth_img), _data(small.truth_img))
    pd.testing.assert_frame_equal(again.labels, small.labels)
    assert again.metadata == small.metadata


def test_other_seed_gives_other_data(small):
    other = simulate_haxby_like(**SMALL, random_state=4)
    assert not np.array_equal(_data(other.func_img), _data(small.func_img))


def test_generator_and_none_random_state():
    a = simulate_haxby_like(**SMALL, random_state=np.random.default_rng(7))
    b = simulate_haxby_like(**SMALL, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(_data(a.func_img), _data(b.func_img))
    assert a.metadata["seed"] is None

    c = simulate_haxby_like(**SMALL, random_state=None)
    seed = c.metadata["seed"]
    assert isinstance(seed, int)
    d = simulate_haxby_like(**SMALL, random_state=seed)
    np.testing.assert_array_equal(_data(c.func_img), _data(d.func_img))


def test_labels_balanced_per_run_and_in_order(small):
    labels = small.labels
    assert labels["chunks"].tolist() == sorted(labels["chunks"])
    assert sorted(labels["chunks"].unique()) == [0, 1, 2]
    for _, run in labels.groupby("chunks"):
        assert run["labels"].value_counts().to_dict() == {"face": 4, "house": 4}


def test_more_conditions_and_blocked_design():
    conditions = ("face", "house", "cat")
    ds = simulate_haxby_like(
        **{**SMALL, "n_per_class_per_run": 3},
        conditions=conditions,
        design="blocked",
        random_state=0,
    )
    assert ds.func_img.shape[-1] == 3 * 3 * 3
    assert ds.conditions == conditions
    for _, run in ds.labels.groupby("chunks"):
        values = run["labels"].tolist()
        assert sorted(values) == sorted(conditions * 3)
        # one block of 3 consecutive volumes per condition
        blocks = [values[i : i + 3] for i in range(0, 9, 3)]
        assert all(len(set(block)) == 1 for block in blocks)


def test_truth_inside_mask(small):
    mask = _data(small.mask_img) > 0
    truth = _data(small.truth_img) > 0
    assert truth.any()
    assert not (truth & ~mask).any()
    assert truth.sum() == small.metadata["n_informative_voxels"]
    assert small.metadata["n_brain_voxels"] == mask.sum()


def test_regions_do_not_overlap():
    ds = simulate_haxby_like(shape=(24, 30, 30), n_runs=1, n_per_class_per_run=1, n_regions=3, random_state=1)
    truth = _data(ds.truth_img) > 0
    assert truth.sum() == sum(ds.metadata["region_n_voxels"])
    centers_mm = np.array(ds.metadata["region_centers_mm"])
    dist = np.linalg.norm(centers_mm[:, None] - centers_mm[None], axis=-1)
    assert dist[np.triu_indices(3, 1)].min() > 2 * 7.0
    _, n_components = ndimage.label(truth)
    assert n_components == 3


def test_no_regions_gives_empty_truth():
    ds = simulate_haxby_like(**{**SMALL, "n_regions": 0}, random_state=0)
    assert not _data(ds.truth_img).any()
    assert ds.metadata["region_centers_vox"] == []


def test_intensities_are_realistic(small):
    data = _data(small.func_img)
    mask = _data(small.mask_img) > 0
    truth = _data(small.truth_img) > 0
    mean = data.mean(axis=-1)
    assert 750 < mean[mask].min() and mean[mask].max() < 1250
    assert mean[mask].std() > 10  # the baseline varies over space
    depth_outside = ndimage.distance_transform_edt(~mask, sampling=(3.5, 3.75, 3.75))
    assert mean[depth_outside > 10.0].mean() < 0.2 * mean[mask].mean()  # dark background
    # Noise of uninformative brain voxels, once the run means are removed.
    chunks = small.labels["chunks"].to_numpy()
    ts = data[mask & ~truth].astype(float)
    for run in np.unique(chunks):
        ts[:, chunks == run] -= ts[:, chunks == run].mean(axis=1, keepdims=True)
    sd = np.sqrt((ts**2).sum(axis=1) / (len(chunks) - len(np.unique(chunks))))
    assert 0.8 * 20.0 < np.median(sd) < 1.2 * 20.0


def test_noise_is_spatially_smooth():
    ds = simulate_haxby_like(**{**SMALL, "n_regions": 0}, random_state=0)
    white = simulate_haxby_like(**{**SMALL, "n_regions": 0}, smoothness_fwhm_mm=0, random_state=0)

    def neighbour_correlation(d: SimulatedDataset) -> float:
        data = _data(d.func_img).astype(float)
        chunks = d.labels["chunks"].to_numpy()
        for run in np.unique(chunks):  # remove the baseline and the run offsets
            data[..., chunks == run] -= data[..., chunks == run].mean(axis=-1, keepdims=True)
        a, b = data[4:8, 5:9, 4:8], data[4:8, 6:10, 4:8]
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    assert neighbour_correlation(ds) > 0.2
    assert abs(neighbour_correlation(white)) < 0.1


def test_planted_region_is_decodable_and_far_voxels_are_not():
    ds = simulate_haxby_like(shape=(16, 18, 16), n_regions=1, random_state=0)
    data = _data(ds.func_img)
    mask = _data(ds.mask_img) > 0
    truth = _data(ds.truth_img) > 0
    y = ds.labels["labels"].to_numpy()
    assert len(y) == 216

    informative = data[truth].T.astype(float)
    # The same number of brain voxels, as a compact set far from the region.
    vs = np.array(ds.metadata["parameters"]["voxel_size"])
    center = np.array(ds.metadata["region_centers_vox"][0])
    brain = np.argwhere(mask)
    far = brain[np.linalg.norm((brain - center) * vs, axis=1) > 7.0 + 10.0]
    seed = far[np.argmax(np.linalg.norm((far - center) * vs, axis=1))]
    closest = np.argsort(np.linalg.norm((far - seed) * vs, axis=1))[: truth.sum()]
    uninformative = data[tuple(far[closest].T)].T.astype(float)
    assert uninformative.shape == informative.shape

    def accuracy(X: np.ndarray) -> float:
        estimator = LinearSVC(max_iter=10_000, random_state=0)
        return float(cross_val_score(estimator, X, y, cv=KFold(4)).mean())

    assert accuracy(informative) > 0.7
    assert accuracy(uninformative) < 0.65


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(shape=(12, 14)), "shape"),
        (dict(shape=(12, 14, 0)), "shape"),
        (dict(shape=(12, 14, 12.5)), "shape"),
        (dict(voxel_size=(3.5, -1.0, 3.75)), "voxel_size"),
        (dict(voxel_size=3.5), "voxel_size"),
        (dict(n_runs=0), "n_runs"),
        (dict(n_runs=2.0), "n_runs"),
        (dict(n_per_class_per_run=0), "n_per_class_per_run"),
        (dict(conditions=("face",)), "conditions"),
        (dict(conditions="face"), "conditions"),
        (dict(conditions=("face", "face")), "conditions"),
        (dict(conditions=("face", "big house")), "conditions"),
        (dict(n_regions=-1), "n_regions"),
        (dict(n_regions=True), "n_regions"),
        (dict(region_radius_mm=0.0), "region_radius_mm"),
        (dict(effect_size=-1.0), "effect_size"),
        (dict(noise_sd=float("nan")), "noise_sd"),
        (dict(baseline=0.0), "baseline"),
        (dict(smoothness_fwhm_mm=-2.0), "smoothness_fwhm_mm"),
        (dict(random_state=-1), "random_state"),
        (dict(random_state="0"), "random_state"),
        (dict(design="interleaved"), "design"),
        (dict(n_regions=5, region_radius_mm=20.0), "n_regions"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=name):
        simulate_haxby_like(**{**SMALL, **kwargs})


# --------------------------------------------------------------------------- writing


EXPECTED_FILES = {"bold.nii.gz", "mask.nii.gz", "truth.nii.gz", "labels.txt", "README.md"}


def test_write_dataset_round_trip(small, tmp_path):
    out = tmp_path / "sim"
    paths = write_dataset(small, out)
    assert set(paths) == {"bold", "mask", "truth", "labels", "readme"}
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES  # no temporary files left

    images = {"bold": small.func_img, "mask": small.mask_img, "truth": small.truth_img}
    for key, img in images.items():
        loaded = nib.load(paths[key])
        np.testing.assert_array_equal(np.asarray(loaded.dataobj), _data(img))
        assert loaded.get_data_dtype() == img.get_data_dtype()
        np.testing.assert_allclose(loaded.affine, img.affine)
    assert nib.load(paths["bold"]).header.get_zooms()[-1] == pytest.approx(2.5)

    lines = paths["labels"].read_text().splitlines()
    assert lines[0] == "labels chunks"
    assert lines[1] == f"{small.labels['labels'][0]} {small.labels['chunks'][0]}"
    labels = pd.read_csv(paths["labels"], sep=" ")
    pd.testing.assert_frame_equal(labels, small.labels, check_dtype=False)

    readme = paths["readme"].read_text()
    assert "random_state=3" in readme
    assert "effect_size" in readme


def test_write_dataset_refuses_to_overwrite(small, tmp_path):
    write_dataset(small, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match="bold.nii.gz"):
        write_dataset(small, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before

    # A single existing file is enough to refuse, and nothing else is written.
    other = tmp_path / "other"
    other.mkdir()
    (other / "labels.txt").write_text("keep me\n")
    with pytest.raises(FileExistsError, match="labels.txt"):
        write_dataset(small, other)
    assert [p.name for p in other.iterdir()] == ["labels.txt"]
    assert (other / "labels.txt").read_text() == "keep me\n"

    paths = write_dataset(small, other, force=True)
    assert paths["labels"].read_text().startswith("labels chunks\n")
    assert {p.name for p in other.iterdir()} == EXPECTED_FILES


def test_interrupted_write_leaves_no_partial_file(small, tmp_path, monkeypatch):
    def failing_save(img, filename):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.nib, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(small, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_dataset_rejects_bad_arguments(small, tmp_path):
    with pytest.raises(ValueError, match="dataset"):
        write_dataset("not a dataset", tmp_path)  # type: ignore[arg-type]
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="out_dir"):
        write_dataset(small, a_file)
