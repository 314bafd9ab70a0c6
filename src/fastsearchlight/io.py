"""Files in and out: label tables, and output files written atomically, never overwritten silently."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .shared import pid_alive

__all__ = [
    "LOCK_NAME",
    "InputError",
    "atomic_path",
    "check_outputs",
    "output_folder",
    "read_labels",
    "save_img",
    "save_json",
    "save_table",
    "select_conditions",
    "staged_outputs",
]


class InputError(ValueError):
    """Bad input named in one line (a missing file, an unknown column or condition...)."""


# --------------------------------------------------------------------------- label tables
def read_labels(path, *, label_column: str = "labels", group_column: str | None = "chunks") -> pd.DataFrame:
    """Read a table of one row per volume.

    Accepts the Haxby layout (space-separated, header ``labels chunks``), tab-separated (.tsv)
    and comma-separated (.csv) tables with named columns.

    Parameters
    ----------
    path : path-like
    label_column : str
        Column holding each volume's condition.
    group_column : str or None
        Column holding each volume's run (group); None if there is none.

    Returns
    -------
    pandas.DataFrame
        The table, columns as read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file not found: {path}")
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix == ".csv":
        table = pd.read_csv(path)
    elif suffix == ".tsv":
        table = pd.read_csv(path, sep="\t")
    else:  # the Haxby layout, or any whitespace-separated table
        table = pd.read_csv(path, sep=r"\s+", engine="python")
    if table.empty:
        raise InputError(f"labels file {path} holds no rows")
    for name, column in (("label", label_column), ("group", group_column)):
        if column is not None and column not in table.columns:
            hint = ""
            if {"onset", "duration"} <= set(table.columns):
                hint = (
                    ": this looks like a BIDS events file; give the dataset with --bids DIR --subject S "
                    "--task T, or a table of one row per volume"
                )
            raise InputError(
                f"{name} column {column!r} not in {path.name} (columns: {', '.join(map(str, table.columns))}){hint}"
            )
    return table


def select_conditions(table: pd.DataFrame, conditions, *, label_column: str = "labels") -> np.ndarray:
    """Boolean mask of the volumes whose condition is one of ``conditions`` (None: all)."""
    labels = table[label_column].astype(str).to_numpy()
    if conditions is None or len(conditions) == 0:
        return np.ones(len(labels), dtype=bool)
    conditions = [str(c) for c in conditions]
    present = set(labels)
    unknown = [c for c in conditions if c not in present]
    if unknown:
        raise InputError(
            f"unknown condition(s) {', '.join(unknown)}; the labels hold: {', '.join(sorted(present))}"
        )
    if len(set(conditions)) < 2:
        raise InputError("give at least two different conditions to decode")
    return np.isin(labels, conditions)


# --------------------------------------------------------------------------- output files
def check_outputs(out_dir, names, *, force: bool = False) -> Path:
    """Create ``out_dir`` and make sure none of ``names`` exists in it unless ``force``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if not force:
        existing = [n for n in names if (out / n).exists()]
        if existing:
            raise InputError(
                f"{out / existing[0]} exists ({len(existing)} output file(s) would be "
                "overwritten); use --force to overwrite"
            )
    return out


LOCK_NAME = ".fastsearchlight.lock"


def _umask() -> int:
    """The process's file-creation mask (read without changing it where the system says it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _take_lock(folder: Path) -> Path:
    """Create ``folder``'s lock file holding this process's id; take over a stale one."""
    lock = folder / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip())
            except (OSError, ValueError):
                pid = None
            if pid is not None and pid_alive(pid):
                raise InputError(
                    f"{folder} is being written by another fastsearchlight run (process {pid}): "
                    "wait for it to finish or choose another output folder"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return lock
    raise InputError(f"could not lock the output folder {folder}: remove {lock} if no run uses it")


@contextlib.contextmanager
def output_folder(out_dir, names, *, force: bool = False):
    """The output folder of one analysis, locked while the analysis writes into it.

    Creates ``out_dir`` (see :func:`check_outputs`) and a lock file in it holding this
    process's id, so that two analyses never write into one folder at once (the lock of a
    process that no longer runs is taken over). On leaving, the lock is removed and, when
    the analysis failed, the folders it created are removed again if they hold nothing.
    """
    out = Path(out_dir)
    created = []
    parent = out.absolute()
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    ok = False
    lock = None
    try:
        out = check_outputs(out, names, force=force)
        lock = _take_lock(out)
        yield out
        ok = True
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)
        if not ok:
            for folder in created:  # deepest first
                try:
                    folder.rmdir()
                except OSError:  # not empty (a checkpoint to resume from), or gone
                    break


@contextlib.contextmanager
def staged_outputs(out: Path, names: Iterable[str]) -> Iterator[Path]:
    """Yield a staging folder inside the locked output folder ``out``; on success, move
    every file of ``names`` from it into ``out``.

    Whatever happens, the staging folder is removed: an interrupted analysis leaves no
    half-written file under a final name.

    Parameters
    ----------
    out : pathlib.Path
        The output folder (see :func:`output_folder`).
    names : iterable of str
        The files the analysis writes into the staging folder.
    """
    staging = Path(tempfile.mkdtemp(prefix=".fastsearchlight-", dir=out))
    try:
        yield staging
        for name in names:
            (staging / name).replace(Path(out) / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path, *, force: bool = True, sync: bool = False):
    """Yield a temporary path beside ``path``; move it to ``path`` only on success.

    An interruption or error leaves no file under the final name (and no temporary file).
    With ``sync``, the file's data are flushed to disk before it is moved.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; use --force to overwrite")
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would survive the move
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if sync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_img(img, path, *, force: bool = True) -> Path:
    """Save a NIfTI image atomically."""
    import nibabel as nib

    with atomic_path(path, force=force) as tmp:
        nib.save(img, tmp)
    return Path(path)


def save_json(obj, path, *, force: bool = True) -> Path:
    """Save JSON atomically (numpy scalars and arrays converted)."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        return str(o)

    with atomic_path(path, force=force) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=default) + "\n")
    return Path(path)


def save_table(table: pd.DataFrame, path, *, force: bool = True) -> Path:
    """Save a tab-separated table atomically."""
    with atomic_path(path, force=force) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return Path(path)
