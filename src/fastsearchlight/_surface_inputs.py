"""What ``SurfaceSearchLight.fit`` reads: the mesh, the surface data (a nilearn
``SurfaceImage`` or GIfTI files), the targets, the mask and the discs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._fit_inputs import check_targets
from .spaces.base import Neighbourhoods
from .spaces.surface import HEMISPHERES, MeshSpace, build_surface_neighbourhoods, load_mesh

__all__ = ["SurfaceInputs", "read_surface_data", "read_surface_inputs", "read_surface_mask"]


@dataclass
class SurfaceInputs:
    """The data, targets, mask and discs of a surface fit."""

    mesh: object  # PolyMesh
    data: dict  # per hemisphere: (n_vertices, n_samples)
    y: np.ndarray
    groups: np.ndarray | None
    space: MeshSpace
    neighbourhoods: Neighbourhoods
    process_mask = None  # a volume's; the mesh's graph serves instead
    process_affine = None


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _load_part(source, hemi: str) -> np.ndarray:
    """One hemisphere's data from arrays or GIfTI files (several: runs, concatenated)."""
    from nilearn.surface import load_surf_data

    arrays = []
    for item in _as_list(source):
        if isinstance(item, (str, Path)):
            if not Path(item).exists():
                raise ValueError(f"{hemi} hemisphere data file {item} does not exist.")
            try:
                item = load_surf_data(str(item))
            except Exception as exc:  # nilearn raises many kinds for unreadable files
                raise ValueError(f"cannot read {hemi} hemisphere data {item}: {exc}") from None
        item = np.asarray(item)
        arrays.append(item[:, None] if item.ndim == 1 else item)
    if any(a.ndim != 2 for a in arrays):
        raise ValueError(f"{hemi} hemisphere data must be (n_vertices, n_samples).")
    if len({a.shape[0] for a in arrays}) > 1:
        raise ValueError(f"{hemi} hemisphere data files have different numbers of vertices.")
    return np.concatenate(arrays, axis=1) if len(arrays) > 1 else arrays[0]


def read_surface_data(imgs) -> dict:
    """Surface data per hemisphere, (n_vertices, n_samples).

    ``imgs``: a ``SurfaceImage`` (samples on its last axis), a list of them (runs,
    concatenated), or a dict ``{"left": ..., "right": ...}`` of arrays or GIfTI paths (a
    list of paths per hemisphere: runs, concatenated).
    """
    from nilearn.surface import SurfaceImage

    if isinstance(imgs, (list, tuple)) and imgs and all(isinstance(i, SurfaceImage) for i in imgs):
        parts = [read_surface_data(i) for i in imgs]
        if any(p.keys() != parts[0].keys() for p in parts):
            raise ValueError("the surface images do not all hold the same hemispheres.")
        return {h: _load_part([p[h] for p in parts], h) for h in parts[0]}
    if isinstance(imgs, SurfaceImage):
        return {h: _load_part(np.asarray(v), h) for h, v in imgs.data.parts.items()}
    if isinstance(imgs, dict):
        unknown = set(imgs) - set(HEMISPHERES)
        if unknown or not imgs:
            raise ValueError(f"surface data keys must be 'left' and/or 'right', got {sorted(imgs)}.")
        return {h: _load_part(imgs[h], h) for h in HEMISPHERES if h in imgs}
    raise ValueError(
        "imgs must be a nilearn SurfaceImage, a list of them, or a dict of 'left'/'right' "
        f"arrays or GIfTI files; got {type(imgs).__name__}."
    )


def read_surface_mask(mask, mesh) -> dict:
    """Boolean mask per hemisphere of ``mesh`` (None: every vertex; nonzero: in)."""
    hemis = [h for h in HEMISPHERES if h in mesh.parts]
    if mask is None:
        return {h: np.ones(mesh.parts[h].n_vertices, dtype=bool) for h in hemis}
    parts = read_surface_data(mask)
    out = {}
    for h in hemis:
        if h not in parts:
            raise ValueError(f"the mask has no {h} hemisphere, which the mesh has.")
        values = parts[h]
        if values.shape != (mesh.parts[h].n_vertices, 1):
            raise ValueError(
                f"the {h} mask must hold one value per vertex ({mesh.parts[h].n_vertices}), got "
                f"shape {values.shape}."
            )
        out[h] = np.asarray(values[:, 0] != 0)
    if not any(m.any() for m in out.values()):
        raise ValueError("the mask is empty: no vertex is in it.")
    return out


def _check_data(data: dict, mesh) -> int:
    """The data's hemispheres are the mesh's, with its vertices: the number of samples."""
    if set(data) != set(mesh.parts):
        raise ValueError(f"the data hold hemispheres {sorted(data)}, the mesh {sorted(mesh.parts)}.")
    n_samples = {d.shape[1] for d in data.values()}
    if len(n_samples) > 1:
        raise ValueError(f"the hemispheres hold different numbers of samples: {sorted(n_samples)}.")
    for h, d in data.items():
        if d.shape[0] != mesh.parts[h].n_vertices:
            raise ValueError(
                f"the {h} hemisphere data have {d.shape[0]} vertices, its mesh {mesh.parts[h].n_vertices}."
            )
        if d.dtype.kind not in "fiub":
            raise ValueError(f"the {h} hemisphere data are not numbers (dtype {d.dtype}).")
    return n_samples.pop()


def read_surface_inputs(imgs, y, groups, *, mesh, mask, radius: float, distance: str) -> SurfaceInputs:
    """Check the inputs; read the data and mask; build the discs."""
    mesh = load_mesh(mesh)
    data = read_surface_data(imgs)
    n_samples = _check_data(data, mesh)
    y = check_targets(y, n_samples)
    if groups is not None:
        groups = check_targets(groups, n_samples, name="groups")
    masks = read_surface_mask(mask, mesh)
    hoods, space = build_surface_neighbourhoods(mesh, masks, float(radius), distance)
    return SurfaceInputs(mesh, data, y, groups, space, hoods)


def surface_masked_data(inputs: SurfaceInputs, *, shared: bool, dtype) -> np.ndarray:
    """The data of the mask vertices, (n_samples, n_seeds): the transpose of a C-contiguous
    array, left hemisphere first; NaN and infinite values replaced with zeros, with a
    warning (as the volume's)."""
    from ._huge_pages import empty_small_pages
    from .shared import shared_empty

    space = inputs.space
    n_seeds = len(space.coordinates)
    n_samples = len(inputs.y)
    out = (shared_empty if shared else empty_small_pages)((n_seeds, n_samples), dtype)
    offsets = space.offsets()
    for hemi in space.hemispheres:
        mask = space.masks[hemi]
        out[offsets[hemi] : offsets[hemi] + int(mask.sum())] = inputs.data[hemi][mask]
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        block = out[rows]
        block[~np.isfinite(block)] = 0
        out[rows] = block
        warnings.warn(
            f"The surface data hold NaN or infinite values in {rows.size} vertex(es) of the mask: "
            "they are replaced with zeros.",
            UserWarning,
            stacklevel=3,
        )
    return out.T


def data_dtype(inputs: SurfaceInputs) -> np.dtype:
    """The dtype the generic path hands scikit-learn: the data's own floating type."""
    dtype = np.result_type(*[d.dtype for d in inputs.data.values()])
    return dtype if dtype.kind == "f" else np.dtype(np.float64)
