"""The borrowed arrays of the compiled kernels (no reference counts): the owner's memory, its
shape and strides, in every dtype and layout the kernels pass."""

import numpy as np
import pytest
from numba import njit

from fastsearchlight.estimators._borrow import borrowed


@njit(cache=False)
def _write_through(a, i, j, value):
    b = borrowed(a)
    b[i, j] = value
    return b.shape[0], b.shape[1], b.strides[0], b.strides[1], b.sum()


@njit(cache=False)
def _helper_sum(x):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i]
    return acc


@njit(cache=False)
def _rows_through_helper(a):
    b = borrowed(a)
    out = np.empty(b.shape[0])
    for r in range(b.shape[0]):
        out[r] = _helper_sum(b[r, 1:])  # a view of a borrowed array, passed on
    return out


@pytest.mark.parametrize("layout", ["C", "F", "slice"])
def test_borrowed_array_is_the_owner(layout):
    base = np.arange(30, dtype=np.float64).reshape(5, 6)
    a = {"C": base.copy(), "F": np.asfortranarray(base), "slice": base.copy()[1:4, ::2]}[layout]
    expected = a.copy()
    expected[1, 2] = -7.0
    shape0, shape1, stride0, stride1, total = _write_through(a, 1, 2, -7.0)
    assert (shape0, shape1) == a.shape
    assert (stride0, stride1) == a.strides
    np.testing.assert_array_equal(a, expected)  # written through to the owner
    assert total == expected.sum()
    np.testing.assert_array_equal(_rows_through_helper(a), a[:, 1:].sum(axis=1))


@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.int8])
def test_borrowed_array_in_other_dtypes(dtype):
    a = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    expected = a.copy()
    expected[2, 3] = 1
    _write_through(a, 2, 3, 1)
    np.testing.assert_array_equal(a, expected)
