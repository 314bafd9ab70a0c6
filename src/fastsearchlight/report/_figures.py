"""Figures of a study: score maps over the mean functional image, F-test maps, null
distributions.

Plotting works without a display: matplotlib's Agg backend is selected when no backend
has been chosen yet, and every figure is a standalone :class:`matplotlib.figure.Figure`
that is saved to disk and never shown or registered with pyplot.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine

from ._maps import _finite_data, _load_3d

__all__ = ["plot_f_scores", "plot_logp", "plot_null_distribution", "plot_searchlight"]

_DPI = 120
# Below this absolute value a voxel counts as outside the map and is drawn transparent.
_MAP_THRESHOLD = 1e-6


# --------------------------------------------------------------------------------------
# Plotting helpers
# --------------------------------------------------------------------------------------


def _use_headless_backend() -> None:
    """Select matplotlib's Agg backend unless a backend is already chosen or in use.

    A backend set by the user (``matplotlib.use``, ``MPLBACKEND``, matplotlibrc) or one
    already running because pyplot is imported is left alone; the figures made here are
    standalone and saved directly, so they do not depend on it.
    """
    import matplotlib

    if "matplotlib.pyplot" in sys.modules:
        return
    get_backend_or_none = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    chosen = get_backend_or_none() if get_backend_or_none is not None else None
    if chosen is None:
        matplotlib.use("Agg")


def _plane_world(affine: np.ndarray, shape, voxel_axis: int, index: float, world_axis: int):
    """World coordinate (mm) along ``world_axis`` of plane ``index`` of ``voxel_axis``."""
    centre = (np.asarray(shape[:3], dtype=float) - 1) / 2
    centre[voxel_axis] = index
    return float(apply_affine(affine, centre)[world_axis])


def _figsize(img, display_mode: str, n_cuts: int) -> tuple[float, float]:
    """Figure size (inches) giving each cut its image's aspect ratio, plus a colorbar."""
    shape = np.asarray(img.shape[:3], dtype=float)
    corners = np.array(np.meshgrid(*[[-0.5, s - 0.5] for s in shape], indexing="ij"))
    world = apply_affine(img.affine, corners.reshape(3, -1).T)
    extent = world.max(axis=0) - world.min(axis=0)
    if display_mode == "ortho":
        # three views side by side: sagittal (y by z), coronal (x by z), axial (x by y)
        x, y, z = np.maximum(extent, 1e-6)
        ratio = float(np.clip(y / z, 0.4, 3.0) + np.clip(x / z, 0.4, 3.0) + np.clip(x / y, 0.4, 3.0))
        height = 3.4
        return float(np.clip(0.85 * height * ratio + 1.3, 6.0, 16.0)), height
    horizontal, vertical = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}[display_mode]
    aspect = extent[horizontal] / max(extent[vertical], 1e-6)
    aspect = float(np.clip(aspect, 0.4, 3.0))
    height = 3.6 if n_cuts == 1 else 2.6
    # nilearn leaves a margin above and below each cut, and puts the colorbar on the right.
    width = n_cuts * 0.85 * height * aspect + 1.1
    return float(min(max(width, 4.0), 18.0)), height


def _save_display(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, facecolor=fig.get_facecolor(), edgecolor="none")
    return path


def _clean_map(img, name: str, cuts):
    """A 3D image with finite float32 data, its data (float64), display mode and cuts
    (``cuts`` None: through the map's strongest result, see :func:`fastsearchlight.plotting.map_cuts`)."""
    img = _load_3d(img, name)
    data = _finite_data(img)
    clean = nib.Nifti1Image(data.astype(np.float32), img.affine)
    if cuts is None:
        from ..plotting import map_cuts

        cuts = map_cuts(clean)
    display_mode, coords = cuts
    return clean, data, display_mode, list(coords)


def _background(mean_img):
    return None if mean_img is None else _load_3d(mean_img, "mean_img")


def _map_figure(img, name: str, mean_img, title: str | None, cuts=None):
    """A map made ready to draw: the clean map, its data, the background, a black figure
    sized for the map's cuts, and the keywords every map figure gives nilearn."""
    _use_headless_backend()
    from matplotlib.figure import Figure

    clean, data, display_mode, cuts = _clean_map(img, name, cuts)
    bg = _background(mean_img)
    fig = Figure(figsize=_figsize(clean, display_mode, len(cuts)), facecolor="k")
    common = dict(
        cut_coords=cuts,
        display_mode=display_mode,
        figure=fig,
        title=title,
        black_bg=True,
        draw_cross=False,
        resampling_interpolation="nearest",
    )
    return clean, data, bg, fig, common


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def plot_searchlight(
    scores_img,
    mean_img,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    chance: float | None = None,
    cuts: tuple[str, list[float]] | None = None,
) -> Path:
    """Plot a searchlight score map over the mean functional image and save it.

    As in nilearn's classic searchlight example: the scores drawn with
    :func:`nilearn.plotting.plot_img` over ``mean_img`` on a black background, colour map
    "inferno" starting at chance level, with a colorbar. Voxels outside the map (score 0)
    and voxels scoring below chance are transparent, so the background shows through.
    A single-slice image is shown as that slice; a volume in three orthogonal cuts, by
    default through the map's strongest result.

    Parameters
    ----------
    scores_img : Niimg-like
        3D score map (e.g. ``SearchLight.scores_img_``), 0 outside the searched voxels.
        NaN counts as outside the map.
    mean_img : Niimg-like or None
        Background image, usually the mean functional image. None draws no background.
    path : str or path-like
        Output file; its extension sets the format (PNG recommended). Parent folders are
        created.
    title : str or None, default=None
        Title drawn in the figure.
    chance : float or None, default=None
        Chance level: the bottom of the colour scale. Ignored when no voxel scores above it.
    cuts : (display_mode, cut_coords) or None, default=None
        Where to cut, e.g. :func:`fastsearchlight.plotting.map_cuts` of another map to show
        the same slices; None cuts through this map's strongest result.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from nilearn import plotting

    path = Path(path)
    scores, data, bg, fig, common = _map_figure(scores_img, "scores_img", mean_img, title, cuts)
    in_map = data[data != 0]
    if in_map.size == 0:
        # Nothing to overlay: show the background alone (or the empty map).
        plotting.plot_img(bg if bg is not None else scores, cmap="gray", colorbar=False, **common)
        return _save_display(fig, path)

    vmax = float(in_map.max())
    if chance is not None and vmax > chance:
        vmin = float(chance)
    elif in_map.min() < vmax:
        vmin = float(in_map.min())
    else:  # constant map
        vmin = vmax - max(abs(vmax) * 0.1, 1e-6)
    plotting.plot_img(
        scores,
        bg_img=bg,
        threshold=_MAP_THRESHOLD,
        colorbar=True,
        cbar_tick_format="%.2f",
        cmap="inferno",
        vmin=vmin,
        vmax=vmax,
        **common,
    )
    return _save_display(fig, path)


def plot_logp(
    logp_img,
    mean_img,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    cuts: tuple[str, list[float]] | None = None,
    vmax: float | None = None,
) -> Path:
    """Plot a -log10 p map over a background with a sequential colormap, and save it.

    -log10 p is never negative: the colour scale ("viridis") runs from 0 to ``vmax``
    (default: the map's maximum), with a colorbar; zeros are transparent.

    Parameters
    ----------
    logp_img : Niimg-like
        3D map of -log10 p (0 outside). +inf (p = 0) is shown as the largest finite
        value, NaN as 0.
    mean_img : Niimg-like or None
        Background image, usually the mean functional image. None draws no background.
    path : str or path-like
        Output file; parent folders are created.
    title : str or None, default=None
    cuts : (display_mode, cut_coords) or None, default=None
        As in :func:`plot_searchlight`.
    vmax : float or None, default=None
        Top of the colour scale.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from nilearn import plotting

    path = Path(path)
    logp, data, bg, fig, common = _map_figure(logp_img, "logp_img", mean_img, title, cuts)
    top = float(vmax) if vmax is not None else float(max(data.max(), 0.0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="empty mask", category=UserWarning)
        plotting.plot_img(
            logp, bg_img=bg, threshold=_MAP_THRESHOLD, colorbar=True, cbar_tick_format="%.1f",
            cmap="viridis", vmin=0.0, vmax=top if top > 0 else 1.0, **common,
        )  # fmt: skip
    return _save_display(fig, path)


def plot_f_scores(
    f_img,
    mean_img,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    cuts: tuple[str, list[float]] | None = None,
) -> Path:
    """Plot a univariate F-test map (-log10 p) over the mean functional image and save it.

    As in nilearn's classic searchlight example, the F-test's -log10 p over the mean
    image, here with a sequential colormap from 0 and a colorbar (:func:`plot_logp`).
    Pass the score map's ``cuts`` to show the same slices as :func:`plot_searchlight`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return plot_logp(f_img, mean_img, path, title=title, cuts=cuts)


def plot_null_distribution(
    max_null,
    observed_max: float | None,
    path: str | os.PathLike,
    *,
    threshold: float | None = None,
    xlabel: str = "maximum score per permutation",
    title: str | None = None,
) -> Path:
    """Plot a permutation null distribution with the observed value and the threshold.

    Parameters
    ----------
    max_null : array-like of float
        One statistic per permutation, typically the maximum score over the map. Values
        that are not finite are dropped.
    observed_max : float or None
        The statistic on the true labels, drawn as a solid line and labelled with its
        permutation p-value ``(1 + #{null >= observed}) / (1 + n_permutations)``. None
        draws no line.
    path : str or path-like
        Output file; parent folders are created.
    threshold : float or None, default=None
        Significance threshold, drawn as a dashed line. None uses the 95th percentile of
        ``max_null`` (the family-wise 5 % threshold when ``max_null`` holds maxima).
    xlabel : str, default="maximum score per permutation"
        Label of the horizontal axis.
    title : str or None, default=None
        Figure title; None names the number of permutations.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``max_null`` holds no finite value.
    """
    _use_headless_backend()
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    null = np.asarray(max_null, dtype=np.float64).ravel()
    null = null[np.isfinite(null)]
    if null.size == 0:
        raise ValueError("max_null holds no finite value: nothing to plot.")
    if threshold is None:
        threshold = float(np.percentile(null, 95))
        threshold_label = f"95th percentile of the null = {threshold:.4g}"
    else:
        threshold = float(threshold)
        threshold_label = f"threshold = {threshold:.4g}"

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    n_bins = int(np.clip(np.ceil(2 * np.sqrt(null.size)), 5, 50))
    ax.hist(null, bins=n_bins, color="0.6", edgecolor="0.3", label="permutations")
    ax.axvline(threshold, color="tab:blue", linestyle="--", linewidth=2, label=threshold_label)
    if observed_max is not None:
        observed = float(observed_max)
        p_value = (1 + np.count_nonzero(null >= observed)) / (1 + null.size)
        ax.axvline(
            observed,
            color="tab:red",
            linewidth=2.5,
            label=f"observed = {observed:.4g} (p = {p_value:.3g})",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("permutations")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title if title is not None else f"Permutation null distribution (n = {null.size})")
    ax.legend(loc="best", fontsize="small", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path
