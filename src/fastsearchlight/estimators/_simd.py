"""Register tiles of outer products in explicit vector instructions, for the compiled kernels.

The kernels' matrix products are small (a sphere's Gram matrix, a Hessian, a Cholesky
factorisation of a few dozen to a few hundred rows), too small for BLAS's packing copies and
tiles. numba's loops reach them as dot products, which LLVM vectorises along the sum, with a
horizontal sum per entry at the end; an outer-product tile (a few rows of one matrix times a
few contiguous columns of another, the sums held in vector registers across the whole loop)
is what reaches a core's multiply-add rate, but LLVM does not pack numba's scalar loops into
that form (the same 4 x 8 tile written as 32 scalar sums ran at 6 G multiply-adds per
second). :func:`outer_tile` and :func:`outer_tile8` write it in LLVM's vector instructions
directly: a tile of 4 (or 8) rows by 16 columns, its sums in vectors of eight ``float64``;
each step of the loop loads the two 8-column halves of a ``B`` row, broadcasts the tile's
``A`` entries of that step and multiplies-adds. One Emerald Rapids core (two 512-bit
multiply-add units), one thread, 80 steps in the L1 cache: 41-46 G multiply-adds per second
for the 4 x 16 tile, 23 with four-entry vectors. On processors without 512-bit vectors LLVM
splits each vector in two.

A tile of at most eight columns runs on one half only (half the multiply-adds and loads of
``B``): the last column of tiles of a matrix, and :func:`column_products_upper`'s tiles whose
rows start past their first eight columns; that product's last one to four columns are
tiles of their own, transposed (two or four rows). Captured kernel calls of neighbouring W1
10 mm spheres, both versions alternated in one process: ``LogisticRegressionCV`` 0.88 of
the time, ``LogisticRegression`` 0.93, the same decisions to the bit.

In ``float32`` a tile's row is one vector of sixteen (twice the multiply-adds per
instruction), its sums stored in ``float32`` or converted to ``float64``: the binary logistic
Hessians (:func:`._logistic_kernel._binary_hessian`). One thread, ``column_gram_upper`` into
a ``float64`` matrix: 0.61-0.70 of the time at 162 x 77-82, 130 x 83 and 216 x 155.

:func:`outer_tile_solved` applies a 4 x 4 triangle to a tile's new rows before it stores
them: the upper Cholesky factorisation's block rows, updated and solved in one pass.

Built on them: :func:`column_products_upper` and :func:`column_gram_upper` (symmetric
products ``Y' X`` of a matrix's columns: the logistic Hessians, the svc Gram path's sample
Gram matrices) and the upper Cholesky factorisation of :mod:`._triangular`.

The tiles read and write through the arrays' data pointers and element offsets: the caller
guarantees every address it names is inside its arrays (the tiles check nothing). Columns
past a tile's last one are masked (neither read nor written).
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._compiled import kernel

__all__ = [
    "DIAGONAL_BLOCK",
    "TILE_COLUMNS",
    "TILE_ROWS",
    "column_gram",
    "column_gram_upper",
    "column_products_upper",
    "mirror_below_blocks",
    "outer_tile",
    "outer_tile8",
    "outer_tile_solved",
]

#: sums may be reordered (vectorised): the results stay exact to rounding
_FASTMATH = {"reassoc", "contract"}

#: rows of :func:`outer_tile`'s tiles (:func:`outer_tile8`: eight), and columns of both
TILE_ROWS = 4
TILE_COLUMNS = 16
#: rows of :func:`column_products_upper`'s tiles
_GRAM_ROWS = 8
_LANES = 8
#: without ``strict``, :func:`column_products_upper` also writes the entries below the
#: diagonal in the diagonal's blocks of this size (row ``i`` from column ``i - i % 8``): a
#: caller that mirrors the rest fills row ``i``'s first ``i - i % DIAGONAL_BLOCK`` entries
DIAGONAL_BLOCK = _GRAM_ROWS
#: :func:`column_products_upper`'s last columns, when no more than this many are left past
#: the last full column of tiles, are computed in transposed tiles of two or four rows
_TRANSPOSED_TAIL = 4
#: LLVM 17 and later have opaque pointers only: the masked load's and store's names end in
#: ``p0``; before, in the vector's pointer type (``p0v8f64``)
_OPAQUE_POINTERS = llvm.llvm_version_info[0] >= 17
#: the tiles' element types: LLVM's type, the lanes of one 512-bit vector, its name's suffix
_ELEMENTS = {
    types.float64: (ir.DoubleType, _LANES, "f64"),
    types.float32: (ir.FloatType, 2 * _LANES, "f32"),
}


def _splat(builder, value, vector_type):
    """A vector of ``vector_type`` with every lane ``value``."""
    lanes = vector_type.count
    first = builder.insert_element(
        ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0)
    )
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
    return builder.shuffle_vector(first, ir.Constant(vector_type, ir.Undefined), zeros)


def _outer_tile(rows, solved=False):
    """:func:`outer_tile`'s intrinsic for tiles of ``rows`` rows; with ``solved``,
    :func:`outer_tile_solved`'s (one more argument, ``T``)."""

    def intrinsic_(A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate, T):
        """``C[ic + r*ldc + c] = (C[...] if accumulate else 0) + alpha * S[r, c]`` for ``r < nrows``
        (at most the tile's rows) and ``c < ncols`` (at most 16; at most 8: one vector of sums per
        row), with the sums
        ``S[r, c] = sum_{l < length} A[ia + l*lda + r] * B[ib + l*ldb + c]``.

        ``A`` and ``B`` are arrays of one type, ``float64`` (sums in vectors of eight) or
        ``float32`` (sums in one vector of sixteen per row, stored in ``C``'s type: ``float32``,
        or ``float64`` where only the products need not be exact), all three addressed by
        element offsets from their first entry (a C-ordered 2-d array with unit column stride
        and ``ld`` elements between rows has entry ``[i, j]`` at ``i*ld + j``); ``C`` may be ``A`` or ``B``: the tile reads all
        its entries of ``A`` and ``B`` before it writes any of ``C``, so ``C`` may even be the
        entries of ``B`` it reads (a product in place, as the Cholesky factorisation's row
        solves). Entries of
        ``A`` in rows ``r >= nrows`` and of ``B`` in columns ``c >= ncols`` are not read; nothing
        else is checked. In compiled code only."""
        if solved and not (isinstance(T[0], types.Array) and T[0].dtype == types.float64):
            raise TypeError(f"outer_tile: T must be a float64 array, got {T[0]}")
        for name, arr in (("A", A), ("B", B), ("C", C)):
            if not (isinstance(arr, types.Array) and arr.dtype in _ELEMENTS):
                raise TypeError(f"outer_tile: {name} must be a float64 or float32 array, got {arr}")
        if solved and A.dtype != types.float64:
            raise TypeError(f"outer_tile: solved tiles are float64 only, got {A}")
        if B.dtype != A.dtype or (C.dtype != A.dtype and C.dtype != types.float64):
            raise TypeError(f"outer_tile: B must be of A's type and C of A's or float64, got {A}, {B}, {C}")
        element, lanes, suffix = _ELEMENTS[A.dtype]
        vectors = TILE_COLUMNS // lanes
        c_element, _, c_suffix = _ELEMENTS[C.dtype]
        width, c_width = A.dtype.bitwidth // 8, C.dtype.bitwidth // 8
        vector_name, c_vector_name = f"v{lanes}{suffix}", f"v{lanes}{c_suffix}"
        sig = types.void(A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate, *T)

        def codegen(context, builder, signature, args):
            (a_arr, ia_, lda_, b_arr, ib_, ldb_, length_, c_arr, ic_, ldc_, nrows_, ncols_, alpha_, acc_) = (
                args[:14]
            )
            ty = signature.args
            i64 = ir.IntType(64)
            i32 = ir.IntType(32)
            vec = ir.VectorType(element(), lanes)
            c_vec = ir.VectorType(c_element(), lanes)  # C's (its vectors may span two registers)
            mask_type = ir.VectorType(ir.IntType(1), lanes)
            align, c_align = ir.Constant(i32, width), ir.Constant(i32, c_width)

            def as_i64(value, numba_type):
                return context.cast(builder, value, numba_type, types.int64)

            ia_, lda_, ib_, ldb_ = (
                as_i64(ia_, ty[1]),
                as_i64(lda_, ty[2]),
                as_i64(ib_, ty[4]),
                as_i64(ldb_, ty[5]),
            )
            length_, ic_, ldc_ = as_i64(length_, ty[6]), as_i64(ic_, ty[8]), as_i64(ldc_, ty[9])
            nrows_, ncols_ = as_i64(nrows_, ty[10]), as_i64(ncols_, ty[11])
            alpha_ = context.cast(builder, alpha_, ty[12], C.dtype)
            acc_ = context.cast(builder, acc_, ty[13], types.boolean)
            a_data = context.make_array(ty[0])(context, builder, value=a_arr).data
            b_data = context.make_array(ty[3])(context, builder, value=b_arr).data
            c_data = context.make_array(ty[7])(context, builder, value=c_arr).data
            if solved:  # T[l, r], l <= r: the entries of the triangle applied to the rows
                t_data = context.make_array(ty[14])(context, builder, value=args[14]).data
                t_entries = {
                    (l, r): _splat(
                        builder, builder.load(builder.gep(t_data, [ir.Constant(i64, l * rows + r)])), c_vec
                    )
                    for r in range(rows)
                    for l in range(r + 1)
                }

            def functions(vector_type, name):
                """LLVM's multiply-add, masked load and masked store of ``vector_type``."""
                pointer_name = "p0" if _OPAQUE_POINTERS else f"p0{name}"
                fma = cgutils.get_or_insert_function(
                    builder.module,
                    ir.FunctionType(vector_type, [vector_type] * 3),
                    f"llvm.fma.{name}",
                )
                load = cgutils.get_or_insert_function(
                    builder.module,
                    ir.FunctionType(vector_type, [vector_type.as_pointer(), i32, mask_type, vector_type]),
                    f"llvm.masked.load.{name}.{pointer_name}",
                )
                store = cgutils.get_or_insert_function(
                    builder.module,
                    ir.FunctionType(ir.VoidType(), [vector_type, vector_type.as_pointer(), i32, mask_type]),
                    f"llvm.masked.store.{name}.{pointer_name}",
                )
                return fma, load, store

            fma, load_masked, _ = functions(vec, vector_name)
            c_fma, c_load_masked, c_store_masked = functions(c_vec, c_vector_name)
            zero = ir.Constant(vec, [0.0] * lanes)
            c_zero = ir.Constant(c_vec, [0.0] * lanes)
            all_lanes = _splat(builder, ncols_, ir.VectorType(i64, lanes))
            masks = [
                builder.icmp_signed(
                    "<",
                    ir.Constant(ir.VectorType(i64, lanes), [v * lanes + k for k in range(lanes)]),
                    all_lanes,
                )
                for v in range(vectors)
            ]
            # a row past nrows reads the last row's entries (in the array) and is not stored
            last_row = builder.sub(nrows_, ir.Constant(i64, 1))
            a_rows = [
                builder.select(
                    builder.icmp_signed("<", ir.Constant(i64, r), nrows_), ir.Constant(i64, r), last_row
                )
                for r in range(rows)
            ]
            scale = _splat(builder, alpha_, c_vec)

            def tile(used):
                """The loop and the stores, with the sums of ``used`` vectors per row."""
                sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(used)] for _ in range(rows)]
                with cgutils.for_range(builder, length_) as loop:
                    step = loop.index
                    a_row = builder.gep(a_data, [builder.add(ia_, builder.mul(step, lda_))])
                    b_row = builder.gep(b_data, [builder.add(ib_, builder.mul(step, ldb_))])
                    halves = []
                    for v in range(used):
                        pointer = builder.bitcast(
                            builder.gep(b_row, [ir.Constant(i64, v * lanes)]), vec.as_pointer()
                        )
                        halves.append(builder.call(load_masked, [pointer, align, masks[v], zero]))
                    for r in range(rows):
                        a = _splat(builder, builder.load(builder.gep(a_row, [a_rows[r]])), vec)
                        for v in range(used):
                            builder.store(
                                builder.call(fma, [a, halves[v], builder.load(sums[r][v])]), sums[r][v]
                            )

                def pointer_of(r, v):
                    """The address of row ``r``'s vector ``v`` in ``C``."""
                    c_row = builder.gep(c_data, [builder.add(ic_, builder.mul(ir.Constant(i64, r), ldc_))])
                    return builder.bitcast(
                        builder.gep(c_row, [ir.Constant(i64, v * lanes)]), c_vec.as_pointer()
                    )

                def new_value(pointer, r, v):
                    """Row ``r``'s vector ``v``: what ``C`` held there (with ``accumulate``) plus
                    ``alpha`` times the sums."""
                    old = builder.call(c_load_masked, [pointer, c_align, masks[v], c_zero])
                    base = builder.select(acc_, old, c_zero)
                    total = builder.load(sums[r][v])
                    if c_vec != vec:
                        total = builder.fpext(total, c_vec)
                    return builder.call(c_fma, [scale, total, base])

                if solved:  # every row: the new rows, then the triangle applied to them
                    pointers = [[pointer_of(r, v) for v in range(used)] for r in range(rows)]
                    news = [[new_value(pointers[r][v], r, v) for v in range(used)] for r in range(rows)]
                    for r in range(rows):
                        for v in range(used):
                            out = builder.fmul(t_entries[0, r], news[0][v])
                            for l in range(1, r + 1):
                                out = builder.call(c_fma, [t_entries[l, r], news[l][v], out])
                            builder.call(c_store_masked, [out, pointers[r][v], c_align, masks[v]])
                    return
                for r in range(rows):
                    with cgutils.if_likely(builder, builder.icmp_signed("<", ir.Constant(i64, r), nrows_)):
                        for v in range(used):
                            pointer = pointer_of(r, v)
                            builder.call(
                                c_store_masked, [new_value(pointer, r, v), pointer, c_align, masks[v]]
                            )

            if vectors == 1:
                tile(1)
            else:  # columns that fit in one vector: half the multiply-adds (and loads of B)
                narrow = builder.icmp_signed("<=", ncols_, ir.Constant(i64, lanes))
                with builder.if_else(narrow) as (one_vector, two_vectors):
                    with one_vector:
                        tile(1)
                    with two_vectors:
                        tile(vectors)
            return context.get_dummy_value()

        return sig, codegen

    if solved:

        def solved_(
            typingctx, A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate, T
        ):
            return intrinsic_(
                A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate, (T,)
            )

        return intrinsic(solved_)

    def plain_(typingctx, A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate):
        return intrinsic_(A, ia, lda, B, ib, ldb, length, C, ic, ldc, nrows, ncols, alpha, accumulate, ())

    return intrinsic(plain_)


#: tiles of four rows (:func:`outer_tile`) and of eight (:func:`outer_tile8`: the same
#: arguments, ``nrows`` at most 8)
outer_tile = _outer_tile(TILE_ROWS)
#: :func:`outer_tile` with ``T`` (a 4 x 4 ``float64`` array, its entries ``T[l, r]`` for
#: ``l <= r`` read) applied to the tile's new rows before they are stored: row ``r`` stored
#: as ``sum_{l <= r} T[l, r] * new_l`` (every row of the tile: ``nrows`` must be 4;
#: ``float64`` only). The upper Cholesky factorisation's block rows, updated and solved
#: from their diagonal block's factor in one pass (:mod:`._triangular`)
outer_tile_solved = _outer_tile(TILE_ROWS, solved=True)
outer_tile8 = _outer_tile(_GRAM_ROWS)
_outer_tile2 = _outer_tile(2)


@kernel(fastmath=_FASTMATH)
def column_products_upper(Y, X, n, q, G, shift, alpha=1.0, accumulate=False, strict=True):
    """``G[i, j] = (G[i, j] if accumulate else 0) + alpha * Y[:n, i] . X[:n, j] + shift`` for
    ``i <= j < q``: the upper triangle of a symmetric product such as ``X' diag(w) X`` (with
    ``Y = diag(w) X``) or of the Gram matrix of ``X``'s columns (``Y = X``:
    :func:`column_gram_upper`). By :func:`outer_tile8` over the rows of ``Y`` and ``X``
    (tiles of eight rows by sixteen columns, on a grid from the first entry; a tile whose
    rows start at or past its second vector's first column computes that vector only, and
    so does a last column of tiles of at most eight columns). With ``strict`` the strict
    lower triangle is not touched (the tiles across the diagonal go through a small
    buffer); without, those tiles also write the entries below the diagonal in the
    diagonal's 8 x 8 blocks (entry ``[i, j]`` for ``j >= i - i % 8``,
    :data:`DIAGONAL_BLOCK`; for a symmetric product, the upper triangle's values), which is
    faster where the caller reads the upper triangle only or mirrors it: at ``q = 28`` (W3's
    multinomial Hessian blocks) four of the six tiles cross the diagonal, and the buffer
    made ``LogisticRegression``'s W3 fits 1.1 times as long. ``Y``, ``X`` and ``G`` are
    C-ordered 2-d arrays with unit column stride; ``Y`` and ``X`` of one type, ``float64`` or
    ``float32`` (its products summed in single precision), ``G`` of theirs or ``float64``.

    Columns of tiles in the outer loop, so that a column's strip of ``X`` (``n`` rows by
    sixteen) stays in the L1 cache while the row tiles above it stream. One thread: 162 x 77
    (a logistic Hessian) 17 us, 141 x 216 (a sphere's sample Gram at 12 mm) 112 us; with
    rows outer 17-18 and 130 us, four-row tiles 20-21 us at 162 x 77; the dot products of
    :func:`._rows.row_gram` 28-36 and 218 us; passes over blocks of 16-64 rows of ``X`` at a
    time were slower in both orders. The one-vector tiles leave 0.81 of the multiply-adds
    at ``q = 81-86`` (W1 10 mm's full spheres and the intercept), 0.92 at 76-79.

    The last one to four columns past the last full column of tiles (at W1 10 mm, 70% of the
    spheres have ``q = 82``: two) are tiles of their own, transposed: two or four columns of
    ``X`` times sixteen of ``Y`` at a time, instead of ``q / 8`` one-vector tiles of eight rows
    for those few columns. A binary logistic Hessian at 130 rows (the tiles and the rows'
    scaling, both versions alternated in one process): 0.86-0.94 of the time at ``q`` = 81-84,
    97, 98 and 145."""
    ldy = Y.strides[0] // Y.itemsize
    ldx = X.strides[0] // X.itemsize
    ldg = G.strides[0] // G.itemsize
    T = np.empty((_GRAM_ROWS if strict else 0, TILE_COLUMNS), G.dtype)
    tail = q % TILE_COLUMNS
    if tail > _TRANSPOSED_TAIL:
        tail = 0
    qt = q - tail
    if tail > 0:  # the last few columns in tiles of their own, transposed
        Tt = np.empty((TILE_ROWS, TILE_COLUMNS), G.dtype)
        for r0 in range(0, q, TILE_COLUMNS):
            width = min(TILE_COLUMNS, q - r0)
            # Tt[t, c] = X[:n, qt + t] . Y[:n, r0 + c], entry (r0 + c, qt + t) of the product
            if tail <= 2:
                _outer_tile2(X, qt, ldx, Y, r0, ldy, n, Tt, 0, TILE_COLUMNS, tail, width, 1.0, False)
            else:
                outer_tile(X, qt, ldx, Y, r0, ldy, n, Tt, 0, TILE_COLUMNS, tail, width, 1.0, False)
            for t in range(tail):
                c = qt + t
                # without strict, the entries below the diagonal in its block too
                last = c if strict else min(q - 1, c - c % DIAGONAL_BLOCK + DIAGONAL_BLOCK - 1)
                for r in range(r0, min(r0 + width, last + 1)):
                    base = G[r, c] if accumulate else 0.0
                    G[r, c] = base + alpha * Tt[t, r - r0] + shift
    for c0 in range(0, qt, TILE_COLUMNS):
        end = min(c0 + TILE_COLUMNS, qt)
        for r0 in range(0, end, _GRAM_ROWS):
            nrows = min(_GRAM_ROWS, qt - r0)
            # the tile's first column: its rows' entries left of r0 are below the diagonal
            first = c0 + _LANES if r0 >= c0 + _LANES else c0
            ncols = end - first
            if not strict or r0 + nrows - 1 <= first:  # no entry below the diagonal, or allowed
                outer_tile8(
                    Y, r0, ldy, X, first, ldx, n, G, r0 * ldg + first, ldg, nrows, ncols, alpha, accumulate
                )
                if shift != 0.0:
                    for a in range(nrows):
                        row = G[r0 + a]
                        for c in range(first, end):
                            row[c] += shift
                continue
            outer_tile8(Y, r0, ldy, X, first, ldx, n, T, 0, TILE_COLUMNS, nrows, ncols, 1.0, False)
            for a in range(nrows):
                row, t = G[r0 + a], T[a]
                for c in range(max(first, r0 + a), end):
                    base = row[c] if accumulate else 0.0
                    row[c] = base + alpha * t[c - first] + shift


@kernel(fastmath=_FASTMATH)
def column_gram_upper(X, n, q, G, shift, alpha=1.0, accumulate=False, strict=True):
    """``G[i, j] = (G[i, j] if accumulate else 0) + alpha * X[:n, i] . X[:n, j] + shift``
    for ``i <= j < q``: the Gram matrix of the leading block's columns, in the upper
    triangle of ``G`` (see :func:`column_products_upper`)."""
    column_products_upper(X, X, n, q, G, shift, alpha, accumulate, strict)


@kernel(fastmath=_FASTMATH)
def column_gram(X, G):
    """``G = X' X`` (both triangles) for the rows of ``X`` ``(k, d)`` and ``G`` ``(d, d)``:
    the upper triangle by :func:`column_gram_upper`, mirrored."""
    k, d = X.shape
    column_gram_upper(X, k, d, G, 0.0, 1.0, False, False)
    mirror_below_blocks(G, d)


@kernel(fastmath=_FASTMATH)
def mirror_below_blocks(G, d):
    """The lower triangle of ``G[:d, :d]`` below the diagonal's blocks, from its upper
    triangle: what :func:`column_products_upper` without ``strict`` leaves to mirror
    (:data:`DIAGONAL_BLOCK`)."""
    for r in range(DIAGONAL_BLOCK, d):
        row = G[r]
        for c in range(r - r % DIAGONAL_BLOCK):
            row[c] = G[c, r]
