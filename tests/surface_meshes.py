"""Small meshes and surface data for the surface tests."""

from __future__ import annotations

import numpy as np
from nilearn.surface import InMemoryMesh, PolyMesh, SurfaceImage


def sheet(n: int = 12, spacing: float = 2.0, bump: float = 6.0, shift: float = 0.0, seed: int = 0):
    """An n x n triangulated sheet, folded by a bump (so that straight-line and along-mesh
    distances differ), its vertex positions jittered."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x, y = i.ravel() * spacing, j.ravel() * spacing
    centre = (n - 1) * spacing / 2
    z = bump * np.exp(-((x - centre) ** 2 + (y - centre) ** 2) / (2 * (n * spacing / 5) ** 2))
    coords = np.column_stack([x + shift, y, z]) + rng.uniform(-0.3, 0.3, (n * n, 3))
    v = (i * n + j)[:-1, :-1].ravel()
    faces = np.concatenate([np.column_stack([v, v + n, v + 1]), np.column_stack([v + 1, v + n, v + n + 1])])
    return InMemoryMesh(coords, faces)


def two_sheets(n: int = 12) -> PolyMesh:
    return PolyMesh(left=sheet(n, seed=0), right=sheet(n, shift=100.0, seed=1))


def planted_data(
    mesh: PolyMesh, centre: int, patch_mm: float, n_samples: int = 48, effect: float = 0.0, seed=0
):
    """Gaussian noise on every vertex; around ``centre`` of the left hemisphere (within
    ``patch_mm``), a class-dependent pattern of size ``effect``. Labels alternate in blocks
    of 2; 4 runs."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 0, 1, 1], n_samples // 4)
    groups = np.repeat(np.arange(4), n_samples // 4)
    data = {h: rng.standard_normal((p.n_vertices, n_samples)) for h, p in mesh.parts.items()}
    coords = np.asarray(mesh.parts["left"].coordinates)
    patch = np.linalg.norm(coords - coords[centre], axis=1) <= patch_mm
    pattern = rng.choice([-1.0, 1.0], size=patch.sum())
    data["left"][patch] += effect * np.outer(pattern, 2 * y - 1)
    return SurfaceImage(mesh, data), y, groups, patch
