"""Small RSA data sets and rsatoolbox's reference RDMs, shared by the RSA tests."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FASTSEARCHLIGHT_SHARED", REPO.parent / "shared"))
BRAIN25_DIR = SHARED / "data" / "haxby2001-subj1-25mm"

#: (method, noise) pairs rsatoolbox's calc_rdm takes
CASES = [("euclidean", None), ("correlation", None)] + [
    (method, noise)
    for method in ("mahalanobis", "crossnobis")
    for noise in (None, "shrinkage_diag", "shrinkage_eye", "diag", "full")
]


def design(n_conditions=5, n_runs=4, per_run=2, seed=0, names="ebadcfgh"):
    """Shuffled condition names and runs, every condition ``per_run`` times in every run
    (or ``per_run[r]`` times in run ``r``)."""
    rng = np.random.default_rng(seed)
    per_run = [per_run] * n_runs if np.isscalar(per_run) else list(per_run)
    codes = np.concatenate([np.repeat(np.arange(n_conditions), k) for k in per_run])
    runs = np.repeat(np.arange(n_runs), [n_conditions * k for k in per_run])
    order = rng.permutation(len(codes))
    return np.array(list(names))[codes[order]], runs[order] + 1


def reference_rdm(data, conditions, runs, method, noise):
    """rsatoolbox's RDM vector of one sphere's data (samples x voxels)."""
    import warnings

    from rsatoolbox.data import Dataset
    from rsatoolbox.data.noise import prec_from_measurements
    from rsatoolbox.rdm import calc_rdm

    ds = Dataset(np.asarray(data, dtype=np.float64), obs_descriptors={"cond": conditions, "run": runs})
    prec = None if noise is None else prec_from_measurements(ds, obs_desc="cond", method=noise)
    with warnings.catch_warnings():  # rsatoolbox casts NaN run labels it never uses
        warnings.simplefilter("ignore", RuntimeWarning)
        rdm = calc_rdm(ds, method=method, descriptor="cond", noise=prec, cv_descriptor="run")
    return rdm.dissimilarities[0], np.asarray(rdm.pattern_descriptors["cond"])


def volume(conditions, shape=(7, 8, 6), seed=0, signal=0.7, geometry=None):
    """A 4D image with condition patterns everywhere, and a mask with a one-voxel border.

    The patterns are independent across conditions, or with ``geometry`` (n_conditions x k)
    random mixtures of its columns (so that their distances follow its rows' distances).
    """
    rng = np.random.default_rng(seed)
    names, codes = np.unique(conditions, return_inverse=True)
    if geometry is None:
        patterns = rng.standard_normal(shape + (len(names),)) * signal
    else:
        patterns = rng.standard_normal(shape + (geometry.shape[1],)) @ geometry.T * signal
    data = 800.0 + rng.standard_normal(shape + (len(codes),)) + patterns[..., codes]
    affine = np.diag([3.0, 3.0, 3.5, 1.0])
    affine[:3, 3] = [-9.0, 12.0, 3.0]
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    return nib.Nifti1Image(data.astype(np.float32), affine), nib.Nifti1Image(mask, affine)


def sphere_data(sl, img, sphere: int) -> np.ndarray:
    """The data (samples x voxels) of one sphere of a fitted searchlight."""
    from fastsearchlight.images import load_mask_on_grid, masked_data

    mask = load_mask_on_grid(sl.mask_img, "mask_img", img) if sl.mask_img is not None else None
    X = masked_data(img, mask, dtype=np.float64)
    return X[:, sl.neighbourhoods_.voxels(sphere)]


def assert_close_to_scale(ours, ref, rtol):
    """Every entry within ``rtol`` times the largest magnitude of its reference RDM."""
    ours, ref = np.atleast_2d(ours), np.atleast_2d(ref)
    scale = np.abs(ref).max(axis=1, keepdims=True)
    err = np.abs(ours.astype(np.float64) - ref) / scale
    assert np.all(err <= rtol), f"largest relative error {err.max():.3g} > {rtol:g}"
