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


def test_shared_memory_is_used_only_with_room_to_spare(monkeypatch, tmp_path):
    """A container's /dev/shm is often 64 MB: writing past its end kills the process, so
    larger objects go to the default temporary folder."""
    import collections
    import tempfile

    import fastsearchlight.shared as shared

    if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)):
        assert shared._temp_root(10) is None
        return
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shared.shutil, "disk_usage", lambda path: usage(100, 0, 100))
    assert shared._temp_root(50) == "/dev/shm"
    assert shared._temp_root(51) is None
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the default temporary folder
    monkeypatch.setattr(shared.shutil, "disk_usage", lambda path: usage(100, 0, 0))
    array = shared_empty((10, 3))
    assert array.filename.startswith(str(tmp_path))
    folder = SharedFolder(({"a": np.arange(100.0)},))
    assert folder.objects[0]["a"].filename.startswith(str(tmp_path))


def test_nbytes_counts_arrays_in_nests():
    from scipy import sparse

    from fastsearchlight.shared import _nbytes

    m = sparse.csr_matrix(np.eye(3))
    expected = 80 + 16 + m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    assert _nbytes(({"a": np.zeros(10), "b": [np.zeros(2), 3]}, m, "text")) == expected
