import nibabel as nib
import numpy as np
import pytest
from nilearn.image.resampling import coord_transform
from nilearn.maskers.nifti_spheres_masker import apply_mask_and_get_affinity
from scipy import ndimage

import fastsearchlight.spaces.volume as nbh
from fastsearchlight.neighbourhoods import build_neighbourhoods


def nilearn_adjacency(mask, process_mask, affine, radius):
    """nilearn's own construction, as its SearchLight calls it."""
    ijk = np.where(process_mask)
    seeds = np.asarray(coord_transform(*ijk, affine)).T
    img = nib.Nifti1Image(np.zeros(mask.shape + (2,), dtype=np.float32), affine)
    _, A = apply_mask_and_get_affinity(
        seeds, img, radius, True, mask_img=nib.Nifti1Image(mask.astype(np.uint8), affine)
    )
    return A.tocsr()


@pytest.mark.parametrize("radius", [3.0, 5.6, 8.0])
def test_same_spheres_as_nilearn(radius):
    rng = np.random.default_rng(0)
    shape = (9, 10, 7)
    mask = rng.random(shape) < 0.7
    process = mask & (rng.random(shape) < 0.5)
    process[0, 0, 0] = True  # a seed outside the mask: its sphere holds only mask voxels
    affine = np.array([[-3.5, 0, 0, 20], [0, 3.75, 0, -30], [0, 0, 3.75, 5], [0, 0, 0, 1]])
    ours = build_neighbourhoods(mask, affine, process, affine, radius)
    ref = nilearn_adjacency(mask, process, affine, radius)
    assert ours.adjacency.shape == ref.shape
    assert (ours.adjacency != (ref > 0)).nnz == 0
    # voxels within a sphere come in mask order, as nilearn's lil rows
    for s in range(ours.n_spheres):
        assert np.all(np.diff(ours.voxels(s)) > 0)


def test_real_slice_spheres_match_nilearn(haxby_slice):
    mask = np.asarray(haxby_slice["mask"].dataobj) != 0
    affine = haxby_slice["mask"].affine
    ours = build_neighbourhoods(mask, affine, mask, affine, 5.6)
    ref = nilearn_adjacency(mask, mask, affine, 5.6)
    assert (ours.adjacency != (ref > 0)).nnz == 0
    assert ours.sizes.max() <= 19 * 2


def test_blocks_cover_every_sphere_once():
    rng = np.random.default_rng(1)
    mask = rng.random((8, 8, 8)) < 0.6
    hoods = build_neighbourhoods(mask, np.eye(4) * 2 + np.diag([0, 0, 0, -1]), mask,
                                 np.eye(4) * 2 + np.diag([0, 0, 0, -1]), 3.0)  # fmt: skip
    seen = []
    for ids, vox in hoods.blocks(7):
        assert len(ids) <= 7
        assert vox.shape == (len(ids), hoods.sizes[ids[0]])
        for i, v in zip(ids, vox):
            np.testing.assert_array_equal(v, hoods.voxels(i))
        seen.extend(ids)
    assert sorted(seen) == list(range(hoods.n_spheres))


def test_blocks_of_several_sizes_from_a_size_on_keep_the_order_of_the_spheres():
    """With ``mixed_from``, the spheres of at least that many voxels come first, in blocks
    of several sizes in the order of the spheres, each row padded with -1 at its end; the
    smaller ones follow in blocks of equal size, as without it."""
    rng = np.random.default_rng(2)
    mask = rng.random((8, 8, 8)) < 0.6
    affine = np.eye(4) * 2 + np.diag([0, 0, 0, -1])
    hoods = build_neighbourhoods(mask, affine, mask, affine, 3.0)
    sizes = hoods.sizes
    cut = int(np.median(sizes))
    assert len(np.unique(sizes[sizes >= cut])) > 2
    blocks = list(hoods.blocks(lambda k: 7 if k == sizes.max() else 1000, mixed_from=cut))
    big = np.flatnonzero(sizes >= cut)
    mixed = blocks[: -(-len(big) // 7)]
    np.testing.assert_array_equal(np.concatenate([ids for ids, _ in mixed]), big)
    for ids, vox in mixed:
        assert len(ids) <= 7 and vox.shape == (len(ids), sizes[ids].max())
        for i, v in zip(ids, vox):
            np.testing.assert_array_equal(v[: sizes[i]], hoods.voxels(i))
            assert np.all(v[sizes[i] :] == -1)
    rest = blocks[len(mixed) :]
    for ids, vox in rest:
        assert np.all(sizes[ids] < cut) and vox.shape == (len(ids), sizes[ids[0]])
    seen = np.concatenate([ids for ids, _ in blocks])
    assert sorted(seen) == list(range(hoods.n_spheres))
    # from a size no sphere has: the blocks of equal sizes
    plain = list(hoods.blocks(7, mixed_from=sizes.max() + 1))
    assert [ids.tolist() for ids, _ in plain] == [ids.tolist() for ids, _ in hoods.blocks(7)]


def test_bad_radius_and_empty_masks():
    mask = np.ones((3, 3, 3), dtype=bool)
    # radius 0 (as nilearn): each sphere is its centre voxel
    hoods = build_neighbourhoods(mask, np.eye(4), mask, np.eye(4), 0.0)
    assert np.all(hoods.sizes == 1)
    np.testing.assert_array_equal(hoods.adjacency.indices, np.arange(27))
    with pytest.raises(ValueError, match="radius"):
        build_neighbourhoods(mask, np.eye(4), mask, np.eye(4), -2.0)
    with pytest.raises(ValueError, match="mask is empty"):
        build_neighbourhoods(np.zeros_like(mask), np.eye(4), mask, np.eye(4), 2.0)
    with pytest.raises(ValueError, match="process mask is empty"):
        build_neighbourhoods(mask, np.eye(4), np.zeros_like(mask), np.eye(4), 2.0)


def test_sphere_without_mask_voxel_is_an_error():
    mask = np.zeros((10, 3, 3), dtype=bool)
    mask[0] = True
    process = np.zeros_like(mask)
    process[9, 1, 1] = True
    with pytest.raises(ValueError, match="contain no mask voxel"):
        build_neighbourhoods(mask, np.eye(4), process, np.eye(4), 2.0)


# --- the stencil (shared grid) against scikit-learn's radius search ------------------------


def rotation(angles_deg):
    """Rotation matrix of intrinsic x, y, z angles (degrees)."""
    a, b, c = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def make_affine(linear, origin):
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = origin
    return affine


ISO = make_affine(np.diag([3.0, 3.0, 3.0]), [-90.0, -126.0, -72.0])
ISO_ODD_ORIGIN = make_affine(np.diag([3.0, 3.0, 3.0]), [-90.123456789, -126.987654321, -72.3])
ANISO = make_affine(np.diag([-3.5, 3.75, 3.75]), [68.25, -118.125, -118.125])
OBLIQUE = make_affine(
    rotation([20, -35, 50]) @ np.array([[3.0, 0.4, 0.0], [0.0, 3.2, -0.3], [0.0, 0.0, 3.6]]),
    [-80.3, 12.7, 33.1],
)
ROTATED = make_affine(3.0 * rotation([20, -35, 50]), [-80.3, 12.7, 33.1])


def random_masks(shape=(12, 13, 11), seed=0):
    """A random mask, and a process mask with most of it plus voxels outside it.

    The voxels outside the mask have their six face neighbours in it, so that their spheres
    are not empty even when the radius is one voxel.
    """
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.7
    cross = ndimage.generate_binary_structure(3, 1).astype(int)
    cross[1, 1, 1] = 0
    enclosed = ~mask & (ndimage.convolve(mask.astype(int), cross, mode="constant") == 6)
    process = (mask & (rng.random(shape) < 0.8)) | enclosed
    return mask, process


def assert_same_neighbourhoods(ours, ref):
    a, b = ours.adjacency, ref.adjacency
    assert a.format == b.format == "csr"
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    assert a.indices.dtype == b.indices.dtype
    assert a.indptr.dtype == b.indptr.dtype
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.has_sorted_indices and b.has_sorted_indices
    np.testing.assert_array_equal(ours.seeds_ijk, ref.seeds_ijk)


def assert_stencil_matches_tree(mask, affine, process, radius):
    assert nbh._shares_grid(mask, affine, process, affine, radius)
    ours = build_neighbourhoods(mask, affine, process, affine, radius)
    ref = nbh._neighbourhoods_by_tree(mask, affine, process, affine, radius)
    assert_same_neighbourhoods(ours, ref)
    return ours


@pytest.mark.parametrize("radius", [3.0, 6.0, 5.6, 9.0])
@pytest.mark.parametrize("affine", [ISO, ISO_ODD_ORIGIN], ids=["round", "odd-origin"])
def test_stencil_matches_tree_isotropic(affine, radius):
    # 3, 6 and 9 mm are exact ties: whole numbers of 3 mm voxels away
    mask, process = random_masks()
    assert (process & ~mask).sum() >= 5
    assert_stencil_matches_tree(mask, affine, process, radius)
    assert_stencil_matches_tree(mask, affine, mask, radius)


@pytest.mark.parametrize("radius", [3.5, 3.75, 7.0, 7.5, 5.6, float(np.hypot(3.5, 3.75))])
def test_stencil_matches_tree_anisotropic(radius):
    mask, process = random_masks(seed=1)
    assert_stencil_matches_tree(mask, ANISO, process, radius)
    assert_stencil_matches_tree(mask, ANISO, mask, radius)


@pytest.mark.parametrize("radius", [3.0, 5.6, 7.0, 9.0])
@pytest.mark.parametrize("affine", [OBLIQUE, ROTATED], ids=["sheared", "rotated"])
def test_stencil_matches_tree_oblique(affine, radius):
    mask, process = random_masks(seed=2)
    # at 3 mm a voxel outside the mask may keep no neighbour: only ties reach that far
    assert_stencil_matches_tree(mask, affine, process & mask, radius)
    if radius > 3.0:
        assert_stencil_matches_tree(mask, affine, process, radius)


@pytest.mark.parametrize("max_share", [1.0, 0.25])
def test_stencil_asks_the_tree_about_ties_it_cannot_call(monkeypatch, max_share):
    # on a rotated grid, offsets of exactly 3 mm come out a few ulps off 9 mm^2: the KD-tree's
    # verdict there may hang on its node bounds, so those seeds go to the tree itself (row by
    # row, or all of them once they are too many)
    calls = []
    replace_rows = nbh._replace_rows

    def spy(counts, indices, rows, *args):
        calls.append(len(rows))
        return replace_rows(counts, indices, rows, *args)

    monkeypatch.setattr(nbh, "_replace_rows", spy)
    monkeypatch.setattr(nbh, "_MAX_AMBIGUOUS_SHARE", max_share)
    mask, process = random_masks(seed=3)
    for radius in (3.0, 6.0):
        calls.clear()
        assert_stencil_matches_tree(mask, ROTATED, process & mask, radius)
        assert calls == [] if max_share < 1 else calls[0] > 0


@pytest.mark.parametrize("chunk", [1, 37, 500])
@pytest.mark.parametrize("affine", [ANISO, ROTATED], ids=["aniso", "rotated"])
def test_stencil_in_chunks_matches_tree(monkeypatch, chunk, affine):
    # seeds taken a few at a time (down to one per chunk), near ties decided chunk by chunk:
    # every chunk's voxels land at their place in the one output array
    monkeypatch.setattr(nbh, "_CHUNK_CANDIDATES", chunk)
    mask, process = random_masks(seed=4)
    for radius in (3.0, 5.6, 7.5):
        assert_stencil_matches_tree(mask, affine, process & mask, radius)


def test_stencil_does_not_build_a_tree(monkeypatch):
    def no_tree(*args, **kwargs):
        raise AssertionError("NearestNeighbors called on a shared grid")

    mask, process = random_masks(seed=4)
    radii = (5.6, 7.5, 9.0)  # 7.5 mm: exact ties of exact squares, called without the tree
    refs = [nbh._neighbourhoods_by_tree(mask, ANISO, process, ANISO, r) for r in radii]
    monkeypatch.setattr(nbh, "_radius_search", no_tree)
    for radius, ref in zip(radii, refs):
        assert_same_neighbourhoods(build_neighbourhoods(mask, ANISO, process, ANISO, radius), ref)


def test_stencil_with_a_smaller_process_mask():
    mask, _ = random_masks(seed=5)
    process = np.zeros_like(mask)
    process[3:8, 4:9, 2:6] = mask[3:8, 4:9, 2:6]
    for affine, radius in [(ISO, 6.0), (ANISO, 5.6), (OBLIQUE, 7.0)]:
        hoods = assert_stencil_matches_tree(mask, affine, process, radius)
        assert hoods.n_spheres == process.sum()


def test_stencil_with_process_voxels_outside_the_mask():
    mask, _ = random_masks(seed=6)
    process = np.zeros_like(mask)
    process[2:10, 2:10, 2:9] = True  # a box: many of its voxels are not in the mask
    assert (process & ~mask).sum() > 50
    for affine, radius in [(ISO, 6.0), (ANISO, 5.6), (OBLIQUE, 7.0)]:
        hoods = assert_stencil_matches_tree(mask, affine, process, radius)
        outside = ~mask[tuple(hoods.seeds_ijk.T)]
        assert hoods.sizes[outside].min() >= 1


def test_stencil_on_a_whole_grid():
    # every voxel in both masks: spheres are clipped only by the grid's edges
    mask = np.ones((6, 7, 5), dtype=bool)
    for affine, radius in [(ISO, 9.0), (ANISO, 7.5), (OBLIQUE, 5.6)]:
        assert_stencil_matches_tree(mask, affine, mask, radius)


def test_stencil_radius_larger_than_the_grid():
    mask, process = random_masks(shape=(4, 5, 3), seed=7)
    hoods = assert_stencil_matches_tree(mask, ISO, process, 30.0)
    assert np.all(hoods.sizes == mask.sum())


def test_stencil_sphere_without_mask_voxel_is_an_error():
    mask = np.zeros((10, 3, 3), dtype=bool)
    mask[:2] = True  # 18 voxels: enough for the stencil
    process = np.zeros_like(mask)
    process[9, 1, 1] = True
    assert nbh._shares_grid(mask, np.eye(4), process, np.eye(4), 2.0)
    with pytest.raises(ValueError, match="contain no mask voxel") as fast:
        build_neighbourhoods(mask, np.eye(4), process, np.eye(4), 2.0)
    with pytest.raises(ValueError, match="contain no mask voxel") as tree:
        nbh._neighbourhoods_by_tree(mask, np.eye(4), process, np.eye(4), 2.0)
    assert str(fast.value) == str(tree.value)


def test_tree_when_grids_differ_or_the_mask_is_tiny():
    mask, process = random_masks(seed=8)
    moved = ISO.copy()
    moved[:3, 3] += 1.5
    assert not nbh._shares_grid(mask, ISO, process, moved, 6.0)
    assert not nbh._shares_grid(mask, ISO, process[:-1], ISO[:, :], 6.0)
    assert_same_neighbourhoods(
        build_neighbourhoods(mask, ISO, process, moved, 6.0),
        nbh._neighbourhoods_by_tree(mask, ISO, process, moved, 6.0),
    )
    # with fewer than 12 mask voxels scikit-learn searches by brute force: keep its answer
    tiny = np.zeros_like(mask)
    tiny[5, 5, 3:9] = tiny[6, 5, 3:8] = True
    assert tiny.sum() == 11
    assert not nbh._shares_grid(tiny, ISO, tiny, ISO, 6.0)


@pytest.mark.parametrize("radius", [3.75, 5.6, 7.5, 9.0])
def test_real_slice_stencil_matches_tree(haxby_slice, radius):
    mask = np.asarray(haxby_slice["mask"].dataobj) != 0
    affine = haxby_slice["mask"].affine
    assert_stencil_matches_tree(mask, affine, mask, radius)
    process = mask.copy()
    process[: mask.shape[0] // 2] = False
    assert_stencil_matches_tree(mask, affine, process, radius)


def test_add_centres_inserts_missing_centres_in_order():
    # rows [1, 4], [], [0, 2, 3]; the nearest voxels 2, 0, 3: rows 0 and 1 lack theirs
    counts = np.array([2, 0, 3])
    indices = np.array([1, 4, 0, 2, 3])
    nearest = np.array([2, 0, 3])
    counts, indices = nbh._add_centres(counts, indices, nearest, np.arange(3), 5)
    np.testing.assert_array_equal(counts, [3, 1, 3])
    np.testing.assert_array_equal(indices, [1, 2, 4, 0, 0, 2, 3])
