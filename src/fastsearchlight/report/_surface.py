"""Figures of surface maps: both hemispheres, lateral and medial views, with nilearn's
``plot_surf_stat_map``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ._figures import _use_headless_backend

__all__ = ["plot_surface_map"]

_VIEWS = ("lateral", "medial")


def _display_mesh(mesh_name: str | None, mesh):
    """The mesh to draw on (an fsaverage's inflated surface when the data are on an
    fsaverage) and its sulcal depth as background (None when unknown), for the hemispheres
    of ``mesh``."""
    if not isinstance(mesh_name, str):  # none, or the data's own surface files
        return mesh, None
    from nilearn.datasets import load_fsaverage, load_fsaverage_data
    from nilearn.surface import PolyMesh, SurfaceImage

    name = mesh_name.partition(":")[0]
    try:
        inflated = load_fsaverage(name)["inflated"]
        sulcal = load_fsaverage_data(mesh=name, data_type="sulcal")
    except Exception:  # a mesh nilearn cannot give offline: draw on the data's own
        return mesh, None
    hemis = list(mesh.parts)
    display = PolyMesh(**{h: inflated.parts[h] for h in hemis})
    return display, SurfaceImage(display, {h: sulcal.data.parts[h] for h in hemis})


def plot_surface_map(
    img,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    mesh_name: str | None = None,
    threshold: float | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "cold_hot",
) -> Path:
    """Plot a surface map: every hemisphere of ``img``, lateral and medial views.

    Parameters
    ----------
    img : SurfaceImage
        One value per vertex.
    path : path-like
        Output file (PNG); parent folders are created.
    title : str or None
    mesh_name : str, list or None
        The name of the fsaverage mesh the data are on: they are drawn on its inflated
        surface over its sulcal depth. None (or the files of the data's own mesh, as for
        fsnative): on ``img``'s own mesh.
    threshold, vmin, vmax : float or None
        As in ``plot_surf_stat_map`` (values below ``threshold`` in magnitude not drawn).
    cmap : str

    Returns
    -------
    Path
    """
    _use_headless_backend()
    from matplotlib.figure import Figure
    from nilearn.plotting import plot_surf_stat_map

    hemis = list(img.mesh.parts)
    surf_mesh, background = _display_mesh(mesh_name, img.mesh)
    values = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in img.data.parts.values()])
    finite = values[np.isfinite(values)]
    if vmax is None:
        vmax = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    fig = Figure(figsize=(4.2 * len(hemis), 7.0))
    for col, hemi in enumerate(hemis):
        for row, view in enumerate(_VIEWS):
            ax = fig.add_subplot(2, len(hemis), row * len(hemis) + col + 1, projection="3d")
            with warnings.catch_warnings():
                # drawn on the inflated surface of the data's mesh, on purpose
                warnings.filterwarnings("ignore", message="Meshes are not identical")
                plot_surf_stat_map(
                    surf_mesh, img, bg_map=background, hemi=hemi, view=view, threshold=threshold,
                    vmin=vmin, vmax=vmax, cmap=cmap, colorbar=col == len(hemis) - 1 and row == 0,
                    bg_on_data=background is not None, axes=ax, figure=fig, title=f"{hemi}, {view}",
                )  # fmt: skip
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
