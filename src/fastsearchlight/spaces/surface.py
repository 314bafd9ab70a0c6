"""Searchlight discs on a cortical mesh: the spheres of a surface searchlight.

Each hemisphere's mesh (vertex coordinates in mm and triangles) gives, for every seed
vertex, the vertices within ``radius`` mm of it:

- ``"geodesic"``: along the mesh, by Dijkstra's shortest paths on the graph of triangle
  edges weighted by their lengths, stopped at the radius (compiled: :mod:`._geodesic`; the
  discs of ``scipy.sparse.csgraph.dijkstra(limit=radius)``);
- ``"euclidean"``: straight-line distance between the vertex coordinates, the rule of
  scikit-learn's ``radius_neighbors_graph`` (distances ``<= radius``).

Paths run over the whole mesh; the discs then keep the vertices of the mask, whose data
enter the searchlight. The discs of a mesh and radius are built once per process and cached
(:func:`vertex_discs`). Hemispheres are concatenated left then right, in vertex order.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .base import Neighbourhoods

__all__ = [
    "DISTANCES",
    "HEMISPHERES",
    "MESH_NAMES",
    "MeshSpace",
    "build_surface_neighbourhoods",
    "edge_graph",
    "hemisphere_of_file",
    "load_mesh",
    "mesh_adjacency",
    "mesh_from_record",
    "mesh_record",
    "vertex_discs",
]

HEMISPHERES = ("left", "right")
DISTANCES = ("geodesic", "euclidean")
#: meshes nilearn loads by name (fsaverage5 ships with it; the others are downloaded)
MESH_NAMES = ("fsaverage5", "fsaverage3", "fsaverage4", "fsaverage6", "fsaverage7", "fsaverage")

#: discs kept in the per-process cache
_CACHE_SIZE = 8
_CACHE: OrderedDict = OrderedDict()


def hemisphere_of_file(path) -> str:
    """``"left"`` or ``"right"`` from a file name: ``hemi-L``/``hemi-R`` (BIDS, fMRIPrep) or
    FreeSurfer's ``lh.``/``rh.``; ValueError otherwise."""
    import re
    from pathlib import Path

    name = Path(path).name
    match = re.search(r"hemi-([LR])(?![A-Za-z])", name)
    if match:
        return "left" if match.group(1) == "L" else "right"
    if name.startswith(("lh.", "rh.")):
        return "left" if name.startswith("lh.") else "right"
    raise ValueError(f"cannot tell the hemisphere of {path}: its name needs hemi-L or hemi-R (or lh./rh.)")


def _mesh_files(files) -> dict:
    """Surface files (``.surf.gii`` or FreeSurfer geometry) by hemisphere, one each."""
    from pathlib import Path

    out: dict = {}
    for f in map(Path, files):
        hemi = hemisphere_of_file(f)
        if hemi in out:
            raise ValueError(f"two {hemi} hemisphere meshes given: {out[hemi].name} and {f.name}")
        if not f.is_file():
            raise ValueError(f"mesh file {f} does not exist.")
        out[hemi] = f
    if not out:
        raise ValueError("no mesh file given.")
    return {h: out[h] for h in HEMISPHERES if h in out}


def load_mesh(mesh):
    """A nilearn ``PolyMesh`` from a ``PolyMesh``, the name of a mesh nilearn ships, or
    surface files.

    Parameters
    ----------
    mesh : PolyMesh, str, or sequence of path-like
        ``"fsaverage5"`` (the pial surface) or ``"fsaverage5:<type>"`` with a mesh type of
        :func:`nilearn.datasets.load_fsaverage` (``pial``, ``white_matter``, ``inflated``,
        ``sphere``, ``flat``); other fsaverage resolutions are downloaded by nilearn. Or the
        surface files of one or both hemispheres (GIfTI ``.surf.gii`` such as fMRIPrep's
        ``sub-01_hemi-L_pial.surf.gii``, or FreeSurfer's ``lh.pial``), told apart by
        ``hemi-L``/``hemi-R`` or ``lh.``/``rh.`` in their names: an fsnative or fsLR mesh.
    """
    from nilearn.surface import PolyMesh, load_surf_mesh

    if isinstance(mesh, PolyMesh):
        return mesh
    if isinstance(mesh, (list, tuple)):
        parts = {}
        for hemi, path in _mesh_files(mesh).items():
            try:
                parts[hemi] = load_surf_mesh(str(path))
            except Exception as exc:  # nilearn raises many kinds for unreadable files
                raise ValueError(f"cannot read the {hemi} mesh {path}: {exc}") from None
        return PolyMesh(**parts)
    if not isinstance(mesh, str):
        raise ValueError(
            f"mesh must be a nilearn PolyMesh, a mesh name such as 'fsaverage5' or surface files, got {mesh!r}."
        )
    from nilearn.datasets import load_fsaverage

    name, _, kind = mesh.partition(":")
    kind = kind or "pial"
    if name not in MESH_NAMES:
        raise ValueError(
            f"unknown mesh {mesh!r}: give a PolyMesh, one of {', '.join(MESH_NAMES)}, or the surface files "
            "of the hemispheres."
        )
    meshes = load_fsaverage(name)
    if kind not in meshes or kind == "description":
        raise ValueError(
            f"unknown mesh type {kind!r} in {mesh!r}: one of pial, white_matter, inflated, sphere, flat."
        )
    return meshes[kind]


def mesh_record(mesh) -> str:
    """A mesh given by name or by files, as one string (for records; :func:`mesh_from_record`):
    the name, or the files' absolute paths as a JSON list."""
    import json
    from pathlib import Path

    if isinstance(mesh, (list, tuple)):
        return json.dumps([str(Path(p).absolute()) for p in mesh])
    return str(mesh)


def mesh_from_record(text: str):
    """The mesh a :func:`mesh_record` string names (a name, or a list of files)."""
    import json

    return json.loads(text) if text.startswith("[") else text


def _mesh_arrays(part) -> tuple[np.ndarray, np.ndarray]:
    coords = np.asarray(part.coordinates, dtype=np.float64)
    faces = np.asarray(part.faces, dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 3 or not np.all(np.isfinite(coords)):
        raise ValueError(f"mesh coordinates must be finite, of shape (n_vertices, 3); got {coords.shape}.")
    if faces.size and (
        faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= len(coords)
    ):
        raise ValueError("mesh faces must be triangles (n_faces, 3) of vertex indices within the mesh.")
    return coords, faces.reshape(-1, 3)


def edge_graph(coords: np.ndarray, faces: np.ndarray) -> sparse.csr_matrix:
    """Symmetric sparse graph of the triangles' edges, weighted by their lengths (mm)."""
    n = len(coords)
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    # each edge once, in (first, second) order: unique codes first * n + second
    codes = np.unique(pairs[:, 0] * np.int64(n) + pairs[:, 1])
    pairs = np.column_stack([codes // n, codes % n])
    lengths = np.linalg.norm(coords[pairs[:, 0]] - coords[pairs[:, 1]], axis=1)
    # an edge of length 0 (coincident vertices) would vanish from a sparse matrix: keep it
    lengths = np.maximum(lengths, np.finfo(np.float64).tiny)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return sparse.csr_matrix((np.concatenate([lengths, lengths]), (rows, cols)), shape=(n, n))


def _geodesic(graph, radius: float) -> sparse.csr_matrix:
    from ._geodesic import geodesic_discs

    return geodesic_discs(graph, radius)


def _euclidean(coords, radius: float) -> sparse.csr_matrix:
    from sklearn.neighbors import radius_neighbors_graph

    return radius_neighbors_graph(coords, radius, mode="connectivity", include_self=True).astype(bool).tocsr()


def _key(coords, faces, radius: float, distance: str) -> tuple:
    digest = hashlib.sha1(coords.tobytes())
    if distance == "geodesic":
        digest.update(faces.tobytes())
    return digest.hexdigest(), coords.shape, float(radius), distance


def _cached(key) -> sparse.csr_matrix | None:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    return None


def _store(key, discs: sparse.csr_matrix) -> None:
    _CACHE[key] = discs
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def _build_discs(coords, graph, radius: float, distance: str) -> sparse.csr_matrix:
    discs = _geodesic(graph, radius) if distance == "geodesic" else _euclidean(coords, radius)
    discs.sort_indices()
    return discs


def vertex_discs(part, radius: float, distance: str = "geodesic") -> sparse.csr_matrix:
    """Vertices within ``radius`` mm of each vertex of one hemisphere's mesh, cached.

    Parameters
    ----------
    part : nilearn SurfaceMesh
        One hemisphere (``PolyMesh.parts["left"]``).
    radius : float
        Disc radius in mm (0: each vertex alone).
    distance : {"geodesic", "euclidean"}

    Returns
    -------
    scipy.sparse.csr_matrix of bool, shape (n_vertices, n_vertices)
        Row ``v`` marks the vertices of the disc centred at ``v``, itself included; column
        indices sorted.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be 'geodesic' or 'euclidean', got {distance!r}.")
    coords, faces = _mesh_arrays(part)
    key = _key(coords, faces, radius, distance)
    discs = _cached(key)
    if discs is None:
        discs = _build_discs(coords, edge_graph(coords, faces), radius, distance)
        _store(key, discs)
    return discs


def mesh_adjacency(part) -> sparse.csr_matrix:
    """Which vertices share a triangle edge: a symmetric boolean graph of one hemisphere."""
    coords, faces = _mesh_arrays(part)
    return edge_graph(coords, faces).astype(bool)


@dataclass(frozen=True)
class MeshSpace:
    """Where a surface searchlight's seeds sit: the mask vertices of each hemisphere.

    Attributes
    ----------
    hemispheres : tuple of str
        The mesh's parts, left before right.
    n_vertices : dict
        Vertices of each hemisphere's mesh.
    masks : dict
        Boolean mask of each hemisphere (its vertices whose data enter, and the seeds).
    adjacency : scipy.sparse.csr_matrix of bool, shape (n_seeds, n_seeds)
        Seeds sharing a mesh edge (clusters, TFCE); no edge joins the hemispheres.
    coordinates : ndarray (n_seeds, 3)
        The seeds' mesh coordinates in mm.
    """

    hemispheres: tuple
    n_vertices: dict
    masks: dict
    adjacency: sparse.csr_matrix
    coordinates: np.ndarray

    def offsets(self) -> dict:
        """Position of each hemisphere's first seed among all seeds."""
        out, start = {}, 0
        for hemi in self.hemispheres:
            out[hemi] = start
            start += int(self.masks[hemi].sum())
        return out

    def split(self, values: np.ndarray, fill: float = 0.0) -> dict:
        """Seed values (first axis) as one full array per hemisphere, ``fill`` off the mask."""
        values = np.asarray(values)
        out, offsets = {}, self.offsets()
        for hemi in self.hemispheres:
            mask = self.masks[hemi]
            full = np.full((self.n_vertices[hemi],) + values.shape[1:], fill, dtype=np.float64)
            full[mask] = values[offsets[hemi] : offsets[hemi] + int(mask.sum())]
            out[hemi] = full
        return out


def build_surface_neighbourhoods(
    mesh, masks: dict, radius: float, distance: str
) -> tuple[Neighbourhoods, MeshSpace]:
    """The discs of every mask vertex of a mesh, over the mask vertices, both hemispheres.

    Parameters
    ----------
    mesh : PolyMesh
    masks : dict
        Boolean mask per hemisphere of ``mesh.parts``.
    radius : float
    distance : {"geodesic", "euclidean"}

    Returns
    -------
    Neighbourhoods
        Spheres x mask vertices (left hemisphere's first); ``seeds_ijk`` holds each seed's
        hemisphere (0 left, 1 right), vertex index and 0.
    MeshSpace
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be 'geodesic' or 'euclidean', got {distance!r}.")
    hemis = tuple(h for h in HEMISPHERES if h in mesh.parts)
    # each hemisphere's arrays read once (a mesh of files is read at every access), its
    # edge graph made once (the geodesic discs and the adjacency), and the discs missing
    # from the cache built for both hemispheres at once (the compiled Dijkstra releases
    # the interpreter lock)
    arrays = {h: _mesh_arrays(mesh.parts[h]) for h in hemis}
    graphs = {h: edge_graph(*arrays[h]) for h in hemis}
    keys = {h: _key(*arrays[h], radius, distance) for h in hemis}
    full = {h: _cached(keys[h]) for h in hemis}
    missing = [h for h in hemis if full[h] is None]
    if missing:
        build = lambda h: _build_discs(arrays[h][0], graphs[h], radius, distance)  # noqa: E731
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            for h, discs in zip(missing, pool.map(build, missing)):
                full[h] = discs
                _store(keys[h], discs)
    blocks, adjacency, coords, seeds = [], [], [], []
    for k, hemi in enumerate(hemis):
        mask = masks[hemi]
        keep = np.flatnonzero(mask)
        blocks.append(full[hemi][keep][:, keep])
        adjacency.append(graphs[hemi].astype(bool)[keep][:, keep])
        coords.append(arrays[hemi][0][keep])
        seeds.append(np.column_stack([np.full(len(keep), k), keep, np.zeros(len(keep), dtype=np.int64)]))
    discs = sparse.block_diag(blocks, format="csr").astype(bool)
    discs.sort_indices()
    space = MeshSpace(
        hemispheres=hemis,
        n_vertices={h: len(arrays[h][0]) for h in hemis},
        masks={h: np.asarray(masks[h], dtype=bool) for h in hemis},
        adjacency=sparse.block_diag(adjacency, format="csr").astype(bool),
        coordinates=np.concatenate(coords),
    )
    return Neighbourhoods(discs, np.concatenate(seeds).astype(np.int64)), space
