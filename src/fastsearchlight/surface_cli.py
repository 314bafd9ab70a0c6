"""The command line's surface parts: ``fastsearchlight surface`` and ``simulate --surface``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_surface_parsers", "cmd_surface", "simulate_surface_command", "surface_group_command"]

_EXAMPLE = """example (fMRIPrep outputs on fsaverage5, runs in the labels table's order):
  fastsearchlight surface \\
      --func sub-01_task-x_run-1_hemi-L_space-fsaverage5_bold.func.gii \\
             sub-01_task-x_run-1_hemi-R_space-fsaverage5_bold.func.gii \\
             sub-01_task-x_run-2_hemi-L_space-fsaverage5_bold.func.gii \\
             sub-01_task-x_run-2_hemi-R_space-fsaverage5_bold.func.gii \\
      --labels labels.tsv --mesh fsaverage5 --radius 10 --cv logo --out sub-01-surface"""


def add_surface_parsers(parser, sub, add_analysis_options) -> argparse.ArgumentParser:
    """Add the ``surface`` subcommand to ``sub``, ``--surface`` to ``simulate`` and ``--mesh``
    to ``group``; return ``parser``."""
    sub.choices["simulate"].add_argument(
        "--surface", action="store_true",
        help="surface data on fsaverage5 (GIfTI per hemisphere) with --regions planted patches",
    )  # fmt: skip
    sub.choices["group"].add_argument(
        "--mesh", nargs="+", default=["fsaverage5"], metavar="MESH",
        help="mesh of GIfTI maps (default fsaverage5), or its surface files (hemi-L, hemi-R)",
    )  # fmt: skip
    p = sub.add_parser(
        "surface", help="a searchlight study on the cortical mesh (GIfTI data per hemisphere)",
        epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--func", nargs="+", required=True, metavar="GII",
                   help="GIfTI data files, hemi-L and hemi-R (or lh./rh.) of every run, one data array per "
                        "sample; runs in the labels table's order")  # fmt: skip
    p.add_argument("--labels", required=True, help="labels table, one row per sample of all runs in order")
    p.add_argument("--mesh", nargs="+", default=["fsaverage5"], metavar="MESH",
                   help="mesh the data are on: fsaverage5 (default, shipped with nilearn), fsaverage6, "
                        "fsaverage...; 'fsaverage5:white_matter' for another surface; or the surface files "
                        "of the hemispheres (e.g. sub-01_hemi-L_pial.surf.gii sub-01_hemi-R_pial.surf.gii, "
                        "fsnative or fsLR)")  # fmt: skip
    p.add_argument("--mask", nargs="+", default=None, metavar="GII",
                   help="one GIfTI mask per hemisphere (hemi-L/hemi-R in the names; nonzero: in), e.g. the "
                        "cortex without the medial wall")  # fmt: skip
    p.add_argument("--distance", choices=("geodesic", "euclidean"), default="geodesic",
                   help="disc distance: along the mesh (default) or straight-line")  # fmt: skip
    p.add_argument("--t-r", type=float, default=None, metavar="SECONDS", dest="t_r",
                   help="repetition time of the data in seconds, which GIfTI files do not hold; needed "
                        "by --high-pass")  # fmt: skip
    add_analysis_options(p, out_default="fastsearchlight-surface")
    for action in p._actions:  # a disc's radius on the cortex: 10 mm, not a volume's 5.6
        if action.dest == "radius":
            action.default, action.help = 10.0, "disc radius in mm (default 10)"
    p.set_defaults(handler=cmd_surface)
    return parser


def mesh_argument(values):
    """``--mesh``: one name nilearn loads (``fsaverage5``), or the surface files of the
    hemispheres (a list of paths)."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) == 1 and not Path(values[0]).is_file() and not values[0].endswith(".gii"):
        return values[0]
    return [str(v) for v in values]


def cmd_surface(args) -> int:
    """``fastsearchlight surface``."""
    from ._options import config_from_args
    from .study import StudyConfig
    from .surface_study import run_surface_study

    summary = run_surface_study(
        [Path(f) for f in args.func], Path(args.labels), args.out, mesh=mesh_argument(args.mesh),
        mask=[Path(m) for m in args.mask] if args.mask else None, distance=args.distance,
        config=config_from_args(args, StudyConfig), force=args.force, quiet=args.quiet, t_r=args.t_r,
    )  # fmt: skip
    r, t = summary["results"], summary["timings"]
    print(f"{r['discs']} discs in {t['searchlight']:.1f} s; best {summary['parameters']['scoring']} "
          f"{r['max score']:.3f} at {r['peak hemisphere']} vertex {r['peak vertex']} "
          f"(chance {r['chance level']:.2f}); outputs in {args.out}")  # fmt: skip
    return 0


def simulate_surface_command(args) -> int:
    """``fastsearchlight simulate --surface``."""
    from .simulate_surface import simulate_surface, write_surface_dataset

    ds = simulate_surface(n_patches=args.regions, random_state=args.seed)
    paths = write_surface_dataset(ds, args.out, force=args.force)
    print(f"simulated surface data set (fsaverage5, {len(ds.labels)} samples, {args.regions} patches) "
          f"written to {args.out}: {', '.join(p.name for p in paths.values())}")  # fmt: skip
    return 0


def surface_group_command(args) -> int:
    """``fastsearchlight group`` with GIfTI maps (``..._hemi-L.func.gii`` of each subject)."""
    from ._options import tfce_dh
    from .surface_group import run_surface_group

    if args.prevalence or args.mask:
        raise ValueError("--prevalence and --mask are for volume maps; surface maps are tested where nonzero")
    summary = run_surface_group(
        args.maps, args.out, mesh=mesh_argument(args.mesh), chance=args.chance, n_permutations=args.permutations,
        cluster_threshold=args.cluster_threshold, random_state=args.seed, force=args.force,
        tfce=args.tfce, tfce_dh=tfce_dh(args.tfce_dh),
    )  # fmt: skip
    r = summary["results"]
    print(f"{summary['parameters']['subjects']} subjects: {r['vertices with FWE p < 0.05']} vertices with FWE "
          f"p < 0.05 (max mean score {r['max mean score']:.3f}); outputs in {args.out}")  # fmt: skip
    return 0
