"""Arrays shared with worker processes through memory-mapped files.

joblib memory-maps large arrays for its worker processes by writing them to a temporary
folder at every parallel call. Arrays that serve many calls (every batch of permutations) are
written once instead, here, and the workers map them by file name.

Nothing outlives the process that made it, even when that process is killed (SIGKILL from
the out-of-memory killer, SIGTERM at a job's walltime), when no finaliser runs:

- the folders are named after the process that made them (``fastsearchlight-<pid>-*``);
  folders of processes that no longer run are removed whenever a new one is made;
- worker processes watch their parent (:func:`exit_with_parent`): when it is gone, they
  remove its temporary files (ours, joblib's memory-mapping folders and loky's semaphores)
  and exit, and loky's resource trackers, left without a client, exit after them.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class SharedFolder:
    """Objects (arrays, sparse matrices, dicts of them) written once to a temporary folder
    and memory-mapped back, so that worker processes map them by file name instead of
    receiving a copy per task; the folder is removed with this object.

    An array given as an ndarray subclass (such as the voxel-major view) is stored as a
    plain array: joblib passes memory maps to workers by file name, but pickles a subclass
    by value, a copy per task."""

    def __init__(self, objects) -> None:
        import joblib
        import numpy as np

        objects = tuple(
            obj.view(np.ndarray) if isinstance(obj, np.ndarray) and type(obj) is not np.ndarray else obj
            for obj in objects
        )
        folder = _make_folder(_nbytes(objects))
        self._finalizer = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        path = os.path.join(folder, "shared.pkl")
        joblib.dump(objects, path)
        #: the objects, memory-mapped back (arrays are read-only maps of the files)
        self.objects = joblib.load(path, mmap_mode="r")


#: prefix of this package's temporary folders, followed by the pid of the process that owns them
PREFIX = "fastsearchlight-"


def _make_folder(nbytes: int) -> str:
    """A new temporary folder owned by this process (stale ones of dead processes removed)."""
    remove_stale_folders()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=_temp_root(nbytes))


def _roots() -> list[str]:
    roots = [tempfile.gettempdir()]
    if os.path.isdir("/dev/shm"):
        roots.append("/dev/shm")
    return roots


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_folders() -> list[str]:
    """Remove this package's temporary folders whose owning process no longer runs.

    Returns the folders removed.
    """
    removed = []
    for root in _roots():
        for path in glob.glob(os.path.join(root, PREFIX + "*")):
            pid = os.path.basename(path)[len(PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def remove_files_of(pid: int) -> None:
    """Remove the temporary files that process ``pid`` and its joblib/loky workers made:
    this package's folders, joblib's memory-mapping folders, loky's named semaphores."""
    patterns = (f"{PREFIX}{pid}-*", f"joblib_memmapping_folder_{pid}_*", f"sem.loky-{pid}-*")
    for root in _roots():
        for pattern in patterns:
            for path in glob.glob(os.path.join(root, pattern)):
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass


_WATCHED: list[int] = []


def exit_with_parent(interval: float = 0.5) -> None:
    """In a loky worker process: exit when the parent process is gone, after removing its
    temporary files. Called at the start of every task; watches once per process.

    loky keeps its workers alive between calls; killed by a signal, the parent can neither
    stop them nor remove the files it shares with them. A daemon thread notices the new
    parent (the process is re-parented when its parent dies) within ``interval`` seconds.
    Outside loky workers (the main process, dask workers), nothing happens.
    """
    import multiprocessing

    if _WATCHED or not multiprocessing.current_process().name.startswith("LokyProcess"):
        return
    parent = os.getppid()
    _WATCHED.append(parent)

    def watch():
        import time

        while os.getppid() == parent:
            time.sleep(interval)
        remove_files_of(parent)
        os._exit(1)

    threading.Thread(target=watch, name="fastsearchlight-parent-watch", daemon=True).start()


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
    folder = _make_folder(nbytes)
    try:
        array = np.memmap(os.path.join(folder, "data.dat"), dtype=dtype, mode="w+", shape=shape)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(array, shutil.rmtree, folder, ignore_errors=True)
    return array
