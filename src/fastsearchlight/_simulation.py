"""The steps of :func:`fastsearchlight.simulate.simulate_haxby_like`: checked parameters,
baseline and brain envelope, informative regions, design, noise, and the assembly of the
volumes. Every random draw comes from one generator, in a fixed order (baseline field,
region centres, region patterns, run offsets, orders of the conditions, noise of each
volume), so a given seed always gives identical arrays.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

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
        raise ValueError(f"conditions must be a sequence of condition names, got {conditions!r}.")
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
            f"random_state must be None, a non-negative integer or a numpy Generator, got {random_state!r}."
        )
    if random_state < 0:
        raise ValueError(f"random_state must be non-negative, got {random_state!r}.")
    return np.random.default_rng(int(random_state)), int(random_state)


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
    depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=voxel_size)[1:-1, 1:-1, 1:-1]
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
    offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), axis=-1).reshape(
        -1, 3
    )
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


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class SimulationParams:
    """The parameters of a simulation, checked (see ``simulate_haxby_like``)."""

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    n_runs: int
    n_per_class_per_run: int
    conditions: tuple[str, ...]
    n_regions: int
    region_radius_mm: float
    effect_size: float
    noise_sd: float
    baseline: float
    smoothness_fwhm_mm: float
    mean_shift: float
    run_offset_sd: float
    design: str
    block_length: int
    temporal_ar1: float
    tr: float

    @property
    def n_classes(self) -> int:
        """Number of conditions."""
        return len(self.conditions)

    @property
    def n_volumes(self) -> int:
        """Number of volumes, all runs together."""
        return self.n_runs * self.n_classes * self.n_per_class_per_run

    def record(self) -> dict[str, Any]:
        """The parameters as ``metadata["parameters"]`` holds them."""
        return {
            "shape": list(self.shape), "voxel_size": list(self.voxel_size), "n_runs": self.n_runs,
            "n_per_class_per_run": self.n_per_class_per_run, "conditions": list(self.conditions),
            "n_regions": self.n_regions, "region_radius_mm": self.region_radius_mm,
            "effect_size": self.effect_size, "noise_sd": self.noise_sd, "baseline": self.baseline,
            "smoothness_fwhm_mm": self.smoothness_fwhm_mm, "mean_shift": self.mean_shift,
            "run_offset_sd": self.run_offset_sd, "design": self.design,
            "block_length": self.block_length, "temporal_ar1": self.temporal_ar1, "tr": self.tr,
        }  # fmt: skip


def check_params(shape, voxel_size, n_runs, n_per_class_per_run, conditions, n_regions,
                 region_radius_mm, effect_size, noise_sd, baseline, smoothness_fwhm_mm,
                 mean_shift, run_offset_sd, design, tr, block_length, temporal_ar1) -> SimulationParams:  # fmt: skip
    """Check every parameter (a ValueError names the first bad one)."""
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
    return SimulationParams(
        shape, voxel_size, n_runs, n_per_class_per_run, conditions, n_regions, region_radius_mm,
        effect_size, noise_sd, baseline, smoothness_fwhm_mm, mean_shift, run_offset_sd, design,
        block_length, temporal_ar1, tr,
    )  # fmt: skip


# --------------------------------------------------------------------------- steps


@dataclass
class Background:
    """What every volume shares: the baseline times the brain envelope, the envelope (which
    scales the run offsets) and the noise's standard deviation per voxel (float32)."""

    static: np.ndarray
    envelope: np.ndarray
    noise_scale: np.ndarray


def background(p: SimulationParams, mask: np.ndarray, rng: np.random.Generator) -> Background:
    """A baseline varying smoothly over space (+/-20 % inside the brain), falling off
    smoothly outside the brain mask, as the noise does."""
    vs = np.asarray(p.voxel_size)
    field_ = ndimage.gaussian_filter(
        rng.standard_normal(p.shape),
        _BASELINE_FWHM_MM * _FWHM_TO_SIGMA / vs,
        mode="reflect",
    )
    field_ -= field_[mask].mean()
    peak = np.abs(field_[mask]).max()
    if peak > 0:
        field_ /= peak
    base = p.baseline * (1.0 + _BASELINE_VARIATION * field_)

    # Fall-off outside the brain: 1 inside the mask, decaying with the distance (mm).
    outside = ndimage.distance_transform_edt(~mask, sampling=p.voxel_size)
    falloff = np.exp(-0.5 * (outside / _EDGE_WIDTH_MM) ** 2)
    envelope = _BACKGROUND_LEVEL + (1.0 - _BACKGROUND_LEVEL) * falloff
    noise_scale = p.noise_sd * (_BACKGROUND_NOISE + (1.0 - _BACKGROUND_NOISE) * falloff)
    return Background(
        static=(envelope * base).astype(np.float32),
        envelope=envelope.astype(np.float32),
        noise_scale=noise_scale.astype(np.float32),
    )


@dataclass
class Regions:
    """The planted informative regions: centres (voxel indices), each region's flat voxel
    indices, all of them, the truth mask and the signal of each condition (float32)."""

    centers: np.ndarray
    indices: list[np.ndarray]
    truth_idx: np.ndarray
    truth: np.ndarray
    signal: np.ndarray


def plant_regions(p: SimulationParams, mask: np.ndarray, rng: np.random.Generator) -> Regions:
    """Balls well inside the mask, each with one random pattern (zero mean, unit standard
    deviation) and a small mean shift per condition."""
    centers = _place_regions(mask, p.voxel_size, p.n_regions, p.region_radius_mm, rng)
    region_indices = [_ball_indices(p.shape, p.voxel_size, c, p.region_radius_mm) for c in centers]
    truth = np.zeros(p.shape, dtype=bool)
    blocks = []
    for idx in region_indices:
        truth.ravel()[idx] = True
        patterns = rng.standard_normal((p.n_classes, idx.size))
        patterns -= patterns.mean(axis=1, keepdims=True)
        sd = patterns.std(axis=1, keepdims=True)
        patterns /= np.where(sd > 0, sd, 1.0)
        shifts = p.mean_shift * rng.standard_normal((p.n_classes, 1))
        blocks.append(p.effect_size * (patterns + shifts))
    truth_idx = np.concatenate(region_indices) if region_indices else np.zeros(0, dtype=np.intp)
    signal = (np.concatenate(blocks, axis=1) if blocks else np.zeros((p.n_classes, 0))).astype(np.float32)
    if not np.all(mask.ravel()[truth_idx]):  # guaranteed by _place_regions
        raise RuntimeError("planted regions extend outside the brain mask")
    return Regions(centers, region_indices, truth_idx, truth, signal)


def design(p: SimulationParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-run offsets, the condition of each volume (codes) and its run (chunks)."""
    run_offsets = p.run_offset_sd * rng.standard_normal(p.n_runs)
    codes = np.repeat(np.arange(p.n_classes), p.n_per_class_per_run)
    order = []
    for _ in range(p.n_runs):
        if p.design == "random":
            order.append(rng.permutation(codes))
        else:
            blocks_per_class = p.n_per_class_per_run // p.block_length
            blocks = rng.permutation(np.repeat(np.arange(p.n_classes), blocks_per_class))
            order.append(np.repeat(blocks, p.block_length))
    class_codes = np.concatenate(order)
    chunks = np.repeat(np.arange(p.n_runs), p.n_classes * p.n_per_class_per_run)
    return run_offsets, class_codes, chunks


class NoiseMaker:
    """The noise of each volume: Gaussian, smoothed within the bounding box of the mask
    padded by the kernel's reach (outside it the noise is white; it is scaled down there
    anyway), scaled per voxel, and AR(1) along time within a run."""

    def __init__(self, p: SimulationParams, mask: np.ndarray, noise_scale: np.ndarray):
        self.shape, self.noise_scale, self.ar1 = p.shape, noise_scale, p.temporal_ar1
        self.innovation = np.float32(math.sqrt(1.0 - p.temporal_ar1**2))
        self.previous = None
        self.sigma_vox = None
        if p.smoothness_fwhm_mm > 0:
            self.sigma_vox = p.smoothness_fwhm_mm * _FWHM_TO_SIGMA / np.asarray(p.voxel_size)
            norm = _noise_kernel_norm(self.sigma_vox)
            pad = np.ceil(4.0 * self.sigma_vox).astype(int)
            nz = np.argwhere(mask)
            lo = np.maximum(nz.min(axis=0) - pad, 0)
            hi = np.minimum(nz.max(axis=0) + pad + 1, p.shape)
            self.bbox = tuple(slice(a, b) for a, b in zip(lo, hi))
            self.scale_in_box = noise_scale[self.bbox] / np.float32(norm)

    def next(self, rng: np.random.Generator, continues_run: bool) -> np.ndarray:
        """The next volume's noise; ``continues_run``: the previous volume is of the same run."""
        noise = rng.standard_normal(self.shape, dtype=np.float32)
        if self.sigma_vox is not None:
            smoothed = ndimage.gaussian_filter(noise[self.bbox], self.sigma_vox, mode="reflect")
            noise *= self.noise_scale
            noise[self.bbox] = smoothed * self.scale_in_box
        else:
            noise *= self.noise_scale
        if self.ar1 > 0:
            # AR(1) within a run, stationary: the first volume of a run starts afresh
            if self.previous is not None and continues_run:
                noise *= self.innovation
                noise += np.float32(self.ar1) * self.previous
            self.previous = noise
        return noise


def assemble(p: SimulationParams, mask: np.ndarray, bg: Background, regions: Regions,
             run_offsets: np.ndarray, class_codes: np.ndarray, chunks: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """The 4D data (float32, Fortran order: each volume contiguous, as nibabel loads it)."""
    data = np.empty(p.shape + (p.n_volumes,), dtype=np.float32, order="F")
    vol = np.empty(p.shape, dtype=np.float32)
    flat = vol.reshape(-1)
    noise = NoiseMaker(p, mask, bg.noise_scale)
    for t in range(p.n_volumes):
        volume_noise = noise.next(rng, t > 0 and chunks[t] == chunks[t - 1])
        np.multiply(bg.envelope, np.float32(run_offsets[chunks[t]]), out=vol)
        vol += bg.static
        vol += volume_noise
        flat[regions.truth_idx] += regions.signal[class_codes[t]]
        data[..., t] = vol
    return data


def images(p: SimulationParams, data: np.ndarray, mask: np.ndarray, truth: np.ndarray,
           affine: np.ndarray) -> tuple[nib.Nifti1Image, nib.Nifti1Image, nib.Nifti1Image]:  # fmt: skip
    """The 4D image (with the TR) and the brain and truth masks, in scanner space."""
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    func_img = nib.Nifti1Image(data, affine, header)
    func_img.header.set_zooms(tuple(p.voxel_size) + (p.tr,))
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    truth_img = nib.Nifti1Image(truth.astype(np.uint8), affine)
    for img in (func_img, mask_img, truth_img):
        img.set_qform(affine, code="scanner")
        img.set_sform(affine, code="scanner")
        img.header.set_xyzt_units("mm", "sec")
    return func_img, mask_img, truth_img


def metadata(p: SimulationParams, seed: int | None, mask: np.ndarray, regions: Regions,
             affine: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """What ``SimulatedDataset.metadata`` holds."""
    centers = regions.centers
    centers_mm = nib.affines.apply_affine(affine, centers) if len(centers) else np.zeros((0, 3))
    return {
        "generator": "fastsearchlight.simulate.simulate_haxby_like",
        "seed": seed,
        "parameters": p.record(),
        "n_volumes": p.n_volumes,
        "n_brain_voxels": int(mask.sum()),
        "n_informative_voxels": int(regions.truth.sum()),
        "region_centers_vox": centers.tolist(),
        "region_centers_mm": np.round(centers_mm, 3).tolist(),
        "region_n_voxels": [int(idx.size) for idx in regions.indices],
    }


def labels_table(p: SimulationParams, class_codes: np.ndarray, chunks: np.ndarray) -> pd.DataFrame:
    """The condition (``labels``) and run (``chunks``) of each volume."""
    return pd.DataFrame(
        {
            "labels": np.asarray(p.conditions, dtype=object)[class_codes],
            "chunks": chunks.astype(np.int64),
        }
    )
