"""Beta series of a BIDS run with nilearn's ``FirstLevelModel``: one map per trial
(least-squares-separate, Mumford et al. 2012) or per condition and run, on volumes
(:func:`beta_series`) or on a surface (:func:`surface_beta_series`, fMRIPrep's GIfTI runs).

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

__all__ = ["BETA_FOLDER", "SAMPLES", "beta_series", "describe_betas", "fit_run_betas", "surface_beta_series"]

#: ``--samples`` choices: volumes, or beta maps of the GLM
SAMPLES = ("volumes", "trials", "runs")
BETA_FOLDER = "betas"
_TARGET = "lss_target_trial"


def _array_checksum(img) -> str:
    from nilearn.surface import SurfaceImage

    if img is None:
        return "none"
    if isinstance(img, SurfaceImage):
        data = b"".join(np.ascontiguousarray(np.asarray(v) != 0).tobytes() for v in img.data.parts.values())
        return "sha256:" + hashlib.sha256(data).hexdigest()
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


def _fit(run: BidsRun, mask_img, events: pd.DataFrame, img=None):
    kwargs = {"confounds": run.confounds} if run.confounds is not None else {}
    if run.sample_mask is not None:
        kwargs["sample_masks"] = run.sample_mask
    with warnings.catch_warnings():  # nilearn notes that the given mask is used: it is meant to be
        warnings.filterwarnings("ignore", message=".*mask has been requested", category=RuntimeWarning)
        return _model(run, mask_img).fit(str(run.bold) if img is None else img, events=events, **kwargs)


def fit_run_betas(
    run: BidsRun, mask_img, samples: str, conditions, img=None
) -> tuple[list, list[str], list[float]]:
    """The beta maps of one run, their conditions and onsets.

    Parameters
    ----------
    run : BidsRun
    mask_img : Niimg-like, SurfaceImage or None
        Voxels (or vertices) modelled.
    samples : {"trials", "runs"}
        One map per event of the chosen conditions (least-squares-separate: one model per
        trial, that trial one regressor, every other event its condition's), or one map per
        condition (one model of the run).
    conditions : list of str or None
        Conditions to keep (None: all).
    img : SurfaceImage or None
        The run's data, when not the image at ``run.bold`` (a surface run's two GIfTI files).

    Returns
    -------
    maps : list of 3D images (SurfaceImage for a surface run)
    labels : list of str
    onsets : list of float
        Onset of the trial (first onset of the condition for ``"runs"``).
    """
    events = read_events(run.events)[["onset", "duration", "trial_type"]].reset_index(drop=True)
    chosen = events["trial_type"].isin(conditions) if conditions is not None else np.ones(len(events), bool)
    maps, labels, onsets = [], [], []
    if samples == "runs":
        model = _fit(run, mask_img, events, img)
        for condition in sorted(events.loc[chosen, "trial_type"].unique()):
            maps.append(_effect(model, condition))
            labels.append(condition)
            onsets.append(float(events.loc[events["trial_type"] == condition, "onset"].min()))
        return maps, labels, onsets
    for k in np.flatnonzero(chosen):
        trial_events = events.copy()
        trial_events.loc[k, "trial_type"] = _TARGET
        maps.append(_effect(_fit(run, mask_img, trial_events, img), _TARGET))
        labels.append(str(events.loc[k, "trial_type"]))
        onsets.append(float(events.loc[k, "onset"]))
    return maps, labels, onsets


def _record(subject: BidsSubject, samples: str, conditions, confounds: str | None, mask_img, inputs) -> dict:
    return {
        "samples": samples,
        "conditions": sorted(conditions) if conditions is not None else "all",
        "confounds": confounds or "none",
        "model": "nilearn FirstLevelModel: glover HRF, cosine drifts (high_pass 0.01 Hz), AR(1) noise",
        "inputs": {str(p): file_checksum(p) for p in inputs},
        "mask": _array_checksum(mask_img),
    }


def _recorded_table(folder: Path, record: dict, file_columns) -> pd.DataFrame | None:
    """The table of the maps in ``folder`` if they were made as ``record`` says, else None."""
    record_path, table_path = folder / "betas.json", folder / "betas.tsv"
    if not (record_path.is_file() and table_path.is_file()) or json.loads(record_path.read_text()) != record:
        return None
    table = pd.read_csv(table_path, sep="\t", dtype={"run": str, "condition": str})
    files = [f for c in file_columns if c in table for f in table[c].unique()]
    if not all(c in table for c in file_columns) or not all((folder / f).is_file() for f in files):
        return None
    return table


def _fit_series(subject: BidsSubject, samples: str, conditions, mask_img, folder: Path, record: dict,
                write_run, run_img=None, quiet: bool = True) -> pd.DataFrame:  # fmt: skip
    """Fit every run's maps, write them with ``write_run(maps, stem) -> {column: file name}``,
    then the table of the maps and the record (last: its presence says the folder is whole)."""
    from tqdm.auto import tqdm

    folder.mkdir(exist_ok=True)
    (folder / "betas.json").unlink(missing_ok=True)  # maps being replaced are no longer described
    rows = []
    for k, run in enumerate(tqdm(subject.runs, disable=quiet, desc="beta maps", unit="run", leave=False)):
        img = run_img(k) if run_img is not None else None
        maps, labels, onsets = fit_run_betas(run, mask_img, samples, conditions, img=img)
        if not maps:
            continue
        files = write_run(
            maps, f"sub-{subject.subject}_task-{subject.task}_{run.name}_samples-{samples}_betas"
        )
        rows += [{**files, "volume": i, "run": run.name, "condition": c, "onset": o}
                 for i, (c, o) in enumerate(zip(labels, onsets))]  # fmt: skip
    if not rows:
        raise InputError("no event of the chosen conditions in any run: check --conditions")
    table = pd.DataFrame(rows)
    save_table(table, folder / "betas.tsv")
    save_json(record, folder / "betas.json")
    return table


def describe_betas(samples: str, reused: bool) -> str:
    """How the beta maps were obtained, for the study's summary."""
    kind = "one per trial, least-squares-separate" if samples == "trials" else "one per condition and run"
    return f"{'read back from' if reused else 'fitted into'} {BETA_FOLDER}/ (nilearn FirstLevelModel, {kind})"


def _check_samples(samples: str) -> None:
    if samples not in SAMPLES[1:]:
        raise InputError(f"samples {samples!r}: beta maps are 'trials' or 'runs'")


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

    _check_samples(samples)
    folder = Path(out) / BETA_FOLDER
    inputs = [p for run in subject.runs for p in (run.bold, run.events)]
    record = _record(subject, samples, conditions, confounds, mask_img, inputs)
    table = _recorded_table(folder, record, ["file"])
    reused = table is not None
    if not reused:

        def write_run(maps, stem):
            save_img(concat_imgs(maps), folder / f"{stem}.nii.gz")
            return {"file": f"{stem}.nii.gz"}

        table = _fit_series(subject, samples, conditions, mask_img, folder, record, write_run, quiet=quiet)
    imgs = [str(folder / f) for f in table["file"].unique()]
    return concat_imgs(imgs), table["condition"].to_numpy(), table["run"].to_numpy(), reused


def surface_beta_series(subject: BidsSubject, files: list, samples: str, conditions, mask: dict | None,
                        mesh, out: Path, *, confounds: str | None = None, quiet: bool = True):  # fmt: skip
    """Beta maps of every surface run, fitted or read back from ``out/betas``.

    Each run's maps are written as one GIfTI file per hemisphere (one data array per map),
    ``..._samples-<samples>_betas_hemi-L.func.gii`` and ``hemi-R``.

    Parameters
    ----------
    subject : BidsSubject
        The runs (their events, repetition time, confounds and sample masks).
    files : list of dict
        Each run's GIfTI files, ``{"left": path, "right": path}``.
    samples, conditions, confounds, quiet
        As :func:`beta_series`.
    mask : dict or None
        Boolean array per hemisphere of the vertices modelled (None: every vertex).
    mesh : nilearn PolyMesh
        The surface the runs lie on.
    out : path-like
        The study's output folder.

    Returns
    -------
    data : dict
        The maps per hemisphere, (n_vertices, n_maps), run after run.
    labels, runs : ndarray
    reused : bool
    """
    from nilearn.surface import SurfaceImage

    from ._surface_inputs import read_surface_data
    from .surface_study import _save_gifti

    _check_samples(samples)
    folder = Path(out) / BETA_FOLDER
    hemis = ("left", "right")
    mask_img = SurfaceImage(mesh=mesh, data={h: mask[h] for h in hemis}) if mask is not None else None
    inputs = [p for f, run in zip(files, subject.runs) for p in (f["left"], f["right"], run.events)]
    record = _record(subject, samples, conditions, confounds, mask_img, inputs)
    columns = [f"{h}_file" for h in hemis]
    table = _recorded_table(folder, record, columns)
    reused = table is not None
    if not reused:

        def run_img(k: int):
            try:
                data = read_surface_data({h: str(files[k][h]) for h in hemis})
                return SurfaceImage(mesh=mesh, data={h: data[h].astype(np.float64) for h in hemis})
            except ValueError as exc:  # unreadable, or not one value per vertex of the mesh
                raise InputError(f"{files[k]['left'].name}: {exc}") from None

        def write_run(maps, stem):  # one GIfTI per hemisphere, one data array per map
            stacked = {h: np.column_stack([np.asarray(m.data.parts[h]) for m in maps]) for h in hemis}
            _save_gifti(SurfaceImage(mesh=mesh, data=stacked), folder, stem)
            return {f"{h}_file": f"{stem}_hemi-{h[0].upper()}.func.gii" for h in hemis}

        table = _fit_series(subject, samples, conditions, mask_img, folder, record, write_run, run_img, quiet)
    data = read_surface_data({h: [str(folder / f) for f in table[f"{h}_file"].unique()] for h in hemis})
    return data, table["condition"].to_numpy(), table["run"].to_numpy(), reused
