"""The study of one subject and task of a BIDS dataset (``fastsearchlight run --bids``).

Samples are the volumes, labelled by the runs' events (:func:`fastsearchlight.bids.volume_labels`)
and cleaned run by run, or beta maps of nilearn's ``FirstLevelModel``, one per trial or per
condition and run (:mod:`fastsearchlight.betas`). Runs are the groups of the
cross-validation. Everything else is the study of :func:`fastsearchlight.study.run_study`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._assemble import assemble_inputs
from .betas import SAMPLES, beta_series, describe_betas
from .bids import BidsSubject, find_runs, load_run_confounds, read_events, volume_labels
from .io import InputError

__all__ = ["BidsSpec", "read_bids_inputs", "run_bids_study"]


@dataclass
class BidsSpec:
    """Which data of a BIDS dataset a study analyses, and as which samples.

    Attributes
    ----------
    bids_dir : path-like
        The raw dataset (events).
    subject, task : str
        Labels, with or without ``sub-`` / ``task-``.
    space : str or None
        fMRIPrep output space (with ``derivatives``).
    derivatives : path-like or None
        fMRIPrep derivatives folder.
    samples : {"volumes", "trials", "runs"}
        Volumes labelled by events, or beta maps per trial (least-squares-separate) or per
        condition and run.
    shift : float
        Haemodynamic lag (s) added to the events' times when labelling volumes.
    """

    bids_dir: Path
    subject: str
    task: str
    space: str | None = None
    derivatives: Path | None = None
    samples: str = "volumes"
    shift: float = 0.0


def _mask_maker(subject: BidsSubject, mask, process_mask=None):
    """``ref -> (mask_img, process_img)``: ``mask``, else fMRIPrep's brain masks (their
    intersection), else a mask computed from the runs (nilearn's ``compute_multi_epi_mask``);
    the process mask as given (None: the mask)."""
    from ._study_inputs import _masks
    from .images import read_img

    def make(ref):
        process = read_img(Path(process_mask), "process mask") if process_mask is not None else None
        if mask is not None:
            img, name = read_img(Path(mask), "mask"), mask
        elif subject.masks:
            from nilearn.masking import intersect_masks

            img = intersect_masks([str(m) for m in subject.masks], threshold=1, connected=False)
            name = subject.masks[0]
        else:
            from nilearn.masking import compute_multi_epi_mask

            img = compute_multi_epi_mask([str(r.bold) for r in subject.runs], target_affine=ref.affine,
                                         target_shape=ref.shape[:3])  # fmt: skip
            name = "the computed mask"
        return _masks(img, process, ref, name, process_mask, False)

    return make


def _mask_source(subject: BidsSubject, mask) -> object:
    if mask is not None:
        return mask
    if subject.masks:
        return subject.masks
    return "computed from the runs (nilearn.masking.compute_multi_epi_mask)"


class _RunsProxy:
    """The runs' images as one lazy 4D array (float32): volumes are read from the run files
    only when sliced along time, so the whole series is never in memory at once."""

    is_proxy = True

    def __init__(self, imgs):
        self._imgs = imgs
        self._starts = np.cumsum([0] + [i.shape[3] for i in imgs])
        self.shape = tuple(imgs[0].shape[:3]) + (int(self._starts[-1]),)
        self.dtype = np.dtype(np.float32)
        self.ndim = 4

    def __array__(self, dtype=None, copy=None):
        return np.concatenate([np.asarray(i.dataobj, dtype=dtype or self.dtype) for i in self._imgs], axis=3)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if key and key[0] is Ellipsis:
            key = (slice(None),) * (5 - len(key)) + key[1:]
        space, time = key[:3], key[3] if len(key) > 3 else slice(None)
        single = isinstance(time, (int, np.integer))
        start, stop, _ = (
            slice(int(time), int(time) + 1).indices(self.shape[3]) if single else time.indices(self.shape[3])
        )
        parts = []
        for img, first, end in zip(self._imgs, self._starts[:-1], self._starts[1:]):
            a, b = max(start, first), min(stop, end)
            if a < b:
                parts.append(np.asarray(img.dataobj[..., a - first : b - first], dtype=self.dtype))
        out = np.concatenate(parts, axis=3)[space]
        return out[..., 0] if single else out


def _concatenated_runs(subject: BidsSubject):
    """The runs as one lazy 4D image (see :class:`_RunsProxy`), checked to share one grid."""
    import nibabel as nib

    imgs = [nib.load(r.bold) for r in subject.runs]
    ref = imgs[0]
    for run, img in zip(subject.runs, imgs):
        if (
            len(img.shape) != 4
            or img.shape[:3] != ref.shape[:3]
            or not np.allclose(img.affine, ref.affine, atol=1e-4)
        ):
            raise InputError(f"{run.bold.name} is not on the grid of {subject.runs[0].bold.name}: "
                             "give runs in one space (e.g. fMRIPrep's --space)")  # fmt: skip
    header = ref.header.copy()
    header.set_data_dtype(np.float32)
    return nib.Nifti1Image(_RunsProxy(imgs), ref.affine, header)


def _volume_samples(subject: BidsSubject, shift: float):
    """The runs' volumes as one 4D image, each volume's label and run, confounds, sample mask."""
    if len({r.t_r for r in subject.runs}) > 1:
        raise InputError(
            f"the runs of sub-{subject.subject} have different repetition times: analyse them apart"
        )
    func = _concatenated_runs(subject)
    labels, runs, confounds, sample_mask = [], [], [], []
    for run, n in zip(subject.runs, np.diff(func.dataobj._starts)):
        labels.append(volume_labels(read_events(run.events), int(n), run.t_r, shift))
        runs.append(np.full(n, run.name, dtype=object))
        if run.confounds is not None:
            confounds.append(run.confounds.to_numpy(dtype=np.float64))
        kept = np.ones(n, dtype=bool)
        if run.sample_mask is not None:
            kept[:] = False
            kept[np.asarray(run.sample_mask)] = True
        sample_mask.append(kept)
    confounds = np.vstack(confounds) if confounds else None
    sample_mask = np.concatenate(sample_mask)
    return func, np.concatenate(labels), np.concatenate(runs), confounds, sample_mask


def read_bids_inputs(subject: BidsSubject, spec: BidsSpec, mask, config, out: Path, quiet: bool = True,
                     process_mask=None):  # fmt: skip
    """The study's inputs from a BIDS dataset, and what they were read from.

    Returns
    -------
    inputs : StudyInputs
    sources : dict
    """
    sources = {
        "BIDS dataset": str(subject.dataset),
        "derivatives": str(subject.derivatives) if subject.derivatives else "none (raw images)",
        "functional images": [r.bold for r in subject.runs],
        "events": [r.events for r in subject.runs],
        "mask": _mask_source(subject, mask),
    }
    if process_mask is not None:
        sources["process mask"] = process_mask
    details = {"subject": subject.subject, "task": subject.task, "space": subject.space or "as acquired",
               "samples": spec.samples}  # fmt: skip
    masks = _mask_maker(subject, mask, process_mask)
    if spec.samples == "volumes":
        func, labels, runs, confounds, sample_mask = _volume_samples(subject, spec.shift)
        details["labels"] = (
            f"each volume by the event containing its time, events moved {spec.shift:g} s later"
        )
        details["volumes outside every event (left out)"] = int(sum(v is None for v in labels))
        details["volumes removed by the confound strategy"] = int((~sample_mask).sum())
        inputs = assemble_inputs(
            func, labels, runs, masks, config, confounds=confounds, confounds_name=config.confounds,
            sample_mask=sample_mask if not sample_mask.all() else None, t_r=subject.t_r, details=details,
        )  # fmt: skip
        return inputs, sources
    from nibabel import load

    ref = load(subject.runs[0].bold).slicer[..., 0]
    mask_img, process_img = masks(ref)
    func, labels, runs, reused = beta_series(subject, spec.samples, config.conditions, mask_img, out,
                                             confounds=config.confounds, quiet=quiet)  # fmt: skip
    details["beta maps"] = describe_betas(spec.samples, reused)
    inputs = assemble_inputs(
        func, labels, runs, lambda _: (mask_img, None), config, clean=False, details=details
    )
    return inputs, sources


def run_bids_study(spec: BidsSpec, out_dir, *, mask=None, process_mask=None, config=None, force: bool = False,
                   quiet: bool = False, command: str | None = None) -> dict:  # fmt: skip
    """Run the study of one subject and task of a BIDS dataset into ``out_dir``.

    Parameters
    ----------
    spec : BidsSpec
    out_dir : path-like
    mask : path-like or None
        Mask of the voxels used (default: fMRIPrep's brain masks, else computed from the runs).
    process_mask : path-like or None
        Mask of the sphere centres (default: the mask).
    config : StudyConfig or None
        ``config.confounds`` names one of nilearn's fMRIPrep strategies (needs
        ``spec.derivatives``).
    force, quiet, command
        As :func:`fastsearchlight.study.run_study`.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    from .study import StudyConfig, study_from_reader

    config = config or StudyConfig()
    if spec.samples not in SAMPLES:
        raise InputError(f"--samples {spec.samples!r}: use one of {', '.join(SAMPLES)}")
    subject = find_runs(
        spec.bids_dir, spec.subject, spec.task, space=spec.space, derivatives=spec.derivatives
    )
    load_run_confounds(subject, config.confounds)
    name = f"sub-{subject.subject}, task-{subject.task}" + (
        f", space-{subject.space}" if subject.space else ""
    )
    return study_from_reader(
        lambda out: read_bids_inputs(subject, spec, mask, config, out, quiet, process_mask),
        out_dir, config=config, force=force, quiet=quiet, name=name, command=command,
    )  # fmt: skip
