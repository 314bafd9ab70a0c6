"""Searchlight neighbourhoods: which mask voxels fall in the sphere around each seed.

Built once, as a sparse boolean matrix (spheres x mask voxels), with the same rule as
nilearn's ``SearchLight``: seeds are the world coordinates of the process-mask voxels; a
sphere holds every mask voxel whose world coordinates lie within ``radius`` mm of its seed
(scikit-learn's ``NearestNeighbors.radius_neighbors_graph``), plus the mask voxel nearest to
the seed, so the centre is always in its own sphere when it is in the mask.

When the process mask shares the mask's grid (the usual case), the spheres come from a stencil
of voxel offsets instead of a radius search, about twenty times faster, with the very same
result: near ties are decided with the KD-tree's own arithmetic, and the few pairs that only
the tree can settle are handed to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used, so that worker processes do not load them
    from scipy import sparse


@dataclass(frozen=True)
class Neighbourhoods:
    """Spheres of a searchlight.

    Attributes
    ----------
    adjacency : scipy.sparse.csr_matrix of bool, shape (n_spheres, n_mask_voxels)
        Row ``s`` marks the mask voxels of sphere ``s``; column indices are sorted, i.e.
        voxels appear in the order of the mask (C order of the grid), as in nilearn.
    seeds_ijk : ndarray (n_spheres, 3)
        Voxel indices of the seeds in the process mask's grid.
    """

    adjacency: sparse.csr_matrix
    seeds_ijk: np.ndarray

    @property
    def n_spheres(self) -> int:
        return self.adjacency.shape[0]

    @property
    def sizes(self) -> np.ndarray:
        """Number of voxels of each sphere."""
        return np.diff(self.adjacency.indptr)

    def voxels(self, sphere: int) -> np.ndarray:
        """Mask-voxel indices of one sphere."""
        a = self.adjacency
        return a.indices[a.indptr[sphere] : a.indptr[sphere + 1]]

    def blocks(self, max_spheres):
        """Yield ``(sphere_ids, voxel_ids)`` blocks of spheres of equal size.

        ``voxel_ids`` has shape (len(sphere_ids), size): a dense index array, so the data
        of the block gathers in one fancy-indexing step without padding.

        Parameters
        ----------
        max_spheres : int or callable
            Largest block, or a function of the sphere size giving it.
        """
        sizes = self.sizes
        a = self.adjacency
        for size in np.unique(sizes):
            limit = max_spheres(int(size)) if callable(max_spheres) else int(max_spheres)
            max_spheres_k = max(1, limit)
            ids = np.flatnonzero(sizes == size)
            starts = a.indptr[ids]
            vox = a.indices[starts[:, None] + np.arange(size)[None, :]]
            for lo in range(0, len(ids), max_spheres_k):
                yield ids[lo : lo + max_spheres_k], vox[lo : lo + max_spheres_k]


#: Fewest mask voxels for which ``NearestNeighbors(radius=...)`` (``algorithm="auto"``) fits a
#: KD-tree: with fewer than 12 it picks brute force (``n_neighbors=5 >= n_samples // 2``),
#: whose distances (``|x|^2 - 2 x.y + |y|^2``) round differently at ties. The stencil
#: reproduces the KD-tree, so smaller masks go through scikit-learn.
_KD_TREE_MIN_SAMPLES = 12
#: Relative margin around ``radius**2`` within which an offset is a near tie, decided pair
#: by pair as the KD-tree decides it.
_TIE_RTOL = 1e-9
#: Relative margin around ``radius**2`` within which a pair's squared distance is too close
#: for its KD-tree verdict to be known without the tree (see :func:`_tie_verdicts`).
_AMBIGUOUS_RTOL = 1e-12
#: Above this share of seeds with a pair only the KD-tree can settle, the tree does it all.
_MAX_AMBIGUOUS_SHARE = 0.25
#: Largest number of (seed, offset) candidates handled at once, to bound memory.
_CHUNK_CANDIDATES = 1 << 22


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
    if _shares_grid(mask, affine, process_mask, process_affine, radius):
        return _neighbourhoods_by_stencil(mask, affine, process_mask, process_affine, radius)
    return _neighbourhoods_by_tree(mask, affine, process_mask, process_affine, radius)


def _neighbourhoods_by_tree(
    mask: np.ndarray,
    affine: np.ndarray,
    process_mask: np.ndarray,
    process_affine: np.ndarray,
    radius: float,
) -> Neighbourhoods:
    """:func:`build_neighbourhoods` on any pair of grids, with scikit-learn's radius search.

    Parameters and return value are those of :func:`build_neighbourhoods`.
    """
    from scipy import sparse
    from nibabel.affines import apply_affine

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


def _neighbourhoods_by_stencil(
    mask: np.ndarray,
    affine: np.ndarray,
    process_mask: np.ndarray,
    process_affine: np.ndarray,
    radius: float,
) -> Neighbourhoods:
    """:func:`build_neighbourhoods` when the process mask shares the mask's grid.

    On a shared grid, whether mask voxel ``j`` lies within ``radius`` of seed ``i`` depends
    only on the offset ``ijk_j - ijk_i``, through its length in millimetres. The offsets of
    a box around the origin are sorted once into clearly inside, clearly outside and near
    ties; each seed's sphere is then the mask voxels at its inside offsets, plus those of
    its near-tie offsets that scikit-learn's KD-tree keeps. That verdict is computed pair by
    pair with the KD-tree's own arithmetic on the same world coordinates; the rare pairs
    too close to call without the tree (see :func:`_tie_verdicts`) send their seeds to the
    tree itself. Offsets are enumerated in C order, so each sphere's voxels come out in
    mask order.

    Parameters and return value are those of :func:`build_neighbourhoods`, with
    ``process_mask`` of the shape of ``mask`` and ``process_affine`` equal to ``affine``.
    """
    from scipy import sparse
    from nibabel.affines import apply_affine

    mask_ijk, seeds_ijk = _check_inputs(mask, process_mask, radius)
    radius = float(radius)
    n_mask, n_seeds = len(mask_ijk), len(seeds_ijk)
    # the world coordinates scikit-learn would see, for the near-tie pairs
    mask_xyz = apply_affine(affine, mask_ijk)
    seeds_xyz = apply_affine(process_affine, seeds_ijk)

    offsets, is_tie, half = _stencil(affine, mask.shape, radius)
    if is_tie.any() and _exact_coordinates(affine, mask.shape):
        # every world coordinate and every difference of two is exact: all the pairs of a
        # near-tie offset d compute the same reduced distance, that of -M d
        tie_mm = offsets[is_tie] @ affine[:3, :3].T
        verdict = _tie_verdicts(np.zeros_like(tie_mm), tie_mm, radius)
        keep = np.ones(len(offsets), dtype=bool)
        keep[np.flatnonzero(is_tie)[verdict == -1]] = False
        is_tie[np.flatnonzero(is_tie)[verdict == 1]] = False
        offsets, is_tie = offsets[keep], is_tie[keep]
    # mask index of each voxel (-1 outside the mask) in a grid padded by the stencil's
    # half-widths, so that every seed + offset falls inside it without a bounds check
    index_dtype = np.int32 if n_mask < np.iinfo(np.int32).max else np.int64
    lookup = np.full(tuple(np.add(mask.shape, 2 * half)), -1, dtype=index_dtype)
    core = lookup[tuple(slice(h, h + n) for h, n in zip(half, mask.shape))]
    core[np.asarray(mask, dtype=bool)] = np.arange(n_mask)
    strides = np.array(lookup.strides) // lookup.itemsize
    flat_lookup = lookup.reshape(-1)
    deltas = offsets @ strides
    seed_flat = (seeds_ijk + half) @ strides
    tie_cols = np.flatnonzero(is_tie)

    counts = np.empty(n_seeds, dtype=np.int64)
    chunks = []
    ambiguous = np.zeros(n_seeds, dtype=bool)
    step = max(1, _CHUNK_CANDIDATES // len(offsets))
    for lo in range(0, n_seeds, step):
        hi = min(lo + step, n_seeds)
        cols = flat_lookup[seed_flat[lo:hi, None] + deltas[None, :]]
        if len(tie_cols):
            tied = cols[:, tie_cols]
            rows, k = np.nonzero(tied >= 0)
            verdict = _tie_verdicts(seeds_xyz[lo + rows], mask_xyz[tied[rows, k]], radius)
            out = verdict != 1
            cols[rows[out], tie_cols[k[out]]] = -1
            ambiguous[lo + rows[verdict == 0]] = True
        kept = cols >= 0
        counts[lo:hi] = kept.sum(axis=1)
        chunks.append(cols[kept])
    indices = np.concatenate(chunks)

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
    return bool(_tie_tolerance(affine, np.shape(mask), float(radius)) < 0.25 * r2)


def _tie_tolerance(affine: np.ndarray, shape: tuple[int, ...], radius: float) -> float:
    """Half-width of the band of squared lengths (mm^2) around ``radius**2`` of near ties.

    It bounds, with a wide margin, the rounding error of a pair's squared distance computed
    from world coordinates against the exact squared length of its offset: coordinates carry
    an error of a few ulps of the largest term that enters them.

    Parameters
    ----------
    affine : ndarray (4, 4)
        Affine of the grid.
    shape : tuple of int
        Shape of the grid.
    radius : float
        Radius in millimetres.

    Returns
    -------
    float
    """
    eps = np.finfo(float).eps
    r2 = radius * radius
    coord_err = 16 * eps * (_largest_coordinate(affine, shape) + radius)
    return _TIE_RTOL * r2 + 8 * radius * coord_err + 8 * eps * r2


def _largest_coordinate(affine: np.ndarray, shape: tuple[int, ...]) -> float:
    """A bound on the absolute value of every world coordinate of the grid (and of every
    partial sum in ``M @ ijk + t``)."""
    extent = np.abs(affine[:3, :3]) @ (np.asarray(shape, dtype=float) - 1)
    return float(np.max(extent + np.abs(affine[:3, 3])))


def _exact_coordinates(affine: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether every world coordinate of the grid is computed exactly, in any order.

    True when the affine's entries are multiples of a common power of two ``2**-k`` and
    every partial sum of ``M @ ijk + t`` over the grid stays below ``2**52 * 2**-k``: all
    products, sums and differences of coordinates are then exact in float64.

    Parameters
    ----------
    affine : ndarray (4, 4)
        Affine of the grid.
    shape : tuple of int
        Shape of the grid.

    Returns
    -------
    bool
    """
    entries = affine[:3, :]
    bound = _largest_coordinate(affine, shape)
    for k in range(41):
        scaled = np.ldexp(entries, k)
        if np.all(scaled == np.round(scaled)):
            return np.ldexp(bound, k) < 2.0**52
    return False


def _stencil(
    affine: np.ndarray, shape: tuple[int, ...], radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel offsets that can reach within ``radius`` mm, in C order.

    Parameters
    ----------
    affine : ndarray (4, 4)
        Affine of the grid.
    shape : tuple of int
        Shape of the grid.
    radius : float
        Radius in millimetres.

    Returns
    -------
    offsets : ndarray of int64 (n_offsets, 3)
        Offsets clearly inside the sphere or near its surface, in C order of (di, dj, dk).
    is_tie : ndarray of bool (n_offsets,)
        Offsets whose squared length lies so near ``radius**2`` that the rounding of the
        world coordinates may decide; the others are inside for every pair of voxels.
    half : ndarray of int64 (3,)
        Largest ``|d|`` on each axis (at most the grid's extent).
    """
    linear = affine[:3, :3]
    r2 = radius * radius
    tol = _tie_tolerance(affine, shape, radius)
    reach = np.sqrt(r2 + tol) * np.linalg.norm(np.linalg.inv(linear), axis=1)
    half = np.minimum(np.floor(reach * (1 + 1e-9)).astype(np.int64), np.asarray(shape) - 1)
    axes = [np.arange(-h, h + 1) for h in half]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    mm = offsets @ linear.T
    sq = np.einsum("ij,ij->i", mm, mm)
    keep = sq <= r2 + tol
    return offsets[keep], np.abs(sq[keep] - r2) <= tol, half


def _tie_verdicts(seeds_xyz: np.ndarray, voxels_xyz: np.ndarray, radius: float) -> np.ndarray:
    """What scikit-learn's KD-tree decides for near-tie (seed, voxel) pairs.

    At a leaf, the tree keeps a voxel when its reduced distance, computed in float64 as
    ``d = 0; for k: t = seed[k] - voxel[k]; d += t * t``, is ``<= radius * radius``. Higher
    nodes may also keep a whole node when ``sqrt`` of its farthest corner's reduced
    distance is ``<= radius``, or drop it when that of its nearest corner is ``> radius``;
    these bounds agree with the leaf test except within a few ulps of ``radius**2``. Such
    pairs are left undecided, except an exact tie of exact squares (a regular grid with a
    radius of a whole number of voxels), where every test keeps the voxel.

    Parameters
    ----------
    seeds_xyz, voxels_xyz : ndarray (n_pairs, 3)
        World coordinates of the seeds and voxels of the pairs, as given to the tree.
    radius : float
        Radius in millimetres.

    Returns
    -------
    ndarray of int8 (n_pairs,)
        1 kept, -1 dropped, 0 undecided (ask the tree).
    """
    t = seeds_xyz - voxels_xyz
    d = t[:, 0] * t[:, 0]
    d = d + t[:, 1] * t[:, 1]
    d = d + t[:, 2] * t[:, 2]
    r2 = radius * radius
    verdict = np.zeros(len(d), dtype=np.int8)
    verdict[d <= r2 * (1 - _AMBIGUOUS_RTOL)] = 1
    verdict[d > r2 * (1 + _AMBIGUOUS_RTOL)] = -1
    if _has_exact_square(np.array([radius]))[0]:
        tied = np.flatnonzero(d == r2)
        verdict[tied[_has_exact_square(t[tied]).all(axis=1)]] = 1
    return verdict


def _has_exact_square(x: np.ndarray) -> np.ndarray:
    """Whether each ``x * x`` is exact in float64.

    True when ``x`` has at most 26 significant bits: then it is its own high part in
    Veltkamp's splitting, which rounds it to the nearest number of 26 bits.

    Parameters
    ----------
    x : ndarray of float64
        Finite values, far from overflow.

    Returns
    -------
    ndarray of bool, shape of ``x``
    """
    c = x * 134217729.0  # 2**27 + 1
    return c - (c - x) == x


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
    counts : ndarray of int64 (n_seeds,)
        Number of voxels of each row.
    indices : ndarray
        Column indices, row after row, sorted within each row.
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


def _check_inputs(
    mask: np.ndarray, process_mask: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
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


def _nearest_mask_voxel(
    seeds_xyz: np.ndarray, affine: np.ndarray, lookup: np.ndarray
) -> np.ndarray:
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
