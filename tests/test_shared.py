"""Arrays shared with worker processes through memory-mapped files, removed after use."""

import gc
import os

import nibabel as nib
import numpy as np

from fastsearchlight.images import masked_data
from fastsearchlight.shared import SharedFolder, shared_empty


def test_shared_empty_is_removed_with_its_last_view():
    array = shared_empty((5, 3))
    path = array.filename
    view = array.T
    array[:] = 1.0
    del array
    gc.collect()
    assert os.path.exists(path)  # a view keeps it
    assert view.sum() == 15.0
    del view
    gc.collect()
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))


def test_shared_folder_round_trip_and_removal():
    objects = ({"a": np.arange(10.0), "b": 3}, np.ones((4, 2)))
    folder = SharedFolder(objects)
    (state, ones) = folder.objects
    np.testing.assert_array_equal(state["a"], np.arange(10.0))
    assert state["b"] == 3
    np.testing.assert_array_equal(ones, np.ones((4, 2)))
    path = os.path.dirname(ones.filename)
    assert os.path.isdir(path)
    del folder, state, ones
    gc.collect()
    assert not os.path.exists(path)


def test_masked_data_shared_or_not_is_the_same():
    rng = np.random.default_rng(0)
    data = np.asfortranarray(rng.standard_normal((4, 5, 3, 7)).astype(np.float32))
    img = nib.Nifti1Image(data, np.eye(4))
    mask = rng.random((4, 5, 3)) < 0.6
    plain = masked_data(img, mask)
    shared = masked_data(img, mask, shared=True)
    np.testing.assert_array_equal(plain, shared)
    np.testing.assert_array_equal(plain, data[mask].T.astype(np.float64))
    assert isinstance(shared.base, np.memmap) or isinstance(shared.base.base, np.memmap)
    assert plain.T.flags.c_contiguous and shared.T.flags.c_contiguous
