"""Large work arrays reused by the blocks of one computation instead of allocated afresh.

A block's outputs can be tens or hundreds of MB (svc with a batch of 32 permutations of the
Haxby-sized volume: every problem's decisions on every sample, 153 MB for a block of 726
spheres). The C library hands such arrays out as fresh memory maps (glibc's allocator maps
anything above 32 MB afresh and unmaps it on release), so each block pays a page fault for
every 4 KB it writes, and the kernel zeroes each page first. In a virtual machine that costs
0.1 to 1 s per GB written (measured on the development machine), against 0.025 s per GB to
write memory the process already holds: a quarter of the CPU time of 100 svc permutations
of that volume went to page faults.

Within :func:`reused_work_arrays` (entered by :func:`~fastsearchlight.core.compute_scores`
around one computation, and by the sphere sums' tasks in worker processes),
:func:`work_array` gives each thread one array per name, grown as needed and reused by the
thread's later blocks; on leaving, every thread's arrays are released. Outside it (other
callers, the blocks' tasks in worker processes) it returns a fresh array, as ``np.empty``.
Users: svc's decisions and weights of a block, naive Bayes's per-voxel terms.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

__all__ = ["reused_work_arrays", "work_array"]

_lock = threading.Lock()
_local = threading.local()
#: computations in progress that reuse work arrays, and the generation of the current ones
_state = {"active": 0, "generation": 0}
#: every thread's arrays of the current generation, released together
_owners: list[dict] = []


@contextmanager
def reused_work_arrays() -> Iterator[None]:
    """Reuse work arrays across the blocks computed inside (in any thread of the process);
    release them all when the last such computation ends."""
    with _lock:
        _state["active"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["active"] -= 1
            if _state["active"] == 0:
                for arrays in _owners:
                    arrays.clear()
                _owners.clear()
                _state["generation"] += 1


def work_array(name: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape``: the calling thread's array ``name``
    (a view of its first elements) inside :func:`reused_work_arrays`, else a new one.

    The caller must be done with the array before it asks for ``name`` again in the same
    thread.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    with _lock:
        if not _state["active"]:
            return np.empty(shape, dtype)
        generation = _state["generation"]
        if getattr(_local, "generation", None) != generation:
            _local.arrays, _local.generation = {}, generation
            _owners.append(_local.arrays)
    arrays = _local.arrays
    buffer = arrays.get(name)
    if buffer is None or buffer.dtype != dtype or buffer.size < size:
        buffer = arrays[name] = np.empty(size, dtype)
    return buffer[:size].reshape(shape)
