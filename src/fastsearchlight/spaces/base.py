"""Neighbourhoods of a searchlight, whatever the space of its seeds.

A searchlight's spheres are a sparse boolean matrix (spheres x data features); the
builders of each space (the volume: :mod:`.volume`) return a :class:`Neighbourhoods`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used, so that worker processes do not load them
    from scipy import sparse

__all__ = ["Neighbourhoods"]


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

    def blocks(
        self, max_spheres: int | Callable[[int], int], mixed_from: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(sphere_ids, voxel_ids)`` blocks of spheres of equal size.

        ``voxel_ids`` has shape (len(sphere_ids), size): a dense index array, so the data
        of the block gathers in one fancy-indexing step without padding.

        Parameters
        ----------
        max_spheres : int or callable
            Largest block, or a function of the sphere size giving it.
        mixed_from : int, optional
            The spheres of at least this many voxels come first, in blocks of several sizes
            in the order of the spheres (so that neighbouring seeds follow each other
            whatever their sizes), each row padded with -1 at its end to the block's largest
            size; the limit is that of the largest size of them all. For estimators that
            start each sphere from the one before it and do not need equal sizes.
        """
        sizes = self.sizes
        a = self.adjacency
        if mixed_from is not None and np.any(sizes >= mixed_from):
            ids = np.flatnonzero(sizes >= mixed_from)
            largest = int(sizes[ids].max())
            limit = max(1, max_spheres(largest) if callable(max_spheres) else int(max_spheres))
            for lo in range(0, len(ids), limit):
                block = ids[lo : lo + limit]
                columns = np.arange(int(sizes[block].max()))[None, :]
                inside = columns < sizes[block][:, None]
                vox = np.full(inside.shape, -1, dtype=a.indices.dtype)
                vox[inside] = a.indices[(a.indptr[block][:, None] + columns)[inside]]
                yield block, vox
        for size in np.unique(sizes):
            if mixed_from is not None and size >= mixed_from:
                continue
            limit = max_spheres(int(size)) if callable(max_spheres) else int(max_spheres)
            max_spheres_k = max(1, limit)
            ids = np.flatnonzero(sizes == size)
            starts = a.indptr[ids]
            vox = a.indices[starts[:, None] + np.arange(size)[None, :]]
            for lo in range(0, len(ids), max_spheres_k):
                yield ids[lo : lo + max_spheres_k], vox[lo : lo + max_spheres_k]
