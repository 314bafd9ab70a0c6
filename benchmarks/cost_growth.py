"""How the cost per sphere grows with the sphere's voxels and with the samples, side by side
with nilearn.

Two axes, on the Haxby-sized simulated data of :mod:`sphere_sizes` (the W1 grid, two
classes, ``KFold(4)``):

- **voxels**: 216 samples (12 runs), radius 5.6, 8, 10, 12 and 14.5 mm (about 18, 38, 75,
  141 and 250 voxels per sphere);
- **samples**: radius 10 mm (about 75 voxels), 3, 6, 12 and 24 runs (54, 108, 216 and 432
  samples: from fewer training samples than voxels to four times more).

For each estimator and point, in one process, one core each (``n_jobs=1``, one BLAS
thread), after a warm-up fit of each tool: the CPU time per sphere of fastsearchlight on
random spheres, and of nilearn's ``SearchLight`` with the equivalent scikit-learn estimator
on a random subset (sized to take a few seconds); their ratio; and, on nilearn's subset, the
share of spheres whose scores equal nilearn's (to 1e-12). These are steady-state costs per
sphere (each tool's fixed cost per fit, timed on 2 spheres, not counted): the whole-brain
benchmarks (:mod:`sphere_sizes`, :mod:`estimators`) measure first fits on two cores, fixed
costs included. The growth exponent is the slope of log(cost)
against log(voxels) or log(samples) between neighbouring points.

Usage::

    python benchmarks/cost_growth.py                      # svc, lda, ridge_classifier, logistic_regression
    python benchmarks/cost_growth.py --estimators svc --axes voxels
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _results import cpu_model, write_result
from sphere_sizes import subset

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: axis -> points (radius in mm, number of runs)
AXES = {
    "voxels": [(5.6, 12), (8.0, 12), (10.0, 12), (12.0, 12), (14.5, 12)],
    "samples": [(10.0, 3), (10.0, 6), (10.0, 12), (10.0, 24)],
}

#: estimator name (given to fastsearchlight) -> the scikit-learn object nilearn is given
ESTIMATORS = {
    "svc": "LinearSVC()",
    "lda": "LinearDiscriminantAnalysis(solver='lsqr', shrinkage='auto')",
    "ridge_classifier": "RidgeClassifierCV()",
    "logistic_regression": "LogisticRegression()",
}

#: spheres timed for fastsearchlight, and nilearn's target seconds per point; each tool's
#: fixed cost per fit (timed on ``FIXED`` spheres, as the other benchmarks do) is not
#: counted per sphere
OURS_SPHERES = 2000
FIXED = 2
NILEARN_SECONDS = 6.0


def _sklearn(spec: str):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # noqa: F401
    from sklearn.linear_model import LogisticRegression, RidgeClassifierCV  # noqa: F401
    from sklearn.svm import LinearSVC  # noqa: F401

    return eval(spec)  # noqa: S307 - fixed expressions of this file only


@functools.lru_cache(maxsize=1)
def _data(n_runs: int):
    from sklearn.model_selection import KFold

    from fastsearchlight.simulate import simulate_haxby_like

    ds = simulate_haxby_like(n_runs=n_runs, random_state=0)
    img = ds.func_img
    img = type(img)(np.asanyarray(img.dataobj), img.affine, img.header)  # read into memory
    return img, ds.mask_img, ds.labels["labels"].to_numpy(), KFold(4)


def _cpu(fit) -> tuple[float, object]:
    c0 = time.process_time()
    out = fit()
    return time.process_time() - c0, out


def measure(name: str, radius: float, n_runs: int) -> dict:
    """One point of one estimator: both tools' CPU seconds per sphere, and their agreement."""
    from nilearn.decoding import SearchLight as NilearnSearchLight
    from threadpoolctl import threadpool_limits

    from fastsearchlight import SearchLight

    img, mask, y, cv = _data(n_runs)
    common = dict(mask_img=mask, radius=radius, cv=cv)
    out = {"estimator": name, "radius": radius, "n_samples": len(y), "n_train": len(y) * 3 // 4}
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence warnings of the per-sphere solvers

        def ours(process):
            return SearchLight(estimator=name, process_mask_img=process, n_jobs=1, **common).fit(img, y)

        def theirs(process):
            est = _sklearn(ESTIMATORS[name])
            return NilearnSearchLight(estimator=est, process_mask_img=process, n_jobs=1, **common).fit(img, y)

        ours(subset(mask, 20, 3))  # warm-up: the compiled kernels loaded
        fixed, _ = _cpu(lambda: ours(subset(mask, FIXED, 3)))  # the fit's fixed cost
        process = subset(mask, OURS_SPHERES, 1)
        cpu, sl = _cpu(lambda: ours(process))
        out["voxels_per_sphere"] = float(np.mean(sl.sphere_sizes_))
        out["ours_us_per_sphere"] = max(cpu - fixed, 0.0) / sl.n_elements_ * 1e6
        theirs(subset(mask, FIXED, 4))  # warm-up
        fixed, _ = _cpu(lambda: theirs(subset(mask, FIXED, 3)))
        probe, _ = _cpu(lambda: theirs(subset(mask, 10, 5)))
        n_nl = int(np.clip(NILEARN_SECONDS / max((probe - fixed) / 10, 1e-4), 40, 400))
        process = subset(mask, n_nl, 2)
        cpu, nl = _cpu(lambda: theirs(process))
        cost = max(cpu - fixed, 0.0) / n_nl * 1e6
        out["nilearn_spheres"] = n_nl
        out["nilearn_us_per_sphere"] = cost
        out["ratio"] = out["nilearn_us_per_sphere"] / out["ours_us_per_sphere"]
        keep = np.asarray(process.dataobj) > 0
        a, b = ours(process).scores_[keep], nl.scores_[keep]
        out["identical"] = float(np.mean(np.isclose(a, b, rtol=0, atol=1e-12) | (np.isnan(a) & np.isnan(b))))
    return out


def _slopes(rows: list[dict], key: str, x: str) -> list[float | None]:
    """log-log slopes of ``key`` against ``x`` between neighbouring rows (None for the first)."""
    out: list[float | None] = [None]
    for a, b in zip(rows, rows[1:]):
        out.append(float(np.log(b[key] / a[key]) / np.log(b[x] / a[x])))
    return out


def table(results: dict) -> str:
    lines = [
        "# How the cost per sphere grows with its voxels and with the samples",
        "",
        f"Machine: {cpu_model()}, Python {platform.python_version()}; one core per tool (n_jobs=1, one "
        "BLAS thread), CPU time per sphere after a warm-up fit, each tool's fixed cost per fit "
        f"(timed on {FIXED} spheres) not counted; fastsearchlight on "
        f"{OURS_SPHERES} random spheres, nilearn on a random subset (its size in brackets). "
        "Growth: the log-log slope of the cost against the axis from the point before. "
        "Identical: spheres of nilearn's subset whose scores equal nilearn's (to 1e-12).",
        "",
    ]
    for axis, per_est in results.items():
        x = "voxels_per_sphere" if axis == "voxels" else "n_samples"
        lines += [
            f"## Axis: {axis}",
            "",
            "| estimator | voxels/sphere | samples (train) | ours us/sphere (growth) "
            "| nilearn us/sphere (growth) | ratio | identical |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, rows in per_est.items():
            ours_g = _slopes(rows, "ours_us_per_sphere", x)
            theirs_g = _slopes(rows, "nilearn_us_per_sphere", x)
            for r, g1, g2 in zip(rows, ours_g, theirs_g):
                f1 = "" if g1 is None else f" ({g1:.1f})"
                f2 = "" if g2 is None else f" ({g2:.1f})"
                lines.append(
                    f"| {name} | {r['voxels_per_sphere']:.0f} | {r['n_samples']} ({r['n_train']}) "
                    f"| {r['ours_us_per_sphere']:.0f}{f1} | {r['nilearn_us_per_sphere']:.0f}{f2} "
                    f"[{r['nilearn_spheres']}] | {r['ratio']:.0f}x | {100 * r['identical']:.1f}% |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    parser.add_argument("--axes", nargs="+", default=list(AXES), choices=list(AXES))
    parser.add_argument("--out", default="cost_growth", help="results file name (in benchmarks/results)")
    args = parser.parse_args(argv)
    results: dict = {}
    for axis in args.axes:
        results[axis] = {name: [] for name in args.estimators}
        for radius, n_runs in AXES[axis]:  # (each point's data simulated once)
            for name in args.estimators:
                row = measure(name, radius, n_runs)
                print(f"{axis:8s} {name:20s} {json.dumps(row)}", flush=True)
                results[axis][name].append(row)
    text = table(results)
    print(text)
    write_result(RESULTS / f"{args.out}.md", text + "\n")
    write_result(RESULTS / f"{args.out}.json", json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
