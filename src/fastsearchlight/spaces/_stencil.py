"""Tie arithmetic of the volume stencil.

On a shared grid, whether a mask voxel lies within ``radius`` mm of a seed depends only on
their voxel offset, through its length in millimetres; :mod:`.volume` builds the spheres
from a stencil of offsets. Offsets whose squared length is near ``radius**2`` (near ties)
are decided pair by pair with the very comparisons scikit-learn's KD-tree makes on the
world coordinates, so that the stencil gives the radius search's spheres to the bit. This
module holds those comparisons and the bounds on the rounding of world coordinates.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "exact_coordinates",
    "largest_coordinate",
    "settle_exact_ties",
    "stencil_offsets",
    "tie_tolerance",
    "tie_verdicts",
]

#: Relative margin around ``radius**2`` within which an offset is a near tie, decided pair
#: by pair as the KD-tree decides it.
_TIE_RTOL = 1e-9
#: Relative margin around ``radius**2`` within which a pair's squared distance is too close
#: for its KD-tree verdict to be known without the tree (see :func:`tie_verdicts`).
_AMBIGUOUS_RTOL = 1e-12


def tie_tolerance(affine: np.ndarray, shape: tuple[int, ...], radius: float) -> float:
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
    coord_err = 16 * eps * (largest_coordinate(affine, shape) + radius)
    return _TIE_RTOL * r2 + 8 * radius * coord_err + 8 * eps * r2


def largest_coordinate(affine: np.ndarray, shape: tuple[int, ...]) -> float:
    """A bound on the absolute value of every world coordinate of the grid (and of every
    partial sum in ``M @ ijk + t``)."""
    extent = np.abs(affine[:3, :3]) @ (np.asarray(shape, dtype=float) - 1)
    return float(np.max(extent + np.abs(affine[:3, 3])))


def exact_coordinates(affine: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether every world coordinate of the grid is computed exactly, in any order.

    True when the affine's entries are multiples of a common power of two ``2**-k`` and
    every partial sum of ``M @ ijk + t`` over the grid stays below ``2**52 * 2**-k``: all
    products, sums and differences of coordinates are then exact in float64.

    Parameters
    ----------
    affine, shape
        The grid, as for :func:`tie_tolerance`.

    Returns
    -------
    bool
    """
    entries = affine[:3, :]
    bound = largest_coordinate(affine, shape)
    for k in range(41):
        scaled = np.ldexp(entries, k)
        if np.all(scaled == np.round(scaled)):
            return np.ldexp(bound, k) < 2.0**52
    return False


def stencil_offsets(
    affine: np.ndarray, shape: tuple[int, ...], radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel offsets that can reach within ``radius`` mm, in C order.

    Parameters
    ----------
    affine, shape, radius
        As for :func:`tie_tolerance`.

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
    tol = tie_tolerance(affine, shape, radius)
    reach = np.sqrt(r2 + tol) * np.linalg.norm(np.linalg.inv(linear), axis=1)
    half = np.minimum(np.floor(reach * (1 + 1e-9)).astype(np.int64), np.asarray(shape) - 1)
    axes = [np.arange(-h, h + 1) for h in half]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    mm = offsets @ linear.T
    sq = np.einsum("ij,ij->i", mm, mm)
    keep = sq <= r2 + tol
    return offsets[keep], np.abs(sq[keep] - r2) <= tol, half


def tie_verdicts(seeds_xyz: np.ndarray, voxels_xyz: np.ndarray, radius: float) -> np.ndarray:
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
    if has_exact_square(np.array([radius]))[0]:
        tied = np.flatnonzero(d == r2)
        verdict[tied[has_exact_square(t[tied]).all(axis=1)]] = 1
    return verdict


def has_exact_square(x: np.ndarray) -> np.ndarray:
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


def settle_exact_ties(
    offsets: np.ndarray,
    is_tie: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, ...],
    radius: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Decide the near-tie offsets once for all pairs, when coordinates are exact.

    When every world coordinate and every difference of two is exact
    (:func:`exact_coordinates`), all the pairs of a near-tie offset ``d`` compute the same
    reduced distance, that of ``-M d``: its verdict holds for every seed.

    Parameters
    ----------
    offsets, is_tie
        From :func:`stencil_offsets`.
    affine, shape, radius
        The grid and radius they were built for (as for :func:`tie_tolerance`).

    Returns
    -------
    offsets, is_tie
        Without the offsets that are out for every pair; the offsets in for every pair
        no longer marked as ties. Unchanged when the coordinates are not exact.
    """
    if not is_tie.any() or not exact_coordinates(affine, shape):
        return offsets, is_tie
    tie_mm = offsets[is_tie] @ affine[:3, :3].T
    verdict = tie_verdicts(np.zeros_like(tie_mm), tie_mm, radius)
    keep = np.ones(len(offsets), dtype=bool)
    keep[np.flatnonzero(is_tie)[verdict == -1]] = False
    is_tie = is_tie.copy()
    is_tie[np.flatnonzero(is_tie)[verdict == 1]] = False
    return offsets[keep], is_tie[keep]
