"""Synthetic surface fMRI data on a cortical mesh (fsaverage5 by default), with planted
informative patches: the surface counterpart of :mod:`fastsearchlight.simulate`.

For sample ``t`` of run ``r`` showing condition ``k``, the value at vertex ``v`` is::

    baseline + o_r + noise_sd * n_t(v) + 1[v in patch j] * effect_size * (P_jk(v) + m_jk)

- ``o_r``: a per-run offset; ``n_t``: Gaussian noise smoothed along the mesh (each step
  averages every vertex with its edge neighbours), rescaled to unit standard deviation;
- ``P_jk``: a random pattern over patch ``j`` for condition ``k`` (zero mean, unit
  standard deviation), ``m_jk`` a small condition-dependent mean shift.

The patches are geodesic discs of ``patch_radius_mm`` on the pial mesh, centred at random
vertices (alternately in the left and right hemispheres), not overlapping. The design is
Haxby's: 12 runs of 9 samples per condition in random order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_path
from .spaces.surface import HEMISPHERES, load_mesh, mesh_adjacency, vertex_discs

__all__ = ["SURFACE_FILE_NAMES", "SimulatedSurface", "simulate_surface", "write_surface_dataset"]

#: files :func:`write_surface_dataset` writes
SURFACE_FILE_NAMES = {
    "bold_left": "bold_hemi-L.func.gii",
    "bold_right": "bold_hemi-R.func.gii",
    "truth_left": "truth_hemi-L.shape.gii",
    "truth_right": "truth_hemi-R.shape.gii",
    "labels": "labels.txt",
    "readme": "README.md",
}


@dataclass
class SimulatedSurface:
    """A simulated surface data set.

    Attributes
    ----------
    mesh : str
        The mesh's name (nilearn loads it: :func:`fastsearchlight.spaces.surface.load_mesh`).
    data : dict
        Per hemisphere, (n_vertices, n_samples) float32.
    truth : dict
        Per hemisphere, the vertices of the planted patches (bool).
    labels : pandas.DataFrame
        ``labels`` (condition) and ``chunks`` (run) of each sample.
    metadata : dict
        Parameters, seed and patch centres.
    """

    mesh: str
    data: dict
    truth: dict
    labels: pd.DataFrame
    metadata: dict

    def image(self):
        """The data as a nilearn ``SurfaceImage`` on the pial mesh."""
        from nilearn.surface import SurfaceImage

        return SurfaceImage(load_mesh(self.mesh), self.data)


def _smooth_noise(rng, adjacency, n_samples: int, steps: int) -> np.ndarray:
    """Gaussian noise averaged ``steps`` times over each vertex and its neighbours."""
    from scipy import sparse

    n = adjacency.shape[0]
    average = sparse.identity(n, format="csr") + adjacency.astype(np.float64)
    average = sparse.diags(1.0 / np.asarray(average.sum(axis=1)).ravel()) @ average
    noise = rng.standard_normal((n, n_samples))
    for _ in range(steps):
        noise = average @ noise
    noise /= noise.std(axis=1, keepdims=True)
    return noise.astype(np.float32)


def _plant(rng, mesh, n_patches: int, radius: float) -> dict:
    """Non-overlapping geodesic discs at random vertices, alternating hemispheres."""
    truth = {h: np.zeros(mesh.parts[h].n_vertices, bool) for h in mesh.parts}
    hemis = [h for h in HEMISPHERES if h in mesh.parts]
    patches = []
    for j in range(n_patches):
        hemi = hemis[j % len(hemis)]
        discs = vertex_discs(mesh.parts[hemi], radius, "geodesic")
        grown = vertex_discs(mesh.parts[hemi], 2 * radius, "geodesic")
        free = ~(grown @ truth[hemi].astype(np.int64) > 0)
        if not free.any():
            raise ValueError(f"{n_patches} patches of {radius:g} mm do not fit on the mesh.")
        centre = int(rng.choice(np.flatnonzero(free)))
        members = discs[centre].indices
        truth[hemi][members] = True
        patches.append((hemi, centre, members))
    return {"truth": truth, "patches": patches}


def simulate_surface(
    mesh: str = "fsaverage5", *, n_runs: int = 12, n_per_class_per_run: int = 9,
    conditions=("face", "house"), n_patches: int = 2, patch_radius_mm: float = 10.0,
    effect_size: float = 8.0, noise_sd: float = 20.0, baseline: float = 1000.0,
    smoothing_steps: int = 2, mean_shift: float = 0.25, run_offset_sd: float = 15.0,
    random_state=0,
) -> SimulatedSurface:  # fmt: skip
    """Simulate surface data with planted informative patches (the model: module docstring).

    Parameters
    ----------
    mesh : str, default="fsaverage5"
        A mesh nilearn loads by name (fsaverage5 ships with it).
    n_runs, n_per_class_per_run : int
        The design: runs, and samples of each condition in each run.
    conditions : sequence of str
    n_patches : int
        Informative patches (0: a null data set).
    patch_radius_mm : float
        Geodesic radius of each patch on the pial mesh.
    effect_size, noise_sd, baseline, mean_shift, run_offset_sd : float
    smoothing_steps : int
        Neighbour-averaging steps of the noise along the mesh (0: white noise).
    random_state : int or None

    Returns
    -------
    SimulatedSurface
    """
    conditions = tuple(str(c) for c in conditions)
    if len(set(conditions)) < 2 or n_runs < 1 or n_per_class_per_run < 1 or n_patches < 0:
        raise ValueError("simulate_surface needs 2 distinct conditions, n_runs >= 1, n_per_class_per_run >= 1 "
                         "and n_patches >= 0.")  # fmt: skip
    if not patch_radius_mm > 0 or smoothing_steps < 0:
        raise ValueError("patch_radius_mm must be positive and smoothing_steps >= 0.")
    rng = np.random.default_rng(random_state)
    polymesh = load_mesh(mesh)
    codes = np.concatenate([rng.permutation(np.repeat(np.arange(len(conditions)), n_per_class_per_run))
                            for _ in range(n_runs)])  # fmt: skip
    chunks = np.repeat(np.arange(n_runs), len(conditions) * n_per_class_per_run)
    offsets = run_offset_sd * rng.standard_normal(n_runs)
    planted = _plant(rng, polymesh, n_patches, float(patch_radius_mm))
    data = {}
    for hemi in (h for h in HEMISPHERES if h in polymesh.parts):
        noise = _smooth_noise(rng, mesh_adjacency(polymesh.parts[hemi]), len(codes), smoothing_steps)
        values = baseline + offsets[chunks][None, :] + noise_sd * noise
        for patch_hemi, _, members in planted["patches"]:
            if patch_hemi == hemi:
                pattern = rng.standard_normal((len(conditions), len(members)))
                pattern = (pattern - pattern.mean(axis=1, keepdims=True)) / pattern.std(axis=1, keepdims=True)
                pattern += mean_shift * rng.standard_normal((len(conditions), 1))
                values[members] += effect_size * pattern[codes].T
        data[hemi] = values.astype(np.float32)
    labels = pd.DataFrame({"labels": np.asarray(conditions, dtype=object)[codes], "chunks": chunks})
    meta = {
        "generator": "fastsearchlight.simulate_surface.simulate_surface", "mesh": mesh,
        "seed": random_state, "n_samples": len(codes), "n_runs": n_runs, "conditions": list(conditions),
        "patch_radius_mm": float(patch_radius_mm), "effect_size": effect_size, "noise_sd": noise_sd,
        "smoothing_steps": smoothing_steps,
        "patches": [{"hemisphere": h, "centre_vertex": c, "n_vertices": len(m)} for h, c, m in planted["patches"]],
    }  # fmt: skip
    return SimulatedSurface(mesh, data, planted["truth"], labels, meta)


def _gifti(columns: np.ndarray, intent: str):
    import nibabel as nib

    arrays = [nib.gifti.GiftiDataArray(np.ascontiguousarray(c), intent=intent, datatype="NIFTI_TYPE_FLOAT32")
              for c in columns]  # fmt: skip
    return nib.gifti.GiftiImage(darrays=arrays)


def write_surface_dataset(
    dataset: SimulatedSurface, out_dir: str | os.PathLike, *, force: bool = False
) -> dict:
    """Write a simulated surface data set as fMRIPrep-like GIfTI files.

    ``bold_hemi-L.func.gii`` and ``bold_hemi-R.func.gii`` (one data array per sample),
    ``truth_hemi-{L,R}.shape.gii`` (1 on the planted patches), ``labels.txt`` (header
    ``labels chunks``) and ``README.md``, each written under a temporary name and renamed.

    Returns
    -------
    dict of str to Path
    """
    import nibabel as nib

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir exists and is not a directory: {out}")
    paths = {key: out / name for key, name in SURFACE_FILE_NAMES.items()}
    if not force:
        for path in paths.values():
            if path.exists():
                raise FileExistsError(f"{path} already exists; pass force=True to overwrite it.")
    out.mkdir(parents=True, exist_ok=True)
    for hemi in dataset.data:
        images = {f"bold_{hemi}": _gifti(dataset.data[hemi].T, "NIFTI_INTENT_TIME_SERIES"),
                  f"truth_{hemi}": _gifti(dataset.truth[hemi][None].astype(np.float32), "NIFTI_INTENT_SHAPE")}  # fmt: skip
        for key, img in images.items():
            with atomic_path(paths[key], sync=True) as tmp:
                nib.save(img, tmp)
    table = "labels chunks\n" + "".join(f"{a} {b}\n" for a, b in dataset.labels.itertuples(index=False))
    meta = dataset.metadata
    readme = (
        "# Simulated surface fMRI data\n\n"
        f"Mesh {meta['mesh']} (nilearn), {meta['n_samples']} samples in {meta['n_runs']} runs, conditions "
        f"{', '.join(meta['conditions'])}; {len(meta['patches'])} informative patches of "
        f"{meta['patch_radius_mm']:g} mm (geodesic, pial mesh): "
        + "; ".join(f"{p['hemisphere']} vertex {p['centre_vertex']} ({p['n_vertices']} vertices)" for p in meta["patches"])
        + f". Seed {meta['seed']}. Made by fastsearchlight simulate --surface.\n"
    )  # fmt: skip
    for key, text in (("labels", table), ("readme", readme)):
        with atomic_path(paths[key], sync=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return {k: p for k, p in paths.items() if p.exists()}
