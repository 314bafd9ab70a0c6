import nibabel as nib
import numpy as np
import pytest

from fastsearchlight.images import masked_data


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("n_volumes", [1, 31, 32, 70])  # one read, several, a partial last one
@pytest.mark.parametrize("shared", [False, True])
def test_masked_data_is_the_data_at_the_mask(order, n_volumes, shared):
    rng = np.random.default_rng(n_volumes)
    data = np.asarray(rng.standard_normal((5, 6, 7, n_volumes)), dtype=np.float32, order=order)
    mask = rng.random((5, 6, 7)) > 0.4
    X = masked_data(nib.Nifti1Image(data, np.eye(4)), mask, shared=shared)
    assert X.shape == (n_volumes, mask.sum()) and X.dtype == np.float64
    assert np.array_equal(X, data[mask].T)
    assert X.T.flags.c_contiguous  # voxel by voxel


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_masked_data_names_the_voxels_that_are_not_finite(order, bad):
    data = np.ones((4, 4, 4, 40), dtype=np.float32, order=order)
    mask = np.ones((4, 4, 4), dtype=bool)
    data[1, 2, 3, 35] = bad  # in the third read
    data[0, 0, 0, 2] = bad
    data[0, 0, 0, 3] = bad  # the same voxel twice
    with pytest.raises(ValueError, match=r"NaN or infinite values in 2 voxel\(s\)"):
        masked_data(nib.Nifti1Image(data, np.eye(4)), mask)
    # outside the mask they do not matter
    mask[1, 2, 3] = mask[0, 0, 0] = False
    assert np.isfinite(masked_data(nib.Nifti1Image(data, np.eye(4)), mask)).all()
