"""Permutation-test timings on whole brains, one configuration per process.

Runs ``SearchLight(n_permutations=N)`` on one of two workloads, each configuration in its
own process so that its peak memory is its own, and prints a table:

- ``W1`` (default): the simulated Haxby-sized whole brain of
  :func:`fastsearchlight.simulate.simulate_haxby_like` (40 x 64 x 64, ~44,000 spheres,
  216 volumes, 12 runs, radius 5.6 mm, KFold(4)), labels of single volumes permuted within
  runs (``permute="samples"``), as the simulated design is randomised volume by volume;
- ``W3``: the run-wise betas of ``sphere_sizes.py`` (nilearn's 2 mm MNI152 grey-matter mask,
  ~204,000 spheres, 8 runs x 4 condition betas, 4 classes, radius 6 mm, LeaveOneGroupOut),
  each run's four labels permuted among its betas (``permute="blocks"``: every beta is its
  own block).

Usage::

    python benchmarks/permutations.py                       # svc x 100, gnb x 1000, lda x 1000
    python benchmarks/permutations.py --runs svc:10 gnb:50  # shorter runs (estimator:permutations)
    python benchmarks/permutations.py --workload W3 --runs svc:100
    python benchmarks/permutations.py --quick               # small grid, smoke test (W1)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _results import write_result

HERE = Path(__file__).resolve().parent


def _workload(name: str, quick: bool) -> tuple:
    """(image, mask, labels, groups, searchlight options, truth image or None) of a workload."""
    from sklearn.model_selection import KFold, LeaveOneGroupOut

    if name == "W3":
        sys.path.insert(0, str(HERE))
        from sphere_sizes import dataset

        img, mask, y, groups, _ = dataset("run_betas")
        img = type(img)(np.asanyarray(img.dataobj), img.affine, img.header)  # read once, as a user's image
        return img, mask, y, groups, {"radius": 6.0, "cv": LeaveOneGroupOut(), "permute": "blocks"}, None
    from fastsearchlight.simulate import simulate_haxby_like

    ds = simulate_haxby_like(shape=(16, 24, 24) if quick else (40, 64, 64), random_state=0)
    options = {"radius": 5.6, "cv": KFold(4), "permute": "samples"}
    return (
        ds.func_img,
        ds.mask_img,
        ds.labels["labels"].to_numpy(),
        ds.labels["chunks"].to_numpy(),
        options,
        ds.truth_img,
    )


def measure(estimator: str, n_perm: int, quick: bool, n_jobs: int, workload: str = "W1") -> dict:
    from fastsearchlight import SearchLight

    img, mask, y, groups, options, truth = _workload(workload, quick)
    sl = SearchLight(mask_img=mask, estimator=estimator, n_permutations=n_perm, n_jobs=n_jobs,
                     random_state=0, **options)  # fmt: skip
    t0 = time.perf_counter()
    sl.fit(img, y, groups=groups)
    seconds = time.perf_counter() - t0
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0  # fmt: skip
    return {
        "estimator": estimator, "permutations": n_perm, "spheres": int(sl.n_elements_),
        "seconds": seconds, "searchlight_s": sl.timings_["searchlight"],
        "permutations_s": sl.timings_.get("permutations", 0.0), "peak_rss_mb": rss,
        "fwe_significant": int((sl.p_fwe_ < 0.05).sum()),
        "truth_voxels": None if truth is None else int((np.asarray(truth.dataobj) > 0).sum()),
        "n_jobs": n_jobs, "workload": workload, "n_folds": int(sl.cv_plan_.n_folds),
    }  # fmt: skip


def _workload_line(workload: str, spheres: int, n_jobs: int) -> str:
    if workload == "W3":
        return (f"Workload W3: {spheres} spheres, 32 run-wise betas (8 runs x 4 conditions), 4 classes, "
                f"radius 6 mm, LeaveOneGroupOut, each run's labels permuted among its betas, null maps "
                f"in float64, n_jobs={n_jobs}.")  # fmt: skip
    return (f"Workload: {spheres} spheres, 216 volumes, radius 5.6 mm, KFold(4), labels of single "
            f"volumes permuted within 12 runs, null maps in float64, n_jobs={n_jobs}.")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", nargs="+", default=["svc:100", "gnb:1000", "lda:1000"])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--workload", choices=["W1", "W3"], default="W1")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick and args.workload != "W1":
        parser.error("--quick runs W1 on a small grid; W3 has no small version")
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.quick, args.n_jobs, args.workload)))
        return 0
    sys.path.insert(0, str(HERE))
    from run_benchmarks import machine

    info = machine()
    rows = []
    for spec in args.runs:
        est, n = spec.split(":")
        cmd = [
            sys.executable,
            __file__,
            "--one",
            est,
            n,
            "--n-jobs",
            str(args.n_jobs),
            "--workload",
            args.workload,
        ]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(
            f"{est} x {n}: {r['seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True
        )
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores; load average at start "
        f"{', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}; numpy {info['numpy']}.",
        "",
        _workload_line(args.workload, rows[0]["spheres"], args.n_jobs),
        "",
        "| estimator | permutations | total s | searchlight s | s per permutation | sphere fits/s | peak RSS (MB) | FWE-significant spheres |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = r["permutations_s"] / max(1, r["permutations"])
        fits = r["spheres"] * r["n_folds"] * r["permutations"] / max(1e-9, r["permutations_s"])
        lines.append(f"| {r['estimator']} | {r['permutations']} | {r['seconds']:.0f} | {r['searchlight_s']:.1f} | {per:.2f} | "
                     f"{fits:,.0f} | {r['peak_rss_mb']:.0f} | {r['fwe_significant']} |")  # fmt: skip
    text = "\n".join(lines)
    print(text)
    name = (
        "permutations-quick.md"
        if args.quick
        else {"W1": "permutations.md", "W3": "permutations_w3.md"}[args.workload]
    )
    write_result(HERE / "results" / name, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
