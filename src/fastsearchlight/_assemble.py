"""The samples a study analyses, from any source (a 4D file and a labels table, a BIDS
dataset's volumes or beta maps): labels selected, masks on the grid, volumes cleaned run by
run, the splitter chosen."""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from .cleaning import Cleaning, clean_runs
from .io import InputError, select_conditions

__all__ = ["assemble_inputs", "labelled_selection"]


def labelled_selection(labels: np.ndarray, conditions) -> np.ndarray:
    """Which samples are analysed: labelled (not None) and of one of ``conditions`` (None: all)."""
    labels = np.asarray(labels, dtype=object)
    labelled = np.array(
        [v is not None and not (isinstance(v, float) and np.isnan(v)) for v in labels], dtype=bool
    )
    if not labelled.any():
        raise InputError("no volume lies in any event: check the events' onsets, or --shift")
    keep = np.zeros(len(labels), dtype=bool)
    table = pd.DataFrame({"labels": labels[labelled].astype(str)})
    keep[labelled] = select_conditions(table, conditions)
    return keep


def _float32_img(data: np.ndarray, ref) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), ref.affine, ref.header)
    img.header.set_data_dtype(np.float32)
    return img


def assemble_inputs(
    func_img,
    labels: np.ndarray,
    runs: np.ndarray | None,
    masks,
    config,
    *,
    confounds: np.ndarray | None = None,
    confounds_name: str | None = None,
    sample_mask: np.ndarray | None = None,
    t_r: float | None = None,
    clean: bool = True,
    details: dict | None = None,
):
    """The :class:`~fastsearchlight._study_inputs.StudyInputs` of samples from any source.

    Parameters
    ----------
    func_img : 4D image
        Every sample (volume or beta map) in order.
    labels : ndarray of shape (n_samples,)
        Each sample's condition; None where it has none (left out).
    runs : ndarray of shape (n_samples,) or None
        Each sample's run: the groups of the cross-validation and of the cleaning.
    masks : callable
        Gives ``(mask_img, process_img)`` on the grid of an image.
    config : StudyConfig
    confounds : ndarray of shape (n_samples, n_confounds) or None
        Removed within each run by the cleaning.
    confounds_name : str or None
        What the confounds are, for the summary.
    sample_mask : ndarray of bool or None
        Samples kept by a scrubbing strategy (None: all); the others are left out before
        the cleaning.
    t_r : float or None
        Repetition time (s), for the high-pass filter.
    clean : bool
        Clean the volumes (False for beta maps, which the GLM has cleaned).
    details : dict or None
        Further facts for the summary's ``data`` section.
    """
    from ._study_inputs import StudyInputs, parse_cv

    keep = labelled_selection(labels, config.conditions)
    mask_img, process_img = masks(func_img)
    volumes = np.arange(func_img.shape[3])
    if sample_mask is not None:  # scrubbed volumes are left out, before the cleaning
        sample_mask = np.asarray(sample_mask, dtype=bool)
        volumes, keep, labels = volumes[sample_mask], keep[sample_mask], np.asarray(labels)[sample_mask]
        runs = None if runs is None else np.asarray(runs)[sample_mask]
        confounds = None if confounds is None else confounds[sample_mask]
    cleaning = Cleaning.from_config(config)
    details = dict(details or {})
    cleaned = clean and (cleaning.active or confounds is not None)
    inside = np.asarray(mask_img.dataobj) != 0
    data, series = _read_volumes(func_img, volumes, keep, inside if cleaned else None)
    background = _float32_img(data.mean(axis=3), func_img.slicer[..., 0])
    if cleaned:
        series = clean_runs(series, runs, cleaning, confounds=confounds, t_r=t_r)
        data[~inside] = 0.0
        data[inside] = series[keep].T
        details["cleaning"] = cleaning.describe(confounds=confounds_name, t_r=t_r)
    else:
        details["cleaning"] = "none (beta maps)" if not clean else "none"
    func_sel = _float32_img(data, func_img)
    y = np.asarray(labels, dtype=object)[keep].astype(str)
    groups = np.asarray(runs)[keep] if runs is not None else None
    cv = parse_cv(config.cv, has_groups=groups is not None)
    return StudyInputs(func_img, func_sel, mask_img, process_img, keep, y, groups, cv, background, details)


def _read_volumes(
    func_img, volumes: np.ndarray, keep: np.ndarray, inside: np.ndarray | None, chunk: int = 64
):
    """The kept volumes (float32, 4D) and, with ``inside``, the time series of those voxels
    over all ``volumes`` (volumes x voxels), read a chunk of volumes at a time so that the
    whole 4D image is never in memory at once."""
    data = np.empty(func_img.shape[:3] + (int(keep.sum()),), dtype=np.float32)
    series = None if inside is None else np.empty((len(volumes), int(inside.sum())), dtype=np.float32)
    filled = 0
    for start in range(0, len(volumes), chunk):
        idx = volumes[start : start + chunk]
        block = np.asarray(func_img.dataobj[..., idx[0] : idx[-1] + 1], dtype=np.float32)[..., idx - idx[0]]
        kept = keep[start : start + chunk]
        data[..., filled : filled + int(kept.sum())] = block[..., kept]
        filled += int(kept.sum())
        if series is not None:
            series[start : start + len(idx)] = block[inside].T
    return data, series


def header_t_r(img) -> float | None:
    """The repetition time in a 4D image's header, if it says one."""
    zooms = img.header.get_zooms()
    if len(zooms) < 4 or not zooms[3] > 0:
        return None
    unit = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
    return float(zooms[3]) / (1000.0 if unit == "msec" else 1.0)


def describe_runs(runs: Any) -> int | None:
    return int(len(np.unique(runs))) if runs is not None else None
