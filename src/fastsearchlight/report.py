"""Figures and the HTML report of a searchlight study.

The figures follow nilearn's classic searchlight example: the cross-validated score map
over the mean functional image (:func:`plot_searchlight`), the univariate F-test map
(:func:`plot_f_scores`) and, for permutation tests, the null distribution of the maximum
statistic (:func:`plot_null_distribution`). :func:`top_regions` lists the best-scoring
clusters of a map, and :func:`write_report` puts figures, tables and the study summary on
one self-contained HTML page.

Plotting works without a display: matplotlib's Agg backend is selected when no backend
has been chosen yet, and every figure is a standalone :class:`matplotlib.figure.Figure`
that is saved to disk and never shown or registered with pyplot.
"""

from __future__ import annotations

import html
import math
import numbers
import os
import sys
import uuid
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.affines import apply_affine
from scipy import ndimage

__all__ = [
    "TOP_REGION_COLUMNS",
    "plot_f_scores",
    "plot_null_distribution",
    "plot_searchlight",
    "top_regions",
    "write_report",
]

#: Columns of the frame returned by :func:`top_regions`, in order.
TOP_REGION_COLUMNS = [
    "cluster",
    "peak_score",
    "peak_x_mm",
    "peak_y_mm",
    "peak_z_mm",
    "peak_i",
    "peak_j",
    "peak_k",
    "n_voxels",
    "mean_score",
]

_TOP_REGION_DTYPES = {
    "cluster": "int64",
    "peak_score": "float64",
    "peak_x_mm": "float64",
    "peak_y_mm": "float64",
    "peak_z_mm": "float64",
    "peak_i": "int64",
    "peak_j": "int64",
    "peak_k": "int64",
    "n_voxels": "int64",
    "mean_score": "float64",
}

_DPI = 120
_MAX_CUTS = 7
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


def _load_3d(img, name: str):
    """A Niimg-like input as a 3D image, or a TypeError/ValueError naming the argument."""
    from nilearn.image import check_niimg_3d

    from .images import read_img

    img = read_img(img, name)
    try:
        return check_niimg_3d(img)
    except TypeError as exc:  # nilearn's DimensionError is a TypeError
        raise TypeError(f"{name} must be a 3D image: {exc}") from None
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise ValueError(f"Could not read {name}: {exc}") from None


def _finite_data(img) -> np.ndarray:
    """The image data as float64 with NaN and -inf set to 0 and +inf to the largest value."""
    data = np.asarray(img.dataobj, dtype=np.float64).copy()
    finite = np.isfinite(data)
    if not finite.all():
        top = data[finite].max() if finite.any() else 0.0
        data[np.isposinf(data)] = top
        data[~np.isfinite(data)] = 0.0
    return data


def _plane_world(affine: np.ndarray, shape, voxel_axis: int, index: float, world_axis: int):
    """World coordinate (mm) along ``world_axis`` of plane ``index`` of ``voxel_axis``."""
    centre = (np.asarray(shape[:3], dtype=float) - 1) / 2
    centre[voxel_axis] = index
    return float(apply_affine(affine, centre)[world_axis])


def _display_cuts(img, data: np.ndarray) -> tuple[str, list[float]]:
    """Display mode and cut coordinates (mm) that show a map well.

    An image one voxel thick along some axis (a single slice) is shown as that one plane.
    A volume is shown as up to seven axial cuts spread over the planes that hold map
    voxels, one of them through the peak.
    """
    shape = img.shape[:3]
    affine = img.affine
    # World axis (0 x, 1 y, 2 z) closest to each voxel axis.
    world_of = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    thin = [axis for axis in range(3) if shape[axis] == 1]
    if thin:
        voxel_axis = thin[-1]
        world_axis = int(world_of[voxel_axis])
        return "xyz"[world_axis], [_plane_world(affine, shape, voxel_axis, 0, world_axis)]

    voxel_axis = int(np.flatnonzero(world_of == 2)[0])
    in_map = data != 0
    if not in_map.any():
        in_map = np.ones(shape, dtype=bool)
    others = tuple(axis for axis in range(3) if axis != voxel_axis)
    planes = np.flatnonzero(in_map.any(axis=others))
    lo, hi = int(planes.min()), int(planes.max())
    n_cuts = min(_MAX_CUTS, hi - lo + 1)
    if hi - lo + 1 > n_cuts + 1:
        # Leave out the outermost planes, which hold few voxels.
        picks = np.linspace(lo, hi, n_cuts + 2)[1:-1]
    else:
        picks = np.linspace(lo, hi, n_cuts)
    picks = np.round(picks).astype(int)
    if data.any():
        masked = np.where(data != 0, data, -np.inf)
        peak_plane = int(np.unravel_index(np.argmax(masked), shape)[voxel_axis])
        picks[np.argmin(np.abs(picks - peak_plane))] = peak_plane
    picks = np.unique(picks)
    cuts = sorted(_plane_world(affine, shape, voxel_axis, p, 2) for p in picks)
    return "z", cuts


def _figsize(img, display_mode: str, n_cuts: int) -> tuple[float, float]:
    """Figure size (inches) giving each cut its image's aspect ratio, plus a colorbar."""
    shape = np.asarray(img.shape[:3], dtype=float)
    corners = np.array(np.meshgrid(*[[-0.5, s - 0.5] for s in shape], indexing="ij"))
    world = apply_affine(img.affine, corners.reshape(3, -1).T)
    extent = world.max(axis=0) - world.min(axis=0)
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


def _clean_map(img, name: str):
    """A 3D image with finite float32 data, its data (float64), display mode and cuts."""
    img = _load_3d(img, name)
    data = _finite_data(img)
    clean = nib.Nifti1Image(data.astype(np.float32), img.affine)
    display_mode, cuts = _display_cuts(clean, data)
    return clean, data, display_mode, cuts


def _background(mean_img):
    return None if mean_img is None else _load_3d(mean_img, "mean_img")


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
) -> Path:
    """Plot a searchlight score map over the mean functional image and save it.

    As in nilearn's classic searchlight example: the scores drawn with
    :func:`nilearn.plotting.plot_img` over ``mean_img`` on a black background, colour map
    "inferno" starting at chance level, with a colorbar. Voxels outside the map (score 0)
    and voxels scoring below chance are transparent, so the background shows through.
    A single-slice image is shown as that slice; a volume as up to seven axial cuts
    spread over the map, one of them through the peak.

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

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    _use_headless_backend()
    from matplotlib.figure import Figure
    from nilearn import plotting

    path = Path(path)
    scores, data, display_mode, cuts = _clean_map(scores_img, "scores_img")
    bg = _background(mean_img)
    in_map = data[data != 0]
    fig = Figure(figsize=_figsize(scores, display_mode, len(cuts)), facecolor="k")
    common = dict(
        cut_coords=cuts,
        display_mode=display_mode,
        figure=fig,
        title=title,
        black_bg=True,
        draw_cross=False,
        resampling_interpolation="nearest",
    )
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


def plot_f_scores(
    f_img,
    mean_img,
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Plot a univariate F-test map over the mean functional image and save it.

    As in nilearn's classic searchlight example: :func:`nilearn.plotting.plot_stat_map`
    of the F-test -log10(p) map over ``mean_img``, here with a colorbar. Zeros are
    transparent. Cuts are chosen as in :func:`plot_searchlight`.

    Parameters
    ----------
    f_img : Niimg-like
        3D map of -log10(p) of the F-test (0 outside the mask). +inf (p = 0) is shown as
        the largest finite value, NaN as 0.
    mean_img : Niimg-like or None
        Background image, usually the mean functional image. None draws no background.
    path : str or path-like
        Output file; parent folders are created.
    title : str or None, default=None
        Title drawn in the figure.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    _use_headless_backend()
    from matplotlib.figure import Figure
    from nilearn import plotting

    path = Path(path)
    f_map, data, display_mode, cuts = _clean_map(f_img, "f_img")
    bg = _background(mean_img)
    vmax = float(np.abs(data).max())
    fig = Figure(figsize=_figsize(f_map, display_mode, len(cuts)), facecolor="k")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="empty mask", category=UserWarning)
        plotting.plot_stat_map(
            f_map,
            bg_img=bg,
            cut_coords=cuts,
            display_mode=display_mode,
            figure=fig,
            title=title,
            colorbar=True,
            cbar_tick_format="%.1f",
            black_bg=True,
            threshold=_MAP_THRESHOLD,
            vmax=vmax if vmax > 0 else None,
            draw_cross=False,
            resampling_interpolation="nearest",
        )
    return _save_display(fig, path)


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


# --------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------


def _empty_regions() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _TOP_REGION_DTYPES.items()})


def top_regions(
    scores_img,
    *,
    chance: float | None,
    n: int | None = 10,
    min_voxels: int = 1,
    threshold: float | None = None,
) -> pd.DataFrame:
    """The best-scoring regions of a map: clusters of high-scoring voxels, best first.

    Voxels scoring at least ``threshold`` and strictly above ``chance`` are grouped into
    clusters of face-, edge- or corner-touching voxels (26-connectivity). Each cluster is
    described by its peak (highest-scoring voxel; the first in C order on ties), its size
    and its mean score. Clusters are sorted by peak score, then size.

    Parameters
    ----------
    scores_img : Niimg-like
        3D score map, 0 (or NaN) outside the searched voxels. A single slice is fine.
    chance : float or None
        Chance level; only voxels scoring above it are kept. None sets no such floor.
    n : int or None, default=10
        Number of clusters to return; None returns all.
    min_voxels : int, default=1
        Smallest cluster size kept.
    threshold : float or None, default=None
        Score a voxel needs. None uses ``max(chance, 95th percentile of the in-map scores)``,
        where in-map scores are the finite non-zero ones.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TOP_REGION_COLUMNS`: ``cluster`` (rank, from 1), ``peak_score``,
        ``peak_x_mm``, ``peak_y_mm``, ``peak_z_mm`` (world coordinates of the peak from the
        image affine), ``peak_i``, ``peak_j``, ``peak_k`` (its voxel indices),
        ``n_voxels`` and ``mean_score``. Empty, with the same columns, when no voxel passes.
        ``attrs["threshold"]`` holds the threshold used (None for a map with no in-map
        voxel).
    """
    if n is not None and (not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}.")
    if not isinstance(min_voxels, numbers.Integral) or min_voxels < 1:
        raise ValueError(f"min_voxels must be a positive integer, got {min_voxels!r}.")
    img = _load_3d(scores_img, "scores_img")
    raw = np.asarray(img.dataobj, dtype=np.float64)
    in_map = np.isfinite(raw) & (raw != 0)
    data = np.where(in_map, raw, 0.0)

    frame = _empty_regions()
    frame.attrs["threshold"] = None
    if not in_map.any():
        return frame
    if threshold is None:
        threshold = float(np.percentile(data[in_map], 95))
        if chance is not None:
            threshold = max(threshold, float(chance))
    threshold = float(threshold)
    frame.attrs["threshold"] = threshold

    selected = in_map & (data >= threshold)
    if chance is not None:
        selected &= data > chance
    labels, n_labels = ndimage.label(selected, structure=np.ones((3, 3, 3), dtype=bool))
    if n_labels == 0:
        return frame
    index = np.arange(1, n_labels + 1)
    sizes = np.bincount(labels.ravel(), minlength=n_labels + 1)[1:]
    peaks = np.asarray(ndimage.maximum(data, labels, index), dtype=np.float64)
    means = np.asarray(ndimage.mean(data, labels, index), dtype=np.float64)
    positions = np.array(ndimage.maximum_position(data, labels, index), dtype=np.int64)
    positions = positions.reshape(n_labels, 3)
    world = apply_affine(img.affine, positions)

    keep = sizes >= min_voxels
    order = np.lexsort((-sizes[keep], -peaks[keep]))
    if n is not None:
        order = order[:n]
    rows = {
        "cluster": np.arange(1, order.size + 1),
        "peak_score": peaks[keep][order],
        "peak_x_mm": world[keep][order, 0],
        "peak_y_mm": world[keep][order, 1],
        "peak_z_mm": world[keep][order, 2],
        "peak_i": positions[keep][order, 0],
        "peak_j": positions[keep][order, 1],
        "peak_k": positions[keep][order, 2],
        "n_voxels": sizes[keep][order],
        "mean_score": means[keep][order],
    }
    frame = pd.DataFrame(rows).astype(_TOP_REGION_DTYPES)
    frame.attrs["threshold"] = threshold
    return frame


# --------------------------------------------------------------------------------------
# HTML report
# --------------------------------------------------------------------------------------

_MAIN_SECTIONS = ("results", "parameters", "data")
_LAST_SECTIONS = ("timings", "software")
_MAX_ITEMS = 50
_MAX_DEPTH = 6

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       background: #fafafa; margin: 0; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 3em; background: #fff; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
nav { font-size: 0.9em; color: #555; margin-bottom: 1em; }
nav a { color: #2a5db0; text-decoration: none; margin-right: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f1f1f1; }
table.kv > tbody > tr > th { width: 14em; font-weight: 600; }
table.kv td { word-break: break-word; }
table.nested { margin: 0; font-size: 1em; }
table.data td { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #ccc; }
figcaption { font-size: 0.92em; color: #444; margin-top: 0.3em; }
.note, footer { color: #666; font-size: 0.88em; }
footer { margin-top: 3em; border-top: 1px solid #ddd; padding-top: 0.5em; }
""".strip()


def _format_float(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def _render_value(value, depth: int = 0) -> str:
    """A summary value as escaped HTML: scalars as text, mappings as nested tables."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _format_float(float(value))
    if isinstance(value, str):
        return html.escape(value).replace("\n", "<br>")
    if depth >= _MAX_DEPTH:
        return html.escape(str(value))
    if isinstance(value, Mapping):
        if not value:
            return "&mdash;"
        return _kv_table(value, css_class="kv nested", depth=depth + 1)
    if isinstance(value, pd.DataFrame):
        return _frame_html(value)
    if isinstance(value, pd.Series):
        value = value.to_dict()
        return _kv_table(value, css_class="kv nested", depth=depth + 1) if value else "&mdash;"
    if isinstance(value, np.ndarray) and value.size > _MAX_ITEMS:
        return html.escape(f"array of shape {value.shape}, dtype {value.dtype}")
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        if not items:
            return "&mdash;"
        more = len(items) - _MAX_ITEMS
        items = items[:_MAX_ITEMS]
        rendered = [_render_value(item, depth + 1) for item in items]
        scalar = all(
            item is None or isinstance(item, (str, numbers.Number, np.generic)) for item in items
        )
        if scalar and all("<br>" not in r for r in rendered):
            text = ", ".join(rendered)
            return text + (f", &hellip; ({more} more)" if more > 0 else "")
        body = "".join(f"<li>{r}</li>" for r in rendered)
        if more > 0:
            body += f"<li>&hellip; ({more} more)</li>"
        return f"<ul>{body}</ul>"
    return html.escape(str(value))


def _kv_table(mapping: Mapping, *, css_class: str = "kv", depth: int = 0) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{_render_value(val, depth)}</td></tr>"
        for key, val in mapping.items()
    )
    return f'<table class="{css_class}"><tbody>{rows}</tbody></table>'


def _frame_html(frame: pd.DataFrame) -> str:
    default_index = isinstance(frame.index, pd.RangeIndex) and frame.index.name is None
    return frame.to_html(
        escape=True,
        index=not default_index,
        border=0,
        classes="data",
        na_rep="\u2014",
        float_format=lambda x: f"{x:.4g}",
    )


def _heading(key) -> str:
    text = str(key).replace("_", " ").strip() or str(key)
    return html.escape(text[:1].upper() + text[1:])


def _anchor(prefix: str, key, used: set[str]) -> str:
    base = "".join(c if c.isalnum() else "-" for c in str(key).lower()).strip("-") or "section"
    anchor = f"{prefix}-{base}"
    i = 2
    while anchor in used:
        anchor = f"{prefix}-{base}-{i}"
        i += 1
    used.add(anchor)
    return anchor


def _figure_src(out_dir: Path, name) -> str:
    """``name`` as a URL relative to ``out_dir``; warns if the file does not exist."""
    root = Path(os.path.abspath(out_dir))
    full = Path(os.path.normpath(root / name))  # an absolute ``name`` replaces ``root``
    if not full.is_relative_to(root):
        # The same folder may be spelled through a symbolic link.
        full, root = full.resolve(), root.resolve()
    if not full.is_relative_to(root) or full == root:
        raise ValueError(f"Figure {str(name)!r} is not inside the output folder {out_dir}.")
    rel = full.relative_to(root)
    if not full.is_file():
        warnings.warn(
            f"Figure file {full} does not exist; the report links to it anyway.", stacklevel=3
        )
    return html.escape(quote(rel.as_posix(), safe="/"), quote=True)


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{heading}</h2>\n{body}\n</section>'


def _section_body(value) -> str:
    if isinstance(value, Mapping):
        return _kv_table(value) if value else '<p class="note">(empty)</p>'
    if isinstance(value, pd.DataFrame):
        return _frame_html(value)
    return f"<p>{_render_value(value)}</p>"


def _software_version() -> str:
    try:
        from . import __version__
    except ImportError:  # pragma: no cover - the package always defines it
        return ""
    return str(__version__)


def write_report(
    out_dir: str | os.PathLike,
    summary: Mapping,
    *,
    figures: Mapping[str, str | os.PathLike],
    tables: Mapping[str, pd.DataFrame] | None = None,
    filename: str = "report.html",
    force: bool = False,
    title: str = "Searchlight report",
) -> Path:
    """Write a self-contained HTML report of a study into its output folder.

    The page needs no network: CSS is inline, there is no script, and figures are linked
    by paths relative to ``out_dir`` so the folder can be moved or archived as a whole.
    Sections, in order: results, figures, tables, parameters, data, any other top-level
    summary key (in the summary's order), timings, software. A mapping section is a
    two-column table; nested mappings become nested tables, lists comma-separated text.
    Every string from the summary and the tables is HTML-escaped.

    The page is written to a temporary file in ``out_dir`` and moved into place with
    :func:`os.replace`, so a reader never sees a half-written report.

    Parameters
    ----------
    out_dir : str or path-like
        Output folder of the study (created if missing).
    summary : mapping
        Study summary. The keys "parameters", "data", "results", "timings" and "software"
        are expected to hold flat mappings; any other key becomes a section of its own.
    figures : mapping of str to str or path-like
        Caption -> figure file name inside ``out_dir`` (relative, or absolute inside it).
        A missing file gives a warning and is linked anyway.
    tables : mapping of str to pandas.DataFrame or None, default=None
        Heading -> table, e.g. ``{"Top regions": top_regions(...)}``.
    filename : str, default="report.html"
        Name of the page inside ``out_dir``.
    force : bool, default=False
        Overwrite an existing page.
    title : str, default="Searchlight report"
        Page title.

    Returns
    -------
    pathlib.Path
        Path of the written page.

    Raises
    ------
    FileExistsError
        If the page exists and ``force`` is False.
    ValueError
        If ``filename`` is not a plain file name or a figure lies outside ``out_dir``.
    """
    out_dir = Path(out_dir)
    if not filename or filename in (".", "..") or Path(filename).name != filename:
        raise ValueError(f"filename must be a plain file name, got {filename!r}.")
    if not isinstance(summary, Mapping):
        raise TypeError(f"summary must be a mapping, got {type(summary).__name__}.")
    target = out_dir / filename
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass force=True to overwrite it.")
    out_dir.mkdir(parents=True, exist_ok=True)

    used: set[str] = set()
    sections: list[tuple[str, str, str]] = []  # (anchor, heading, body)

    def add_summary_section(key) -> None:
        sections.append((_anchor("s", key, used), _heading(key), _section_body(summary[key])))

    for key in ("results",):
        if key in summary:
            add_summary_section(key)
    if figures:
        parts = []
        for caption, name in figures.items():
            src = _figure_src(out_dir, name)
            cap = html.escape(str(caption))
            parts.append(
                f'<figure><img src="{src}" alt="{cap}">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
        sections.append((_anchor("s", "figures", used), "Figures", "\n".join(parts)))
    for heading, frame in (tables or {}).items():
        if isinstance(frame, pd.Series):
            frame = frame.to_frame()
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(
                f"Table {heading!r} must be a pandas DataFrame, got {type(frame).__name__}."
            )
        body = _frame_html(frame)
        if frame.empty:
            body += '\n<p class="note">No rows.</p>'
        notes = {
            k: v
            for k, v in frame.attrs.items()
            if v is None or isinstance(v, (str, numbers.Number, np.generic))
        }
        if notes:
            text = "; ".join(f"{html.escape(str(k))}: {_render_value(v)}" for k, v in notes.items())
            body += f'\n<p class="note">{text}</p>'
        sections.append((_anchor("t", heading, used), html.escape(str(heading)), body))
    for key in _MAIN_SECTIONS[1:]:
        if key in summary:
            add_summary_section(key)
    for key in summary:
        if key not in _MAIN_SECTIONS and key not in _LAST_SECTIONS:
            add_summary_section(key)
    for key in _LAST_SECTIONS:
        if key in summary:
            add_summary_section(key)

    nav = " ".join(f'<a href="#{anchor}">{heading}</a>' for anchor, heading, _ in sections)
    version = _software_version()
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>\n{_CSS}\n</style>",
            "</head>",
            "<body>",
            "<main>",
            f"<h1>{html.escape(title)}</h1>",
            f"<nav>{nav}</nav>" if nav else "",
            *(_section(anchor, heading, body) for anchor, heading, body in sections),
            "<footer>Generated by fastsearchlight"
            + (f" {html.escape(version)}" if version else "")
            + f" on {html.escape(generated)}.</footer>",
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )

    tmp = out_dir / f".{filename}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
