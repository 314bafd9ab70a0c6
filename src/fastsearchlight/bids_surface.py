"""fMRIPrep's surface outputs as a BIDS study: ``fastsearchlight run --bids DIR --derivatives
D --space fsaverage5 --subject S --task T``.

fMRIPrep writes each run on a FreeSurfer surface as two GIfTI files,
``sub-<S>_task-<T>[_run-<R>]_hemi-L_space-<space>_bold.func.gii`` and ``hemi-R``, one data
array per volume. The runs are found in the derivatives with nilearn's BIDS helpers, labelled
by the raw dataset's events (:func:`fastsearchlight.bids.volume_labels`), cleaned run by run
(fMRIPrep's confounds with a nilearn strategy, :func:`fastsearchlight.cleaning.clean_runs`)
and analysed by the surface study (:mod:`fastsearchlight.surface_study`) on the space's mesh
(:func:`surface_mesh`): an fsaverage nilearn loads, the subject's own pial surfaces for
``fsnative``, or the surface files given (``--mesh``, e.g. fsLR's). The repetition time is read from the GIfTI's ``.json`` sidecar, the dataset's
``task-<T>_bold.json`` or the raw run's sidecar.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .betas import SAMPLES, describe_betas
from .bids import (
    BidsRun,
    BidsSubject,
    _entities,
    _events_for,
    _run_name,
    load_run_confounds,
    read_events,
    volume_labels,
)
from .io import InputError
from .spaces.surface import MESH_NAMES

__all__ = ["find_surface_runs", "is_surface_space", "run_bids_surface_study", "surface_mesh"]


def is_surface_space(space: str | None) -> bool:
    """Whether an fMRIPrep output space is a surface (``fsaverage*``, ``fsLR``, ``fsnative``)."""
    return space is not None and (space in MESH_NAMES or space.lower().startswith(("fslr", "fsnative")))


def _surface_files(deriv: Path, subject: str, task: str, space: str) -> list[str]:
    from nilearn.interfaces.bids import get_bids_files

    return get_bids_files(deriv, file_tag="bold", file_type="func.gii", sub_label=subject,
                          modality_folder="func", filters=[("task", task), ("space", space)])  # fmt: skip


def _repetition_time(gifti: Path, dataset: Path, task: str) -> float:
    """RepetitionTime from the GIfTI's sidecar, the dataset's task sidecar or the raw run's."""
    ents = {k: v for k, v in _entities(gifti).items() if k not in ("hemi", "space", "desc", "res", "den")}
    raw = "_".join(f"{k}-{v}" for k, v in ents.items()) + "_bold.json"
    sidecars = [
        gifti.with_name(gifti.name.removesuffix(".func.gii") + ".json"),
        dataset / f"task-{task}_bold.json",
        dataset
        / f"sub-{ents.get('sub', '')}"
        / (f"ses-{ents['ses']}" if "ses" in ents else "")
        / "func"
        / raw,
    ]
    for sidecar in sidecars:
        if sidecar.is_file():
            value = json.loads(sidecar.read_text()).get("RepetitionTime")
            if value:
                return float(value)
    raise InputError(
        f"no repetition time for {gifti.name}: add RepetitionTime to its .json sidecar (GIfTI files hold none)"
    )


def find_surface_runs(
    bids_dir, subject: str, task: str, *, space: str, derivatives
) -> tuple[BidsSubject, list]:
    """Every run of ``subject`` and ``task`` on the surface ``space`` in fMRIPrep's derivatives.

    Parameters
    ----------
    bids_dir : path-like
        The raw BIDS dataset (holds the events).
    subject, task : str
        Labels, with or without ``sub-`` / ``task-``.
    space : str
        The surface space of the runs (``fsaverage5``, ``fsnative``, ``fsLR``...).
    derivatives : path-like
        fMRIPrep's derivatives folder.

    Returns
    -------
    BidsSubject
        The runs, each ``bold`` its left hemisphere's file.
    list of dict
        Each run's files by hemisphere, ``{"left": Path, "right": Path}``.
    """
    from nilearn.interfaces.bids import get_bids_files

    dataset = Path(bids_dir)
    subject, task = str(subject).removeprefix("sub-"), str(task).removeprefix("task-")
    if not dataset.is_dir():
        raise InputError(f"BIDS folder {dataset} not found")
    if derivatives is None:
        raise InputError(
            f"--space {space} selects fMRIPrep's surface outputs: give their folder with --derivatives"
        )
    deriv = Path(derivatives)
    if not deriv.is_dir():
        raise InputError(f"derivatives folder {deriv} not found")
    by_run: dict = {}
    for path in map(Path, _surface_files(deriv, subject, task, space)):
        ents = _entities(path)
        if ents.get("hemi") not in ("L", "R"):
            continue
        key = _run_name({k: v for k, v in ents.items() if k != "hemi"}, 0)
        by_run.setdefault(key, {}).setdefault("left" if ents["hemi"] == "L" else "right", []).append(path)
    if not by_run:
        raise InputError(f"no *_hemi-L_space-{space}_bold.func.gii of sub-{subject}, task-{task} in {deriv}: "
                         "check --subject, --task and --space")  # fmt: skip
    events = get_bids_files(dataset, file_tag="events", file_type="tsv", sub_label=subject,
                            modality_folder="func", filters=[("task", task)])  # fmt: skip
    out, files = BidsSubject(dataset, subject, task, space, deriv), []
    for name in sorted(by_run):
        hemis = by_run[name]
        for hemi in ("left", "right"):
            if len(hemis.get(hemi, [])) != 1:
                other = hemis[next(iter(hemis))][0].name
                what = "no" if hemi not in hemis else "several"
                raise InputError(f"{what} hemi-{hemi[0].upper()} file for the run of {other}: each run needs "
                                 "one hemi-L and one hemi-R file")  # fmt: skip
        left = hemis["left"][0]
        out.runs.append(BidsRun(name, left, _events_for(left, events), _repetition_time(left, dataset, task)))
        files.append({"left": left, "right": hemis["right"][0]})
    return out, files


def surface_mesh(space: str, subject: str, derivatives, mesh=None):
    """The mesh of the runs on ``space``: the surface files given (``mesh``), the fsaverage
    nilearn loads by name, or for ``fsnative`` the subject's own pial surfaces that fMRIPrep
    writes in the derivatives (``anat/sub-<S>_hemi-L_pial.surf.gii`` and ``hemi-R``).

    Returns
    -------
    str or list of str
        A mesh name, or the hemispheres' surface files (:func:`fastsearchlight.spaces.surface.load_mesh`).
    """
    if mesh:
        return [str(m) for m in mesh]
    if space in MESH_NAMES:
        return space
    if space.lower().startswith("fsnative"):
        found = {h: sorted(Path(derivatives).glob(f"sub-{subject}/**/anat/sub-{subject}*_hemi-{h}_pial.surf.gii"))
                 for h in ("L", "R")}  # fmt: skip
        for h, files in found.items():
            if len(files) != 1:
                what = "no" if not files else f"{len(files)} (sessions?)"
                raise InputError(f"--space fsnative: {what} sub-{subject}*_hemi-{h}_pial.surf.gii in an anat folder "
                                 "of the derivatives: give the subject's surfaces with --mesh hemi-L hemi-R")  # fmt: skip
        return [str(found["L"][0]), str(found["R"][0])]
    raise InputError(
        f"--space {space}: give the mesh the runs are on with --mesh and its two surface files (hemi-L, hemi-R), "
        f"e.g. TemplateFlow's tpl-fsLR_den-32k_hemi-L_midthickness.surf.gii for fsLR; nilearn loads only "
        f"{', '.join(MESH_NAMES)} by name"
    )


def _read_runs(subject: BidsSubject, files: list, config, shift: float) -> tuple:
    """The cleaned data of the labelled volumes, their labels and runs, and how many volumes
    the confound strategy removed (scrubbing: left out before the cleaning, as for volumes)."""
    from ._assemble import labelled_selection
    from ._surface_inputs import read_surface_data
    from .cleaning import Cleaning, clean_runs

    if len({r.t_r for r in subject.runs}) > 1:
        raise InputError(
            f"the runs of sub-{subject.subject} have different repetition times: analyse them apart"
        )
    try:
        parts = [read_surface_data({h: str(f[h]) for h in ("left", "right")}) for f in files]
    except ValueError as exc:
        raise InputError(str(exc)) from None
    for run, part in zip(subject.runs, parts):
        if part["left"].shape[1] != part["right"].shape[1]:
            raise InputError(f"the hemi-L and hemi-R files of {run.name} hold different numbers of volumes")
    data = {h: np.concatenate([p[h] for p in parts], axis=1) for h in ("left", "right")}
    lengths = [p["left"].shape[1] for p in parts]
    labels, runs, confounds, kept = [], [], [], []
    for run, n in zip(subject.runs, lengths):
        labels.append(volume_labels(read_events(run.events), n, run.t_r, shift))
        runs.append(np.full(n, run.name, dtype=object))
        if run.confounds is not None:
            confounds.append(run.confounds.to_numpy(dtype=np.float64))
        keep_run = np.ones(n, dtype=bool)
        if run.sample_mask is not None:  # the volumes the strategy keeps (indices)
            keep_run[:] = False
            keep_run[np.asarray(run.sample_mask)] = True
        kept.append(keep_run)
    labels, runs, kept = np.concatenate(labels), np.concatenate(runs), np.concatenate(kept)
    removed = int((~kept).sum())
    if removed:  # scrubbed volumes left out before the cleaning
        data = {h: d[:, kept] for h, d in data.items()}
        labels, runs = np.asarray(labels, dtype=object)[kept], runs[kept]
        confounds = [np.vstack(confounds)[kept]] if confounds else []
    cleaning = Cleaning.from_config(config)
    if cleaning.active or confounds:
        conf = np.vstack(confounds) if confounds else None
        data = {
            h: clean_runs(d.T, runs, cleaning, confounds=conf, t_r=subject.t_r).T for h, d in data.items()
        }
    keep = labelled_selection(labels, config.conditions)
    y = np.asarray(labels, dtype=object)[keep].astype(str)
    return {h: d[:, keep] for h, d in data.items()}, y, runs[keep], removed


def _beta_maps(subject: BidsSubject, files: list, samples: str, config, mask_parts, polymesh, out,
               sources: dict) -> tuple:  # fmt: skip
    """The runs' beta maps (nilearn's ``FirstLevelModel`` on each run's two GIfTI files, its
    confounds in the model, as for volumes), their conditions and runs."""
    from ._surface_inputs import read_surface_mask
    from .betas import surface_beta_series

    mask = read_surface_mask(mask_parts, polymesh) if mask_parts is not None else None
    data, labels, runs, reused = surface_beta_series(
        subject, files, samples, config.conditions, mask, polymesh, out, confounds=config.confounds,
        quiet=True,
    )  # fmt: skip
    sources["beta maps"] = describe_betas(samples, reused)
    return data, np.asarray(labels).astype(str), np.asarray(runs)


def run_bids_surface_study(
    spec, out_dir, *, config=None, force: bool = False, quiet: bool = False, mask=None, mesh=None
) -> dict:
    """The surface study of one subject and task of fMRIPrep's surface outputs.

    Parameters
    ----------
    spec : fastsearchlight.bids_study.BidsSpec
        ``spec.space`` a surface space (``fsaverage5``...), ``spec.derivatives`` fMRIPrep's
        folder; ``spec.samples`` the volumes labelled by events, or beta maps of nilearn's
        ``FirstLevelModel`` per trial or per condition and run (kept in ``out_dir/betas``).
    out_dir : path-like
    config : StudyConfig or None
        ``config.confounds`` names one of nilearn's fMRIPrep strategies.
    force, quiet
        As :func:`fastsearchlight.surface_study.run_surface_study`.
    mask : list of path-like or None
        One GIfTI mask per hemisphere (``hemi-L``/``hemi-R`` in the names; nonzero: in), e.g.
        the cortex without the medial wall; every vertex when None.
    mesh : list of path-like or None
        The surface files of the hemispheres the runs are on (:func:`surface_mesh`: needed
        for spaces other than fsaverage and fsnative).

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    from .study import StudyConfig
    from .surface_study import surface_study_from_reader

    config = config or StudyConfig()
    if spec.samples not in SAMPLES:
        raise InputError(f"--samples {spec.samples!r}: use one of {', '.join(SAMPLES)}")
    subject, files = find_surface_runs(
        spec.bids_dir, spec.subject, spec.task, space=spec.space, derivatives=spec.derivatives
    )
    load_run_confounds(subject, config.confounds)
    mesh = surface_mesh(spec.space, subject.subject, subject.derivatives, mesh)

    def read(out):
        from .spaces.surface import load_mesh
        from .surface_study import read_mask_parts

        mask_parts = read_mask_parts(mask)
        try:
            polymesh = load_mesh(mesh)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        sources = {
            "BIDS dataset": str(subject.dataset), "derivatives": str(subject.derivatives),
            "surface data": [str(f[h]) for f in files for h in ("left", "right")],
            "events": [str(r.events) for r in subject.runs], "samples": spec.samples,
        }  # fmt: skip
        if spec.samples == "volumes":
            data, y, groups, removed = _read_runs(subject, files, config, spec.shift)
            sources["labels"] = (
                f"each volume by the event containing its time, events moved {spec.shift:g} s later"
            )
            sources["volumes removed by the confound strategy"] = removed
        else:
            data, y, groups = _beta_maps(
                subject, files, spec.samples, config, mask_parts, polymesh, out, sources
            )
        if mask is not None:
            sources["mask"] = [str(m) for m in mask]
        return polymesh, data, y, groups, mask_parts, sources

    name = f"sub-{subject.subject}, task-{subject.task}, space-{spec.space}"
    return surface_study_from_reader(
        read, out_dir, hemispheres=("left", "right"), mesh=mesh, config=config, force=force,
        quiet=quiet, name=name, t_r=subject.t_r,
    )  # fmt: skip


def cmd_bids_surface(args, spec, config) -> int:
    """``fastsearchlight run --bids ... --space fsaverage5``: the surface study, a summary line.

    ``--radius`` not given on the command line: 10 mm along the cortex (the ``surface``
    command's default), not the volume's 5.6 mm.
    """
    from dataclasses import replace

    mask = None
    if args.mask is not None:
        mask = [Path(m) for m in args.mask]
        if not all(m.name.endswith(".gii") or m.name.endswith(".gii.gz") for m in mask):
            raise InputError(f"--mask with --space {spec.space}: one GIfTI mask per hemisphere (hemi-L, hemi-R; "
                             f"nonzero: in), not {', '.join(m.name for m in mask)}")  # fmt: skip
    if not any(a == "--radius" or a.startswith("--radius=") for a in getattr(args, "argv", [])):
        config = replace(config, radius=10.0)
    summary = run_bids_surface_study(
        spec, args.out, config=config, force=args.force, quiet=args.quiet, mask=mask, mesh=args.mesh
    )
    r, t = summary["results"], summary["timings"]
    print(f"{r['discs']} discs in {t['searchlight']:.1f} s; best {summary['parameters']['scoring']} "
          f"{r['max score']:.3f} at {r['peak hemisphere']} vertex {r['peak vertex']} "
          f"(chance {r['chance level']:.2f}); outputs in {args.out}")  # fmt: skip
    return 0
