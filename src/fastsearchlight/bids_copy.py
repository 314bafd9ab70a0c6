"""A BIDS copy of a data set given as one 4D file and a labels table (one row per volume).

:func:`write_bids_copy` splits the images into one file per run and writes, per run, the
``*_events.tsv`` of its blocks (consecutive volumes of one label become one event, from the
first volume's time for as many repetition times as volumes) and a ``*_bold.json`` sidecar
with the repetition time. ``fastsearchlight run --bids`` then reads back the same volumes
with the same labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .io import InputError, atomic_path, read_labels, save_img

__all__ = ["label_events", "write_bids_copy"]


def label_events(labels, t_r: float) -> pd.DataFrame:
    """Events of one run's volume labels: one per block of consecutive volumes of one label.

    Parameters
    ----------
    labels : sequence of str
        The label of each volume of the run.
    t_r : float
        Repetition time in seconds.

    Returns
    -------
    pandas.DataFrame
        Columns ``onset``, ``duration`` (seconds) and ``trial_type``.
    """
    labels = np.asarray(labels).astype(str)
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    ends = np.r_[starts[1:], labels.size]
    return pd.DataFrame(
        {"onset": starts * float(t_r), "duration": (ends - starts) * float(t_r), "trial_type": labels[starts]}
    )


def write_bids_copy(func, labels, out_dir, *, subject: str = "01", task: str = "objects",
                    label_column: str = "labels", group_column: str = "chunks",
                    t_r: float | None = None) -> Path:  # fmt: skip
    """Write ``func`` and its labels table as a BIDS dataset (one subject, one task).

    Parameters
    ----------
    func : path-like
        4D functional images, the runs one after the other.
    labels : path-like
        Labels table, one row per volume, with the label and run columns.
    out_dir : path-like
        The dataset's folder (created).
    subject, task : str
        BIDS labels of the subject and the task.
    label_column, group_column : str
        Columns of the labels table holding each volume's condition and run.
    t_r : float or None
        Repetition time in seconds (default: the images' header).

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    img = nib.load(func)
    table = read_labels(labels, label_column=label_column, group_column=group_column)
    if len(table) != img.shape[3]:
        raise InputError(f"labels table has {len(table)} rows but the images have {img.shape[3]} volumes")
    t_r = float(t_r if t_r is not None else img.header.get_zooms()[3])
    if not t_r > 0:
        raise InputError("no repetition time in the images' header: give t_r")
    out = Path(out_dir)
    func_dir = out / f"sub-{subject}" / "func"
    func_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "dataset_description.json") as tmp:
        tmp.write_text(
            json.dumps({"Name": f"BIDS copy of {Path(func).name}", "BIDSVersion": "1.8.0"}, indent=2)
        )
    runs = table[group_column].to_numpy()
    data = img.dataobj
    for k, run in enumerate(pd.unique(runs)):
        idx = np.flatnonzero(runs == run)
        if np.any(np.diff(idx) != 1):
            raise InputError(f"the volumes of run {run} are not consecutive")
        stem = func_dir / f"sub-{subject}_task-{task}_run-{k + 1:02d}"
        run_img = nib.Nifti1Image(np.asarray(data[..., idx[0] : idx[-1] + 1]), img.affine, img.header)
        save_img(run_img, Path(f"{stem}_bold.nii.gz"))
        with atomic_path(Path(f"{stem}_bold.json")) as tmp:
            tmp.write_text(json.dumps({"RepetitionTime": t_r, "TaskName": task}, indent=2))
        events = label_events(table[label_column].to_numpy()[idx], t_r)
        with atomic_path(Path(f"{stem}_events.tsv")) as tmp:
            events.to_csv(tmp, sep="\t", index=False)
    return out
