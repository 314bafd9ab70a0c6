"""LAPACK's and BLAS's routines for compiled code: the general product (``gemm``), the
inverse from a Cholesky factor (``potri``) and the condition estimate (``pocon``).

numba's ``np.dot`` reaches the same BLAS (scipy's), but each call copies its operands and
allocates its result, and forms both triangles of a symmetric product: for the small
matrices of one sphere (``d`` from 20 to 125) that overhead was a third of the work
(``syrk`` on 54 rows 3.6 against 4.8 us at ``d = 41``, 19.9 against 31.9 at 124). The
products of a matrix's columns with themselves (``X' X`` from its rows) are compiled
outer-product tiles since stop 63 (:mod:`._simd`), faster than ``syrk`` at these sizes, and
since stop 72 so are the products of a voxel-major block's rows (copied sample-major first;
``syrk`` before). The
Cholesky factorisations and the solves with a factor are compiled loops
(:mod:`._triangular`), faster than LAPACK's ``potrf`` (since stop 51), ``potrs`` and
``trsm`` at these sizes. ``RidgeClassifierCV``'s kernel takes the inverse from a factor
(``potri``) and the condition estimate (``pocon``); the Gram-space svc kernel the inverse of
a leading block from its factor (``potri``: 1.8 times the speed of compiled loops at
``k = 28``, 6 times at ``k = 162``).

The routines are scipy's (``scipy.linalg.cython_lapack`` and ``cython_blas``), registered
under a symbol name with LLVM when this module is imported, so the compiled functions that
call them are cached on disk like any other (the address is resolved when the cache is
loaded, not stored in it).

Matrices are C-ordered: the upper triangle of a C-ordered matrix is the lower triangle of
the same memory read in Fortran order, which is what the routines are told. The arrays each
wrapper allocates for a routine (its integer arguments, scalars and work arrays) are kept
alive until it returns (:func:`_keep_alive`).
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from numba import types
from numba.extending import get_cython_function_address

from ._compiled import kernel

__all__ = [
    "inverse_lower_block",
    "matmul_into",
    "reciprocal_condition_upper",
]


def _external(module: str, name: str, n_args: int) -> types.ExternalFunction:
    """A Fortran-convention routine of scipy (every argument by address) for compiled code."""
    symbol = f"fastsearchlight_{name}"
    llvm.add_symbol(symbol, get_cython_function_address(module, name))
    return types.ExternalFunction(symbol, types.void(*([types.intp] * n_args)))


_dgemm = _external("scipy.linalg.cython_blas", "dgemm", 13)
_dpotri = _external("scipy.linalg.cython_lapack", "dpotri", 5)
_dpocon = _external("scipy.linalg.cython_lapack", "dpocon", 9)

#: the characters 'L' (Fortran's lower triangle: the C-ordered upper one), 'U' (the C-ordered
#: lower one), 'N' and 'T'
_LOWER, _UPPER, _NO_TRANSPOSE, _TRANSPOSE = ord("L"), ord("U"), ord("N"), ord("T")


@kernel()
def _keep_alive(*arrays):
    """Nothing; called after a routine with the arrays this module allocated and passed to it
    by address. numba frees an array after its last use, and taking ``.ctypes.data`` is not
    one that lasts: without this call the work arrays (and the scalars) could be freed before
    the routine reads or writes them (a use after free, which corrupted the heap of rare
    runs)."""


@kernel()
def _c_contiguous(M):
    """Whether the 2-d array ``M`` is C-contiguous (a dimension of length 1 may have any
    stride)."""
    rows, cols = M.shape
    if rows == 0 or cols == 0:
        return True
    return (cols <= 1 or M.strides[1] == 8) and (rows <= 1 or M.strides[0] == 8 * cols)


@kernel()
def _row_stride(M):
    """The distance between the rows of the 2-d array ``M`` in elements, if its columns are
    contiguous (unit stride) and its rows ordered (-1 otherwise): a C-ordered matrix or a
    leading block of one."""
    rows, cols = M.shape
    if rows == 0 or cols == 0:
        return max(cols, 1)
    if cols > 1 and M.strides[1] != 8:
        return -1
    if rows == 1:
        return cols
    if M.strides[0] < 8 * cols:
        return -1
    return M.strides[0] // 8


@kernel()
def matmul_into(A, B, out, transpose_b):
    """``out = A B`` (``B^T`` when ``transpose_b``) by BLAS's ``gemm``, written into ``out``
    without a temporary. ``A`` ``(m, k)``, ``B`` ``(k, n)`` (``(n, k)`` when transposed) and
    ``out`` ``(m, n)`` have contiguous rows (C-ordered matrices, or leading blocks of
    them)."""
    m, k = A.shape
    n = out.shape[1]
    if (
        out.shape[0] != m
        or (B.shape[0] != (n if transpose_b else k))
        or (B.shape[1] != (k if transpose_b else n))
    ):
        raise ValueError("matmul_into: shapes do not match")
    lda, ldb, ldo = _row_stride(A), _row_stride(B), _row_stride(out)
    if lda < 0 or ldb < 0 or ldo < 0:
        raise ValueError("matmul_into needs matrices with contiguous rows")
    if m == 0 or n == 0:
        return
    if k == 0:
        out[:, :] = 0.0
        return
    # in Fortran order the memory holds out^T = B^T A^T (or B A^T)
    args = np.empty(8, dtype=np.int32)
    args[0] = _TRANSPOSE if transpose_b else _NO_TRANSPOSE
    args[1] = _NO_TRANSPOSE
    args[2] = n
    args[3] = m
    args[4] = k
    args[5] = ldb
    args[6] = lda
    args[7] = ldo
    scalars = np.empty(2)
    scalars[0] = 1.0
    scalars[1] = 0.0
    _dgemm(args[0:].ctypes.data, args[1:].ctypes.data, args[2:].ctypes.data,
           args[3:].ctypes.data, args[4:].ctypes.data, scalars[0:].ctypes.data, B.ctypes.data,
           args[5:].ctypes.data, A.ctypes.data, args[6:].ctypes.data, scalars[1:].ctypes.data,
           out.ctypes.data, args[7:].ctypes.data)  # fmt: skip
    _keep_alive(args, scalars)


@kernel()
def _inverse_on_block(F, k, uplo):
    """LAPACK's ``potri`` in place on the leading ``k x k`` block of the C-ordered ``F``
    (unit column stride, rows possibly longer than ``k``), on the triangle ``uplo`` of its
    memory read in Fortran order: the inverse from the factor in that triangle (the other
    triangle untouched). False when a diagonal entry of the factor is zero."""
    if k == 0:
        return True
    if F.strides[1] != 8 or F.shape[0] < k or F.shape[1] < k:
        raise ValueError("a block inverse needs unit column stride and a k x k block")
    args = np.empty(4, dtype=np.int32)
    args[0] = uplo
    args[1] = k
    args[2] = F.strides[0] // 8 if F.shape[0] > 1 else max(k, 1)  # leading dimension
    args[3] = 0
    _dpotri(args[0:].ctypes.data, args[1:].ctypes.data, F.ctypes.data, args[2:].ctypes.data,
            args[3:].ctypes.data)  # fmt: skip
    _keep_alive(args)
    return args[3] == 0


@kernel()
def inverse_lower_block(S, k):
    """The inverse ``M^-1`` from the lower factor ``F`` of ``M = F F^T`` in the leading
    ``k x k`` block of ``S`` (as :func:`._triangular.cholesky_lower_rows` leaves it), in
    place: both triangles of the block (LAPACK's ``potri``, then mirrored). False when a
    diagonal entry of ``F`` is zero. ``S`` is a C-ordered 2-d array with unit column stride
    (its rows may be longer than ``k``)."""
    ok = _inverse_on_block(S, k, _UPPER)  # C order's lower triangle is Fortran order's upper
    for r in range(1, k):
        for c in range(r):
            S[c, r] = S[r, c]
    return ok


@kernel()
def reciprocal_condition_upper(R, norm1):
    """LAPACK's estimate (``pocon``) of ``1 / cond_1(H)`` from the upper factor ``R`` of
    :func:`._triangular.cholesky_upper_into` (C-contiguous ``(d, d)``) and the 1-norm
    ``norm1`` of ``H`` (its largest absolute column sum). The estimate is within a small factor of the true
    value in practice (Higham's 1-norm estimator)."""
    d = R.shape[0]
    if not _c_contiguous(R):
        raise ValueError("reciprocal_condition_upper needs a C-contiguous factor")
    if d == 0:
        return 1.0
    args = np.empty(3, dtype=np.int32)
    args[0] = _LOWER
    args[1] = d
    args[2] = 0
    scalars = np.empty(2)
    scalars[0] = norm1
    scalars[1] = 0.0
    work = np.empty(3 * d)
    iwork = np.empty(d, dtype=np.int32)
    _dpocon(args[0:].ctypes.data, args[1:].ctypes.data, R.ctypes.data, args[1:].ctypes.data,
            scalars[0:].ctypes.data, scalars[1:].ctypes.data, work.ctypes.data,
            iwork.ctypes.data, args[2:].ctypes.data)  # fmt: skip
    _keep_alive(args, scalars, work, iwork)
    return scalars[1]
