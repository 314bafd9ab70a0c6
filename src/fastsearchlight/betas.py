"""Beta series of a BIDS run with nilearn's ``FirstLevelModel``: one map per trial
(least-squares-separate, Mumford et al. 2012) or per condition and run.

The maps are written into ``<output folder>/betas/`` with a table of their labels and runs and
a record of what made them (the parameters and a checksum of each input); a rerun with the
same record reads them back instead of fitting again.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._provenance import file_checksum
from .bids import BidsRun, BidsSubject, read_events
from .io import InputError, save_img, save_json, save_table

__all__ = ["BETA_FOLDER", "SAMPLES", "beta_series", "fit_run_betas"]

#: ``--samples`` choices: volumes, or beta maps of the GLM
SAMPLES = ("volumes", "trials", "runs")
BETA_FOLDER = "betas"
_TARGET = "lss_target_trial"


def _array_checksum(img) -> str:
    data = np.ascontiguousarray(np.asarray(img.dataobj) != 0)
    return "sha256:" + hashlib.sha256(data.tobytes() + np.asarray(img.affine).tobytes()).hexdigest()


def _model(run: BidsRun, mask_img):
    from nilearn.glm.first_level import FirstLevelModel

    return FirstLevelModel(t_r=run.t_r, mask_img=mask_img, hrf_model="glover", drift_model="cosine",
                           high_pass=0.01, noise_model="ar1", minimize_memory=True)  # fmt: skip


def _effect(model, column: str):
    """The effect size (beta) map of one design column."""
    columns = list(model.design_matrices_[0].columns)
    vector = np.zeros(len(columns))
    vector[columns.index(column)] = 1.0
    return model.compute_contrast(vector, output_type="effect_size")


def _fit(run: BidsRun, mask_img, events: pd.DataFrame):
    kwargs = {"confounds": run.confounds} if run.confounds is not None else {}
    if run.sample_mask is not None:
        kwargs["sample_masks"] = run.sample_mask
    with warnings.catch_warnings():  # nilearn notes that the given mask is used: it is meant to be
        warnings.filterwarnings("ignore", message=".*mask has been requested", category=RuntimeWarning)
        return _model(run, mask_img).fit(str(run.bold), events=events, **kwargs)


def fit_run_betas(run: BidsRun, mask_img, samples: str, conditions) -> tuple[list, list[str], list[float]]:
    """The beta maps of one run, their conditions and onsets.

    Parameters
    ----------
    run : BidsRun
    mask_img : Niimg-like
        Voxels modelled.
    samples : {"trials", "runs"}
        One map per event of the chosen conditions (least-squares-separate: one model per
        trial, that trial one regressor, every other event its condition's), or one map per
        condition (one model of the run).
    conditions : list of str or None
        Conditions to keep (None: all).

    Returns
    -------
    maps : list of 3D images
    labels : list of str
    onsets : list of float
        Onset of the trial (first onset of the condition for ``"runs"``).
    """
    events = read_events(run.events)[["onset", "duration", "trial_type"]].reset_index(drop=True)
    chosen = events["trial_type"].isin(conditions) if conditions is not None else np.ones(len(events), bool)
    maps, labels, onsets = [], [], []
    if samples == "runs":
        model = _fit(run, mask_img, events)
        for condition in sorted(events.loc[chosen, "trial_type"].unique()):
            maps.append(_effect(model, condition))
            labels.append(condition)
            onsets.append(float(events.loc[events["trial_type"] == condition, "onset"].min()))
        return maps, labels, onsets
    for k in np.flatnonzero(chosen):
        trial_events = events.copy()
        trial_events.loc[k, "trial_type"] = _TARGET
        maps.append(_effect(_fit(run, mask_img, trial_events), _TARGET))
        labels.append(str(events.loc[k, "trial_type"]))
        onsets.append(float(events.loc[k, "onset"]))
    return maps, labels, onsets


def _record(subject: BidsSubject, samples: str, conditions, confounds: str | None, mask_img) -> dict:
    return {
        "samples": samples,
        "conditions": sorted(conditions) if conditions is not None else "all",
        "confounds": confounds or "none",
        "model": "nilearn FirstLevelModel: glover HRF, cosine drifts (high_pass 0.01 Hz), AR(1) noise",
        "inputs": {str(p): file_checksum(p) for run in subject.runs for p in (run.bold, run.events)},
        "mask": _array_checksum(mask_img),
    }


def beta_series(subject: BidsSubject, samples: str, conditions, mask_img, out: Path, *,
                confounds: str | None = None, quiet: bool = True):  # fmt: skip
    """Beta maps of every run, fitted or read back from ``out/betas``.

    Returns
    -------
    img : 4D image
        The beta maps, run after run.
    labels, runs : ndarray
        Condition and run name of each map.
    reused : bool
        Whether the maps were read from an earlier run's files.
    """
    from nilearn.image import concat_imgs
    from tqdm.auto import tqdm

    if samples not in SAMPLES[1:]:
        raise InputError(f"samples {samples!r}: beta maps are 'trials' or 'runs'")
    folder = Path(out) / BETA_FOLDER
    record = _record(subject, samples, conditions, confounds, mask_img)
    record_path, table_path = folder / "betas.json", folder / "betas.tsv"
    if record_path.is_file() and table_path.is_file() and json.loads(record_path.read_text()) == record:
        table = pd.read_csv(table_path, sep="\t", dtype={"run": str, "condition": str})
        if all((folder / f).is_file() for f in table["file"].unique()):
            imgs = [str(folder / f) for f in table["file"].unique()]
            return concat_imgs(imgs), table["condition"].to_numpy(), table["run"].to_numpy(), True
    folder.mkdir(exist_ok=True)
    record_path.unlink(missing_ok=True)  # maps being replaced are no longer described
    rows, imgs = [], []
    for run in tqdm(subject.runs, disable=quiet, desc="beta maps", unit="run", leave=False):
        maps, labels, onsets = fit_run_betas(run, mask_img, samples, conditions)
        if not maps:
            continue
        name = f"sub-{subject.subject}_task-{subject.task}_{run.name}_samples-{samples}_betas.nii.gz"
        img = concat_imgs(maps)
        save_img(img, folder / name)
        imgs.append(img)
        rows += [{"file": name, "volume": i, "run": run.name, "condition": c, "onset": o}
                 for i, (c, o) in enumerate(zip(labels, onsets))]  # fmt: skip
    if not rows:
        raise InputError("no event of the chosen conditions in any run: check --conditions")
    table = pd.DataFrame(rows)
    save_table(table, table_path)
    save_json(record, record_path)
    return concat_imgs(imgs), table["condition"].to_numpy(), table["run"].to_numpy(), False
