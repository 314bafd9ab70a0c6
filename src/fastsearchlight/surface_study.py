"""The surface study from files: GIfTI data per hemisphere and run (as fMRIPrep writes
them), a labels table, the surface searchlight, score maps as GIfTI, figures, report.

:func:`run_surface_study` is what ``fastsearchlight surface`` runs.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ._study_inputs import chance_level, parse_cv
from ._versions import software_versions
from .io import (
    InputError,
    output_folder,
    read_labels,
    save_json,
    save_table,
    select_conditions,
    staged_outputs,
)

__all__ = [
    "SURFACE_FOLD_MAPS", "SURFACE_OUTPUTS", "SURFACE_PERMUTATION_OUTPUTS", "run_surface_study",
    "save_surface_permutation_record", "split_hemispheres", "surface_study_from_reader",
]  # fmt: skip

#: files every surface study writes
SURFACE_OUTPUTS = ("searchlight_scores_hemi-L.func.gii", "searchlight_scores_hemi-R.func.gii",
                   "searchlight_surface.png", "report.html", "summary.json")  # fmt: skip
#: files a permutation test adds (-log10 p maps)
SURFACE_PERMUTATION_OUTPUTS = ("p_uncorrected_hemi-L.func.gii", "p_uncorrected_hemi-R.func.gii",
                               "p_fwe_hemi-L.func.gii", "p_fwe_hemi-R.func.gii", "clusters.tsv",
                               "searchlight_fwe_surface.png", "null_scores.npy",
                               "permutation_record.npz")  # fmt: skip
_TFCE_OUTPUTS = ("p_fwe_tfce_hemi-L.func.gii", "p_fwe_tfce_hemi-R.func.gii")
#: files ``fold_maps`` adds: the scores of each fold (one data array per fold), as the
#: volume's ``fold_scores.nii.gz``
SURFACE_FOLD_MAPS = ("fold_scores_hemi-L.func.gii", "fold_scores_hemi-R.func.gii")
_CLUSTER_COLUMNS = ["cluster", "size", "peak_score", "peak_x_mm", "peak_y_mm", "peak_z_mm",
                    "peak_p_fwe", "p_fwe_cluster"]  # fmt: skip


def split_hemispheres(paths) -> dict:
    """GIfTI files by hemisphere (``hemi-L``/``hemi-R`` in fMRIPrep's names, or FreeSurfer's
    ``lh.``/``rh.``), each in the order given (runs, matching the labels table's rows)."""
    out: dict = {}
    from .spaces.surface import hemisphere_of_file

    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"surface data file {p} does not exist")
        try:
            hemi = hemisphere_of_file(p)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        out.setdefault(hemi, []).append(str(p))
    if len(out) == 2 and len(out["left"]) != len(out["right"]):
        raise InputError(
            f"{len(out['left'])} left-hemisphere files but {len(out['right'])} right: give both of every run"
        )
    return {h: out[h] for h in ("left", "right") if h in out}


def _clean(data: dict, runs, config, t_r: float | None) -> dict:
    """Each vertex's time series cleaned within each run, on every sample (as ``run`` cleans
    the volumes: standardised by default, as nilearn's decoders; detrending, high-pass and
    confounds on request), with :func:`nilearn.signal.clean`. GIfTI files hold no
    repetition time: the high-pass filter takes ``t_r`` (``--t-r``)."""
    from .cleaning import Cleaning, clean_runs, read_confounds_table

    cleaning = Cleaning.from_config(config)
    confounds = read_confounds_table(config.confounds) if config.confounds else None
    if not cleaning.active and confounds is None:
        return data
    return {h: clean_runs(d.T, runs, cleaning, confounds=confounds, t_r=t_r).T for h, d in data.items()}


def _read(func, labels, mask, config, mesh, t_r: float | None = None):
    """The selected samples' data, labels and runs, and the mask."""
    from ._surface_inputs import read_surface_data
    from .spaces.surface import load_mesh

    files = split_hemispheres(func)
    try:
        polymesh = load_mesh(mesh)
        data = read_surface_data(files)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if set(data) != set(polymesh.parts):  # one hemisphere's files: its part of the mesh
        from nilearn.surface import PolyMesh

        polymesh = PolyMesh(**{h: polymesh.parts[h] for h in data if h in polymesh.parts})
    n_samples = next(iter(data.values())).shape[1]
    table = read_labels(labels, label_column=config.label_column, group_column=config.group_column)
    if len(table) != n_samples:
        raise InputError(f"labels table has {len(table)} rows but the surface data have {n_samples} samples")
    runs = table[config.group_column].to_numpy() if config.group_column is not None else None
    data = _clean(data, runs, config, t_r)
    keep = select_conditions(table, config.conditions, label_column=config.label_column)
    y = table[config.label_column].astype(str).to_numpy()[keep]
    groups = runs[keep] if runs is not None else None
    data = {h: d[:, keep] for h, d in data.items()}
    return polymesh, data, y, groups, read_mask_parts(mask)


def read_mask_parts(mask) -> dict | None:
    """One GIfTI mask file per hemisphere (``hemi-L``/``hemi-R`` or ``lh.``/``rh.`` in the
    names), by hemisphere; None for no mask. The files are read by the searchlight."""
    if not mask:
        return None
    parts = split_hemispheres(mask)
    if any(len(v) != 1 for v in parts.values()):
        raise InputError("--mask: one GIfTI mask per hemisphere, got "
                         + ", ".join(f"{len(v)} for {h}" for h, v in parts.items()))  # fmt: skip
    return {h: v[0] for h, v in parts.items()}


def run_surface_study(
    func, labels, out_dir, *, mesh="fsaverage5", mask=None, distance: str = "geodesic",
    config=None, force: bool = False, quiet: bool = False, name: str = "", t_r: float | None = None,
) -> dict:  # fmt: skip
    """Run the surface searchlight study and write its outputs into ``out_dir``.

    Parameters
    ----------
    func : list of path-like
        GIfTI data files, left and right hemisphere of every run (``hemi-L``/``hemi-R`` in
        the names), one data array per sample; runs in the labels table's order.
    labels : path-like
        Labels table, one row per sample of all runs in order.
    mesh : str or list of path-like
        The mesh the data are on: a name nilearn loads (e.g. ``fsaverage5``), or the surface
        files of the hemispheres (``hemi-L``/``hemi-R`` in the names; fsnative, fsLR...).
    mask : list of path-like or None
        One GIfTI mask per hemisphere (nonzero: in), e.g. the cortex without the medial wall.
    distance : {"geodesic", "euclidean"}
    config : StudyConfig or None
        The study options (radius, estimator, cv, permutations...).
    t_r : float or None
        Repetition time in seconds (GIfTI files hold none): needed by ``config.high_pass``.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    from .study import StudyConfig

    config = config or StudyConfig()
    hemispheres = tuple(split_hemispheres(func))  # the maps of the hemispheres given

    def read(_out):
        polymesh, data, y, groups, mask_parts = _read(func, labels, mask, config, mesh, t_r)
        return polymesh, data, y, groups, mask_parts, {"surface data": [str(f) for f in func],
                                                       "labels table": str(labels)}  # fmt: skip

    return surface_study_from_reader(
        read, out_dir, hemispheres=hemispheres, mesh=mesh, distance=distance, config=config, force=force,
        quiet=quiet, name=name, t_r=t_r,
    )  # fmt: skip


def surface_study_from_reader(
    read, out_dir, *, hemispheres, mesh, distance: str = "geodesic", config, force: bool = False,
    quiet: bool = False, name: str = "", t_r: float | None = None,
) -> dict:  # fmt: skip
    """Run a surface study whose inputs ``read()`` gives, into the locked folder ``out_dir``.

    Parameters
    ----------
    read : callable
        ``read(out) -> (polymesh, data, y, groups, masks, sources)``, given the locked output
        folder (where beta maps are kept): the mesh, the cleaned data
        of the analysed samples per hemisphere (n_vertices, n_samples), their labels and runs,
        the masks per hemisphere (or None) and what they were read from (for the summary).
    hemispheres : tuple of str
        The hemispheres the data hold (their maps are written).
    mesh, distance, config, force, quiet, name, t_r
        As :func:`run_surface_study`.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    from .study import check_config
    from .surface_searchlight import SurfaceSearchLight

    t_start = time.perf_counter()
    check_config(config)
    if t_r is not None and not (np.isfinite(t_r) and t_r > 0):
        raise InputError(f"--t-r must be a positive number of seconds, got {t_r}")
    if config.high_pass is not None and t_r is None:
        raise InputError(
            "--high-pass needs the repetition time, which GIfTI files do not hold: give --t-r SECONDS"
        )
    names = SURFACE_OUTPUTS + (SURFACE_PERMUTATION_OUTPUTS if config.n_permutations else ())
    names += _TFCE_OUTPUTS if config.n_permutations and config.tfce else ()
    names += SURFACE_FOLD_MAPS if getattr(config, "fold_maps", False) else ()
    tags = {f"hemi-{h[0].upper()}" for h in hemispheres}
    names = tuple(n for n in names if "_hemi-" not in n or any(t in n for t in tags))
    with output_folder(out_dir, names, force=force) as out:
        polymesh, data, y, groups, mask_parts, sources = read(out)
        from ._options import searchlight_params
        from .study import CHECKPOINT_NAME, _check_checkpoint

        params = {**searchlight_params(config), "backend": config.backend}
        # null maps are kept in --out as they are made: an interrupted run resumes from them;
        # complete, they become the output null_scores.npy (prevalence inference reads them)
        checkpoint = out / CHECKPOINT_NAME if config.n_permutations else None
        if checkpoint is not None:
            _check_checkpoint(out)
        sl = SurfaceSearchLight(polymesh, mask=mask_parts, distance=distance, cv=parse_cv(config.cv, groups is not None),
                                verbose=0 if quiet else 1, checkpoint=checkpoint, keep_checkpoint=True,
                                **params)  # fmt: skip
        try:
            sl.fit(data, y, groups=groups)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        summary = _summary(
            config, name or "surface searchlight", sources, mesh, distance, sl, y, groups, names, t_r
        )
        summary["timings"] = {**sl.timings_}
        _write(out, names, sl, summary, mesh, config, t_start)
        # the checkpoint's record is kept until the outputs are in place (as run's)
        (out / CHECKPOINT_NAME).with_suffix(".json").unlink(missing_ok=True)
        return summary


def _summary(config, name, sources, mesh, distance, sl, y, groups, names, t_r=None) -> dict:
    from .spaces.surface import mesh_from_record, mesh_record

    chance = chance_level(config.scoring, len(sl.classes_))
    masked = sl.masked_scores_
    peak = int(np.argmax(masked))
    results = {
        "discs": int(sl.n_elements_), "mean disc size (vertices)": float(np.mean(sl.sphere_sizes_)),
        "engine": sl.engine_, "chance level": chance, "max score": float(masked.max()),
        "mean score": float(masked.mean()), "discs above chance": int((masked > chance).sum()),
        "peak hemisphere": sl._space.hemispheres[int(sl.neighbourhoods_.seeds_ijk[peak, 0])],
        "peak vertex": int(sl.neighbourhoods_.seeds_ijk[peak, 1]),
        "peak position (mm)": [round(float(v), 2) for v in sl._space.coordinates[peak]],
    }  # fmt: skip
    if config.n_permutations:
        results["discs with FWE p < 0.05 (max statistic)"] = int((sl.p_fwe_ < 0.05).sum())
        results["clusters with cluster FWE p < 0.05"] = sum(c["p_fwe_cluster"] < 0.05 for c in sl.clusters_)
        if config.tfce:
            results["discs with TFCE FWE p < 0.05"] = int((sl.p_fwe_tfce_ < 0.05).sum())
    return {
        "name": name,
        "parameters": {**asdict(config), "mesh": mesh_from_record(mesh_record(mesh)), "distance": distance, "n_folds": sl.cv_plan_.n_folds},
        # beta maps are not cleaned: the GLM modelled the drifts and confounds (as for volumes)
        "cleaning": "none (beta maps)" if "beta maps" in sources else _cleaning_record(config, t_r),
        "data": {**sources,
                 "samples analysed": len(y), "samples per condition": {str(c): int((y == c).sum()) for c in sl.classes_},
                 "runs": int(len(np.unique(groups))) if groups is not None else None,
                 "vertices": {h: int(n) for h, n in sl._space.n_vertices.items()},
                 "mask vertices": {h: int(m.sum()) for h, m in sl.mask_.items()}},
        "results": results,
        "software": software_versions(),
        "outputs": list(names),
    }  # fmt: skip


def _cleaning_record(config, t_r: float | None = None) -> dict:
    from .cleaning import Cleaning

    return Cleaning.from_config(config).describe(confounds=config.confounds, t_r=t_r)


def _save_gifti(img, staging: Path, stem: str) -> None:
    """One GIfTI per hemisphere, ``<stem>_hemi-L.func.gii`` (one data array per column)."""
    import nibabel as nib

    for hemi, values in img.data.parts.items():
        values = np.asarray(values, dtype=np.float32)
        columns = values[None] if values.ndim == 1 else values.T
        arrays = [
            nib.gifti.GiftiDataArray(np.ascontiguousarray(c), intent="NIFTI_INTENT_ESTIMATE") for c in columns
        ]
        nib.save(nib.gifti.GiftiImage(darrays=arrays), staging / f"{stem}_hemi-{hemi[0].upper()}.func.gii")


def save_surface_permutation_record(sl, mesh, path: Path) -> None:
    """What prevalence inference reads back beside a surface study's null maps: as
    :func:`fastsearchlight._permutation_record.save_permutation_record`, with the mesh's name,
    hemispheres and vertex counts in place of a grid (the affine: identity)."""
    from .io import atomic_path
    from .spaces.surface import mesh_record

    space, info = sl._space, sl.permutation_info_
    with atomic_path(path, force=True) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh, observed=sl.masked_scores_, process_mask=sl.process_mask_, affine=np.eye(4),
            exhaustive=bool(info["all arrangements enumerated"]), permute=str(info["scheme"]), mesh=mesh_record(mesh),
            hemispheres=np.array(space.hemispheres), n_vertices=np.array([space.n_vertices[h] for h in space.hemispheres]),
        )  # fmt: skip


def _write(out: Path, names, sl, summary: dict, mesh, config, t_start: float) -> None:
    """Maps, figures, report and summary, staged then moved into ``out`` together."""
    from nilearn.surface import SurfaceImage

    from . import report
    from .report._surface import plot_surface_map

    chance = summary["results"]["chance level"]
    with staged_outputs(out, names) as staging:
        _save_gifti(sl.scores_img_, staging, "searchlight_scores")
        if getattr(config, "fold_maps", False):
            _save_gifti(sl.fold_scores_img_, staging, "fold_scores")
        above = SurfaceImage(sl.mesh_, sl._space.split(sl.masked_scores_ - chance))
        title = f"Searchlight {config.scoring} minus chance ({' vs '.join(map(str, sl.classes_))})"
        plot_surface_map(above, staging / "searchlight_surface.png", title=title, mesh_name=mesh)
        figures = {"Searchlight scores minus chance, lateral and medial": "searchlight_surface.png"}
        tables = {}
        if config.n_permutations:
            for stem, p in (("p_uncorrected", sl.p_values_), ("p_fwe", sl.p_fwe_)) + (
                (("p_fwe_tfce", sl.p_fwe_tfce_),) if config.tfce else ()
            ):
                _save_gifti(SurfaceImage(sl.mesh_, sl._space.split(-np.log10(p))), staging, stem)
            clusters = pd.DataFrame(sl.clusters_, columns=_CLUSTER_COLUMNS)
            save_table(clusters, staging / "clusters.tsv")
            kept = np.where(sl.p_fwe_ < 0.05, sl.masked_scores_ - chance, 0.0)
            plot_surface_map(SurfaceImage(sl.mesh_, sl._space.split(kept)), staging / "searchlight_fwe_surface.png",
                             title=f"{title}, FWE p < 0.05", mesh_name=mesh)  # fmt: skip
            figures["Scores where the family-wise corrected p < 0.05"] = "searchlight_fwe_surface.png"
            tables["Clusters on the mesh (FWE p by cluster size and at the peak)"] = clusters
            save_surface_permutation_record(sl, mesh, staging / "permutation_record.npz")
        summary["timings"]["total"] = time.perf_counter() - t_start
        report.write_report(staging, summary, figures=figures, tables=tables, force=True,
                            title="Surface searchlight report")  # fmt: skip
        save_json(summary, staging / "summary.json")
        if config.n_permutations:
            from .study import CHECKPOINT_NAME

            # the checkpoint is the null maps' file: it becomes an output, last
            (out / CHECKPOINT_NAME).replace(staging / "null_scores.npy")
