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

        folder = tempfile.mkdtemp(prefix="fastsearchlight-", dir=_temp_root())
        self._finalizer = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        path = os.path.join(folder, "shared.pkl")
        joblib.dump(_without_scratch(objects), path)
        #: the objects, memory-mapped back (arrays are read-only maps of the files)
        self.objects = joblib.load(path, mmap_mode="r")


def _without_scratch(objects):
    """The objects, with the per-thread work arrays that models keep in their state dicts
    (``"scratch"``, not picklable) left out."""
    return tuple(
        {k: v for k, v in obj.items() if k != "scratch"} if isinstance(obj, dict) else obj
        for obj in objects
    )


def _temp_root() -> str | None:
    """Shared memory when the system has it (as joblib), else the default temporary folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def shared_empty(shape: tuple, dtype=float) -> np.memmap:
    """A writable array in a memory-mapped temporary file, removed (with its folder) when
    the array and all its views are garbage collected. Worker processes map it by name
    (joblib passes memory-mapped arrays by reference)."""
    import numpy as np

    folder = tempfile.mkdtemp(prefix="fastsearchlight-", dir=_temp_root())
    try:
        array = np.memmap(os.path.join(folder, "data.dat"), dtype=dtype, mode="w+", shape=shape)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(array, shutil.rmtree, folder, ignore_errors=True)
    return array
