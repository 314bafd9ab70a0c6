"""The whole study from files: select volumes, searchlight, univariate F-test, maps, figures, report.

This is the classic face-vs-house analysis (Haxby et al. 2001; nilearn's searchlight example)
as one function, :func:`run_study`, which the command line calls.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, make_dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ._options import config_fields
from ._permutation_record import (
    NULL_SCORES,
    PERMUTATION_RECORD,
    load_permutation_record,
    save_permutation_record,
)
from ._study_inputs import StudyInputs, chance_level, f_test_map, parse_cv, read_inputs
from ._versions import software_versions
from .io import InputError, output_folder, save_img, save_json, save_table, staged_outputs
from .report._answer import display_p, headline, rounded

__all__ = [
    "CHECKPOINT_NAME",
    "FOLD_MAPS",
    "HISTOGRAM",
    "NULL_SCORES",
    "OUTPUT_NAMES",
    "PERMUTATION_OUTPUTS",
    "PERMUTATION_RECORD",
    "StudyConfig",
    "TFCE_FIGURE",
    "TFCE_OUTPUT",
    "chance_level",
    "check_config",
    "f_test_map",
    "load_permutation_record",
    "output_names",
    "parse_cv",
    "run_study",
    "save_permutation_record",
    "software_versions",
    "study_from_reader",
]

#: files every analysis writes
OUTPUT_NAMES = (
    "searchlight_scores.nii.gz",
    "f_scores.nii.gz",
    "mean_img.nii.gz",
    "searchlight.png",
    "f_scores.png",
    "score_histogram.png",
    "report.html",
    "summary.json",
)

#: files a permutation test adds
PERMUTATION_OUTPUTS = (
    "p_uncorrected.nii.gz", "p_fwe.nii.gz", "clusters.tsv", "null_distribution.png",
    "searchlight_fwe.png", "searchlight_clusters.png", NULL_SCORES, PERMUTATION_RECORD,
)  # fmt: skip
#: file a permutation test with TFCE adds
TFCE_OUTPUT = "p_fwe_tfce.nii.gz"
TFCE_FIGURE = "searchlight_tfce.png"
CHECKPOINT_NAME = ".fastsearchlight-permutations.npy"
#: file ``fold_maps`` adds: the map of each fold (4D)
FOLD_MAPS = "fold_scores.nii.gz"
#: figure of every study: the histogram of the spheres' scores
HISTOGRAM = "score_histogram.png"
#: columns of ``clusters.tsv``
_CLUSTER_COLUMNS = ["cluster", "size", "peak_score", "peak_x_mm", "peak_y_mm", "peak_z_mm",
                    "peak_p_fwe", "p_fwe_cluster"]  # fmt: skip

StudyConfig = make_dataclass(
    "StudyConfig",
    config_fields(),
    namespace={
        "__module__": __name__,
        "__doc__": """Parameters of a study (the command line's options).

    The fields and their defaults are those of :data:`fastsearchlight._options.OPTIONS`.
    ``backend`` and ``scheduler`` say where the searchlight runs: ``"loky"`` (in-process
    or ``n_jobs`` joblib processes) or ``"dask"`` on the dask.distributed scheduler at the
    address ``scheduler`` (None: the current default client). They do not change the
    results.
    """,
    },
)


def check_config(config: StudyConfig) -> None:
    """Check the study's parameters (the estimator's constraints), before anything runs."""
    from ._validation import check_params
    from .searchlight import SearchLight

    values = asdict(config)
    constraints = {k: v for k, v in SearchLight._parameter_constraints.items() if k in values}
    check_params(values, constraints)


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
    command: str | None = None,
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
    command : str or None
        The command line that ran the study, recorded in the summary.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    config = config or StudyConfig()

    def read(out: Path):
        inputs = read_inputs(func, labels, mask, process_mask, config, resample_mask)
        sources = {"functional images": func, "labels table": labels, "mask": mask}
        if process_mask is not None:
            sources["process mask"] = process_mask
        return inputs, sources

    return study_from_reader(
        read, out_dir, config=config, force=force, quiet=quiet, name=name, command=command
    )


def output_names(config: StudyConfig) -> tuple[str, ...]:
    """The files a study with ``config`` writes."""
    names = OUTPUT_NAMES + (PERMUTATION_OUTPUTS if config.n_permutations else ())
    if config.n_permutations and config.tfce:
        names += (TFCE_OUTPUT, TFCE_FIGURE)
    return names + ((FOLD_MAPS,) if getattr(config, "fold_maps", False) else ())


def study_from_reader(read, out_dir, *, config: StudyConfig, force: bool = False, quiet: bool = False,
                      name: str = "", command: str | None = None) -> dict:  # fmt: skip
    """Run a study whose inputs ``read(out)`` gives, into the locked folder ``out_dir``.

    ``read`` returns the :class:`~fastsearchlight._study_inputs.StudyInputs` and a mapping
    of what they were read from (paths, checksummed in the summary); it runs inside the
    locked output folder, so it may keep intermediate files there (beta maps).
    """
    from .engine import check_backend, import_distributed

    check_config(config)
    check_backend(config.backend)
    if config.backend == "dask":
        import_distributed()  # a missing optional dependency is said before any work
    t_start = time.perf_counter()
    names = output_names(config)
    with output_folder(out_dir, names, force=force) as out:
        study = _Study(out, config, names, t_start, quiet)
        summary = study.run(lambda: read(out), name, command)
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
    for bad, read in (
        (record, lambda: json.loads(record.read_text())),
        (path, lambda: np.load(path, mmap_mode="r")),
    ):
        try:
            read()
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(
                f"the permutation checkpoint {bad} is unreadable ({' '.join(str(exc).split())}): "
                f"delete {path.name} and {record.name} from {out} to start the permutations afresh"
            ) from None


def _permutations_phrase(info: dict) -> str:
    """'100 permutations', or 'all 64 distinct permutations' for an exhaustive test."""
    if info["all arrangements enumerated"]:
        return f"all {info['permutations']} distinct permutations"
    return f"{info['permutations']} permutations"


class _Study:
    """One study written into the locked folder ``out``, step by step (see :func:`run_study`)."""

    def __init__(self, out: Path, config: StudyConfig, names: tuple[str, ...], t_start: float, quiet: bool):
        from tqdm.auto import tqdm

        self.out, self.config, self.names, self.t_start, self.quiet = out, config, names, t_start, quiet
        self.timings: dict[str, float] = {}
        self.steps = tqdm(total=5, disable=quiet, desc="study", unit="step", leave=False)

    @contextlib.contextmanager
    def _step(self, key: str, label: str):
        """Time one step into ``timings[key]`` and advance the progress bar."""
        t0 = time.perf_counter()
        self.steps.set_postfix_str(label)
        yield
        self.timings[key] = time.perf_counter() - t0
        self.steps.update()

    def run(self, read, name: str, command: str | None) -> dict:
        """Every step: read, searchlight, F-test, summary, outputs."""
        from nilearn.image import mean_img

        try:
            with self._step("read", "reading"):
                inputs, sources = read()
            with self._step("searchlight", "searchlight"):
                sl = self._searchlight(inputs)
            with self._step("f_test", "F-test"):
                f_img = f_test_map(inputs.func_sel, inputs.mask_img, inputs.y, inputs.groups)
                mean = inputs.background if inputs.background is not None else mean_img(inputs.func_sel)
            summary = self._summary(name, command, sources, inputs, sl, f_img)
            self._write(summary, inputs, sl, f_img, mean)
        finally:
            self.steps.close()
        return summary

    # ------------------------------------------------------------------ searchlight
    def _searchlight(self, inputs: StudyInputs):
        """The searchlight fitted on the analysed volumes (resuming from a checkpoint)."""
        from ._options import searchlight_params
        from .searchlight import SearchLight

        config = self.config
        sl = SearchLight(
            mask_img=inputs.mask_img, process_mask_img=inputs.process_img, cv=inputs.cv,
            verbose=0 if self.quiet else 1, keep_checkpoint=True,
            checkpoint=self.out / CHECKPOINT_NAME if config.n_permutations else None,
            **searchlight_params(config),
        )  # fmt: skip
        if config.n_permutations:
            _check_checkpoint(self.out)
        sl.fit(inputs.func_sel, inputs.y, groups=inputs.groups)
        return sl

    # ------------------------------------------------------------------ summary
    def _summary(self, name: str, command, sources: dict, inputs: StudyInputs, sl, f_img) -> dict:
        """The study's summary (``summary.json``); its timings fill in as the study goes."""
        config = self.config
        summary = {
            "name": name,
            "command line": command,
            "parameters": {**asdict(config), "cv_splitter": repr(inputs.cv), "n_folds": sl.cv_plan_.n_folds},
            "data": _data_summary(sources, inputs, sl),
            "results": _results_summary(config, inputs, sl, f_img),
            "timings": self.timings,
            "software": software_versions(),
            "outputs": list(self.names),
        }
        if config.n_permutations:
            summary["permutation test"] = _permutation_summary(config, inputs, sl)
        return summary

    # ------------------------------------------------------------------ outputs
    def _write(self, summary: dict, inputs: StudyInputs, sl, f_img, mean) -> None:
        """Maps, figures, report and summary, staged then moved into place together."""
        from . import report

        config = self.config
        with staged_outputs(self.out, self.names) as staging:
            with self._step("figures", "figures"):
                chance = summary["results"]["chance level"]
                title = f"Searchlight {config.scoring} ({' vs '.join(map(str, sl.classes_))})"
                cuts = _study_cuts(sl, config)
                answer, figures, tables = _write_maps(staging, sl, f_img, mean, title, chance, config, cuts)
                if config.n_permutations:
                    answer, figures, tables = _write_permutation_outputs(
                        staging, config, inputs, sl, mean, title, chance, answer, figures, cuts
                    )
            self.timings["total"] = time.perf_counter() - self.t_start
            report.write_report(staging, summary, figures=figures, tables=tables, force=True,
                                answer=answer, headline=headline(summary, config.scoring))  # fmt: skip
            save_json(summary, staging / "summary.json")
            if config.n_permutations:
                # the checkpoint is the null maps' file: it becomes an output, last
                (self.out / CHECKPOINT_NAME).replace(staging / NULL_SCORES)
        self.steps.update()


def _data_summary(sources: dict, inputs: StudyInputs, sl) -> dict:
    """The ``data`` section of the summary (with a checksum of each input file)."""
    from ._provenance import describe_sources

    shown, checksums = describe_sources(sources)
    y, groups, func_img = inputs.y, inputs.groups, inputs.func_img
    return {
        **shown,
        "grid shape": list(func_img.shape[:3]),
        "voxel size (mm)": [round(float(v), 3) for v in func_img.header.get_zooms()[:3]],
        "volumes in the images": func_img.shape[3],
        "volumes analysed": int(inputs.keep.sum()),
        "volumes per condition": {str(c): int((y == c).sum()) for c in sl.classes_},
        "runs": int(len(np.unique(groups))) if groups is not None else None,
        "mask voxels": int(np.asarray(sl.mask_img_.dataobj).astype(bool).sum()),
        **inputs.details,
        "input checksums": checksums,
    }


def _results_summary(config: StudyConfig, inputs: StudyInputs, sl, f_img) -> dict:
    """The ``results`` section of the summary."""
    chance = chance_level(config.scoring, len(sl.classes_))
    masked = sl.masked_scores_
    peak_ijk = sl.neighbourhoods_.seeds_ijk[int(np.argmax(masked))]
    peak_xyz = nib.affines.apply_affine(inputs.func_sel.affine, peak_ijk)
    return {
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
    }


def _permutation_summary(config: StudyConfig, inputs: StudyInputs, sl) -> dict:
    """The ``permutation test`` section of the summary."""
    n_sig = lambda p: int((p < 0.05).sum())  # noqa: E731
    info = sl.permutation_info_
    return {
        **sl.null_summary_,
        "labels permuted": (
            f"{'whole blocks' if config.permute == 'blocks' else 'single volumes'} "
            f"{'within runs' if inputs.groups is not None else 'across the session'}"
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


def _study_cuts(sl, config) -> tuple:
    """The cuts of every figure of a study: through the strongest result, i.e.
    :func:`~fastsearchlight.plotting.map_cuts` of the spheres with family-wise corrected
    p < 0.05 when the permutation test finds any, else of the whole map."""
    from . import plotting
    from .images import scores_to_img

    if config.n_permutations and np.any(sl.p_fwe_ < 0.05):
        kept = np.where(sl.p_fwe_ < 0.05, sl.masked_scores_, 0.0)
        return plotting.map_cuts(scores_to_img(kept, sl.process_mask_, sl.scores_img_))
    return plotting.map_cuts(sl.scores_img_)


def _write_maps(
    staging: Path, sl, f_img, mean, title: str, chance: float, config, cuts
) -> tuple[dict, dict, dict]:
    """The maps and figures of every study: the report's answer figures, other figures, tables."""
    from . import plotting, report

    save_img(sl.scores_img_, staging / "searchlight_scores.nii.gz")
    save_img(f_img, staging / "f_scores.nii.gz")
    save_img(mean, staging / "mean_img.nii.gz")
    if config.fold_maps:
        save_img(sl.fold_scores_img_, staging / FOLD_MAPS)
    plotting.plot_searchlight(sl.scores_img_, mean, staging / "searchlight.png", title=title, chance=chance,
                              cuts=cuts)  # fmt: skip
    plotting.plot_f_scores(f_img, mean, staging / "f_scores.png", title="F-test, -log10 p", cuts=cuts)
    plotting.plot_score_histogram(sl.masked_scores_, staging / HISTOGRAM, chance=chance,
                                  xlabel=f"sphere {config.scoring}")  # fmt: skip
    answer = {"Searchlight scores over the mean functional image": "searchlight.png",
              "Scores of every sphere, with chance": HISTOGRAM}  # fmt: skip
    figures = {"Univariate F-test (-log10 p), the classic comparison": "f_scores.png"}
    return answer, figures, {"Top regions": rounded(report.top_regions(sl.scores_img_, chance=chance))}


def _write_permutation_outputs(staging: Path, config: StudyConfig, inputs: StudyInputs, sl, mean,
                               title: str, chance: float, answer: dict, figures: dict,
                               cuts) -> tuple[dict, dict, dict]:  # fmt: skip
    """The permutation test's maps, tables and figures; the report's figures and tables."""
    import pandas as pd

    from . import plotting
    from .images import scores_to_img

    info = sl.permutation_info_
    neglog = lambda p: scores_to_img(-np.log10(p), sl.process_mask_, inputs.func_sel.slicer[..., 0])  # noqa: E731
    save_img(neglog(sl.p_values_), staging / "p_uncorrected.nii.gz")
    save_img(neglog(sl.p_fwe_), staging / "p_fwe.nii.gz")
    save_permutation_record(sl, staging / PERMUTATION_RECORD)
    if config.tfce:
        save_img(neglog(sl.p_fwe_tfce_), staging / TFCE_OUTPUT)
    clusters = pd.DataFrame(sl.clusters_, columns=_CLUSTER_COLUMNS)
    save_table(clusters, staging / "clusters.tsv")
    plotting.plot_null_distribution(
        sl.max_null_, float(sl.masked_scores_.max()), staging / "null_distribution.png",
        xlabel="maximum score over the map, per permutation",
        title=f"Max-statistic null ({_permutations_phrase(info)})",
    )  # fmt: skip
    corrected = _corrected_figures(sl, config, mean, staging, title, chance, cuts)
    first, *rest = answer.items()
    answer = {first[0]: first[1], **corrected, **dict(rest)}
    figures = {
        **figures,
        "Null distribution of the maximum score (family-wise correction)": "null_distribution.png",
    }
    # one cluster table: the permutation test's clusters replace the descriptive one
    tables = {
        f"Clusters (scores >= {sl.cluster_threshold_:.3f}, the null's "
        f"{1 - config.cluster_alpha:.3g} quantile; FWE p by cluster size and at the peak)":
            rounded(display_p(clusters, ("peak_p_fwe", "p_fwe_cluster"), info["smallest possible p"])),
    }  # fmt: skip
    return answer, figures, tables


def _corrected_figures(sl, config, mean, staging: Path, title: str, chance: float, cuts) -> dict:
    """Figures of the map where the permutation test rejects (voxel FWE, clusters, TFCE)."""
    from . import plotting
    from .images import scores_to_img

    def figure(keep, name, what):
        values = np.where(keep, sl.masked_scores_, 0.0)
        img = scores_to_img(values, sl.process_mask_, sl.scores_img_)
        plotting.plot_searchlight(
            img, mean, staging / name, title=f"{title}, {what}", chance=chance, cuts=cuts
        )
        return name

    out = {"Scores where the family-wise corrected p < 0.05 (maximum statistic)":
           figure(sl.p_fwe_ < 0.05, "searchlight_fwe.png", "voxel FWE p < 0.05")}  # fmt: skip
    significant = [c["cluster"] for c in sl.clusters_ if c["p_fwe_cluster"] < 0.05]
    out["Scores in clusters with cluster-level FWE p < 0.05"] = figure(
        np.isin(sl.cluster_labels_, significant), "searchlight_clusters.png", "cluster FWE p < 0.05"
    )
    if config.tfce:
        out["Scores where the TFCE family-wise corrected p < 0.05"] = figure(
            sl.p_fwe_tfce_ < 0.05, TFCE_FIGURE, "TFCE FWE p < 0.05"
        )
    return out
