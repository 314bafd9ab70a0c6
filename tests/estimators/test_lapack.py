"""The in-place LAPACK and BLAS calls of the compiled kernels, against numpy."""

import numpy as np
import pytest

from fastsearchlight.estimators._lapack import matmul_into


@pytest.mark.parametrize("m, k, n", [(4, 41, 216), (1, 1, 1), (3, 0, 2), (5, 7, 1)])
def test_matmul_into_matches_numpy(m, k, n):
    rng = np.random.default_rng(m + k + n)
    A = rng.standard_normal((m, k))
    B = rng.standard_normal((k, n))
    out = np.full((m, n), 9.0)
    matmul_into(A, B, out, False)
    np.testing.assert_allclose(out, A @ B, rtol=1e-12, atol=1e-12)
    out[:] = 9.0
    matmul_into(A, np.ascontiguousarray(B.T), out, True)
    np.testing.assert_allclose(out, A @ B, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_into_works_on_leading_blocks(transpose_b):
    """Leading blocks of larger C-ordered buffers (rows longer than the block, as the
    Gram-space kernel's per-training-set matrices) multiply as the blocks themselves, and
    the buffer outside the result's block is left as it was."""
    rng = np.random.default_rng(7)
    A_buf, B_buf = rng.standard_normal((9, 12)), rng.standard_normal((8, 10))
    out_buf = np.full((9, 11), 9.0)
    A = A_buf[:9, :5]
    B = B_buf[:6, :5] if transpose_b else B_buf[:5, :6]
    matmul_into(A, B, out_buf[:, :6], transpose_b)
    expected = A @ (B.T if transpose_b else B)
    np.testing.assert_allclose(out_buf[:, :6], expected, rtol=1e-12, atol=1e-12)
    assert np.all(out_buf[:, 6:] == 9.0)


def test_matmul_into_rejects_columns_that_are_not_contiguous():
    A = np.ones((4, 6))[:, ::2]
    with pytest.raises(ValueError, match="contiguous rows"):
        matmul_into(A, np.ones((3, 2)), np.empty((4, 2)), False)


def test_matmul_into_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        matmul_into(np.ones((2, 3)), np.ones((4, 2)), np.empty((2, 2)), False)


@pytest.mark.parametrize("d", [1, 6, 28])
def test_condition_from_the_factor(d):
    from fastsearchlight.estimators._lapack import reciprocal_condition_upper
    from fastsearchlight.estimators._triangular import cholesky_upper_into

    rng = np.random.default_rng(d)
    A = rng.standard_normal((d + 4, d)) * np.logspace(0, 2, d)
    H = 0.1 * np.eye(d) + A.T @ A
    R = np.empty((d, d))
    assert cholesky_upper_into(H, R)  # (the kernels' factorisation)
    rcond = reciprocal_condition_upper(R, np.abs(H).sum(axis=0).max())
    exact = 1.0 / np.linalg.cond(H, 1)
    assert exact / 10 <= rcond <= exact * 10


@pytest.mark.parametrize("k", [1, 7, 30])
def test_block_inverse_from_a_lower_factor_matches_numpy(k):
    """``inverse_lower_block`` turns the lower factor in the leading ``k x k`` block of a
    longer buffer into the full inverse of that block, reading only the factor's triangle
    and writing nothing outside the block."""
    from fastsearchlight.estimators._lapack import inverse_lower_block
    from fastsearchlight.estimators._triangular import cholesky_lower_rows

    rng = np.random.default_rng(k + 100)
    X = rng.standard_normal((k, k + 3))
    M = X @ X.T + np.eye(k)
    buf = np.full((k + 4, k + 6), 7.0)
    buf[:k, :k] = np.tril(M) + np.triu(np.full((k, k), np.nan), 1)
    assert cholesky_lower_rows(buf, k)  # (the kernels' factorisation)
    buf[:k, :k] = np.tril(buf[:k, :k]) + np.triu(np.full((k, k), np.nan), 1)
    assert inverse_lower_block(buf, k)
    np.testing.assert_allclose(buf[:k, :k], np.linalg.inv(M), rtol=1e-10, atol=1e-12)
    outside = np.ones(buf.shape, bool)
    outside[:k, :k] = False
    assert np.all(buf[outside] == 7.0)
    with pytest.raises(ValueError, match="unit column stride"):
        inverse_lower_block(np.zeros((k + 2, 2 * k + 2))[:, ::2], k + 1)


_ORDER_OF_FREES = r"""
import re
import numpy as np
import fastsearchlight.estimators._lapack as L

X = np.random.rand(6, 4)
L.matmul_into(X, X, np.zeros((6, 6)), True)
L.reciprocal_condition_upper(np.eye(4) * 2.0, 4.0)
L.inverse_lower_block(np.eye(4) * 2.0, 4)
for f in (L.matmul_into, L.reciprocal_condition_upper, L._inverse_on_block):
    name = f.py_func.__name__
    lines = f.inspect_llvm(f.signatures[0]).splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("define") and name in l)
    allocs, freed, events = set(), set(), []
    for line in lines[start:]:
        made = re.search(r"(%[\w.]+) = .*@NRT_MemInfo_alloc", line)
        if made:
            allocs.add(made.group(1))
        gone = re.search(r"@NRT_decref\((?:ptr|i8\*) (?:nonnull )?(%[\w.]+)\)", line)
        if gone and gone.group(1) in allocs:
            freed.add(gone.group(1))
        if "@fastsearchlight_d" in line:
            events.append((name, len(allocs), sorted(freed)))
        if line.strip() == "}":
            break
    # with every allocation's free seen by the end (the pattern does match the frees)
    print([event + (len(allocs), len(freed)) for event in events])
"""


def test_work_arrays_outlive_the_routines(tmp_path):
    """The arrays a wrapper allocates and passes to a routine by address (its arguments,
    scalars and work arrays) are freed only after the routine returns. numba frees an array
    after its last use, and taking ``.ctypes.data`` is not a use that lasts: ``pocon``'s work
    arrays were freed before it wrote into them (a use after free that corrupted the heap
    of rare runs). Checked on the compiled code (LLVM IR, compiled afresh in a process with
    an empty cache: cached code cannot be inspected): at each routine's call, at least one
    array was allocated and none of them was freed yet, and by the function's end every one
    was (so that the frees are recognised at all)."""
    import ast
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", _ORDER_OF_FREES], env=env, capture_output=True, text=True, check=True
    ).stdout
    events = [e for line in out.splitlines() for e in ast.literal_eval(line)]
    assert {event[0] for event in events} == {
        "matmul_into",
        "reciprocal_condition_upper",
        "_inverse_on_block",
    }
    for name, n_allocated, freed, n_in_all, n_freed_in_all in events:
        assert n_allocated >= 1, name
        assert freed == [], (name, freed)
        assert n_freed_in_all == n_in_all, name  # the frees are recognised: none missed
