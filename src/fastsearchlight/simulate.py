"""Synthetic fMRI data shaped like the Haxby face-vs-house decoding workload.

:func:`simulate_haxby_like` builds a 4D BOLD image with a whole-brain mask, a map of the
voxels that carry class information, and Haxby-style labels (one row per volume, with the
run as ``chunks``). It is used by the benchmarks, the tests and the ``simulate`` command.
:func:`write_dataset` stores such a dataset on disk in the layout of the Haxby files.

With the defaults the result has the Haxby grid (40 x 64 x 64 voxels of 3.5 x 3.75 x 3.75 mm,
same affine) and 216 volumes: 12 runs of 9 "face" and 9 "house" volumes. A linear SVM on a
5.6 mm sphere (19 voxels) centred in a planted region decodes the two conditions at about 0.85
accuracy with ``KFold(4)``; away from the regions, accuracy is at chance.

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

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
import pandas as pd

from ._simulation import (
    _check_float,
    _check_shape,
    _check_voxel_size,
    _make_rng,
    assemble,
    background,
    check_params,
    images,
    labels_table,
    metadata,
    plant_regions,
)
from ._simulation import design as _design
from .io import atomic_path

__all__ = [
    "SimulatedDataset",
    "make_affine",
    "make_brain_mask",
    "simulate_haxby_like",
    "write_dataset",
]

#: Names of the files written by :func:`write_dataset`.
FILE_NAMES: dict[str, str] = {
    "bold": "bold.nii.gz",
    "mask": "mask.nii.gz",
    "truth": "truth.nii.gz",
    "labels": "labels.txt",
    "readme": "README.md",
}
#: the dataset's images, by their key in :data:`FILE_NAMES`
_IMAGES = {"bold": "func_img", "mask": "mask_img", "truth": "truth_img"}


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


# --------------------------------------------------------------------------- simulation


def simulate_haxby_like(
    shape: Sequence[int] = (40, 64, 64), voxel_size: Sequence[float] = (3.5, 3.75, 3.75),
    n_runs: int = 12, n_per_class_per_run: int = 9, conditions: Sequence[str] = ("face", "house"),
    n_regions: int = 2, region_radius_mm: float = 7.0, effect_size: float = 8.0,
    noise_sd: float = 20.0, baseline: float = 1000.0, smoothness_fwhm_mm: float = 5.0,
    random_state: int | np.random.Generator | None = 0, *, mean_shift: float = 0.25,
    run_offset_sd: float = 15.0, design: Literal["random", "blocked"] = "random", tr: float = 2.5,
    block_length: int | None = None, temporal_ar1: float = 0.0,
) -> SimulatedDataset:  # fmt: skip
    """Simulate a searchlight decoding dataset like Haxby's face-vs-house workload.

    The defaults give the Haxby grid and design; the module docstring gives the model.

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
        Standard deviation over the voxels of a region of each condition's pattern, in intensity
        units (the same units as ``noise_sd``). 0 gives no signal.
    noise_sd : float, default=20.0
        Standard deviation of the (smoothed) noise of each brain voxel in each volume.
    baseline : float, default=1000.0
        Mean baseline intensity; it varies smoothly over space within +/-20 %.
    smoothness_fwhm_mm : float, default=5.0
        FWHM in mm of the Gaussian kernel smoothing the noise of each volume (0: white noise).
    random_state : int, numpy.random.Generator or None, default=0
        Seed of the generator that draws everything. None draws a fresh seed (recorded in
        ``metadata["seed"]``); a Generator is used as is (and advanced).
    mean_shift : float, default=0.25
        Standard deviation of the condition-dependent mean shift of each region, as a multiple of
        ``effect_size``.
    run_offset_sd : float, default=15.0
        Standard deviation of the per-run offset added to every brain voxel.
    design : {"random", "blocked"}, default="random"
        Order of the volumes within a run: a random permutation of all the volumes of the run, or
        blocks of ``block_length`` consecutive volumes of one condition, the blocks in random
        order.
    tr : float, default=2.5
        Repetition time in seconds, stored in the image header.
    block_length : int or None, default=None
        Volumes per block of the "blocked" design; it must divide ``n_per_class_per_run``. None:
        ``n_per_class_per_run`` (one block per condition and run).
    temporal_ar1 : float, default=0.0
        AR(1) coefficient (in [0, 1)) of the noise from one volume to the next within a run, at
        the same variance; 0: independent volumes (real BOLD noise: about 0.3-0.6 at a TR of 2 s).

    Returns
    -------
    SimulatedDataset

    Raises
    ------
    ValueError
        If an argument is invalid (the message names it), or if the regions do not fit well inside
        the brain mask.
    """
    p = check_params(**{k: v for k, v in locals().items() if k != "random_state"})
    rng, seed = _make_rng(random_state)
    affine, mask = make_affine(p.shape, p.voxel_size), make_brain_mask(p.shape, p.voxel_size)
    bg = background(p, mask, rng)
    regions = plant_regions(p, mask, rng)
    run_offsets, class_codes, chunks = _design(p, rng)
    data = assemble(p, mask, bg, regions, run_offsets, class_codes, chunks, rng)
    imgs = images(p, data, mask, regions.truth, affine)
    return SimulatedDataset(
        *imgs, labels_table(p, class_codes, chunks), metadata(p, seed, mask, regions, affine)
    )


# --------------------------------------------------------------------------- writing


def _readme_text(dataset: SimulatedDataset) -> str:
    meta = dataset.metadata
    params = meta.get("parameters", {})
    seed = meta.get("seed")
    seed_text = str(seed) if seed is not None else "unknown (a numpy Generator was supplied)"
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
        args = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v!r}" for k, v in params.items())
        lines.append(f"dataset = simulate_haxby_like({args}, random_state={seed})")
    else:
        lines.append("# not reproducible: the seed is unknown")
    lines += ["```", ""]
    return "\n".join(lines)


def _labels_text(labels: pd.DataFrame) -> str:
    rows = ["labels chunks"]
    rows += [f"{lab} {int(chunk)}" for lab, chunk in zip(labels["labels"], labels["chunks"])]
    return "\n".join(rows) + "\n"


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
                raise FileExistsError(f"{path} already exists; pass force=True to overwrite it.")
    out.mkdir(parents=True, exist_ok=True)

    # The labels and README last: a directory with labels.txt has its images.
    for key in ("bold", "mask", "truth"):
        with atomic_path(paths[key], sync=True) as tmp:
            nib.save(getattr(dataset, _IMAGES[key]), tmp)
    for key, text in (("labels", _labels_text(dataset.labels)), ("readme", _readme_text(dataset))):
        with atomic_path(paths[key], sync=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return paths
