"""A study's null maps as outputs: what prevalence inference reads back from a study folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import InputError, atomic_path

#: the null maps (permutations x spheres, float64) and what the group level's prevalence
#: inference needs beside them (observed scores in float64, process mask, affine)
NULL_SCORES = "null_scores.npy"
PERMUTATION_RECORD = "permutation_record.npz"


def save_permutation_record(sl, path) -> None:
    """What a subject's null maps need to be read back: observed scores (float64), the
    process mask (the spheres' order), the affine, and how the permutations were made.

    Parameters
    ----------
    sl : SearchLight
        Fitted with permutations.
    path : path-like
        The ``.npz`` file to write (atomically).
    """
    info = sl.permutation_info_
    with atomic_path(path, force=True) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh, observed=sl.masked_scores_, process_mask=sl.process_mask_,
            affine=sl.scores_img_.affine, exhaustive=bool(info["all arrangements enumerated"]),
            permute=str(info["scheme"]),
        )  # fmt: skip


def load_permutation_record(folder) -> dict:
    """A study folder's observed scores and null maps (memory-mapped), as saved by a study
    with permutations.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    dict
        ``observed``, ``process_mask``, ``affine``, ``exhaustive``, ``permute`` and ``null``.

    Raises
    ------
    InputError
        Naming what is missing or unreadable.
    """
    folder = Path(folder)
    paths = folder / PERMUTATION_RECORD, folder / NULL_SCORES
    for p in paths:
        if not p.is_file():
            raise InputError(
                f"{p} not found: run the subject's study with --permutations to keep its null maps"
            )
    try:
        with np.load(paths[0]) as rec:
            record = {k: rec[k] for k in rec.files}
        null = np.load(paths[1], mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"could not read the null maps in {folder}: {exc}") from None
    n_spheres = int(record["process_mask"].sum())
    if null.ndim != 2 or null.shape[1] != n_spheres or record["observed"].shape != (n_spheres,):
        raise InputError(f"the null maps in {folder} do not match its process mask")
    record["null"] = null
    record["exhaustive"] = bool(record["exhaustive"])
    return record
