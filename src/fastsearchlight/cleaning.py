"""Cleaning of the volumes before the searchlight, run by run, with :func:`nilearn.signal.clean`.

The defaults are those of nilearn's decoders (``nilearn.decoding.Decoder``): each voxel's
time series standardised (``"zscore_sample"``), no detrending, no filtering, no confounds.
Every step is done within each run, on the whole run (all its volumes, also those that are
not analysed), before the volumes of the chosen conditions are selected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .io import InputError

__all__ = ["STANDARDIZE_CHOICES", "Cleaning", "clean_runs", "read_confounds_table"]

#: values of ``--standardize``: nilearn's strategies, or none
STANDARDIZE_CHOICES = ("zscore_sample", "psc", "none")


@dataclass(frozen=True)
class Cleaning:
    """What :func:`clean_runs` does.

    Attributes
    ----------
    standardize : {"zscore_sample", "psc"} or None
        Standardisation of each voxel's time series within each run (None: none).
    detrend : bool
        Remove each run's linear trend.
    high_pass : float or None
        High-pass cut-off in Hz (Butterworth, as nilearn), needs the repetition time.
    """

    standardize: str | None = "zscore_sample"
    detrend: bool = False
    high_pass: float | None = None

    @property
    def active(self) -> bool:
        """Whether anything is done (without confounds)."""
        return bool(self.standardize or self.detrend or self.high_pass)

    @classmethod
    def from_config(cls, config) -> Cleaning:
        """The cleaning a StudyConfig asks for."""
        standardize = None if config.standardize in (None, "none", False) else config.standardize
        return cls(standardize, bool(config.detrend), config.high_pass)

    def describe(self, *, confounds: str | None, t_r: float | None) -> dict:
        """The record of the cleaning in ``summary.json``."""
        return {
            "done by": "nilearn.signal.clean, run by run",
            "standardize": self.standardize or "none",
            "detrend": self.detrend,
            "high-pass (Hz)": self.high_pass,
            "confounds": confounds or "none",
            "repetition time (s)": t_r,
        }


def clean_runs(
    data: np.ndarray,
    runs: np.ndarray | None,
    cleaning: Cleaning,
    *,
    confounds: np.ndarray | None = None,
    t_r: float | None = None,
) -> np.ndarray:
    """Clean time series (volumes x voxels) within each run with :func:`nilearn.signal.clean`.

    Parameters
    ----------
    data : ndarray of shape (n_volumes, n_voxels)
        The voxels' time series, every volume of every run in acquisition order.
    runs : ndarray of shape (n_volumes,) or None
        The run of each volume (None: one run).
    cleaning : Cleaning
    confounds : ndarray of shape (n_volumes, n_confounds) or None
        Regressors removed within each run (standardised first, as nilearn's default).
    t_r : float or None
        Repetition time in seconds; needed for ``high_pass``.

    Returns
    -------
    ndarray of shape (n_volumes, n_voxels), float32
    """
    from nilearn.signal import clean

    if not cleaning.active and confounds is None:
        return np.asarray(data, dtype=np.float32)
    if cleaning.high_pass is not None and not t_r:
        raise InputError(
            "--high-pass needs the repetition time: the functional images' header gives none "
            "(set pixdim[4], or RepetitionTime in the BIDS sidecar)"
        )
    if confounds is not None and len(confounds) != len(data):
        raise InputError(
            f"the confounds have {len(confounds)} rows but the functional images have "
            f"{len(data)} volumes: give one row per volume"
        )
    data = np.asarray(data, dtype=np.float64)
    runs = np.zeros(len(data), dtype=int) if runs is None else np.asarray(runs)
    if len(runs) != len(data):
        raise InputError(f"{len(runs)} run labels for {len(data)} volumes: give one run label per volume")
    cleaned = np.empty(data.shape, dtype=np.float32)
    # run by run, as clean(runs=...) does, but with the filter applied to every voxel at
    # once: clean's own loop over runs drops butterworth's arguments, and butterworth then
    # filters one voxel at a time (the same values, about 90 times slower on 216 volumes of
    # 20,000 voxels); each run's volumes are written back in their place
    for run in np.unique(runs):
        rows = runs == run
        cleaned[rows] = clean(
            data[rows],
            detrend=cleaning.detrend,
            standardize=cleaning.standardize,
            confounds=None if confounds is None else confounds[rows],
            high_pass=cleaning.high_pass,
            t_r=t_r,
            butterworth__copy=True,
        )
    return cleaned


def read_confounds_table(path) -> np.ndarray:
    """A confounds table (.tsv or .csv, one row per volume, a header of names), as numbers.

    Every column is used; missing values (the first row of a derivative) become 0.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"confounds {path} not found: give a table of one row per volume, or with --bids "
            "one of nilearn's fMRIPrep strategies (simple, scrubbing, compcor, ica_aroma)"
        )
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    table = pd.read_csv(path, sep=sep)
    numeric = table.apply(pd.to_numeric, errors="coerce")
    bad = [c for c in table.columns if numeric[c].isna().all()]
    if bad or table.empty:
        raise InputError(
            f"confounds {path.name}: column(s) {', '.join(map(str, bad)) or '?'} hold no numbers"
        )
    return numeric.fillna(0.0).to_numpy(dtype=np.float64)
