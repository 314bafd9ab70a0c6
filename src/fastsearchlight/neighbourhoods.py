"""Searchlight neighbourhoods: which mask voxels fall in the sphere around each seed.

Built once, as a sparse boolean matrix (spheres x mask voxels), with the same rule as
nilearn's ``SearchLight``: seeds are the world coordinates of the process-mask voxels; a
sphere holds every mask voxel whose world coordinates lie within ``radius`` mm of its seed
(scikit-learn's ``NearestNeighbors.radius_neighbors_graph``), plus the mask voxel nearest to
the seed, so the centre is always in its own sphere when it is in the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.affines import apply_affine
from scipy import sparse
from sklearn.neighbors import NearestNeighbors


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


def build_neighbourhoods(
    mask: np.ndarray,
    affine: np.ndarray,
    process_mask: np.ndarray,
    process_affine: np.ndarray,
    radius: float,
) -> Neighbourhoods:
    """Spheres of ``radius`` mm around each process-mask voxel, over the mask voxels.

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
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a positive number of millimetres, got {radius!r}.")
    mask_ijk = np.argwhere(mask)
    seeds_ijk = np.argwhere(process_mask)
    if len(mask_ijk) == 0:
        raise ValueError("The mask is empty: it selects no voxel.")
    if len(seeds_ijk) == 0:
        raise ValueError("The process mask is empty: it selects no voxel.")
    mask_xyz = apply_affine(affine, mask_ijk)
    seeds_xyz = apply_affine(process_affine, seeds_ijk)

    nn = NearestNeighbors(radius=radius).fit(mask_xyz)
    adjacency = nn.radius_neighbors_graph(seeds_xyz, mode="connectivity").tocsr()

    # the mask voxel nearest to each seed (its rounded voxel index in the mask's grid)
    nearest_ijk = np.round(apply_affine(np.linalg.inv(affine), seeds_xyz)).astype(int)
    lookup = -np.ones(mask.shape, dtype=np.int64)
    lookup[tuple(mask_ijk.T)] = np.arange(len(mask_ijk))
    inside = np.all((nearest_ijk >= 0) & (nearest_ijk < np.array(mask.shape)), axis=1)
    nearest = np.full(len(seeds_ijk), -1, dtype=np.int64)
    nearest[inside] = lookup[tuple(nearest_ijk[inside].T)]
    has = nearest >= 0
    centres = sparse.csr_matrix(
        (np.ones(has.sum()), (np.flatnonzero(has), nearest[has])), shape=adjacency.shape
    )
    adjacency = ((adjacency + centres) > 0).tocsr()
    adjacency.sort_indices()

    sizes = np.diff(adjacency.indptr)
    if np.any(sizes == 0):
        empty = seeds_ijk[sizes == 0]
        raise ValueError(
            f"{len(empty)} searchlight spheres contain no mask voxel (e.g. around voxel "
            f"{tuple(int(v) for v in empty[0])} of the process mask): the process mask "
            "reaches outside the mask by more than the radius."
        )
    return Neighbourhoods(adjacency=adjacency, seeds_ijk=seeds_ijk)
