"""Synthetic fMRI data shaped like the Haxby face-vs-house decoding workload.

:func:`simulate_haxby_like` builds a 4D BOLD image with a whole-brain mask, a map of the
voxels that carry class information, and Haxby-style labels (one row per volume, with the
run as ``chunks``). It is used by the benchmarks, the tests and the ``simulate`` command.
:func:`write_dataset` stores such a dataset on disk in the layout of the Haxby files.

Generative model
----------------
For a volume ``t`` of run ``r`` showing condition ``k``, the intensity at voxel ``v`` is::

    env(v) * (B(v) + o_r) + s(v) * n_t(v) + 1[v in region j] * effect_size * (P_jk(v) + m_jk)

- ``B`` is a baseline that varies smoothly over space, between 0.8 and 1.2 times
  ``baseline`` inside the brain.
- ``env`` is 1 inside the brain mask and falls off smoothly to a low background outside.
- ``o_r`` is a per-run mean offset, drawn once per run.
- ``n_t`` is Gaussian noise, independent from volume to volume, smoothed in space with a
  Gaussian kernel of ``smoothness_fwhm_mm`` and rescaled so its standard deviation is 1;
  ``s`` is ``noise_sd`` inside the brain and lower outside.
- ``P_jk`` is a random multi-voxel pattern of region ``j`` for condition ``k`` (zero mean,
  unit standard deviation over the region) and ``m_jk`` a small condition-dependent mean
  shift of the region (standard deviation ``mean_shift``).

The informative regions are non-overlapping balls of ``region_radius_mm`` placed well inside
the mask; ``truth_img`` marks their voxels. Everything is drawn from one
:class:`numpy.random.Generator`, so a given ``random_state`` always gives identical arrays.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = [
    "SimulatedDataset",
    "make_affine",
    "make_brain_mask",
    "simulate_haxby_like",
    "write_dataset",
]

#: Ratio between the full width at half maximum and the standard deviation of a Gaussian.
_FWHM_TO_SIGMA = 1.0 / math.sqrt(8.0 * math.log(2.0))

#: Relative amplitude of the smooth spatial variation of the baseline (0.2: 800-1200
#: around a baseline of 1000).
_BASELINE_VARIATION = 0.2
#: FWHM (mm) of the random field that makes the baseline vary over space.
_BASELINE_FWHM_MM = 40.0
#: Intensity outside the brain, as a fraction of the local baseline.
_BACKGROUND_LEVEL = 0.03
#: Noise outside the brain, as a fraction of ``noise_sd``.
_BACKGROUND_NOISE = 0.2
#: Width (mm) of the fall-off of the intensity and of the noise outside the brain mask.
_EDGE_WIDTH_MM = 4.0

#: Names of the files written by :func:`write_dataset`.
FILE_NAMES: dict[str, str] = {
    "bold": "bold.nii.gz",
    "mask": "mask.nii.gz",
    "truth": "truth.nii.gz",
    "labels": "labels.txt",
    "readme": "README.md",
}


@dataclass(frozen=True)
class SimulatedDataset:
    """A simulated decoding dataset.

    Attributes
    ----------
    func_img : nibabel.Nifti1Image
        4D BOLD image, float32, one volume per row of ``labels``.
    mask_img : nibabel.Nifti1Image
        3D whole-brain mask (uint8, 1 inside the brain).
    truth_img : nibabel.Nifti1Image
        3D mask (uint8) of the voxels of the planted informative regions; all of them lie
        inside ``mask_img``.
    labels : pandas.DataFrame
        Columns ``labels`` (condition name, str) and ``chunks`` (run index, int), one row
        per volume, in acquisition order.
    metadata : dict
        Parameters of the simulation (``"parameters"``), the seed (``"seed"``), the centres
        of the regions in voxel and world coordinates (``"region_centers_vox"``,
        ``"region_centers_mm"``), and voxel counts.
    """

    func_img: nib.Nifti1Image
    mask_img: nib.Nifti1Image
    truth_img: nib.Nifti1Image
    labels: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def conditions(self) -> tuple[str, ...]:
        """Names of the conditions, in the order given to the simulation."""
        return tuple(self.metadata["parameters"]["conditions"])

    @property
    def n_volumes(self) -> int:
        """Number of volumes (rows of ``labels``)."""
        return len(self.labels)


# --------------------------------------------------------------------------- validation


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    return int(value)


def _check_float(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    if not positive and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}.")
    return value


def _check_shape(shape: Any) -> tuple[int, int, int]:
    try:
        items = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of 3 integers, got {shape!r}.") from None
    if len(items) != 3:
        raise ValueError(f"shape must have 3 elements (x, y, z), got {shape!r}.")
    return tuple(_check_int(s, "shape", 3) for s in items)  # type: ignore[return-value]


def _check_voxel_size(voxel_size: Any) -> tuple[float, float, float]:
    try:
        items = tuple(voxel_size)
    except TypeError:
        raise ValueError(
            f"voxel_size must be a sequence of 3 positive numbers, got {voxel_size!r}."
        ) from None
    if len(items) != 3:
        raise ValueError(f"voxel_size must have 3 elements (x, y, z), got {voxel_size!r}.")
    sizes = tuple(_check_float(v, "voxel_size", positive=True) for v in items)
    return sizes  # type: ignore[return-value]


def _check_conditions(conditions: Any) -> tuple[str, ...]:
    if isinstance(conditions, str) or not isinstance(conditions, Sequence):
        raise ValueError(
            f"conditions must be a sequence of condition names, got {conditions!r}."
        )
    names = tuple(conditions)
    if len(names) < 2:
        raise ValueError(f"conditions must name at least 2 conditions, got {names!r}.")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"conditions must be non-empty strings, got {name!r}.")
        if any(ch.isspace() for ch in name):
            # labels.txt is space-separated: a name with whitespace could not be read back.
            raise ValueError(f"conditions must not contain whitespace, got {name!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"conditions must be distinct, got {names!r}.")
    return names


def _make_rng(random_state: Any) -> tuple[np.random.Generator, int | None]:
    """Return the generator and the integer seed it came from (None if unknown)."""
    if isinstance(random_state, np.random.Generator):
        return random_state, None
    if random_state is None:
        seed = int(np.random.SeedSequence().entropy)
        return np.random.default_rng(seed), seed
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise ValueError(
            "random_state must be None, a non-negative integer or a numpy Generator, "
            f"got {random_state!r}."
        )
    if random_state < 0:
        raise ValueError(f"random_state must be non-negative, got {random_state!r}.")
    return np.random.default_rng(int(random_state)), int(random_state)


# --------------------------------------------------------------------------- geometry


def make_affine(
    shape: Sequence[int],
    voxel_size: Sequence[float],
    *,
    flip_x: bool = True,
) -> np.ndarray:
    """Affine of a grid whose centre is the world origin.

    Parameters
    ----------
    shape : sequence of 3 int
        Grid shape.
    voxel_size : sequence of 3 float
        Voxel size in mm along x, y, z.
    flip_x : bool, default=True
        Make the x axis point to the left (negative x step), as in radiological images
        such as the Haxby data. For the default grid this gives exactly the Haxby affine.

    Returns
    -------
    ndarray of shape (4, 4)
    """
    shape = _check_shape(shape)
    voxel_size = _check_voxel_size(voxel_size)
    steps = np.array(voxel_size, dtype=float)
    if flip_x:
        steps[0] = -steps[0]
    center = (np.array(shape, dtype=float) - 1.0) / 2.0
    affine = np.eye(4)
    affine[:3, :3] = np.diag(steps)
    affine[:3, 3] = -steps * center
    return affine


def make_brain_mask(
    shape: Sequence[int] = (40, 64, 64),
    voxel_size: Sequence[float] = (3.5, 3.75, 3.75),
    *,
    fill: float = 0.8,
) -> np.ndarray:
    """Whole-brain mask: an axis-aligned ellipsoid centred in the grid.

    Parameters
    ----------
    shape : sequence of 3 int, default=(40, 64, 64)
        Grid shape.
    voxel_size : sequence of 3 float, default=(3.5, 3.75, 3.75)
        Voxel size in mm (validated only; an axis-aligned ellipsoid scaled to the grid
        covers the same voxels whatever the voxel size).
    fill : float, default=0.8
        Semi-axis of the ellipsoid along each axis, as a fraction of half the grid extent
        along that axis. The default leaves 43,976 voxels inside for the default grid
        (the Haxby mask has 39,912).

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    shape = _check_shape(shape)
    _check_voxel_size(voxel_size)
    fill = _check_float(fill, "fill", positive=True)
    if fill > 1.0:
        raise ValueError(f"fill must be in (0, 1], got {fill!r}.")
    r2 = np.zeros(shape, dtype=float)
    for axis, n in enumerate(shape):
        coords = (np.arange(n) - (n - 1) / 2.0) / (fill * n / 2.0)
        view = [1, 1, 1]
        view[axis] = n
        r2 = r2 + (coords**2).reshape(view)
    mask = r2 <= 1.0
    if not mask.any():
        raise ValueError(f"shape {shape} is too small for a brain mask with fill={fill}.")
    return mask


def _place_regions(
    mask: np.ndarray,
    voxel_size: tuple[float, float, float],
    n_regions: int,
    radius_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pick ``n_regions`` ball centres (voxel indices) well inside ``mask``, not overlapping.

    A centre is kept at least ``radius_mm`` plus one voxel diagonal (and at least 5 mm)
    away from the mask edge, and two centres are at least ``2 * radius_mm`` plus the same
    margin apart, so the balls are disjoint and separated by a layer of uninformative
    voxels. Centres are drawn one at a time, uniformly among the admissible voxels.
    """
    if n_regions == 0:
        return np.zeros((0, 3), dtype=int)
    vs = np.asarray(voxel_size)
    margin = max(5.0, float(np.linalg.norm(vs)))
    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=voxel_size)[
        1:-1, 1:-1, 1:-1
    ]
    candidates = np.argwhere(depth >= radius_mm + margin)
    centers: list[np.ndarray] = []
    for _ in range(n_regions):
        if len(candidates) == 0:
            raise ValueError(
                f"n_regions={n_regions} balls of region_radius_mm={radius_mm} do not fit "
                f"well inside the brain mask of a {mask.shape} grid; use a larger shape, "
                "fewer regions or a smaller radius."
            )
        center = candidates[rng.integers(len(candidates))]
        centers.append(center)
        dist = np.linalg.norm((candidates - center) * vs, axis=1)
        candidates = candidates[dist >= 2.0 * radius_mm + margin]
    return np.array(centers, dtype=int)


def _ball_indices(
    shape: tuple[int, int, int],
    voxel_size: tuple[float, float, float],
    center: np.ndarray,
    radius_mm: float,
) -> np.ndarray:
    """Flat (C-order) indices of the voxels within ``radius_mm`` of ``center``."""
    vs = np.asarray(voxel_size)
    reach = np.floor(radius_mm / vs).astype(int)
    offsets = np.stack(
        np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), axis=-1
    ).reshape(-1, 3)
    offsets = offsets[np.linalg.norm(offsets * vs, axis=1) <= radius_mm + 1e-9]
    coords = center + offsets
    inside = np.all((coords >= 0) & (coords < np.array(shape)), axis=1)
    return np.ravel_multi_index(tuple(coords[inside].T), shape)


def _noise_kernel_norm(sigma_vox: np.ndarray) -> float:
    """Standard deviation of unit white noise after ``gaussian_filter`` with ``sigma_vox``."""
    half = np.ceil(4.0 * sigma_vox).astype(int) + 1
    delta = np.zeros(tuple(2 * half + 1), dtype=float)
    delta[tuple(half)] = 1.0
    kernel = ndimage.gaussian_filter(delta, sigma_vox, mode="constant")
    return float(np.sqrt(np.sum(kernel**2)))


# --------------------------------------------------------------------------- simulation


def simulate_haxby_like(
    shape: Sequence[int] = (40, 64, 64),
    voxel_size: Sequence[float] = (3.5, 3.75, 3.75),
    n_runs: int = 12,
    n_per_class_per_run: int = 9,
    conditions: Sequence[str] = ("face", "house"),
    n_regions: int = 2,
    region_radius_mm: float = 7.0,
    effect_size: float = 8.0,
    noise_sd: float = 20.0,
    baseline: float = 1000.0,
    smoothness_fwhm_mm: float = 5.0,
    random_state: int | np.random.Generator | None = 0,
    *,
    mean_shift: float = 0.25,
    run_offset_sd: float = 15.0,
    design: Literal["random", "blocked"] = "random",
    tr: float = 2.5,
    block_length: int | None = None,
    temporal_ar1: float = 0.0,
) -> SimulatedDataset:
    """Simulate a searchlight decoding dataset like Haxby's face-vs-house workload.

    With the defaults the result has the Haxby grid (40 x 64 x 64 voxels of
    3.5 x 3.75 x 3.75 mm, same affine) and 216 volumes: 12 runs of 9 "face" and 9 "house"
    volumes. A linear SVM on a 5.6 mm sphere (19 voxels) centred in a planted region
    decodes the two conditions at about 0.85 accuracy with ``KFold(4)``; away from the
    regions, accuracy is at chance. See the module docstring for the generative model.

    Parameters
    ----------
    shape : sequence of 3 int, default=(40, 64, 64)
        Grid shape (x, y, z).
    voxel_size : sequence of 3 float, default=(3.5, 3.75, 3.75)
        Voxel size in mm.
    n_runs : int, default=12
        Number of runs; the run index (0-based) is the ``chunks`` column of the labels.
    n_per_class_per_run : int, default=9
        Number of volumes of each condition in each run.
    conditions : sequence of str, default=("face", "house")
        Condition names (at least 2, distinct, without whitespace).
    n_regions : int, default=2
        Number of informative regions (0 gives pure noise, useful as a null dataset).
    region_radius_mm : float, default=7.0
        Radius of each informative ball, in mm.
    effect_size : float, default=8.0
        Standard deviation over the voxels of a region of each condition's pattern, in
        intensity units (the same units as ``noise_sd``). 0 gives no signal.
    noise_sd : float, default=20.0
        Standard deviation of the (smoothed) noise of each brain voxel in each volume.
    baseline : float, default=1000.0
        Mean baseline intensity; it varies smoothly over space within +/-20 %.
    smoothness_fwhm_mm : float, default=5.0
        FWHM in mm of the Gaussian kernel smoothing the noise of each volume (0: white
        noise).
    random_state : int, numpy.random.Generator or None, default=0
        Seed of the generator that draws everything. None draws a fresh seed (recorded in
        ``metadata["seed"]``); a Generator is used as is (and advanced).
    mean_shift : float, default=0.25
        Standard deviation of the condition-dependent mean shift of each region, as a
        multiple of ``effect_size``.
    run_offset_sd : float, default=15.0
        Standard deviation of the per-run offset added to every brain voxel.
    design : {"random", "blocked"}, default="random"
        Order of the volumes within a run: a random permutation of all the volumes of the
        run, or blocks of ``block_length`` consecutive volumes of one condition, the
        blocks in random order.
    tr : float, default=2.5
        Repetition time in seconds, stored in the image header.
    block_length : int or None, default=None
        Volumes per block of the "blocked" design; it must divide ``n_per_class_per_run``.
        None: ``n_per_class_per_run`` (one block per condition and run).
    temporal_ar1 : float, default=0.0
        Autocorrelation of the noise from one volume to the next within a run, as an AR(1)
        process of this coefficient (in [0, 1)) with the same variance; 0: independent
        volumes. The noise of real BOLD series is autocorrelated (about 0.3-0.6 at a TR of
        2-2.5 s), so in a block design the volumes of a block share slow noise.

    Returns
    -------
    SimulatedDataset

    Raises
    ------
    ValueError
        If an argument is invalid (the message names it), or if the regions do not fit
        well inside the brain mask.
    """
    shape = _check_shape(shape)
    voxel_size = _check_voxel_size(voxel_size)
    n_runs = _check_int(n_runs, "n_runs", 1)
    n_per_class_per_run = _check_int(n_per_class_per_run, "n_per_class_per_run", 1)
    conditions = _check_conditions(conditions)
    n_regions = _check_int(n_regions, "n_regions", 0)
    region_radius_mm = _check_float(region_radius_mm, "region_radius_mm", positive=True)
    effect_size = _check_float(effect_size, "effect_size")
    noise_sd = _check_float(noise_sd, "noise_sd")
    baseline = _check_float(baseline, "baseline", positive=True)
    smoothness_fwhm_mm = _check_float(smoothness_fwhm_mm, "smoothness_fwhm_mm")
    mean_shift = _check_float(mean_shift, "mean_shift")
    run_offset_sd = _check_float(run_offset_sd, "run_offset_sd")
    tr = _check_float(tr, "tr", positive=True)
    if design not in ("random", "blocked"):
        raise ValueError(f"design must be 'random' or 'blocked', got {design!r}.")
    if block_length is None:
        block_length = n_per_class_per_run
    block_length = _check_int(block_length, "block_length", 1)
    if n_per_class_per_run % block_length:
        raise ValueError(
            f"block_length ({block_length}) must divide n_per_class_per_run ({n_per_class_per_run})."
        )
    temporal_ar1 = _check_float(temporal_ar1, "temporal_ar1")
    if temporal_ar1 >= 1:
        raise ValueError(f"temporal_ar1 must be < 1, got {temporal_ar1!r}.")
    rng, seed = _make_rng(random_state)

    n_classes = len(conditions)
    n_volumes = n_runs * n_classes * n_per_class_per_run
    vs = np.asarray(voxel_size)
    affine = make_affine(shape, voxel_size)
    mask = make_brain_mask(shape, voxel_size)

    # Smooth spatial variation of the baseline, scaled to +/-20 % inside the brain.
    field_ = ndimage.gaussian_filter(
        rng.standard_normal(shape),
        _BASELINE_FWHM_MM * _FWHM_TO_SIGMA / vs,
        mode="reflect",
    )
    field_ -= field_[mask].mean()
    peak = np.abs(field_[mask]).max()
    if peak > 0:
        field_ /= peak
    base = baseline * (1.0 + _BASELINE_VARIATION * field_)

    # Fall-off outside the brain: 1 inside the mask, decaying with the distance (mm).
    outside = ndimage.distance_transform_edt(~mask, sampling=voxel_size)
    falloff = np.exp(-0.5 * (outside / _EDGE_WIDTH_MM) ** 2)
    envelope = _BACKGROUND_LEVEL + (1.0 - _BACKGROUND_LEVEL) * falloff
    noise_scale = noise_sd * (_BACKGROUND_NOISE + (1.0 - _BACKGROUND_NOISE) * falloff)
    noise_scale = noise_scale.astype(np.float32)
    static = (envelope * base).astype(np.float32)
    envelope = envelope.astype(np.float32)

    # Informative regions and their class patterns.
    centers = _place_regions(mask, voxel_size, n_regions, region_radius_mm, rng)
    region_indices = [_ball_indices(shape, voxel_size, c, region_radius_mm) for c in centers]
    truth = np.zeros(shape, dtype=bool)
    blocks = []
    for idx in region_indices:
        truth.ravel()[idx] = True
        patterns = rng.standard_normal((n_classes, idx.size))
        patterns -= patterns.mean(axis=1, keepdims=True)
        sd = patterns.std(axis=1, keepdims=True)
        patterns /= np.where(sd > 0, sd, 1.0)
        shifts = mean_shift * rng.standard_normal((n_classes, 1))
        blocks.append(effect_size * (patterns + shifts))
    truth_idx = (
        np.concatenate(region_indices) if region_indices else np.zeros(0, dtype=np.intp)
    )
    signal = (
        np.concatenate(blocks, axis=1) if blocks else np.zeros((n_classes, 0))
    ).astype(np.float32)
    if not np.all(mask.ravel()[truth_idx]):  # guaranteed by _place_regions
        raise RuntimeError("planted regions extend outside the brain mask")

    # Design: per-run offsets and the order of the conditions within each run.
    run_offsets = run_offset_sd * rng.standard_normal(n_runs)
    codes = np.repeat(np.arange(n_classes), n_per_class_per_run)
    order = []
    for _ in range(n_runs):
        if design == "random":
            order.append(rng.permutation(codes))
        else:
            blocks_per_class = n_per_class_per_run // block_length
            blocks = rng.permutation(np.repeat(np.arange(n_classes), blocks_per_class))
            order.append(np.repeat(blocks, block_length))
    class_codes = np.concatenate(order)
    chunks = np.repeat(np.arange(n_runs), n_classes * n_per_class_per_run)

    # Noise: smoothed only within the bounding box of the mask, padded by the kernel reach
    # (outside it the noise is white; it is scaled down there anyway).
    if smoothness_fwhm_mm > 0:
        sigma_vox = smoothness_fwhm_mm * _FWHM_TO_SIGMA / vs
        norm = _noise_kernel_norm(sigma_vox)
        pad = np.ceil(4.0 * sigma_vox).astype(int)
        nz = np.argwhere(mask)
        lo = np.maximum(nz.min(axis=0) - pad, 0)
        hi = np.minimum(nz.max(axis=0) + pad + 1, shape)
        bbox = tuple(slice(a, b) for a, b in zip(lo, hi))
        scale_in_box = noise_scale[bbox] / np.float32(norm)
    else:
        sigma_vox = None

    # Fortran order: each volume is contiguous, as in an image loaded by nibabel.
    data = np.empty(shape + (n_volumes,), dtype=np.float32, order="F")
    vol = np.empty(shape, dtype=np.float32)
    flat = vol.reshape(-1)
    innovation = np.float32(math.sqrt(1.0 - temporal_ar1**2))
    previous = None
    for t in range(n_volumes):
        noise = rng.standard_normal(shape, dtype=np.float32)
        if sigma_vox is not None:
            smoothed = ndimage.gaussian_filter(noise[bbox], sigma_vox, mode="reflect")
            noise *= noise_scale
            noise[bbox] = smoothed * scale_in_box
        else:
            noise *= noise_scale
        if temporal_ar1 > 0:
            # AR(1) within a run, stationary: the first volume of a run starts afresh
            if previous is not None and chunks[t] == chunks[t - 1]:
                noise *= innovation
                noise += np.float32(temporal_ar1) * previous
            previous = noise
        np.multiply(envelope, np.float32(run_offsets[chunks[t]]), out=vol)
        vol += static
        vol += noise
        flat[truth_idx] += signal[class_codes[t]]
        data[..., t] = vol

    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    func_img = nib.Nifti1Image(data, affine, header)
    func_img.header.set_zooms(tuple(voxel_size) + (tr,))
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    truth_img = nib.Nifti1Image(truth.astype(np.uint8), affine)
    for img in (func_img, mask_img, truth_img):
        img.set_qform(affine, code="scanner")
        img.set_sform(affine, code="scanner")
        img.header.set_xyzt_units("mm", "sec")

    labels = pd.DataFrame(
        {
            "labels": np.asarray(conditions, dtype=object)[class_codes],
            "chunks": chunks.astype(np.int64),
        }
    )
    centers_mm = nib.affines.apply_affine(affine, centers) if len(centers) else np.zeros((0, 3))
    metadata: dict[str, Any] = {
        "generator": "fastsearchlight.simulate.simulate_haxby_like",
        "seed": seed,
        "parameters": {
            "shape": list(shape),
            "voxel_size": list(voxel_size),
            "n_runs": n_runs,
            "n_per_class_per_run": n_per_class_per_run,
            "conditions": list(conditions),
            "n_regions": n_regions,
            "region_radius_mm": region_radius_mm,
            "effect_size": effect_size,
            "noise_sd": noise_sd,
            "baseline": baseline,
            "smoothness_fwhm_mm": smoothness_fwhm_mm,
            "mean_shift": mean_shift,
            "run_offset_sd": run_offset_sd,
            "design": design,
            "block_length": block_length,
            "temporal_ar1": temporal_ar1,
            "tr": tr,
        },
        "n_volumes": n_volumes,
        "n_brain_voxels": int(mask.sum()),
        "n_informative_voxels": int(truth.sum()),
        "region_centers_vox": centers.tolist(),
        "region_centers_mm": np.round(centers_mm, 3).tolist(),
        "region_n_voxels": [int(idx.size) for idx in region_indices],
    }
    return SimulatedDataset(func_img, mask_img, truth_img, labels, metadata)


# --------------------------------------------------------------------------- writing


def _readme_text(dataset: SimulatedDataset) -> str:
    meta = dataset.metadata
    params = meta.get("parameters", {})
    seed = meta.get("seed")
    seed_text = (
        str(seed) if seed is not None else "unknown (a numpy Generator was supplied)"
    )
    lines = [
        "# Simulated searchlight decoding dataset",
        "",
        "Synthetic fMRI data made by `fastsearchlight.simulate.simulate_haxby_like`, shaped",
        "like the Haxby face-vs-house decoding workload.",
        "",
        "Files:",
        "",
        "- `bold.nii.gz`: 4D BOLD image (float32), one volume per line of `labels.txt`.",
        "- `mask.nii.gz`: whole-brain mask (an ellipsoid).",
        "- `truth.nii.gz`: voxels of the planted informative regions.",
        "- `labels.txt`: `labels chunks` header, then the condition and run of each volume,",
        "  space separated, in acquisition order.",
        "",
        "Model: smoothly varying baseline, per-run offsets, temporally independent Gaussian",
        "noise smoothed in space, and in each informative region (a ball) a random",
        "multi-voxel pattern per condition plus a small condition-dependent mean shift.",
        "",
        f"Seed: {seed_text}",
        "",
        "Parameters:",
        "",
    ]
    for key, value in params.items():
        lines.append(f"- `{key}`: {value!r}")
    lines += [
        "",
        f"Volumes: {meta.get('n_volumes', dataset.n_volumes)}; brain voxels: "
        f"{meta.get('n_brain_voxels')}; informative voxels: "
        f"{meta.get('n_informative_voxels')}.",
        f"Region centres (voxel indices): {meta.get('region_centers_vox')}.",
        f"Region centres (mm): {meta.get('region_centers_mm')}.",
        "",
        "Reproduce with:",
        "",
        "```python",
        "from fastsearchlight.simulate import simulate_haxby_like",
    ]
    if seed is not None and params:
        args = ", ".join(
            f"{k}={tuple(v) if isinstance(v, list) else v!r}" for k, v in params.items()
        )
        lines.append(f"dataset = simulate_haxby_like({args}, random_state={seed})")
    else:
        lines.append("# not reproducible: the seed is unknown")
    lines += ["```", ""]
    return "\n".join(lines)


def _labels_text(labels: pd.DataFrame) -> str:
    rows = ["labels chunks"]
    rows += [f"{lab} {int(chunk)}" for lab, chunk in zip(labels["labels"], labels["chunks"])]
    return "\n".join(rows) + "\n"


def _write_atomic(path: Path, writer) -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it.

    ``writer(tmp_path)`` writes the temporary file; its name keeps the suffix of ``path``
    (nibabel picks the compression from it).
    """
    suffix = ".tmp" + "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_dataset(
    dataset: SimulatedDataset,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
) -> dict[str, Path]:
    """Write a simulated dataset in the layout of the Haxby files.

    Writes ``bold.nii.gz``, ``mask.nii.gz``, ``truth.nii.gz``, ``labels.txt`` (header
    ``labels chunks``, then ``<label> <chunk>`` per volume) and ``README.md`` into
    ``out_dir`` (created if needed). Each file is first written under a temporary name in
    ``out_dir`` and then renamed with :func:`os.replace`, so an interrupted run never leaves
    a partly written file under a final name.

    Parameters
    ----------
    dataset : SimulatedDataset
        The dataset, as returned by :func:`simulate_haxby_like`.
    out_dir : str or path-like
        Output directory.
    force : bool, default=False
        Overwrite existing files. Without it, nothing is written if any of the files
        exists.

    Returns
    -------
    dict of str to Path
        Paths of the written files, under the keys ``"bold"``, ``"mask"``, ``"truth"``,
        ``"labels"`` and ``"readme"``.

    Raises
    ------
    FileExistsError
        If ``force`` is False and one of the files exists (the message names it).
    ValueError
        If ``dataset`` is not a :class:`SimulatedDataset` or ``out_dir`` is an existing
        file.
    """
    if not isinstance(dataset, SimulatedDataset):
        raise ValueError(f"dataset must be a SimulatedDataset, got {type(dataset).__name__}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir exists and is not a directory: {out}")
    paths = {key: out / name for key, name in FILE_NAMES.items()}
    if not force:
        for path in paths.values():
            if path.exists() or path.is_symlink():
                raise FileExistsError(
                    f"{path} already exists; pass force=True to overwrite it."
                )
    out.mkdir(parents=True, exist_ok=True)

    def _text_writer(text: str):
        def write(tmp: Path) -> None:
            tmp.write_text(text, encoding="utf-8")

        return write

    def _image_writer(img: nib.Nifti1Image):
        def write(tmp: Path) -> None:
            nib.save(img, tmp)

        return write

    # The labels and README last: a directory with labels.txt has its images.
    _write_atomic(paths["bold"], _image_writer(dataset.func_img))
    _write_atomic(paths["mask"], _image_writer(dataset.mask_img))
    _write_atomic(paths["truth"], _image_writer(dataset.truth_img))
    _write_atomic(paths["labels"], _text_writer(_labels_text(dataset.labels)))
    _write_atomic(paths["readme"], _text_writer(_readme_text(dataset)))
    return paths
