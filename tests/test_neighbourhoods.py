import nibabel as nib
import numpy as np
import pytest
from nilearn.image.resampling import coord_transform
from nilearn.maskers.nifti_spheres_masker import apply_mask_and_get_affinity

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


def test_bad_radius_and_empty_masks():
    mask = np.ones((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match="radius"):
        build_neighbourhoods(mask, np.eye(4), mask, np.eye(4), 0.0)
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
