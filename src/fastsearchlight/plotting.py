"""Figures of searchlight results, for Python users: the figures of the report.

Every map figure is drawn on a background (usually the mean functional image) with a
colorbar, with cuts shared between figures: :func:`map_cuts` gives the cuts through the
strongest result of a map (:func:`nilearn.plotting.find_xyz_cut_coords`), which every
``plot_*`` function accepts as ``cuts``, so that the score map, the corrected maps and the
F-test show the same slices. Scores use the sequential "inferno" colormap from chance
upwards; -log10 p maps (never negative) the sequential "viridis" from 0.

Examples
--------
>>> from fastsearchlight import SearchLight, plotting          # doctest: +SKIP
>>> sl = SearchLight(mask_img, radius=5.6, cv=cv).fit(imgs, y, groups=runs)
>>> cuts = plotting.map_cuts(sl.scores_img_)
>>> plotting.plot_searchlight(sl.scores_img_, mean_img, "map.png", chance=0.5, cuts=cuts)
>>> plotting.plot_score_histogram(sl.masked_scores_, "histogram.png", chance=0.5)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from .report._figures import (
    _DPI,
    _plane_world,
    _use_headless_backend,
    plot_f_scores,
    plot_logp,
    plot_null_distribution,
    plot_searchlight,
)
from .report._maps import _finite_data, _load_3d

__all__ = [
    "map_cuts",
    "plot_f_scores",
    "plot_logp",
    "plot_null_distribution",
    "plot_score_histogram",
    "plot_searchlight",
]


def map_cuts(img) -> tuple[str, list[float]]:
    """Display mode and cut coordinates (mm) through the strongest result of a map.

    A volume is cut in three orthogonal planes at :func:`nilearn.plotting.find_xyz_cut_coords`
    of the map (the centre of its largest high-valued cluster); an image one voxel thick
    (a single slice) is shown as that one plane.

    Parameters
    ----------
    img : Niimg-like
        3D map (0 or NaN outside).

    Returns
    -------
    display_mode : str
        ``"ortho"``, or ``"x"``, ``"y"`` or ``"z"`` for a single slice.
    cut_coords : list of float
        Three coordinates for ``"ortho"``, one for a single slice.
    """
    from nilearn.plotting import find_xyz_cut_coords

    img = _load_3d(img, "img")
    shape, affine = img.shape[:3], img.affine
    world_of = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    thin = [axis for axis in range(3) if shape[axis] == 1]
    if thin:
        axis = thin[-1]
        world = int(world_of[axis])
        return "xyz"[world], [_plane_world(affine, shape, axis, 0, world)]
    data = _finite_data(img)
    if not np.any(data != 0):
        centre = (np.asarray(shape, dtype=float) - 1) / 2
        return "ortho", [float(v) for v in nib.affines.apply_affine(affine, centre)]
    clean = nib.Nifti1Image(data.astype(np.float32), affine)
    with warnings.catch_warnings():  # a flat map: nilearn cuts through its centre of mass, and says so
        warnings.filterwarnings("ignore", message="Could not determine cut coords", category=UserWarning)
        return "ortho", [float(v) for v in find_xyz_cut_coords(clean)]


def plot_score_histogram(
    scores,
    path: str | os.PathLike,
    *,
    chance: float | None = None,
    title: str | None = None,
    xlabel: str = "sphere score",
) -> Path:
    """Histogram of the spheres' scores with the chance level, saved to ``path``.

    Parameters
    ----------
    scores : array-like of float
        One score per sphere (e.g. ``SearchLight.masked_scores_``); NaN are left out.
    path : str or path-like
        Output file; parent folders are created.
    chance : float or None
        Drawn as a dashed line, with the share of spheres above it.
    title : str or None
    xlabel : str

    Returns
    -------
    pathlib.Path
    """
    _use_headless_backend()
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    values = np.asarray(scores, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("scores hold no finite value: nothing to plot.")
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    n_bins = int(np.clip(np.ceil(2 * np.sqrt(values.size)), 5, 60))
    ax.hist(values, bins=n_bins, color="#e3783a", edgecolor="#7a3410")
    if chance is not None:
        above = float(np.mean(values > chance))
        ax.axvline(chance, color="k", linestyle="--", linewidth=1.8,
                   label=f"chance = {chance:.2f} ({above:.0%} of spheres above)")  # fmt: skip
        ax.legend(loc="upper right", fontsize="small", frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("spheres")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title if title is not None else f"Scores of the {values.size} spheres")
    ax.spines[["top", "right"]].set_visible(False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path
