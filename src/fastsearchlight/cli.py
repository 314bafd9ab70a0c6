"""Command line: ``fastsearchlight demo | run | surface | haxby | group | batch | simulate | rsa``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._options import (
    GROUP_CLUSTER_THRESHOLD,
    GROUP_PERMUTATIONS,
    add_cli_options,
    add_scheduler_option,
    config_from_args,
    tfce_dh,
)
from .io import InputError
from .surface_cli import add_surface_parsers

__all__ = ["build_parser", "main"]


def _add_analysis_options(p: argparse.ArgumentParser, *, out_default: str) -> None:
    add_cli_options(p)
    p.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _config(args: argparse.Namespace):
    from .study import StudyConfig

    return config_from_args(args, StudyConfig)


def _print_summary(summary: dict, out: str) -> None:
    r = summary["results"]
    t = summary["timings"]
    print(
        f"{r['spheres']} spheres in {t['searchlight']:.1f} s; best {summary['parameters']['scoring']} "
        f"{r['max score']:.3f} at {tuple(r['peak position (mm)'])} mm (chance {r['chance level']:.2f}); "
        f"outputs in {out}"
    )


def cmd_demo(args) -> int:
    from .datasets import haxby_slice
    from .study import run_study

    files = haxby_slice()
    summary = run_study(
        files.func, files.labels, files.mask, args.out, config=_config(args),
        force=args.force, quiet=args.quiet, name=files.name,
    )  # fmt: skip
    _print_summary(summary, args.out)
    return 0


def cmd_run(args) -> int:
    from ._provenance import command_line
    from .study import run_study

    if args.bids is not None:
        return _run_bids(args)
    _one_volume_mask(args)
    missing = [f"--{n}" for n in ("func", "labels", "mask") if getattr(args, n) is None]
    if missing:
        raise InputError(f"give {', '.join(missing)} (a 4D file, its labels table and a mask), or a BIDS "
                         "dataset with --bids DIR --subject S --task T")  # fmt: skip
    summary = run_study(
        Path(args.func), Path(args.labels), Path(args.mask), args.out,
        process_mask=Path(args.process_mask) if args.process_mask else None,
        config=_config(args), force=args.force, quiet=args.quiet, name=Path(args.func).name,
        command=command_line(args.argv),
    )  # fmt: skip
    _print_summary(summary, args.out)
    return 0


def _one_volume_mask(args) -> None:
    """``args.mask`` as the one NIfTI mask of a volume study (``--mask`` takes two GIfTI files
    with a surface space only)."""
    if args.mask is None:
        return
    if len(args.mask) != 1:
        raise InputError(f"--mask takes one NIfTI mask for volumes, got {len(args.mask)} files (two GIfTI "
                         "masks, hemi-L and hemi-R, go with --bids and a surface --space)")  # fmt: skip
    args.mask = args.mask[0]


def _run_bids(args) -> int:
    from ._provenance import command_line
    from .bids_study import BidsSpec, run_bids_study

    given = [
        f"--{n.replace('_', '-')}" for n in ("func", "labels", "process_mask") if getattr(args, n) is not None
    ]
    if given:
        raise InputError(f"--bids reads the images and labels from the dataset: leave out {', '.join(given)}")
    missing = [f"--{n}" for n in ("subject", "task") if getattr(args, n) is None]
    if missing:
        raise InputError(f"--bids needs {' and '.join(missing)} (e.g. --subject 01 --task objects)")
    spec = BidsSpec(Path(args.bids), args.subject, args.task, space=args.space,
                    derivatives=Path(args.derivatives) if args.derivatives else None,
                    samples=args.samples, shift=args.shift)  # fmt: skip
    from .bids_surface import cmd_bids_surface, is_surface_space

    if is_surface_space(args.space):  # fMRIPrep's GIfTI outputs: the surface searchlight
        return cmd_bids_surface(args, spec, _config(args))
    if getattr(args, "mesh", None):
        raise InputError("--mesh goes with a surface --space (fsnative, fsLR...): volumes have no mesh")
    _one_volume_mask(args)
    summary = run_bids_study(spec, args.out, mask=Path(args.mask) if args.mask else None,
                             process_mask=Path(args.process_mask) if args.process_mask else None, config=_config(args),
                             force=args.force, quiet=args.quiet, command=command_line(args.argv))  # fmt: skip
    _print_summary(summary, args.out)
    return 0


def cmd_haxby(args) -> int:
    from .datasets import fetch_haxby
    from .study import run_study

    files = fetch_haxby(args.subject, args.data_dir)
    summary = run_study(
        files.func, files.labels, files.mask, args.out, config=_config(args),
        force=args.force, quiet=args.quiet, name=files.name, resample_mask=True,
    )  # fmt: skip
    _print_summary(summary, args.out)
    return 0


def cmd_simulate(args) -> int:
    if args.surface:
        from .surface_cli import simulate_surface_command

        return simulate_surface_command(args)
    from .simulate import simulate_haxby_like, write_dataset

    shape = tuple(args.shape)
    ds = simulate_haxby_like(shape=shape, n_regions=args.regions, random_state=args.seed)
    paths = write_dataset(ds, args.out, force=args.force)
    print(f"simulated data set ({shape[0]}x{shape[1]}x{shape[2]}, {ds.n_volumes} volumes) "
          f"written to {args.out}: {', '.join(p.name for p in paths.values())}")  # fmt: skip
    return 0


def cmd_group(args) -> int:
    from .group import run_group

    if args.prevalence:
        from .prevalence import run_prevalence

        summary = run_prevalence(
            args.maps, args.out, n_permutations=args.permutations, alpha=args.alpha,
            random_state=args.seed, force=args.force,
        )  # fmt: skip
        r = summary["results"]
        print(f"{summary['parameters']['subjects']} subjects: prevalence gamma0 up to "
              f"{r['max gamma0']:.2f} (at most {r['largest gamma0 these permutations can reject']:.2f} "
              f"can be shown with these permutations); {r['voxels with global-null FWE p < alpha']} "
              f"voxels reject the global null (FWE); outputs in {args.out}")  # fmt: skip
        return 0

    if any(str(m).endswith(".gii") for m in args.maps):
        from .surface_cli import surface_group_command

        return surface_group_command(args)
    summary = run_group(
        args.maps, args.out, chance=args.chance, mask=args.mask,
        n_permutations=args.permutations, cluster_threshold=args.cluster_threshold,
        random_state=args.seed, n_jobs=args.n_jobs, force=args.force, quiet=args.quiet,
        tfce=args.tfce, tfce_dh=tfce_dh(args.tfce_dh), background=args.background,
    )  # fmt: skip
    r = summary["results"]
    flips = summary["sign flips"]
    if flips["all enumerated"] and flips["used"] < args.permutations:
        print(f"note: {summary['parameters']['subjects']} subjects allow only {flips['used']} "
              f"distinct sign flips; all were used (smallest possible p "
              f"{flips['smallest possible p']:.3g})")  # fmt: skip
    print(f"{summary['parameters']['subjects']} subjects: {r['voxels with FWE p < 0.05']} voxels "
          f"with FWE p < 0.05 (max mean score {r['max mean score']:.3f}); outputs in {args.out}")  # fmt: skip
    return 0


def cmd_batch(args) -> int:
    from .batch import run_batch

    result = run_batch(args.study, force=args.force, quiet=args.quiet, scheduler=args.scheduler or None)
    counts = {s: list(result.subjects.values()).count(s) for s in ("done", "skipped", "failed")}
    print(f"batch: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
          + (f"; group level {result.group}" if result.group else ""))  # fmt: skip
    return 0 if result.ok else 1


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default (unless its text already does) and keeps the
    examples' layout."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is False or default is argparse.SUPPRESS:
            return text
        if not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def _help(*examples: str) -> dict:
    """Keywords of a subcommand's parser: the formatter, and its examples."""
    lines = "\n".join(f"  {e}" for e in examples)
    return {
        "formatter_class": _HelpFormatter,
        "epilog": f"example{'s' if len(examples) > 1 else ''}:\n{lines}",
    }


def _add_bids_options(p: argparse.ArgumentParser) -> None:
    from .betas import SAMPLES

    g = p.add_argument_group("BIDS and fMRIPrep input (instead of --func and --labels)")
    g.add_argument("--bids", metavar="DIR", help="BIDS dataset: every run of --subject and --task, "
                   "labelled by its events.tsv; runs are the groups")  # fmt: skip
    g.add_argument("--subject", help="subject label (e.g. 01)")
    g.add_argument("--task", help="task label")
    g.add_argument("--derivatives", metavar="DIR", help="fMRIPrep derivatives: their desc-preproc images, "
                   "brain masks and confounds")  # fmt: skip
    g.add_argument("--space", help="fMRIPrep output space, e.g. MNI152NLin2009cAsym, or a surface (fsaverage5, "
                   "fsnative, fsLR: its hemi-L/hemi-R .func.gii, the surface searchlight)")  # fmt: skip
    g.add_argument("--mesh", nargs="+", default=None, metavar="GII",
                   help="with a surface --space: the surface files of the hemispheres (hemi-L, hemi-R), e.g. "
                   "TemplateFlow's tpl-fsLR_den-32k_hemi-L_midthickness.surf.gii for fsLR (fsaverage: nilearn's; "
                   "fsnative: the subject's *_hemi-L_pial.surf.gii in the derivatives' anat folder)")  # fmt: skip
    g.add_argument("--samples", choices=SAMPLES, default="volumes",
                   help="volumes labelled by events (default), or beta maps of nilearn's FirstLevelModel: one "
                   "per trial (least-squares-separate) or per condition and run, kept in OUT/betas/")  # fmt: skip
    g.add_argument("--shift", type=float, default=0.0, metavar="SECONDS",
                   help="haemodynamic lag: volumes take the label of the events this much earlier (default 0; "
                   "4-6 s is common)")  # fmt: skip


def _add_run_parser(sub) -> None:
    """The ``run`` subcommand: a 4D file and labels table, or a BIDS dataset."""
    p = sub.add_parser("run", help="a searchlight study on your own data: a 4D file and labels, or BIDS",
                       **_help("fastsearchlight run --func bold.nii.gz --labels labels.txt --mask mask.nii.gz "
                               "--conditions face house --out results",
                               "fastsearchlight run --bids ds --subject 01 --task objects --conditions face house "
                               "--shift 5 --out results",
                               "fastsearchlight run --bids ds --derivatives ds/derivatives/fmriprep --space "
                               "MNI152NLin2009cAsym --subject 01 --task objects --samples trials --confounds simple "
                               "--conditions all --out results"))  # fmt: skip
    p.add_argument("--func", help="4D NIfTI functional images")
    p.add_argument("--labels", help="labels table, one row per volume: Haxby layout, .tsv or .csv")
    p.add_argument("--mask", nargs="+", default=None,
                   help="mask of the voxels used (NIfTI); with --bids default fMRIPrep's brain masks, else one "
                   "computed from the runs; with --bids and a surface --space, one GIfTI mask per hemisphere "
                   "(hemi-L/hemi-R in the names; nonzero: in), e.g. the cortex without the medial wall")  # fmt: skip
    p.add_argument("--process-mask", default=None, help="mask of the sphere centres (default: --mask)")
    _add_bids_options(p)
    _add_analysis_options(p, out_default="fastsearchlight-out")
    p.set_defaults(handler=cmd_run)


def _add_group_parser(sub) -> None:
    """The ``group`` subcommand: the second level."""
    p = sub.add_parser(
        "group",
        help="second-level test of per-subject score maps against chance",
        **_help("fastsearchlight group sub-*/searchlight_scores.nii.gz --chance 0.5 --out group"),
    )
    p.add_argument(
        "maps",
        nargs="+",
        help="per-subject score maps (NIfTI, same space); with --prevalence, the "
        "subjects' study folders (run with --permutations)",
    )
    p.add_argument(
        "--prevalence",
        action="store_true",
        help="prevalence inference (Allefeld et al. 2016) from each subject's "
        "first-level null maps: is the effect present in most subjects?",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="level of the prevalence tests (default 0.05)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--chance", type=float, default=0.5, help="chance level (default 0.5)")
    p.add_argument("--mask", default=None, help="voxels tested (default: nonzero in every map)")
    p.add_argument(
        "--permutations",
        type=int,
        default=GROUP_PERMUTATIONS,
        help=f"sign flips, or second-level permutations with --prevalence (default {GROUP_PERMUTATIONS})",
    )
    p.add_argument("--cluster-threshold", type=float, default=GROUP_CLUSTER_THRESHOLD,
                   help=f"cluster-forming p threshold (default {GROUP_CLUSTER_THRESHOLD})")  # fmt: skip
    p.add_argument(
        "--tfce",
        action="store_true",
        help="also TFCE of the t map, family-wise corrected (group_logp_tfce_fwe.nii.gz)",
    )
    p.add_argument("--tfce-dh", default="auto", help="TFCE step (default auto: 100 steps)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sign flips")
    p.add_argument("--n-jobs", type=int, default=1,
                   help="threads for the null maps' clusters and TFCE (-1: every core)")  # fmt: skip
    p.add_argument("--background", default=None, help="background image of the figures (default: the mean "
                   "of the subjects' mean_img.nii.gz when beside the maps, else nilearn's MNI152 template)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_group)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="fastsearchlight",
        description="Searchlight decoding of fMRI data, all spheres and folds at once.",
    )
    parser.add_argument("--version", action="version", version=f"fastsearchlight {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo",
        help="the face-vs-house study on the shipped Haxby slice",
        **_help("fastsearchlight demo --permutations 100 --out demo"),
    )
    _add_analysis_options(p, out_default="fastsearchlight-demo")
    p.set_defaults(handler=cmd_demo)

    _add_run_parser(sub)

    p = sub.add_parser(
        "haxby",
        help="the classic study on the full Haxby 2001 data (nilearn fetcher)",
        **_help("fastsearchlight haxby --subject 2 --data-dir ~/nilearn_data --out haxby"),
    )
    p.add_argument("--subject", type=int, default=2, help="subject 1-6 (default 2)")
    p.add_argument("--data-dir", default=None, help="folder holding (or to receive) haxby2001/")
    _add_analysis_options(p, out_default="fastsearchlight-haxby")
    p.set_defaults(handler=cmd_haxby)

    _add_group_parser(sub)

    p = sub.add_parser(
        "batch",
        help="every subject's study and the group level, from a TOML study file",
        **_help("fastsearchlight batch study.toml"),
    )
    p.add_argument("study", help="the study file (TOML): output folder, defaults, [[subjects]], [group]")
    p.add_argument("--force", action="store_true", help="recompute everything, overwriting outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_scheduler_option(p)
    p.set_defaults(handler=cmd_batch)

    p = sub.add_parser(
        "simulate",
        help="write a Haxby-like synthetic data set with planted regions",
        **_help("fastsearchlight simulate --shape 20 24 20 --out sim"),
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--shape", type=int, nargs=3, default=[40, 64, 64], metavar=("X", "Y", "Z"),
                   help="grid of the images")  # fmt: skip
    p.add_argument("--regions", type=int, default=2, help="planted informative regions")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser(
        "precompile",
        help="compile the kernels ahead of their first use, several processes at once",
        **_help("fastsearchlight precompile --jobs 2"),
    )
    p.add_argument("--jobs", type=int, default=2, help="processes compiling at once")
    p.add_argument("--groups", nargs="+", default=None, help="kernel groups (default: all)")
    p.set_defaults(handler=cmd_precompile)

    from .rsa._cli import add_rsa_parser

    add_rsa_parser(sub)
    return add_surface_parsers(parser, sub, _add_analysis_options)


def cmd_precompile(args) -> int:
    from .precompile import precompile

    start = time.perf_counter()
    seconds = precompile(args.groups, n_jobs=args.jobs)
    for name, s in seconds.items():
        print(f"{name}: {s:.1f} s")
    print(f"compiled or loaded in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("fastsearchlight: interrupted; no output was left half-written", file=sys.stderr)
        return 130
    except (InputError, ValueError, TypeError, OSError, ConnectionError) as exc:
        return _error(exc)
    except ImportError as exc:
        from .engine import MissingDependencyError

        if not isinstance(exc, MissingDependencyError):
            raise
        return _error(exc)


def _error(exc: BaseException) -> int:
    """Print a one-line error; the exit status of bad input."""
    message = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror and type(exc) not in (FileExistsError, FileNotFoundError):
        # a file system that refuses (read-only, full, no permission): name the file and the cause
        where = f" {exc.filename}" if exc.filename else ""
        message = f"could not write or read{where}: {exc.strerror}"
    print(f"fastsearchlight: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
