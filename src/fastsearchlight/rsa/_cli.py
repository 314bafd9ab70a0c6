"""The ``fastsearchlight rsa`` command."""

from __future__ import annotations

import argparse

from ._design import METHODS, NOISE
from .evaluation import COMPARISONS

__all__ = ["add_rsa_parser"]


def add_rsa_parser(sub) -> None:
    """Add the ``rsa`` command to the command line's subparsers."""
    p = sub.add_parser("rsa", help="RSA searchlight: the RDM of every sphere and model-fit maps")
    p.add_argument("--func", required=True, help="4D NIfTI: volumes or beta maps, one per row of --labels")
    p.add_argument("--labels", required=True, help="labels table: Haxby layout, .tsv or .csv")
    p.add_argument("--mask", required=True, help="mask of the voxels used (NIfTI)")
    p.add_argument("--process-mask", default=None, help="mask of the sphere centres")
    p.add_argument("--models", required=True,
                   help="model RDMs (.npz): one array per model, a vector of the pairs or a square RDM, "
                   "conditions sorted or in the order of an optional 'conditions' array")  # fmt: skip
    p.add_argument("--conditions", nargs="+", default=None, help="conditions kept (default: all)")
    p.add_argument("--label-column", default="labels")
    p.add_argument("--run-column", default="chunks", help="column of the runs ('none': no runs)")
    p.add_argument("--method", choices=METHODS, default="crossnobis")
    p.add_argument("--noise", choices=("none", *NOISE), default="none",
                   help="noise precision of each sphere for mahalanobis and crossnobis (default none)")  # fmt: skip
    p.add_argument("--radius", type=float, default=5.6, help="sphere radius in mm (default 5.6)")
    p.add_argument("--comparison", choices=COMPARISONS, default="spearman", help="model comparison")
    p.add_argument("--permutations", type=int, default=0, help="relabellings of the conditions (FWE test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--memory-mb", type=float, default=512.0)
    p.add_argument("--out", default="fastsearchlight-rsa", help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_cmd_rsa)


def _cmd_rsa(args: argparse.Namespace) -> int:
    from ._study import run_rsa_study

    if args.permutations < 0:
        raise ValueError(f"--permutations must be >= 0, got {args.permutations}")
    summary = run_rsa_study(
        args.func, args.labels, args.mask, args.out, models=args.models, conditions=args.conditions,
        process_mask=args.process_mask, label_column=args.label_column,
        run_column=None if args.run_column.lower() == "none" else args.run_column,
        method=args.method, noise=None if args.noise == "none" else args.noise, radius=args.radius,
        comparison=args.comparison, permutations=args.permutations, seed=args.seed, n_jobs=args.n_jobs,
        memory_mb=args.memory_mb, force=args.force, quiet=args.quiet,
    )  # fmt: skip
    fits = ", ".join(f"{name} {r['max fit']:.3f}" for name, r in summary["results"].items())
    print(f"{summary['data']['spheres']} spheres in {summary['timings']['rdms']:.1f} s; best fit "
          f"({args.comparison}): {fits}; outputs in {args.out}")  # fmt: skip
    return 0
