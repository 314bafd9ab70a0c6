"""Discs on a mesh (spaces/surface.py), and clusters and TFCE on a graph (stats)."""

import heapq

import numpy as np
import pytest
from nilearn.surface import InMemoryMesh, PolyMesh
from scipy import ndimage, sparse
from sklearn.neighbors import NearestNeighbors
from surface_meshes import sheet, two_sheets

from fastsearchlight.spaces.surface import (
    build_surface_neighbourhoods,
    edge_graph,
    load_mesh,
    mesh_adjacency,
    vertex_discs,
)
from fastsearchlight.stats import clusters_above, sign_flip_test, tfce
from fastsearchlight.stats._tfce import label_clusters


def _brute_geodesic(coords, faces, source):
    """Shortest path lengths from ``source`` along the triangles' edges (plain Dijkstra)."""
    neighbours = {v: set() for v in range(len(coords))}
    for a, b, c in faces:
        for u, w in ((a, b), (b, c), (c, a)):
            neighbours[u].add(w)
            neighbours[w].add(u)
    dist = np.full(len(coords), np.inf)
    dist[source] = 0.0
    heap = [(0.0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for w in neighbours[u]:
            nd = d + float(np.linalg.norm(coords[u] - coords[w]))
            if nd < dist[w]:
                dist[w] = nd
                heapq.heappush(heap, (nd, w))
    return dist


@pytest.mark.parametrize("radius", [0.0, 2.5, 5.0, 9.0])
def test_geodesic_discs_equal_brute_force_dijkstra(radius):
    mesh = sheet(9, seed=3)
    coords, faces = np.asarray(mesh.coordinates), np.asarray(mesh.faces)
    discs = vertex_discs(mesh, radius, "geodesic")
    assert discs.shape == (81, 81) and discs.has_sorted_indices
    for v in range(81):
        expected = np.flatnonzero(_brute_geodesic(coords, faces, v) <= radius)
        np.testing.assert_array_equal(discs[v].indices, expected)
    assert (discs.diagonal()).all()  # every disc holds its centre


@pytest.mark.parametrize("radius", [0.0, 10.0])
def test_geodesic_discs_equal_scipys_dijkstra_on_fsaverage5(radius):
    # the compiled search stops at the radius; scipy's computes every distance up to it
    from scipy.sparse.csgraph import dijkstra

    part = load_mesh("fsaverage5").parts["left"]
    coords, faces = np.asarray(part.coordinates, float), np.asarray(part.faces)
    graph = edge_graph(coords, faces)
    discs = vertex_discs(part, radius, "geodesic")
    seeds = np.random.default_rng(0).choice(len(coords), 600, replace=False)
    expected = sparse.csr_matrix(dijkstra(graph, directed=False, indices=seeds, limit=radius) <= radius)
    assert discs.has_sorted_indices and (discs[seeds] != expected).nnz == 0
    assert discs.nnz > (10 * len(coords) if radius else len(coords) - 1)


def test_geodesic_discs_are_larger_than_euclidean_ones_never():
    # a path along the mesh is never shorter than the straight line: every geodesic disc
    # lies within the euclidean disc of the same radius, and the bump makes some smaller
    mesh = sheet(12)
    geo = vertex_discs(mesh, 6.0, "geodesic")
    euc = vertex_discs(mesh, 6.0, "euclidean")
    assert (geo.multiply(euc) != geo).nnz == 0
    assert geo.nnz < euc.nnz


def test_euclidean_discs_are_the_radius_neighbours_of_the_coordinates():
    mesh = sheet(10, seed=5)
    coords = np.asarray(mesh.coordinates)
    for radius in (0.0, 3.0, 7.5):
        expected = NearestNeighbors(radius=radius).fit(coords).radius_neighbors_graph(coords)
        discs = vertex_discs(mesh, radius, "euclidean")
        assert (discs != expected.astype(bool)).nnz == 0


def test_discs_are_cached_per_mesh_radius_and_distance():
    mesh = sheet(8)
    a = vertex_discs(mesh, 4.0, "geodesic")
    assert vertex_discs(sheet(8), 4.0, "geodesic") is a  # the same mesh, another object
    assert vertex_discs(mesh, 4.5, "geodesic") is not a
    assert vertex_discs(mesh, 4.0, "euclidean") is not a


def test_an_isolated_vertex_is_its_own_disc():
    base = sheet(5)
    coords = np.vstack([base.coordinates, [[4.0, 4.0, 0.5]]])  # inside the sheet, in no face
    mesh = InMemoryMesh(coords, np.asarray(base.faces))
    geo = vertex_discs(mesh, 50.0, "geodesic")
    assert geo[25].indices.tolist() == [25]
    assert geo[:25, 25].nnz == 0
    assert vertex_discs(mesh, 50.0, "euclidean")[25].nnz == 26  # in the straight-line rule, not alone


def test_neighbourhoods_keep_hemispheres_apart_and_the_mask():
    mesh = two_sheets(8)
    masks = {"left": np.arange(64) % 3 != 0, "right": np.ones(64, bool)}
    hoods, space = build_surface_neighbourhoods(mesh, masks, 5.0, "geodesic")
    n_left = int(masks["left"].sum())
    assert hoods.n_spheres == n_left + 64 and hoods.adjacency.shape == (n_left + 64, n_left + 64)
    assert hoods.adjacency[:n_left, n_left:].nnz == 0 and hoods.adjacency[n_left:, :n_left].nnz == 0
    full = vertex_discs(mesh.parts["left"], 5.0, "geodesic")
    keep = np.flatnonzero(masks["left"])
    assert (hoods.adjacency[:n_left, :n_left] != full[keep][:, keep]).nnz == 0
    np.testing.assert_array_equal(
        space.coordinates[:n_left], np.asarray(mesh.parts["left"].coordinates)[keep]
    )
    assert space.adjacency.shape == hoods.adjacency.shape
    np.testing.assert_array_equal(hoods.seeds_ijk[:n_left, 1], keep)
    split = space.split(np.arange(n_left + 64, dtype=float), fill=-1.0)
    assert (split["left"][~masks["left"]] == -1).all() and split["right"][0] == n_left


def test_edge_graph_has_each_triangle_edge_with_its_length():
    mesh = sheet(4)
    coords, faces = np.asarray(mesh.coordinates), np.asarray(mesh.faces)
    graph = edge_graph(coords, faces)
    assert (graph != graph.T).nnz == 0
    for a, b, _ in faces:
        assert graph[a, b] == pytest.approx(np.linalg.norm(coords[a] - coords[b]))
    # 3 x 3 squares: 4*3*2 grid edges and 9 diagonals
    assert graph.nnz == 2 * (24 + 9) and mesh_adjacency(mesh).nnz == graph.nnz


def test_mesh_names_and_bad_meshes():
    fs = load_mesh("fsaverage5")
    assert isinstance(fs, PolyMesh) and fs.n_vertices == 20484
    assert not np.allclose(
        load_mesh("fsaverage5:inflated").parts["left"].coordinates, fs.parts["left"].coordinates
    )
    with pytest.raises(ValueError, match="unknown mesh 'mni'"):
        load_mesh("mni")
    with pytest.raises(ValueError, match="unknown mesh type 'smooth'"):
        load_mesh("fsaverage5:smooth")
    with pytest.raises(ValueError, match="PolyMesh, a mesh name"):
        load_mesh(3)


def test_meshes_from_surface_files(tmp_path):
    # fMRIPrep's hemi-L/hemi-R names or FreeSurfer's lh./rh.: the hemispheres' geometry as read
    import nibabel as nib

    fs = load_mesh("fsaverage5")
    paths = {"left": tmp_path / "sub-01_hemi-L_pial.surf.gii", "right": tmp_path / "rh.pial.surf.gii"}
    for hemi, path in paths.items():
        part = fs.parts[hemi]
        coords = nib.gifti.GiftiDataArray(
            np.asarray(part.coordinates, np.float32), intent="NIFTI_INTENT_POINTSET"
        )
        faces = nib.gifti.GiftiDataArray(np.asarray(part.faces, np.int32), intent="NIFTI_INTENT_TRIANGLE")
        nib.save(nib.gifti.GiftiImage(darrays=[coords, faces]), path)
    mesh = load_mesh([paths["right"], str(paths["left"])])  # any order
    assert list(mesh.parts) == ["left", "right"]
    for hemi in ("left", "right"):
        np.testing.assert_array_equal(mesh.parts[hemi].coordinates, fs.parts[hemi].coordinates)
        np.testing.assert_array_equal(mesh.parts[hemi].faces, fs.parts[hemi].faces)
    assert list(load_mesh([paths["right"]]).parts) == ["right"]
    with pytest.raises(ValueError, match="cannot tell the hemisphere"):
        load_mesh([tmp_path / "pial.surf.gii"])
    with pytest.raises(ValueError, match="two left hemisphere meshes"):
        load_mesh([paths["left"], paths["left"]])
    with pytest.raises(ValueError, match="does not exist"):
        load_mesh([tmp_path / "lh.white"])
    (tmp_path / "lh.broken.surf.gii").write_text("not a surface")
    with pytest.raises(ValueError, match="cannot read the left mesh"):
        load_mesh([tmp_path / "lh.broken.surf.gii"])
    with pytest.raises(ValueError, match="distance must be"):
        vertex_discs(sheet(3), 1.0, "manhattan")


def _grid_graph(mask):
    """The face-neighbour (6-connectivity) graph of a mask's voxels, in C order."""
    index = np.full(mask.shape, -1)
    index[mask] = np.arange(mask.sum())
    rows, cols = [], []
    for axis in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        u, w = index[tuple(a)], index[tuple(b)]
        both = (u >= 0) & (w >= 0)
        rows += [u[both], w[both]]
        cols += [w[both], u[both]]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    n = int(mask.sum())
    return sparse.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(n, n))


def test_clusters_and_tfce_on_a_graph_equal_those_on_the_grid_it_describes():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 6, 5)) < 0.8
    graph = _grid_graph(mask)
    structure = ndimage.generate_binary_structure(3, 1)
    values = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0) * 5
    vol = np.where(mask, values, -np.inf)
    labels3d, sizes3d = clusters_above(vol, 0.5, structure)
    labels, sizes = clusters_above(values[mask], 0.5, graph)
    np.testing.assert_array_equal(labels, labels3d[mask])  # the same clusters, same numbers
    np.testing.assert_array_equal(sizes, sizes3d)
    assert sizes.size > 2
    np.testing.assert_array_equal(
        tfce(values[mask], graph), tfce(np.where(mask, values, 0.0), structure)[mask]
    )
    empty, n = label_clusters(np.zeros(mask.sum(), bool), graph)
    assert n == 0 and not empty.any()


def test_sign_flip_test_on_a_graph_equals_the_grid_test():
    rng = np.random.default_rng(1)
    mask = rng.random((6, 6, 5)) < 0.85
    data = rng.standard_normal((8, int(mask.sum()))) + 0.3
    kwargs = dict(n_permutations=64, random_state=0, cluster_threshold=0.05, with_tfce=True)
    on_grid = sign_flip_test(data, mask, **kwargs)
    on_graph = sign_flip_test(data, None, graph=_grid_graph(mask), **kwargs)
    for name in ("t", "p_fwe", "p_cluster_fwe", "tfce", "p_fwe_tfce"):
        np.testing.assert_array_equal(getattr(on_graph, name), getattr(on_grid, name))
    assert (on_grid.p_cluster_fwe < 1).any()
    with pytest.raises(ValueError, match="graph's adjacency shape"):
        sign_flip_test(data, None, graph=_grid_graph(mask)[:-1, :-1], **kwargs)
