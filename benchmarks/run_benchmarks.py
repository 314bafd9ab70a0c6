"""Side-by-side timing of nilearn's SearchLight and fastsearchlight, in one run.

Workload (issue 2): a whole-brain, Haxby-sized volume simulated by
:func:`fastsearchlight.simulate.simulate_haxby_like` (40 x 64 x 64 grid of 3.5 x 3.75 x 3.75 mm
voxels, ~44,000 mask voxels, 216 volumes, two classes in 12 runs), radius 5.6 mm, KFold(4).

For every estimator, two measurements, each in a fresh process so that its peak memory is its
own:

- nilearn's ``SearchLight`` (``n_jobs=2``) on a random subset of the spheres (1,500 by
  default), its time scaled per sphere to the whole brain;
- ``fastsearchlight.SearchLight`` on the whole brain, twice: the first fit in the fresh
  process (what the speed ratio uses: it includes starting the worker processes) and a
  second one (workers and imports ready, as for every fit after the first in a session).

The speed ratio is nilearn's whole-brain estimate over ours; agreement is the fraction of the
subset's spheres whose scores are identical, and the largest difference in test samples.

Usage::

    python benchmarks/run_benchmarks.py                 # the full table (several minutes)
    python benchmarks/run_benchmarks.py --quick         # a small grid, for a smoke test
    python benchmarks/run_benchmarks.py --estimators svc gnb --nilearn-spheres 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _results import cpu_model, write_result

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: estimator label -> (how fastsearchlight is given it, how nilearn is given it)
ESTIMATORS = {
    "svc": ("svc", "svc"),
    "gnb": ("gnb", "GaussianNB()"),
    "lda": ("lda", "LinearDiscriminantAnalysis(solver='lsqr', shrinkage='auto')"),
    "ridge": ("ridge_classifier", "ridge_classifier"),
    "ridge_fixed_alpha": ("ridge_classifier_fixed", "RidgeClassifier()"),
    "logistic_regression": ("logistic_regression", "LogisticRegression()"),
    "correlation": ("correlation", "CorrelationClassifier()"),
    "logistic_cv": ("logistic", "logistic"),
}


def _estimator(spec: str):
    """A named estimator stays a name; an expression builds the scikit-learn object."""
    if spec.endswith(")"):
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # noqa: F401
        from sklearn.linear_model import LogisticRegression, RidgeClassifier  # noqa: F401
        from sklearn.naive_bayes import GaussianNB  # noqa: F401

        from fastsearchlight.estimators.correlation import CorrelationClassifier  # noqa: F401

        return eval(spec)  # noqa: S307 - fixed expressions of this file only
    return spec


def _dataset(quick: bool):
    from fastsearchlight.simulate import simulate_haxby_like

    shape = (16, 24, 24) if quick else (40, 64, 64)
    return simulate_haxby_like(shape=shape, random_state=0)


def _subset_mask(mask_img, n_spheres: int, seed: int = 0):
    import nibabel as nib

    mask = np.asarray(mask_img.dataobj) != 0
    ijk = np.argwhere(mask)
    rng = np.random.default_rng(seed)
    pick = ijk[np.sort(rng.choice(len(ijk), size=min(n_spheres, len(ijk)), replace=False))]
    sub = np.zeros(mask.shape, dtype=np.uint8)
    sub[tuple(pick.T)] = 1
    return nib.Nifti1Image(sub, mask_img.affine)


def measure(tool: str, label: str, quick: bool, n_subset: int, n_jobs: int) -> dict:
    """One measurement, run inside its own process (see ``--one``)."""
    from sklearn.model_selection import KFold

    ds = _dataset(quick)
    y = ds.labels["labels"].to_numpy()
    func = ds.func_img
    func.get_fdata(dtype=np.float32)  # read before timing
    ours_spec, nilearn_spec = ESTIMATORS[label]
    subset = _subset_mask(ds.mask_img, n_subset)
    common = dict(mask_img=ds.mask_img, radius=5.6, cv=KFold(4), n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if tool == "nilearn":
            from nilearn.decoding import SearchLight

            sl = SearchLight(process_mask_img=subset, estimator=_estimator(nilearn_spec), **common)
        else:
            from fastsearchlight import SearchLight

            process = None if tool == "ours" else subset
            sl = SearchLight(process_mask_img=process, estimator=_estimator(ours_spec), **common)
        t0 = time.perf_counter()
        sl.fit(func, y)
        seconds = time.perf_counter() - t0
        warm = None
        if tool == "ours":  # the same fit again: worker processes and imports are ready
            t0 = time.perf_counter()
            sl.fit(func, y)
            warm = time.perf_counter() - t0
    sub = np.asarray(subset.dataobj) != 0
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "tool": tool,
        "estimator": label,
        "seconds": seconds,
        "seconds_warm": warm,
        "n_spheres": int(np.asarray(sl.process_mask_).sum()),
        "n_mask_voxels": int((np.asarray(ds.mask_img.dataobj) != 0).sum()),
        "subset_scores": sl.scores_[sub].tolist(),
        "peak_rss_mb": max(usage, children) / 1024.0,
        "engine": getattr(sl, "engine_", "nilearn"),
        "n_samples": len(y),
    }


def _run_one(tool: str, label: str, args) -> dict:
    cmd = [
        sys.executable, __file__, "--one", tool, label, "--nilearn-spheres",
        str(args.nilearn_spheres), "--n-jobs", str(args.n_jobs),
    ] + (["--quick"] if args.quick else [])  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import nilearn
    import sklearn
    from threadpoolctl import threadpool_info

    import fastsearchlight

    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
            for i in threadpool_info()]  # fmt: skip
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "nilearn": nilearn.__version__,
        "fastsearchlight": fastsearchlight.__version__,
        "blas": blas,
    }


def table(rows: list[dict], info: dict, args) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GiB; load average "
        f"at start {', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}; Python "
        f"{info['python']}, numpy {info['numpy']}, scikit-learn {info['scikit-learn']}, nilearn "
        f"{info['nilearn']}; BLAS {'; '.join(info['blas'])}.",
        "",
        f"Workload: {rows[0]['n_mask_voxels']} mask voxels = spheres, {rows[0]['n_samples']} "
        f"samples, radius 5.6 mm, KFold(4), n_jobs={args.n_jobs}. nilearn timed on "
        f"{args.nilearn_spheres} random spheres and scaled per sphere.",
        "",
        "| estimator | nilearn s (whole brain, est.) | nilearn spheres/s | fastsearchlight s "
        "| fastsearchlight spheres/s | speed ratio | second fit s (ratio) | identical spheres "
        "| max diff (samples) | peak RSS nilearn / ours (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {}
    for r in rows:
        by.setdefault(r["estimator"], {})[r["tool"]] = r
    for label, r in by.items():
        nl, ours = r["nilearn"], r["ours"]
        per_sphere = nl["seconds"] / nl["n_spheres"]
        nl_whole = per_sphere * ours["n_spheres"]
        a = np.array(ours["subset_scores"])
        b = np.array(nl["subset_scores"])
        identical = np.isclose(a, b).mean()
        max_diff = np.abs(a - b).max() * nl["n_samples"]
        lines.append(
            f"| {label} | {nl_whole:.1f} | {1 / per_sphere:.0f} | {ours['seconds']:.2f} | "
            f"{ours['n_spheres'] / ours['seconds']:.0f} | {nl_whole / ours['seconds']:.0f}x | "
            f"{_warm(ours, nl_whole)} | {identical:.1%} | {max_diff:.0f} | {nl['peak_rss_mb']:.0f} / "
            f"{ours['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def _warm(ours: dict, nl_whole: float) -> str:
    warm = ours.get("seconds_warm")
    return "-" if not warm else f"{warm:.2f} ({nl_whole / warm:.0f}x)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    parser.add_argument("--nilearn-spheres", type=int, default=1500)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small grid, for a smoke test")
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "ESTIMATOR"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = parser.parse_args(argv)
    if args.one:
        tool, label = args.one
        print(json.dumps(measure(tool, label, args.quick, args.nilearn_spheres, args.n_jobs)))
        return 0
    info = machine()
    rows = []
    for label in args.estimators:
        for tool in ("nilearn", "ours"):
            r = _run_one(tool, label, args)
            rows.append(r)
            print(f"{label:>20} {tool:>8}: {r['seconds']:8.2f} s for {r['n_spheres']} spheres "
                  f"({r['engine']}), peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)  # fmt: skip
    text = table(rows, info, args)
    print(text)
    out = args.out or (RESULTS / ("quick.md" if args.quick else "latest.md"))
    write_result(out, text)
    write_result(out.with_suffix(".json"), json.dumps({"machine": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
