"""Memory without transparent huge pages, for a fit's fresh arrays.

numpy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every array of
4 MB or more. On a virtual machine whose memory the host backs page by page on first use,
the first touch of such a 2 MB page can cost milliseconds: the host backs all of it at once.
A fit writes many such fresh arrays once or a few times: the spheres' voxel lists, the
blocks' index arrays, the sphere sums' products and per-voxel terms, the blocks' outputs.
On the development machine (a 2-core virtual machine, ``madvise`` mode), first fits in
fresh processes with the advice on and off (same scores):

- ``RidgeClassifierCV``, W1 at 10 mm: 5.08-5.20 s against 4.53-4.56 s (the spheres 0.54-0.59
  against 0.03 s, the blocks' planning 0.36 against 0.02 s);
- naive Bayes, W1 at 10 mm: 2.50-2.85 s against 0.67-0.69 s; on W3 19.5-20.2 against
  4.5-4.6 s.

Two ways, for two kinds of array:

- :func:`empty_small_pages`: an array of our own (the masked data) in a private mapping
  advised against huge pages;
- :func:`without_huge_pages`: a scope for the arrays numpy allocates itself (the results
  and temporaries of fancy indexing, of sparse products), by numpy's own switch: around the
  spheres' construction, :func:`~fastsearchlight.core.compute_scores` and the RSA
  searchlight's preparation and RDMs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["empty_small_pages", "without_huge_pages"]


def _switch():
    """numpy's (private) switch of its huge-page advice, or None where numpy has none."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, "_set_madvise_hugepage", None)


#: scopes open now (in any thread), and numpy's setting before the first of them
_lock = threading.Lock()
_open = 0
_before = True


@contextmanager
def without_huge_pages() -> Iterator[None]:
    """Within this scope numpy does not advise huge pages for the arrays it allocates.
    Arrays keep the pages they were given.

    The switch is numpy's, for the whole process, so scopes are counted: the first to open
    (in any thread) turns the advice off, the last to close restores the setting found by
    the first, whatever the order in which overlapping scopes of several threads close. It
    changes only how fast memory is handed out, never a result.
    """
    global _open, _before
    switch = _switch()
    if switch is None:
        yield
        return
    with _lock:
        if _open == 0:
            _before = switch(False)
        _open += 1
    try:
        yield
    finally:
        with _lock:
            _open -= 1
            if _open == 0:
                switch(_before)


def empty_small_pages(shape: tuple, dtype=float) -> np.ndarray:
    """An uninitialised array in anonymous memory that the kernel backs with ordinary pages.

    numpy asks for transparent huge pages on large arrays; where the kernel then compacts
    memory to find them on first touch (``defrag=madvise``, a common default), writing a
    fresh array of tens of MB can take three times as long, in about half of fresh processes
    (measured here: 0.07 s or 0.22 s for the 76 MB of masked data). Arrays written once
    and read many times lose nothing to ordinary pages. The mapping is private to the
    process: a shared one is backed by the kernel's shared memory, whose first touches cost
    more (masking W2's 523 MB: 0.67-0.78 s against 0.77-1.04 s, three fresh processes each).
    """
    import mmap

    import numpy as np

    dtype = np.dtype(dtype)
    nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
    if hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS"):
        buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    else:  # pragma: no cover - Windows: no such flags there
        buffer = mmap.mmap(-1, nbytes)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        try:
            buffer.madvise(mmap.MADV_NOHUGEPAGE)
        except OSError:  # pragma: no cover - a kernel without transparent huge pages
            pass
    return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
