"""Index arrays built once per fit, without transparent huge pages.

numpy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every array of
4 MB or more. On a virtual machine whose memory the host backs page by page on first use,
the first touch of such a 2 MB page can cost milliseconds: the host backs all of it at once.
The spheres' voxel lists and the blocks' index arrays are tens of MB of such fresh memory,
each written once in a single pass, so they gain nothing from huge pages and pay for them.
On the development machine (a 2-core virtual machine, ``madvise`` mode), whole-brain
``RidgeClassifierCV`` fits of W1 at 10 mm in fresh processes took 4.57-4.74 s with
:func:`without_huge_pages` around the spheres and the blocks, against 5.12-5.44 s without it
(building the spheres 0.03 s against 0.2-0.6 s, planning the blocks 0.02 s against 0.36 s).

The data arrays that the kernels read again and again keep numpy's default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["without_huge_pages"]


def _switch():
    """numpy's (private) switch of its huge-page advice, or None where numpy has none."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, "_set_madvise_hugepage", None)


@contextmanager
def without_huge_pages() -> Iterator[None]:
    """Within this scope numpy does not advise huge pages for the arrays it allocates; the
    setting before is restored on leaving. Arrays keep the pages they were given.

    The switch is numpy's, for the whole process: used around single-threaded steps of a fit
    (no kernel threads running), it changes only how fast memory is handed out, never a
    result.
    """
    switch = _switch()
    if switch is None:
        yield
        return
    before = switch(False)
    try:
        yield
    finally:
        switch(before)
