"""Arrays shared with worker processes through memory-mapped files.

joblib memory-maps large arrays for its worker processes by writing them to a temporary
folder at every parallel call. Arrays that serve many calls (every batch of permutations) are
written once instead, here, and the workers map them by file name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class SharedFolder:
    """Objects (arrays, sparse matrices, dicts of them) written once to a temporary folder
    and memory-mapped back, so that worker processes map them by file name instead of
    receiving a copy per task; the folder is removed with this object."""

    def __init__(self, objects) -> None:
        import joblib

        objects = _without_scratch(objects)
        folder = tempfile.mkdtemp(prefix="fastsearchlight-", dir=_temp_root(_nbytes(objects)))
        self._finalizer = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        path = os.path.join(folder, "shared.pkl")
        joblib.dump(objects, path)
        #: the objects, memory-mapped back (arrays are read-only maps of the files)
        self.objects = joblib.load(path, mmap_mode="r")


def _without_scratch(objects):
    """The objects, with the per-thread work arrays that models keep in their state dicts
    (``"scratch"``, not picklable) left out."""
    return tuple(
        {k: v for k, v in obj.items() if k != "scratch"} if isinstance(obj, dict) else obj
        for obj in objects
    )


def _temp_root(nbytes: int = 0) -> str | None:
    """Shared memory when the system has it, with room for ``nbytes`` twice over (a
    container's /dev/shm is often 64 MB, and writing past its end kills the process),
    else the default temporary folder."""
    shm = "/dev/shm"
    if not (os.path.isdir(shm) and os.access(shm, os.W_OK)):
        return None
    return shm if shutil.disk_usage(shm).free >= 2 * nbytes else None


def _nbytes(obj) -> int:
    """Bytes of the arrays (and sparse matrices) in ``obj``, a nest of tuples, lists and
    dicts."""
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(v) for v in obj)
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if hasattr(obj, "data") and hasattr(obj, "indices"):  # scipy.sparse compressed
        return int(obj.data.nbytes + obj.indices.nbytes + obj.indptr.nbytes)
    return sum(_nbytes(v) for v in vars(obj).values()) if hasattr(obj, "__dict__") else 0


def shared_empty(shape: tuple, dtype=float) -> np.memmap:
    """A writable array in a memory-mapped temporary file, removed (with its folder) when
    the array and all its views are garbage collected. Worker processes map it by name
    (joblib passes memory-mapped arrays by reference)."""
    import numpy as np

    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    folder = tempfile.mkdtemp(prefix="fastsearchlight-", dir=_temp_root(nbytes))
    try:
        array = np.memmap(os.path.join(folder, "data.dat"), dtype=dtype, mode="w+", shape=shape)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(array, shutil.rmtree, folder, ignore_errors=True)
    return array


def empty_small_pages(shape: tuple, dtype=float) -> np.ndarray:
    """An uninitialised array in anonymous memory that the kernel backs with ordinary pages.

    numpy asks for transparent huge pages on large arrays; where the kernel then compacts
    memory to find them on first touch (``defrag=madvise``, a common default), writing a
    fresh array of tens of MB can take three times as long, in about half of fresh processes
    (measured here: 0.07 s or 0.22 s for the 76 MB of masked data). Arrays written once
    and read many times lose nothing to ordinary pages.
    """
    import mmap

    import numpy as np

    dtype = np.dtype(dtype)
    nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
    buffer = mmap.mmap(-1, nbytes)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        try:
            buffer.madvise(mmap.MADV_NOHUGEPAGE)
        except OSError:  # pragma: no cover - a kernel without transparent huge pages
            pass
    return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
