"""Compiled passes of the volume stencil (:func:`.volume._stencil_rows`).

Each seed's sphere is the mask voxels at the stencil's offsets from it, read from a padded
lookup of mask indices: one pass counts them (the near-tie offsets apart), one lists the
near-tie pairs for :func:`._stencil.tie_verdicts`, one writes the spheres' voxels, row
after row, in the offsets' (C) order. Compiled with numba (``cache=True``); a loop over
seeds and offsets, without the large temporaries of the array expressions it replaces.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["stencil_counts", "stencil_fill", "stencil_tie_pairs"]


@njit(cache=True)
def stencil_counts(flat_lookup, seed_flat, deltas, is_tie):
    """Per seed, the number of mask voxels at the offsets that are not near ties, and the
    number of (seed, mask voxel) pairs at near-tie offsets over all seeds.

    Parameters
    ----------
    flat_lookup : ndarray of int (n_grid,)
        Mask index of each voxel of the padded grid, -1 outside the mask.
    seed_flat : ndarray of int64 (n_seeds,)
        Flat position of each seed in the padded grid.
    deltas : ndarray of int64 (n_offsets,)
        Flat step of each offset.
    is_tie : ndarray of bool (n_offsets,)
        Whether each offset is a near tie.

    Returns
    -------
    counts : ndarray of int64 (n_seeds,)
    n_ties : int
    """
    n_seeds = seed_flat.shape[0]
    counts = np.zeros(n_seeds, dtype=np.int64)
    n_ties = 0
    for s in range(n_seeds):
        base = seed_flat[s]
        found = 0
        for k in range(deltas.shape[0]):
            if flat_lookup[base + deltas[k]] >= 0:
                if is_tie[k]:
                    n_ties += 1
                else:
                    found += 1
        counts[s] = found
    return counts, n_ties


@njit(cache=True)
def stencil_tie_pairs(flat_lookup, seed_flat, deltas, tie_cols, n_ties):
    """The seed and mask voxel of each near-tie pair (seed by seed, offsets in order)."""
    pair_seed = np.empty(n_ties, dtype=np.int64)
    pair_voxel = np.empty(n_ties, dtype=np.int64)
    t = 0
    for s in range(seed_flat.shape[0]):
        base = seed_flat[s]
        for k in tie_cols:
            voxel = flat_lookup[base + deltas[k]]
            if voxel >= 0:
                pair_seed[t] = s
                pair_voxel[t] = voxel
                t += 1
    return pair_seed, pair_voxel


@njit(cache=True)
def stencil_fill(flat_lookup, seed_flat, deltas, is_tie, verdicts, indices):
    """Every seed's mask voxels into ``indices``, row after row, offsets in order: those at
    offsets that are not near ties, and those of near-tie pairs whose verdict (in the order
    of :func:`stencil_tie_pairs`) is 1 (kept)."""
    pos = 0
    t = 0
    for s in range(seed_flat.shape[0]):
        base = seed_flat[s]
        for k in range(deltas.shape[0]):
            voxel = flat_lookup[base + deltas[k]]
            if voxel < 0:
                continue
            if is_tie[k]:
                kept = verdicts[t] == 1
                t += 1
                if not kept:
                    continue
            indices[pos] = voxel
            pos += 1
