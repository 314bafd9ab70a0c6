"""``exp``, ``log1p`` and ``log`` that LLVM vectorises, for the logistic kernels' losses.

The binary logistic loss of a trial point costs one ``exp(-|z|)`` and one ``log1p`` of it
per training sample. numba calls the C library's scalar functions for those, one sample
at a time (about 11 ns per sample on an Emerald Rapids core: 1.8-2.0 us for 162 samples,
8-10% of a ``LogisticRegression`` fit's profile). Written as polynomials in compiled code
(:func:`exp_nonpositive`, :func:`log1p_unit`), the loop over the samples is vectorised:
0.48 us for the same 162 samples. The multinomial model's softmax trial takes the same
``exp`` and :func:`log_normal` for its normalisers, class by class along the samples (0.27
against 2.0 us at 28 samples and 4 classes).

- :func:`exp_nonpositive` (``x <= 0``): ``x = k ln 2 + r`` with ``|r| <= ln 2 / 2`` (``ln 2``
  in two parts, so that ``r`` is exact to rounding), ``exp(r)`` by its Taylor polynomial of
  degree 13 (truncation below ``2e-17`` relative), scaled by ``2^k`` from the exponent bits
  (:func:`_pow2`). 0 below ``-708`` (where the C library's result is below ``3.3e-308``).
- :func:`log1p_unit` (``0 <= e <= 1``): ``log(1 + e) = 2 atanh(s)`` with
  ``s = e / (2 + e) <= 1/3``, by the series ``2 s sum_j s^(2j) / (2j + 1)`` to ``j = 17``
  (truncation below ``1e-18`` relative).
- :func:`log_normal` (a positive normal ``x``, for the softmax's normaliser): ``x = 2^k m``
  with ``m`` in ``[sqrt(1/2), sqrt(2)]`` from the bits of ``x``, then ``log(m) = 2 atanh(s)``
  with ``s = (m - 1) / (m + 1)`` (``|s| <= 0.172``; ``m - 1`` is exact) by the same series,
  plus ``k ln 2`` in two parts.

Within 1 (``exp``), 3 (``log1p``) and 2 (``log``) units in the last place of the C
library's results (``tests/estimators/test_vector_math.py``). The divisions go through :func:`divide`, which
omits numba's zero-division check (a branch that stops the vectorisation); the
denominators here are at least 1.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._compiled import kernel

__all__ = ["divide", "exp_nonpositive", "log1p_unit", "log_normal"]

_LN2_HI = 6.93147180369123816490e-01  # ln 2's leading bits (its last 32 bits zero)
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_LOG2E = 1.44269504088896338700e00
_SQRT2 = 1.41421356237309514547e00
_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000  # the bits of 1.0
#: below this, exp is 0 here (the C library's results there are below 3.3e-308)
_EXP_FLOOR = -708.0


@intrinsic
def divide(typingctx, a, b):
    """``a / b`` for ``float64`` values in compiled code, without numba's zero-division check
    (IEEE's result: an infinity or NaN)."""

    def codegen(context, builder, signature, args):
        return builder.fdiv(args[0], args[1])

    return types.float64(types.float64, types.float64), codegen


@intrinsic
def _pow2(typingctx, k):
    """``2.0 ** k`` for an ``int64`` ``k`` in [-1022, 1023], from its exponent bits."""

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        bits = builder.shl(builder.add(args[0], ir.Constant(i64, 1023)), ir.Constant(i64, 52))
        return builder.bitcast(bits, ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits(typingctx, x):
    """The bits of a ``float64`` as an ``int64``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, b):
    """The ``float64`` of the bits in an ``int64``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@kernel(fastmath={"contract"}, inline="always")
def exp_nonpositive(x):
    """``exp(x)`` for ``x <= 0`` (0 below -708); see the module's docstring."""
    inside = x >= _EXP_FLOOR
    x = x if inside else _EXP_FLOOR
    k = math.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _pow2(np.int64(k)) if inside else 0.0


@kernel(fastmath={"contract"}, inline="always")
def _two_atanh(s):
    """``2 atanh(s) = log((1 + s) / (1 - s))`` for ``|s| <= 1/3``, by the series
    ``2 s sum_j s^(2j) / (2j + 1)`` to ``j = 17`` (truncation below ``1e-18`` relative)."""
    t = s * s
    p = 1.0 / 35.0
    p = p * t + 1.0 / 33.0
    p = p * t + 1.0 / 31.0
    p = p * t + 1.0 / 29.0
    p = p * t + 1.0 / 27.0
    p = p * t + 1.0 / 25.0
    p = p * t + 1.0 / 23.0
    p = p * t + 1.0 / 21.0
    p = p * t + 1.0 / 19.0
    p = p * t + 1.0 / 17.0
    p = p * t + 1.0 / 15.0
    p = p * t + 1.0 / 13.0
    p = p * t + 1.0 / 11.0
    p = p * t + 1.0 / 9.0
    p = p * t + 1.0 / 7.0
    p = p * t + 1.0 / 5.0
    p = p * t + 1.0 / 3.0
    return 2.0 * s + 2.0 * s * (p * t)


@kernel(fastmath={"contract"}, inline="always")
def log1p_unit(e):
    """``log(1 + e)`` for ``0 <= e <= 1``; see the module's docstring."""
    return _two_atanh(divide(e, 2.0 + e))


@kernel(fastmath={"contract"}, inline="always")
def log_normal(x):
    """``log(x)`` for a positive, finite, normal ``x``; see the module's docstring."""
    b = _bits(x)
    k = (b >> 52) - 1023
    m = _from_bits((b & _MANTISSA) | _ONE_BITS)  # in [1, 2)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    k = k + 1 if big else k
    kf = np.float64(k)
    return kf * _LN2_HI + (_two_atanh(divide(m - 1.0, m + 1.0)) + kf * _LN2_LO)
