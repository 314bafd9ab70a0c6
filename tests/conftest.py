"""Shared fixtures: the real Haxby slice (skipped when absent) and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTSEARCHLIGHT_SHARED", REPO.parent / "shared"))
SLICE_DIR = SHARED / "data" / "haxby2001-subj1-slice"
BRAIN25_DIR = SHARED / "data" / "haxby2001-subj1-25mm"


def _load_haxby(folder: Path, mask_name: str, conditions=("face", "house")):
    if not (folder / "bold.nii.gz").exists():
        pytest.skip(f"real data not found in {folder}")
    from nilearn.image import index_img

    labels = pd.read_csv(folder / "labels.txt", sep=" ")
    keep = labels["labels"].isin(conditions).to_numpy()
    func = index_img(str(folder / "bold.nii.gz"), keep)
    func = nib.Nifti1Image(np.asarray(func.dataobj, dtype=np.float32), func.affine)
    return {
        "func": func,
        "mask": nib.load(folder / mask_name),
        "y": labels["labels"].to_numpy()[keep],
        "groups": labels["chunks"].to_numpy()[keep],
    }


@pytest.fixture(scope="session")
def haxby_slice():
    """Face vs house volumes of the Haxby 2001 subject-1 slice (216 volumes, 530 voxels)."""
    return _load_haxby(SLICE_DIR, "mask.nii.gz")


@pytest.fixture(scope="session")
def haxby_25mm():
    """Face vs house volumes of the Haxby 2001 subject-1 whole brain at 25 mm."""
    return _load_haxby(BRAIN25_DIR, "mask_brain.nii.gz")


def make_small_dataset(
    shape=(7, 8, 6),
    n_per_class=24,
    n_classes=2,
    n_runs=4,
    voxel_size=(3.0, 3.0, 3.5),
    seed=0,
    scale=1000.0,
):
    """A small 4D image with an informative blob, a mask, labels and runs."""
    rng = np.random.default_rng(seed)
    n = n_per_class * n_classes
    y = np.repeat(np.arange(n_classes), n_per_class)
    rng.shuffle(y)
    groups = np.arange(n) % n_runs
    data = scale + 20.0 * rng.standard_normal(shape + (n,))
    centre = tuple(s // 2 for s in shape)
    patterns = rng.standard_normal((n_classes, 3, 3, 3)) * 12.0
    sl = tuple(slice(c - 1, c + 2) for c in centre)
    for k in range(n_classes):
        data[sl + (y == k,)] += patterns[k][..., None]
    affine = np.diag(list(voxel_size) + [1.0])
    affine[:3, 3] = [-10.0, -12.0, 4.0]
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    return {
        "func": nib.Nifti1Image(data.astype(np.float32), affine),
        "mask": nib.Nifti1Image(mask, affine),
        "y": np.array(["face", "house", "cat", "shoe"])[y],
        "groups": groups,
    }


@pytest.fixture
def small_dataset():
    return make_small_dataset()


@pytest.fixture
def make_dataset():
    """The factory of small synthetic data sets, for tests that need variants."""
    return make_small_dataset
