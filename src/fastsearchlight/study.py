"""The whole study from files: select volumes, searchlight, univariate F-test, maps, figures, report.

This is the classic face-vs-house analysis (Haxby et al. 2001; nilearn's searchlight example)
as one function, :func:`run_study`, which the command line calls.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .images import read_img
from .io import InputError, output_folder, read_labels, save_img, save_json, select_conditions

#: files every analysis writes
OUTPUT_NAMES = (
    "searchlight_scores.nii.gz",
    "f_scores.nii.gz",
    "mean_img.nii.gz",
    "searchlight.png",
    "f_scores.png",
    "report.html",
    "summary.json",
)

#: files a permutation test adds
PERMUTATION_OUTPUTS = (
    "p_uncorrected.nii.gz", "p_fwe.nii.gz", "clusters.tsv", "null_distribution.png",
    "searchlight_fwe.png", "searchlight_clusters.png", "null_scores.npy", "permutation_record.npz",
)  # fmt: skip
#: the null maps (permutations x spheres, float64) and what the group level's prevalence
#: inference needs beside them (observed scores in float64, process mask, affine)
NULL_SCORES = "null_scores.npy"
PERMUTATION_RECORD = "permutation_record.npz"
#: file a permutation test with TFCE adds
TFCE_OUTPUT = "p_fwe_tfce.nii.gz"
TFCE_FIGURE = "searchlight_tfce.png"
CHECKPOINT_NAME = ".fastsearchlight-permutations.npy"


@dataclass
class StudyConfig:
    """Parameters of a study (the command line's options).

    ``backend`` and ``scheduler`` say where the searchlight runs: ``"loky"`` (in-process
    or ``n_jobs`` joblib processes) or ``"dask"`` on the dask.distributed scheduler at the
    address ``scheduler`` (None: the current default client). They do not change the
    results.
    """

    conditions: list[str] | None = field(default_factory=lambda: ["face", "house"])
    label_column: str = "labels"
    group_column: str | None = "chunks"
    radius: float = 5.6
    estimator: str = "svc"
    cv: str = "kfold:4"
    scoring: str = "accuracy"
    n_jobs: int = 1
    memory_mb: float = 512.0
    n_permutations: int = 0
    permute: str = "blocks"
    tfce: bool = False
    tfce_dh: float | str = "auto"
    cluster_alpha: float = 0.001
    seed: int = 0
    backend: str = "loky"
    scheduler: str | None = None


def check_config(config: StudyConfig) -> None:
    """Check the study's parameters (the estimator's constraints), before anything runs."""
    from ._validation import check_params
    from .searchlight import SearchLight

    values = asdict(config)
    values["n_permutations"] = config.n_permutations
    constraints = {k: v for k, v in SearchLight._parameter_constraints.items() if k in values}
    check_params(values, constraints)


def parse_cv(spec: str):
    """A splitter from a short spec: ``kfold:4``, ``stratified:5``, ``logo``, ``groupkfold:3``.

    ``kfold`` and ``stratified`` do not shuffle (folds follow acquisition order, as
    scikit-learn's defaults); ``logo`` leaves one run out.
    """
    from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut, StratifiedKFold

    name, _, arg = str(spec).partition(":")
    name = name.strip().lower()
    makers = {"kfold": KFold, "stratified": StratifiedKFold, "groupkfold": GroupKFold}
    if name in ("logo", "leave-one-run-out", "loro"):
        if arg:
            raise InputError(f"cv {spec!r}: logo takes no number")
        return LeaveOneGroupOut()
    if name not in makers:
        raise InputError(
            f"unknown cv {spec!r}; use kfold:N, stratified:N, groupkfold:N or logo"
        )
    try:
        k = int(arg) if arg else 5
    except ValueError:
        raise InputError(f"cv {spec!r}: the number of folds must be an integer") from None
    if k < 2:
        raise InputError(f"cv {spec!r}: at least 2 folds")
    return makers[name](k)


def software_versions() -> dict:
    import nilearn
    import scipy
    import sklearn

    from . import __version__

    return {
        "fastsearchlight": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "nilearn": nilearn.__version__,
        "nibabel": nib.__version__,
    }


def _corrected_figures(sl, config, mean, staging: Path, title: str, chance: float) -> dict:
    """Figures of the map where the permutation test rejects (voxel FWE, clusters, TFCE)."""
    from . import report
    from .images import scores_to_img

    def figure(keep, name, what):
        values = np.where(keep, sl.masked_scores_, 0.0)
        img = scores_to_img(values, sl.process_mask_, sl.scores_img_)
        report.plot_searchlight(img, mean, staging / name, title=f"{title}, {what}", chance=chance)
        return name

    out = {"Scores where the family-wise corrected p < 0.05 (maximum statistic)":
           figure(sl.p_fwe_ < 0.05, "searchlight_fwe.png", "voxel FWE p < 0.05")}  # fmt: skip
    significant = [c["cluster"] for c in sl.clusters_ if c["p_fwe_cluster"] < 0.05]
    out["Scores in clusters with cluster-level FWE p < 0.05"] = figure(
        np.isin(sl.cluster_labels_, significant), "searchlight_clusters.png", "cluster FWE p < 0.05"
    )
    if config.tfce:
        out["Scores where the TFCE family-wise corrected p < 0.05"] = figure(
            sl.p_fwe_tfce_ < 0.05, "searchlight_tfce.png", "TFCE FWE p < 0.05"
        )
    return out


def _display_p(table, columns, smallest: float):
    """The table with its p-value columns as text: rounded, and "<= 1/(N+1)" where the
    observed value beat every permutation (the smallest p the test can give)."""
    shown = table.copy()
    for col in columns:
        shown[col] = [
            f"<= {smallest:.3g}" if p <= smallest * (1 + 1e-9) else f"{p:.3g}" for p in table[col]
        ]
    return shown


def save_permutation_record(sl, path) -> None:
    """What a subject's null maps need to be read back: observed scores (float64), the
    process mask (the spheres' order), the affine, and how the permutations were made."""
    from .io import atomic_path

    info = sl.permutation_info_
    with atomic_path(path, force=True) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh, observed=sl.masked_scores_, process_mask=sl.process_mask_,
            affine=sl.scores_img_.affine, exhaustive=bool(info["all arrangements enumerated"]),
            permute=str(info["scheme"]),
        )  # fmt: skip


def load_permutation_record(folder):
    """A study folder's observed scores and null maps (memory-mapped), as saved by a study
    with permutations. Raises InputError naming what is missing."""
    folder = Path(folder)
    paths = folder / PERMUTATION_RECORD, folder / NULL_SCORES
    for p in paths:
        if not p.is_file():
            raise InputError(
                f"{p} not found: run the subject's study with --permutations to keep its null maps"
            )
    try:
        with np.load(paths[0]) as rec:
            record = {k: rec[k] for k in rec.files}
        null = np.load(paths[1], mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"could not read the null maps in {folder}: {exc}") from None
    n_spheres = int(record["process_mask"].sum())
    if null.ndim != 2 or null.shape[1] != n_spheres or record["observed"].shape != (n_spheres,):
        raise InputError(f"the null maps in {folder} do not match its process mask")
    record["null"] = null
    record["exhaustive"] = bool(record["exhaustive"])
    return record


def _permutations_phrase(info: dict) -> str:
    """'100 permutations', or 'all 64 distinct permutations' for an exhaustive test."""
    if info["all arrangements enumerated"]:
        return f"all {info['permutations']} distinct permutations"
    return f"{info['permutations']} permutations"


def chance_level(scoring: str, n_classes: int) -> float:
    """Expected score of a classifier that knows nothing."""
    return 1.0 / n_classes if scoring in (None, "accuracy") else 0.5


def f_test_map(func_img, mask_img, y, groups):
    """-log10 p of a univariate F-test per voxel, data standardised per run, capped at 10.

    As nilearn's classic searchlight example: ``NiftiMasker(runs=..., standardize=...)`` then
    scikit-learn's ``f_classif``.
    """
    from nilearn.maskers import NiftiMasker
    from sklearn.feature_selection import f_classif

    masker = NiftiMasker(mask_img=mask_img, runs=groups, standardize="zscore_sample")
    X = masker.fit_transform(func_img)
    with np.errstate(divide="ignore", invalid="ignore"):
        _, p = f_classif(X, y)
        logp = -np.log10(p)
    logp = np.nan_to_num(logp, nan=0.0, posinf=10.0)
    logp = np.minimum(logp, 10.0)
    return masker.inverse_transform(logp)


def _load_mask(img, func_img, name, path):
    from nilearn.image import check_niimg_3d

    try:
        img = check_niimg_3d(img)
    except (ValueError, TypeError) as exc:
        raise InputError(f"could not read {name} {path}: {exc}") from None
    if img.shape[:3] != func_img.shape[:3] or not np.allclose(img.affine, func_img.affine, atol=1e-4):
        raise InputError(
            f"{name} {Path(str(path)).name} has shape {img.shape[:3]} and the functional "
            f"images {func_img.shape[:3]} (or their affines differ): the mask must be on the "
            "functional grid"
        )
    return img


def run_study(
    func,
    labels,
    mask,
    out_dir,
    *,
    process_mask=None,
    config: StudyConfig | None = None,
    force: bool = False,
    quiet: bool = False,
    name: str = "",
    resample_mask: bool = False,
) -> dict:
    """Run the study and write its outputs into ``out_dir``.

    Parameters
    ----------
    func : path-like or Niimg-like
        4D functional images.
    labels : path-like
        Labels table (one row per volume).
    mask, process_mask : path-like or Niimg-like
        Mask of the voxels used, and of the sphere centres (default: ``mask``).
    out_dir : path-like
    config : StudyConfig
    force : bool
        Overwrite existing outputs.
    quiet : bool
        No progress bars.
    name : str
        Name of the data set, for the report.
    resample_mask : bool
        Resample the masks onto the functional grid (nearest neighbour) instead of
        requiring them to be on it.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    config = config or StudyConfig()
    from .engine import check_backend, import_distributed

    check_config(config)
    check_backend(config.backend)
    if config.backend == "dask":
        import_distributed()  # a missing optional dependency is said before any work
    t_start = time.perf_counter()
    timings = {}
    names = OUTPUT_NAMES + (PERMUTATION_OUTPUTS if config.n_permutations else ())
    if config.n_permutations and config.tfce:
        names += (TFCE_OUTPUT, TFCE_FIGURE)
    with output_folder(out_dir, names, force=force) as out:
        summary = _study_into(out, func, labels, mask, process_mask, config, quiet, name,
                              resample_mask, names, t_start, timings)  # fmt: skip
        # the checkpoint is kept until the outputs are in place
        for path in _checkpoint_files(out):
            path.unlink(missing_ok=True)
    return summary


def _checkpoint_files(out: Path) -> tuple[Path, Path]:
    """The permutation checkpoint in ``out`` and its record."""
    path = out / CHECKPOINT_NAME
    return path, path.with_suffix(".json")


def _check_checkpoint(out: Path) -> None:
    """A checkpoint left by an interrupted run must be readable to resume from."""
    import json

    path, record = _checkpoint_files(out)
    if not path.exists() or not record.exists():
        return  # none (an incomplete pair is not resumed from)
    for bad, read in ((record, lambda: json.loads(record.read_text())), (path, lambda: np.load(path, mmap_mode="r"))):
        try:
            read()
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(
                f"the permutation checkpoint {bad} is unreadable ({' '.join(str(exc).split())}): "
                f"delete {path.name} and {record.name} from {out} to start the permutations afresh"
            ) from None


def _study_into(out, func, labels, mask, process_mask, config, quiet, name, resample_mask, names,
                t_start, timings) -> dict:  # fmt: skip
    """The study, written into the locked folder ``out`` (see :func:`run_study`)."""
    from nilearn.image import index_img, mean_img, resample_to_img
    from tqdm.auto import tqdm

    from . import report
    from .searchlight import SearchLight

    steps = tqdm(total=5, disable=quiet, desc="study", unit="step", leave=False)

    # ------------------------------------------------------------------ inputs
    t0 = time.perf_counter()
    steps.set_postfix_str("reading")
    func_img = read_img(func, "functional images")
    if len(func_img.shape) != 4:
        raise InputError(f"functional images must be 4D, got shape {func_img.shape}")
    mask_src = read_img(mask, "mask")
    process_src = read_img(process_mask, "process mask") if process_mask is not None else None
    table = read_labels(labels, label_column=config.label_column, group_column=config.group_column)
    n_volumes = func_img.shape[3]
    if len(table) != n_volumes:
        raise InputError(
            f"labels table has {len(table)} rows but the functional images have {n_volumes} volumes"
        )
    keep = select_conditions(table, config.conditions, label_column=config.label_column)
    y = table[config.label_column].astype(str).to_numpy()[keep]
    groups = None
    if config.group_column is not None:
        groups = table[config.group_column].to_numpy()[keep]
    func_sel = index_img(func_img, np.flatnonzero(keep))
    func_sel = nib.Nifti1Image(np.asarray(func_sel.dataobj, dtype=np.float32), func_sel.affine, func_sel.header)
    func_sel.header.set_data_dtype(np.float32)
    if resample_mask:
        load = lambda p: resample_to_img(  # noqa: E731
            str(p) if isinstance(p, Path) else p, func_sel, interpolation="nearest",
            force_resample=True, copy_header=True,
        )  # fmt: skip
        mask_img = load(mask_src)
        process_img = load(process_src) if process_mask is not None else None
    else:
        mask_img = _load_mask(mask_src, func_sel, "mask", mask)
        process_img = _load_mask(process_src, func_sel, "process mask", process_mask) if process_mask is not None else None
    cv = parse_cv(config.cv)
    timings["read"] = time.perf_counter() - t0
    steps.update()

    # ------------------------------------------------------------------ searchlight
    t0 = time.perf_counter()
    steps.set_postfix_str("searchlight")
    sl = SearchLight(
        mask_img=mask_img, process_mask_img=process_img, radius=config.radius,
        estimator=config.estimator, cv=cv, scoring=config.scoring, n_jobs=config.n_jobs,
        verbose=0 if quiet else 1, memory_mb=config.memory_mb,
        n_permutations=config.n_permutations, permute=config.permute, random_state=config.seed,
        tfce=config.tfce, tfce_dh=config.tfce_dh,
        cluster_alpha=config.cluster_alpha,
        checkpoint=out / CHECKPOINT_NAME if config.n_permutations else None,
        keep_checkpoint=True, backend=config.backend, scheduler=config.scheduler,
    )  # fmt: skip
    if config.n_permutations:
        _check_checkpoint(out)
    sl.fit(func_sel, y, groups=groups)
    timings["searchlight"] = time.perf_counter() - t0
    steps.update()

    # ------------------------------------------------------------------ F-test, mean image
    t0 = time.perf_counter()
    steps.set_postfix_str("F-test")
    f_img = f_test_map(func_sel, mask_img, y, groups)
    mean = mean_img(func_sel, copy_header=True)
    timings["f_test"] = time.perf_counter() - t0
    steps.update()

    n_classes = len(sl.classes_)
    chance = chance_level(config.scoring, n_classes)
    scores_img = sl.scores_img_
    masked = sl.masked_scores_
    peak = int(np.argmax(masked))
    peak_ijk = sl.neighbourhoods_.seeds_ijk[peak]
    peak_xyz = nib.affines.apply_affine(func_sel.affine, peak_ijk)
    counts = {str(c): int((y == c).sum()) for c in sl.classes_}
    summary = {
        "name": name,
        "parameters": {**asdict(config), "cv_splitter": repr(cv), "n_folds": sl.cv_plan_.n_folds},
        "data": {
            "functional images": str(func) if isinstance(func, (str, Path)) else "in memory",
            "labels table": str(labels),
            "mask": str(mask) if isinstance(mask, (str, Path)) else "in memory",
            "grid shape": list(func_img.shape[:3]),
            "voxel size (mm)": [round(float(v), 3) for v in func_img.header.get_zooms()[:3]],
            "volumes in the images": n_volumes,
            "volumes analysed": int(keep.sum()),
            "volumes per condition": counts,
            "runs": int(len(np.unique(groups))) if groups is not None else None,
            "mask voxels": int(np.asarray(sl.mask_img_.dataobj).astype(bool).sum()),
        },
        "results": {
            "spheres": int(sl.n_elements_),
            "mean sphere size (voxels)": float(np.mean(sl.sphere_sizes_)),
            "engine": sl.engine_,
            "chance level": chance,
            "max score": float(masked.max()),
            "mean score": float(masked.mean()),
            "spheres above chance": int((masked > chance).sum()),
            "peak voxel (i, j, k)": [int(v) for v in peak_ijk],
            "peak position (mm)": [round(float(v), 2) for v in peak_xyz],
            "max F-test -log10 p": float(np.asarray(f_img.dataobj).max()),
        },
        "timings": timings,
        "software": software_versions(),
        "outputs": list(names),
    }
    if config.n_permutations:
        n_sig = lambda p: int((p < 0.05).sum())  # noqa: E731
        info = sl.permutation_info_
        summary["permutation test"] = {
            **sl.null_summary_,
            "labels permuted": (
                f"{'whole blocks' if config.permute == 'blocks' else 'single volumes'} "
                f"{'within runs' if groups is not None else 'across the session'}"
            ),
            "exchangeable units": info["exchangeable units"],
            "distinct arrangements possible": info["distinct arrangements possible"],
            "all arrangements enumerated": info["all arrangements enumerated"],
            "spheres with uncorrected p < 0.05": n_sig(sl.p_values_),
            "spheres with FWE p < 0.05 (max statistic)": n_sig(sl.p_fwe_),
            **({"spheres with TFCE FWE p < 0.05": n_sig(sl.p_fwe_tfce_)} if config.tfce else {}),
            "clusters with cluster FWE p < 0.05": sum(c["p_fwe_cluster"] < 0.05 for c in sl.clusters_),
            "minimum achievable p": info["smallest possible p"],
        }

    # ------------------------------------------------------------------ write, all or nothing
    staging = Path(tempfile.mkdtemp(prefix=".fastsearchlight-", dir=out))
    try:
        t0 = time.perf_counter()
        steps.set_postfix_str("figures")
        save_img(scores_img, staging / "searchlight_scores.nii.gz")
        save_img(f_img, staging / "f_scores.nii.gz")
        save_img(mean, staging / "mean_img.nii.gz")
        title = f"Searchlight {config.scoring} ({' vs '.join(map(str, sl.classes_))})"
        report.plot_searchlight(scores_img, mean, staging / "searchlight.png", title=title, chance=chance)
        report.plot_f_scores(f_img, mean, staging / "f_scores.png", title="F-test, -log10 p")
        regions = report.top_regions(scores_img, chance=chance)
        figures = {"Searchlight scores over the mean functional image": "searchlight.png",
                   "Univariate F-test (-log10 p), the classic comparison": "f_scores.png"}  # fmt: skip
        tables = {"Top regions": regions}
        if config.n_permutations:
            import pandas as pd

            from .images import scores_to_img

            neglog = lambda p: scores_to_img(-np.log10(p), sl.process_mask_, func_sel.slicer[..., 0])  # noqa: E731
            save_img(neglog(sl.p_values_), staging / "p_uncorrected.nii.gz")
            save_img(neglog(sl.p_fwe_), staging / "p_fwe.nii.gz")
            save_permutation_record(sl, staging / PERMUTATION_RECORD)
            if config.tfce:
                save_img(neglog(sl.p_fwe_tfce_), staging / TFCE_OUTPUT)
            clusters = pd.DataFrame(sl.clusters_, columns=[
                "cluster", "size", "peak_score", "peak_x_mm", "peak_y_mm", "peak_z_mm",
                "peak_p_fwe", "p_fwe_cluster"])  # fmt: skip
            from .io import save_table

            save_table(clusters, staging / "clusters.tsv")
            report.plot_null_distribution(
                sl.max_null_, float(masked.max()), staging / "null_distribution.png",
                xlabel="maximum score over the map, per permutation",
                title=f"Max-statistic null ({_permutations_phrase(info)})",
            )  # fmt: skip
            corrected = _corrected_figures(sl, config, mean, staging, title, chance)
            figures = {**dict(list(figures.items())[:1]), **corrected, **dict(list(figures.items())[1:])}
            figures["Null distribution of the maximum score (family-wise correction)"] = "null_distribution.png"
            # one cluster table: the permutation test's clusters replace the descriptive one
            tables = {
                f"Clusters (scores >= {sl.cluster_threshold_:.3f}, the null's "
                f"{1 - config.cluster_alpha:.3g} quantile; FWE p by cluster size and at the peak)":
                    _display_p(clusters, ("peak_p_fwe", "p_fwe_cluster"), info["smallest possible p"]),
            }  # fmt: skip
        timings["figures"] = time.perf_counter() - t0
        steps.update()
        timings["total"] = time.perf_counter() - t_start
        report.write_report(
            staging, summary,
            figures=figures, tables=tables, force=True,
        )  # fmt: skip
        save_json(summary, staging / "summary.json")
        if config.n_permutations:
            # the checkpoint is the null maps' file: it becomes an output, last
            (out / CHECKPOINT_NAME).replace(staging / NULL_SCORES)
        for fname in names:
            (staging / fname).replace(out / fname)
        if config.n_permutations:
            (out / CHECKPOINT_NAME).with_suffix(".json").unlink(missing_ok=True)
        steps.update()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        steps.close()
    return summary
