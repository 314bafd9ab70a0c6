"""Searchlight neighbourhoods in a volume: which mask voxels fall in the sphere around each seed.

Built once, as a sparse boolean matrix (spheres x mask voxels), with the same rule as
nilearn's ``SearchLight``: seeds are the world coordinates of the process-mask voxels; a
sphere holds every mask voxel whose world coordinates lie within ``radius`` mm of its seed
(scikit-learn's ``NearestNeighbors.radius_neighbors_graph``), plus the mask voxel nearest to
the seed, so the centre is always in its own sphere when it is in the mask.

When the process mask shares the mask's grid (the usual case), the spheres come from a stencil
of voxel offsets instead of a radius search, about twenty times faster, with the very same
result: near ties are decided with the KD-tree's own arithmetic (:mod:`._stencil`), and the
few pairs that only the tree can settle are handed to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._huge_pages import without_huge_pages
from ._stencil import settle_exact_ties, stencil_offsets, tie_tolerance, tie_verdicts
from .base import Neighbourhoods

if TYPE_CHECKING:  # imported where used, so that worker processes do not load them
    from scipy import sparse

__all__ = ["Neighbourhoods", "build_neighbourhoods"]

#: Fewest mask voxels for which ``NearestNeighbors(radius=...)`` (``algorithm="auto"``) fits a
#: KD-tree: with fewer than 12 it picks brute force (``n_neighbors=5 >= n_samples // 2``),
#: whose distances (``|x|^2 - 2 x.y + |y|^2``) round differently at ties. The stencil
#: reproduces the KD-tree, so smaller masks go through scikit-learn.
_KD_TREE_MIN_SAMPLES = 12
#: Above this share of seeds with a pair only the KD-tree can settle, the tree does it all.
_MAX_AMBIGUOUS_SHARE = 0.25
#: Largest number of (seed, offset) candidates handled at once. Small enough that each
#: chunk's temporaries (about 13 bytes per candidate: 3 MB) are reused from one chunk to the
#: next instead of being fresh memory each time. W2 (204,000 seeds x 123 offsets), first
#: call in a fresh process: 0.18 s and 34,000-40,000 page faults, against 0.29-0.33 s and
#: 92,000-115,000 with chunks of ``1 << 22`` (W1 at 10 mm: 0.026 against 0.04-0.065 s).
_CHUNK_CANDIDATES = 1 << 18


def _radius_search(radius: float):
    """scikit-learn's ``NearestNeighbors(radius=radius)`` (imported on first use: worker
    processes, which import this module, do not need scikit-learn)."""
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(radius=radius)


def build_neighbourhoods(
    mask: np.ndarray,
    affine: np.ndarray,
    process_mask: np.ndarray,
    process_affine: np.ndarray,
    radius: float,
) -> Neighbourhoods:
    """Spheres of ``radius`` mm around each process-mask voxel, over the mask voxels.

    When the mask and the process mask share their grid (same shape, equal affines), the
    spheres come from a stencil of voxel offsets (:func:`_neighbourhoods_by_stencil`);
    otherwise from scikit-learn's ``NearestNeighbors`` (:func:`_neighbourhoods_by_tree`).
    Both give the same matrix, to the bit.

    Parameters
    ----------
    mask : ndarray of bool, 3D
        Voxels whose signal enters the spheres.
    affine : ndarray (4, 4)
        Affine of ``mask`` (the functional images' grid).
    process_mask : ndarray of bool, 3D
        Voxels at which a sphere is centred.
    process_affine : ndarray (4, 4)
        Affine of ``process_mask``.
    radius : float
        Radius in millimetres.

    Returns
    -------
    Neighbourhoods
    """
    with without_huge_pages():  # index arrays written once (see the module)
        if _shares_grid(mask, affine, process_mask, process_affine, radius):
            return _neighbourhoods_by_stencil(mask, affine, process_mask, process_affine, radius)
        return _neighbourhoods_by_tree(mask, affine, process_mask, process_affine, radius)


def _neighbourhoods_by_tree(mask, affine, process_mask, process_affine, radius: float) -> Neighbourhoods:
    """:func:`build_neighbourhoods` on any pair of grids, with scikit-learn's radius search.

    Parameters and return value are those of :func:`build_neighbourhoods`.
    """
    from nibabel.affines import apply_affine
    from scipy import sparse

    mask_ijk, seeds_ijk = _check_inputs(mask, process_mask, radius)
    mask_xyz = apply_affine(affine, mask_ijk)
    seeds_xyz = apply_affine(process_affine, seeds_ijk)

    nn = _radius_search(radius).fit(mask_xyz)
    adjacency = nn.radius_neighbors_graph(seeds_xyz, mode="connectivity").tocsr()

    lookup = -np.ones(mask.shape, dtype=np.int64)
    lookup[tuple(mask_ijk.T)] = np.arange(len(mask_ijk))
    nearest = _nearest_mask_voxel(seeds_xyz, affine, lookup)
    has = nearest >= 0
    centres = sparse.csr_matrix(
        (np.ones(has.sum()), (np.flatnonzero(has), nearest[has])), shape=adjacency.shape
    )
    adjacency = ((adjacency + centres) > 0).tocsr()
    adjacency.sort_indices()
    return _finish(adjacency, seeds_ijk)


def _neighbourhoods_by_stencil(mask, affine, process_mask, process_affine, radius: float) -> Neighbourhoods:
    """:func:`build_neighbourhoods` when the process mask shares the mask's grid.

    On a shared grid, whether mask voxel ``j`` lies within ``radius`` of seed ``i`` depends
    only on the offset ``ijk_j - ijk_i``, through its length in millimetres. The offsets of
    a box around the origin are sorted once into clearly inside, clearly outside and near
    ties; each seed's sphere is then the mask voxels at its inside offsets, plus those of
    its near-tie offsets that scikit-learn's KD-tree keeps. That verdict is computed pair by
    pair with the KD-tree's own arithmetic on the same world coordinates; the rare pairs
    too close to call without the tree (see :func:`._stencil.tie_verdicts`) send their seeds
    to the tree itself. Offsets are enumerated in C order, so each sphere's voxels come out
    in mask order.

    Parameters and return value are those of :func:`build_neighbourhoods`, with
    ``process_mask`` of the shape of ``mask`` and ``process_affine`` equal to ``affine``.
    """
    from nibabel.affines import apply_affine
    from scipy import sparse

    mask_ijk, seeds_ijk = _check_inputs(mask, process_mask, radius)
    radius = float(radius)
    n_mask, n_seeds = len(mask_ijk), len(seeds_ijk)
    # the world coordinates scikit-learn would see, for the near-tie pairs
    mask_xyz = apply_affine(affine, mask_ijk)
    seeds_xyz = apply_affine(process_affine, seeds_ijk)

    offsets, is_tie, half = stencil_offsets(affine, mask.shape, radius)
    offsets, is_tie = settle_exact_ties(offsets, is_tie, affine, mask.shape, radius)
    lookup, core = _padded_lookup(mask, half, n_mask)
    strides = np.array(lookup.strides) // lookup.itemsize
    flat_lookup = lookup.reshape(-1)
    seed_flat = (seeds_ijk + half) @ strides
    counts, indices, ambiguous = _stencil_rows(
        flat_lookup,
        seed_flat,
        offsets @ strides,
        np.flatnonzero(is_tie),
        seeds_xyz,
        mask_xyz,
        radius,
    )

    if ambiguous.mean() > _MAX_AMBIGUOUS_SHARE:
        # e.g. a rotated grid with a radius of a whole number of voxels: merging would cost
        # more than the tree alone
        return _neighbourhoods_by_tree(mask, affine, process_mask, process_affine, radius)
    if ambiguous.any():
        counts, indices = _replace_rows(
            counts, indices, np.flatnonzero(ambiguous), mask_xyz, seeds_xyz, radius
        )

    # plus the mask voxel nearest to each seed, as in _neighbourhoods_by_tree: on a shared
    # grid it is the seed's own voxel, which the stencil's zero offset already holds
    nearest = _nearest_mask_voxel(seeds_xyz, affine, core)
    own = flat_lookup[seed_flat]
    check = (nearest >= 0) & ((nearest != own) | ambiguous)
    if check.any():
        counts, indices = _add_centres(counts, indices, nearest, np.flatnonzero(check), n_mask)

    indptr = np.zeros(n_seeds + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    adjacency = sparse.csr_matrix(
        (np.ones(len(indices), dtype=bool), indices, indptr), shape=(n_seeds, n_mask)
    )
    adjacency.has_sorted_indices = True
    return _finish(adjacency, seeds_ijk)


def _padded_lookup(mask: np.ndarray, half: np.ndarray, n_mask: int) -> tuple[np.ndarray, np.ndarray]:
    """Mask index of each voxel (-1 outside the mask) in a grid padded by the stencil's
    half-widths, so that every seed + offset falls inside it without a bounds check.

    Parameters
    ----------
    mask : ndarray of bool, 3D
    half : ndarray of int64 (3,)
        Half-widths of the stencil (from :func:`._stencil.stencil_offsets`).
    n_mask : int
        Number of mask voxels.

    Returns
    -------
    lookup : ndarray of int32 or int64, shape ``mask.shape + 2 * half``
    core : ndarray
        The view of ``lookup`` over the grid of ``mask``.
    """
    index_dtype = np.int32 if n_mask < np.iinfo(np.int32).max else np.int64
    lookup = np.full(tuple(np.add(mask.shape, 2 * half)), -1, dtype=index_dtype)
    core = lookup[tuple(slice(h, h + n) for h, n in zip(half, mask.shape))]
    core[np.asarray(mask, dtype=bool)] = np.arange(n_mask)
    return lookup, core


def _stencil_rows(
    flat_lookup: np.ndarray,
    seed_flat: np.ndarray,
    deltas: np.ndarray,
    tie_cols: np.ndarray,
    seeds_xyz: np.ndarray,
    mask_xyz: np.ndarray,
    radius: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every seed's mask voxels at the stencil's offsets, the near ties decided pair by pair.

    Parameters
    ----------
    flat_lookup : ndarray of int
        The padded lookup (:func:`_padded_lookup`), flattened.
    seed_flat : ndarray of int (n_seeds,)
        Flat position of each seed in the padded lookup.
    deltas : ndarray of int (n_offsets,)
        Flat step of each offset, in C order.
    tie_cols : ndarray of int
        Positions of the near-tie offsets among them.
    seeds_xyz, mask_xyz, radius
        World coordinates (n, 3) of the seeds and of the mask voxels; the radius in mm.

    Returns
    -------
    counts, indices
        The spheres as a CSR structure: the number of voxels of each row, and the column
        indices row after row, sorted within each row.
    ambiguous : ndarray of bool (n_seeds,)
        Seeds with a pair only the KD-tree can settle (:func:`._stencil.tie_verdicts`).
    """
    n_seeds = len(seed_flat)
    counts = np.empty(n_seeds, dtype=np.int64)
    # every chunk's columns go straight to their place in one array sized for all the
    # candidates, of which only the part written is ever touched
    indices = np.empty(n_seeds * len(deltas), dtype=flat_lookup.dtype)
    filled = 0
    ambiguous = np.zeros(n_seeds, dtype=bool)
    step = max(1, _CHUNK_CANDIDATES // len(deltas))
    for lo in range(0, n_seeds, step):
        hi = min(lo + step, n_seeds)
        cols = flat_lookup[seed_flat[lo:hi, None] + deltas[None, :]]
        if len(tie_cols):
            tied = cols[:, tie_cols]
            rows, k = np.nonzero(tied >= 0)
            verdict = tie_verdicts(seeds_xyz[lo + rows], mask_xyz[tied[rows, k]], radius)
            out = verdict != 1
            cols[rows[out], tie_cols[k[out]]] = -1
            ambiguous[lo + rows[verdict == 0]] = True
        kept = cols >= 0
        counts[lo:hi] = kept.sum(axis=1)
        found = cols[kept]  # the chunk's rows, one after the other
        indices[filled : filled + len(found)] = found
        filled += len(found)
    return counts, indices[:filled], ambiguous


def _shares_grid(
    mask: np.ndarray,
    affine: np.ndarray,
    process_mask: np.ndarray,
    process_affine: np.ndarray,
    radius: float,
) -> bool:
    """Whether the stencil of :func:`_neighbourhoods_by_stencil` applies.

    Parameters
    ----------
    mask, affine, process_mask, process_affine, radius
        As in :func:`build_neighbourhoods`.

    Returns
    -------
    bool
        True when both masks are 3D on one grid (same shape, equal float64 affines with a
        well-conditioned linear part), the mask holds enough voxels for scikit-learn to use
        a KD-tree, and the rounding of world coordinates is small against the radius.
    """
    affine = np.asarray(affine)
    process_affine = np.asarray(process_affine)
    if (
        not np.isfinite(radius)
        or radius <= 0
        or np.ndim(mask) != 3
        or np.shape(mask) != np.shape(process_mask)
        or affine.shape != (4, 4)
        or affine.dtype != np.float64
        or process_affine.dtype != np.float64
        or not np.array_equal(affine, process_affine)
        or not np.all(np.isfinite(affine))
    ):
        return False
    if np.count_nonzero(mask) < _KD_TREE_MIN_SAMPLES:
        return False
    if not np.linalg.cond(affine[:3, :3]) < 1e8:
        return False
    r2 = float(radius) ** 2
    return bool(tie_tolerance(affine, np.shape(mask), float(radius)) < 0.25 * r2)


def _replace_rows(
    counts: np.ndarray,
    indices: np.ndarray,
    rows: np.ndarray,
    mask_xyz: np.ndarray,
    seeds_xyz: np.ndarray,
    radius: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace some rows of a CSR structure by scikit-learn's radius search.

    Parameters
    ----------
    counts : ndarray of int64 (n_seeds,)
        Number of voxels of each row.
    indices : ndarray
        Column indices, row after row, sorted within each row.
    rows : ndarray of int
        Rows to recompute.
    mask_xyz, seeds_xyz : ndarray (n, 3)
        World coordinates of the mask voxels and of the seeds.
    radius : float
        Radius in millimetres.

    Returns
    -------
    counts, indices
        The updated structure.
    """
    nn = _radius_search(radius).fit(mask_xyz)
    found = nn.radius_neighbors(seeds_xyz[rows], return_distance=False)
    row_of = np.repeat(np.arange(len(counts)), counts)
    keep = ~np.isin(row_of, rows)
    new_counts = np.array([len(f) for f in found], dtype=np.int64)
    new_rows = np.repeat(rows, new_counts)
    new_cols = np.concatenate([np.sort(f) for f in found]).astype(indices.dtype)
    all_rows = np.concatenate([row_of[keep], new_rows])
    order = np.argsort(all_rows, kind="stable")
    counts = counts.copy()
    counts[rows] = new_counts
    return counts, np.concatenate([indices[keep], new_cols])[order]


def _add_centres(
    counts: np.ndarray, indices: np.ndarray, nearest: np.ndarray, rows: np.ndarray, n_mask: int
) -> tuple[np.ndarray, np.ndarray]:
    """Add ``nearest[row]`` to those of ``rows`` that lack it, keeping rows sorted.

    Parameters
    ----------
    counts, indices
        The CSR structure, as for :func:`_replace_rows`.
    nearest : ndarray of int64 (n_seeds,)
        Mask voxel nearest to each seed.
    rows : ndarray of int
        Rows to check, with ``nearest[rows] >= 0``.
    n_mask : int
        Number of mask voxels.

    Returns
    -------
    counts, indices
        The updated structure.
    """
    row_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    keys = row_of * n_mask + indices
    wanted = rows * n_mask + nearest[rows]
    if len(keys):
        pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        missing = rows[keys[pos] != wanted]
    else:
        missing = rows
    if len(missing) == 0:
        return counts, indices
    keys = np.concatenate([keys, missing * n_mask + nearest[missing]])
    order = np.argsort(keys, kind="stable")
    counts = counts.copy()
    counts[missing] += 1
    indices = np.concatenate([indices, nearest[missing].astype(indices.dtype)])
    return counts, indices[order]


def _check_inputs(mask: np.ndarray, process_mask: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Validate the radius and the masks; voxel indices of the mask and of the seeds.

    Parameters
    ----------
    mask, process_mask : ndarray of bool, 3D
        As in :func:`build_neighbourhoods`.
    radius : float
        Radius in millimetres.

    Returns
    -------
    mask_ijk, seeds_ijk : ndarray of int64 (n, 3)
        Voxel indices of the mask voxels and of the process-mask voxels, in C order.
    """
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a non-negative number of millimetres, got {radius!r}.")
    mask_ijk = np.argwhere(mask)
    seeds_ijk = np.argwhere(process_mask)
    if len(mask_ijk) == 0:
        raise ValueError("The mask is empty: it selects no voxel.")
    if len(seeds_ijk) == 0:
        raise ValueError("The process mask is empty: it selects no voxel.")
    return mask_ijk, seeds_ijk


def _nearest_mask_voxel(seeds_xyz: np.ndarray, affine: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """The mask voxel nearest to each seed: its rounded voxel index in the mask's grid.

    Parameters
    ----------
    seeds_xyz : ndarray (n_seeds, 3)
        World coordinates of the seeds.
    affine : ndarray (4, 4)
        Affine of the mask.
    lookup : ndarray of int, shape of the mask
        Mask index of each voxel, -1 outside the mask.

    Returns
    -------
    ndarray of int64 (n_seeds,)
        Mask index of the nearest voxel, -1 when it is not in the mask or off the grid.
    """
    from nibabel.affines import apply_affine

    nearest_ijk = np.round(apply_affine(np.linalg.inv(affine), seeds_xyz)).astype(int)
    inside = np.all((nearest_ijk >= 0) & (nearest_ijk < np.array(lookup.shape)), axis=1)
    nearest = np.full(len(seeds_xyz), -1, dtype=np.int64)
    nearest[inside] = lookup[tuple(nearest_ijk[inside].T)]
    return nearest


def _finish(adjacency: sparse.csr_matrix, seeds_ijk: np.ndarray) -> Neighbourhoods:
    """Refuse spheres without a mask voxel; wrap the matrix.

    Parameters
    ----------
    adjacency : scipy.sparse.csr_matrix of bool (n_spheres, n_mask_voxels)
        Sorted sphere membership.
    seeds_ijk : ndarray (n_spheres, 3)
        Voxel indices of the seeds.

    Returns
    -------
    Neighbourhoods
    """
    sizes = np.diff(adjacency.indptr)
    if np.any(sizes == 0):
        empty = seeds_ijk[sizes == 0]
        raise ValueError(
            f"{len(empty)} searchlight spheres contain no mask voxel (e.g. around voxel "
            f"{tuple(int(v) for v in empty[0])} of the process mask): the process mask "
            "reaches outside the mask by more than the radius."
        )
    return Neighbourhoods(adjacency=adjacency, seeds_ijk=seeds_ijk)
