"""Null score maps, one row per permutation, in memory or in a resumable checkpoint file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["NULL_DTYPE", "NullStore", "fingerprint"]

#: precision of stored null scores: the observed scores' own
NULL_DTYPE = np.float64


class NullStore:
    """Null score maps, one row per permutation, filled in any order.

    In memory by default; with ``path``, a memory-mapped file plus a small JSON record of
    the analysis' fingerprint and of the rows done, so that an interrupted run resumes.

    Parameters
    ----------
    n_permutations, n_spheres : int
    fingerprint : str
        Identifies the analysis (data, labels, parameters, seed); a checkpoint made for
        another analysis is refused.
    path : path-like or None
        Checkpoint file (``.npy`` data) — a ``.json`` record is kept beside it.
    """

    def __init__(self, n_permutations: int, n_spheres: int, fingerprint: str, path=None):
        self.n_permutations = n_permutations
        self.n_spheres = n_spheres
        self.fingerprint = fingerprint
        self.path = Path(path) if path is not None else None
        shape = (n_permutations, n_spheres)
        if self.path is None:
            self.scores = np.zeros(shape, dtype=NULL_DTYPE)
            self.done = np.zeros(n_permutations, dtype=bool)
            return
        self.record = self.path.with_suffix(".json")
        if self.path.exists() and self.record.exists():
            try:
                info = json.loads(self.record.read_text())
                scores = np.load(self.path, mmap_mode="r+")
            except (ValueError, OSError, EOFError) as exc:
                raise ValueError(
                    f"The checkpoint {self.path} (or its record {self.record.name}) cannot be "
                    f"read ({exc}): delete both files to start the permutations again."
                ) from None
            if info.get("dtype") != np.dtype(NULL_DTYPE).name or scores.dtype != NULL_DTYPE:
                raise ValueError(
                    f"The checkpoint {self.path} was written by an older version (null scores "
                    f"in {scores.dtype}): delete it to start the permutations again."
                )
            if info.get("fingerprint") != fingerprint or tuple(info.get("shape", ())) != shape:
                raise ValueError(
                    f"The checkpoint {self.path} belongs to another analysis (other data, labels, "
                    "parameters or seed): delete it or choose another checkpoint path."
                )
            self.scores = scores
            self.done = np.zeros(n_permutations, dtype=bool)
            self.done[info["done"]] = True
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.scores = np.lib.format.open_memmap(self.path, mode="w+", dtype=NULL_DTYPE, shape=shape)
            self.done = np.zeros(n_permutations, dtype=bool)
            self._save_record()

    def _save_record(self):
        tmp = self.record.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({
            "fingerprint": self.fingerprint,
            "dtype": np.dtype(NULL_DTYPE).name,
            "shape": [self.n_permutations, self.n_spheres],
            "done": np.flatnonzero(self.done).tolist(),
        }))  # fmt: skip
        os.replace(tmp, self.record)

    def write(self, rows: np.ndarray, scores: np.ndarray) -> None:
        """Store the null maps of permutations ``rows`` (data first, then the record)."""
        self.scores[rows] = scores
        self.done[rows] = True
        if self.path is not None:
            self.scores.flush()
            self._save_record()

    def remove(self) -> None:
        """Delete the checkpoint files (after a completed run)."""
        if self.path is not None:
            del self.scores
            for f in (self.path, self.record):
                if f.exists():
                    f.unlink()


def fingerprint(*parts) -> str:
    """A hash of arrays and values that identifies an analysis.

    An array's memory is hashed where it lies, in C or Fortran order (a transposed view of
    the voxel-major data, as the searchlight holds it), without a copy; the same values in
    the other order hash differently.
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode())
            h.update(str(part.shape).encode())
            if part.size and part.flags.c_contiguous:
                h.update(memoryview(part).cast("B"))
            elif part.size and part.flags.f_contiguous:
                h.update(b"F")
                h.update(memoryview(part.T).cast("B"))
            else:
                h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()
