"""BIDS and fMRIPrep inputs: one subject's runs of one task, their events, confounds and mask.

Files are found with nilearn's BIDS helpers (:func:`nilearn.interfaces.bids.get_bids_files`,
:func:`~nilearn.interfaces.bids.parse_bids_filename`) and fMRIPrep confounds loaded with
:func:`nilearn.interfaces.fmriprep.load_confounds_strategy`. With ``derivatives`` the
preprocessed images (``*_desc-preproc_bold``) and brain masks of fMRIPrep are used, with the
events of the raw dataset; without, the raw ``*_bold`` images.

Volumes are labelled by their events (:func:`volume_labels`): a volume acquired at time
``t`` (``t = i * TR``) takes the ``trial_type`` of the event whose interval
``[onset + shift, onset + duration + shift)`` contains ``t``; ``shift`` is the haemodynamic
lag in seconds (often 4-6 s). Volumes outside every event, or inside events of two
conditions, are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .io import InputError

__all__ = [
    "CONFOUND_STRATEGIES",
    "BidsRun",
    "BidsSubject",
    "find_runs",
    "load_run_confounds",
    "volume_labels",
]

#: ``--confounds`` strategies of nilearn's ``load_confounds_strategy``
CONFOUND_STRATEGIES = ("simple", "scrubbing", "compcor", "ica_aroma")
#: entities that name a derivative, not a run
_DERIVATIVE_ENTITIES = ("space", "desc", "res", "den")


@dataclass
class BidsRun:
    """One run: its images, events, repetition time and (once loaded) confounds."""

    name: str  #: the run's name, e.g. "run-01" or "ses-1_run-2" (the CV group)
    bold: Path
    events: Path
    t_r: float
    confounds: pd.DataFrame | None = None
    sample_mask: np.ndarray | None = None  #: volumes kept by the confound strategy (None: all)


@dataclass
class BidsSubject:
    """The runs of one subject and task, in acquisition order (by session, then run)."""

    dataset: Path
    subject: str
    task: str
    space: str | None
    derivatives: Path | None
    runs: list[BidsRun] = field(default_factory=list)
    masks: list[Path] = field(default_factory=list)  #: fMRIPrep brain masks of the runs

    @property
    def t_r(self) -> float:
        return self.runs[0].t_r

    def files(self) -> list[Path]:
        """Every input file (for the checksums of the summary)."""
        out = []
        for run in self.runs:
            out += [run.bold, run.events]
        return out + list(self.masks)


def _entities(path) -> dict:
    from nilearn.interfaces.bids import parse_bids_filename

    return dict(parse_bids_filename(str(path))["entities"])


def _run_name(entities: dict, index: int) -> str:
    parts = [f"{k}-{entities[k]}" for k in ("ses", "acq", "dir", "run") if k in entities]
    return "_".join(parts) or f"run-{index + 1}"


def _bold_files(root: Path, subject: str, task: str, space: str | None, preproc: bool) -> list[str]:
    from nilearn.interfaces.bids import get_bids_files

    filters = [("task", task)]
    if preproc:
        filters.append(("desc", "preproc"))
        if space is not None:
            filters.append(("space", space))
    files = get_bids_files(root, file_tag="bold", file_type="nii*", sub_label=subject,
                           modality_folder="func", filters=filters)  # fmt: skip
    if not preproc:  # raw images only
        files = [f for f in files if not set(_entities(f)) & set(_DERIVATIVE_ENTITIES)]
    return files


def _repetition_time(bold: Path, dataset: Path, task: str) -> float:
    """RepetitionTime from the image's sidecar (or the dataset's task sidecar), else its header."""
    base = bold.name.split(".nii")[0]
    for sidecar in (bold.with_name(base + ".json"), dataset / f"task-{task}_bold.json"):
        if sidecar.is_file():
            value = json.loads(sidecar.read_text()).get("RepetitionTime")
            if value:
                return float(value)
    import nibabel as nib

    zooms = nib.load(bold).header.get_zooms()
    if len(zooms) > 3 and zooms[3] > 0:
        return float(zooms[3])
    raise InputError(f"no repetition time for {bold.name}: add RepetitionTime to its .json sidecar")


def _events_for(bold: Path, events: list[str]) -> Path:
    """The events file of a run: the one whose entities are all the run's."""
    mine = {k: v for k, v in _entities(bold).items() if k not in _DERIVATIVE_ENTITIES}
    matches = [e for e in events if _entities(e).items() <= mine.items()]
    if len(matches) != 1:
        what = "no events file" if not matches else f"{len(matches)} events files"
        raise InputError(
            f"{what} for {bold.name}: each run needs one *_events.tsv (onset, duration, trial_type)"
        )
    return Path(matches[0])


def find_runs(
    bids_dir, subject: str, task: str, *, space: str | None = None, derivatives=None
) -> BidsSubject:
    """Every run of ``subject`` and ``task`` in a BIDS dataset, with its events.

    Parameters
    ----------
    bids_dir : path-like
        The raw BIDS dataset (holds the events).
    subject : str
        Subject label, with or without ``sub-``.
    task : str
        Task label, with or without ``task-``.
    space : str or None
        fMRIPrep output space (e.g. ``MNI152NLin2009cAsym``); needs ``derivatives``.
    derivatives : path-like or None
        fMRIPrep derivatives folder: its ``desc-preproc`` images and brain masks are used.

    Returns
    -------
    BidsSubject
    """
    from nilearn.interfaces.bids import get_bids_files

    dataset = Path(bids_dir)
    subject, task = str(subject).removeprefix("sub-"), str(task).removeprefix("task-")
    if not dataset.is_dir():
        raise InputError(f"BIDS folder {dataset} not found")
    if space is not None and derivatives is None:
        raise InputError("--space selects fMRIPrep outputs: give their folder with --derivatives")
    deriv = Path(derivatives) if derivatives is not None else None
    if deriv is not None and not deriv.is_dir():
        raise InputError(f"derivatives folder {deriv} not found")
    bolds = _bold_files(deriv or dataset, subject, task, space, preproc=deriv is not None)
    if not bolds:
        where = f"{deriv} (desc-preproc{', space-' + space if space else ''})" if deriv else str(dataset)
        raise InputError(
            f"no bold images of sub-{subject}, task-{task} in {where}: check --subject and --task"
        )
    events = get_bids_files(dataset, file_tag="events", file_type="tsv", sub_label=subject,
                            modality_folder="func", filters=[("task", task)])  # fmt: skip
    out = BidsSubject(dataset, subject, task, space, deriv)
    for i, bold in enumerate(bolds):
        bold = Path(bold)
        out.runs.append(
            BidsRun(
                _run_name(_entities(bold), i),
                bold,
                _events_for(bold, events),
                _repetition_time(bold, dataset, task),
            )  # fmt: skip
        )
    if len({r.name for r in out.runs}) != len(out.runs):
        raise InputError(f"several images per run for sub-{subject}, task-{task}: select one with --space")
    if deriv is not None:
        filters = [("task", task), ("desc", "brain")] + ([("space", space)] if space else [])
        out.masks = [Path(m) for m in get_bids_files(deriv, file_tag="mask", file_type="nii*", sub_label=subject,
                                                     modality_folder="func", filters=filters)]  # fmt: skip
    return out


def read_events(path: Path) -> pd.DataFrame:
    """A run's events: onset, duration and trial_type, checked."""
    table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    missing = [c for c in ("onset", "duration", "trial_type") if c not in table.columns]
    if missing:
        raise InputError(f"{path.name} lacks the column(s) {', '.join(missing)} (BIDS events need "
                         "onset, duration and trial_type)")  # fmt: skip
    table = table.dropna(subset=["onset", "duration", "trial_type"])
    table["trial_type"] = table["trial_type"].astype(str)
    return table


def volume_labels(events: pd.DataFrame, n_volumes: int, t_r: float, shift: float = 0.0) -> np.ndarray:
    """The condition of each volume from a run's events (None outside every event).

    Volume ``i`` is acquired at ``i * t_r`` seconds and takes the ``trial_type`` of the
    event whose ``[onset + shift, onset + duration + shift)`` contains that time. A volume in
    events of two different conditions is left out (None).

    Parameters
    ----------
    events : pandas.DataFrame
        Columns ``onset``, ``duration`` (seconds) and ``trial_type``.
    n_volumes : int
    t_r : float
        Repetition time in seconds.
    shift : float
        Haemodynamic lag in seconds: events are moved this much later.

    Returns
    -------
    ndarray of object, shape (n_volumes,)
    """
    times = np.arange(n_volumes) * float(t_r)
    eps = 1e-6 * float(t_r)  # onsets written as multiples of the TR are met exactly
    labels = np.full(n_volumes, None, dtype=object)
    clash = np.zeros(n_volumes, dtype=bool)
    for onset, duration, kind in events[["onset", "duration", "trial_type"]].itertuples(index=False):
        start = float(onset) + shift
        inside = (times >= start - eps) & (times < start + float(duration) - eps)
        clash |= inside & (labels != None) & (labels != kind)  # noqa: E711
        labels[inside & (labels == None)] = kind  # noqa: E711
    labels[clash] = None
    return labels


def load_run_confounds(subject: BidsSubject, strategy: str | None) -> None:
    """Attach the fMRIPrep confounds of ``strategy`` (nilearn's presets) to every run."""
    if strategy is None:
        return
    if strategy not in CONFOUND_STRATEGIES:
        raise InputError(f"--confounds {strategy!r} with --bids: use one of {', '.join(CONFOUND_STRATEGIES)} "
                         "(nilearn's fMRIPrep strategies) or none")  # fmt: skip
    if subject.derivatives is None:
        raise InputError(
            "--confounds reads fMRIPrep's confounds: give the derivatives folder with --derivatives"
        )
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    for run in subject.runs:
        try:
            confounds, sample_mask = load_confounds_strategy(str(run.bold), denoise_strategy=strategy)
        except (ValueError, FileNotFoundError) as exc:
            raise InputError(
                f"confounds of {run.bold.name} ({strategy}): {' '.join(str(exc).split())}"
            ) from None
        run.confounds, run.sample_mask = confounds, sample_mask
