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

    def blocks(self, max_spheres: int | Callable[[int], int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
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
