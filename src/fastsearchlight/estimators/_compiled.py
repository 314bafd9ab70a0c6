"""The compiling options shared by every kernel of the estimators.

``@kernel(...)`` is numba's ``njit`` with two options fixed:

- ``cache=True``: compiled once after installation and loaded from numba's disk cache by
  later processes (numba falls back to the user's cache folder when the package's is
  read-only);
- ``error_model="numpy"``: a float division by zero gives an infinity or NaN, as in numpy,
  instead of numba's default (Python's) check of every divisor, a compare and a branch per
  division that keeps LLVM from vectorising the loops that divide (stop 77: 0.962-0.995 of
  the logistic and svc kernels' time). No kernel relies on ``ZeroDivisionError``.

Other options (``nogil``, ``fastmath``, ``inline``) are given per kernel.
``tests/estimators/test_compiled_options.py`` checks every kernel of the folder.
"""

from __future__ import annotations

from functools import partial

from numba import njit

__all__ = ["kernel"]

kernel = partial(njit, cache=True, error_model="numpy")
