"""The batched estimators other than svc, side by side with nilearn, in one command.

Rows (the data sets of :mod:`sphere_sizes`):

- **W1-10**: the Haxby-sized whole brain (216 volumes, 2 classes, KFold(4)) at radius 10 mm
  (about 75 voxels per sphere, fewer features than training samples);
- **W3**: run-wise betas on nilearn's 2 mm MNI152 grey-matter mask (32 samples, 4 classes,
  LeaveOneGroupOut), radius 6 mm (about 110 voxels per sphere, more features than the 28
  training samples).

For each estimator and row, each measurement in a fresh process (its peak memory its own):

- fastsearchlight on every sphere: the first fit of the process, ``n_jobs`` as given
  (SearchLight's default, 1, unless ``--n-jobs``), its compiled kernels loaded from numba's
  cache: before the measurements, the kernels of the estimators asked for are compiled with
  an empty cache (timed, reported on its own line) and then into the package's cache
  (:func:`fastsearchlight.precompile.precompile`), so that a first run after installing does
  not count the compilation in the fits;
- nilearn's ``SearchLight`` (``n_jobs=2``) with the equivalent scikit-learn estimator
  object, on a random subset of spheres: its fixed cost per call (timed on 2 spheres, after
  an untimed call in which its workers import scikit-learn) plus its time per sphere on the
  subset times the number of spheres;
  in the same process, fastsearchlight on the same subset: the fraction of those spheres
  whose scores equal nilearn's (to 1e-12), the agreement.

Estimators: ``lda`` (``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``),
``ridge_classifier`` (nilearn's name: ``RidgeClassifierCV()``), ``ridge_classifier_fixed``
(``RidgeClassifier()``), ``logistic_regression`` (``LogisticRegression()``), ``logistic``
(nilearn's name: ``LogisticRegressionCV(solver="liblinear")``; two classes only, so W1),
``correlation`` (:class:`~fastsearchlight.estimators.correlation.CorrelationClassifier`) and
``gnb`` (``GaussianNB()``).

Usage::

    python benchmarks/estimators.py                               # every estimator and row
    python benchmarks/estimators.py --rows W3 --estimators lda ridge_classifier
    python benchmarks/estimators.py --floors   # lower bounds of the dense linear algebra

``--floors`` times, on one core (CPU time, one BLAS thread), the batched numpy routines no
implementation of these estimators avoids, at each row's size (whole brain, every fold),
on random data of the same shapes: the gather of every sphere's samples, one cross-product
or Gram matrix per sphere, and per (sphere, fold) problem one solve (LDA, ridge), one
eigendecomposition (RidgeClassifierCV, as scikit-learn computes its leave-one-out errors),
or one Newton iteration of the logistic regression (Hessian and solve).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _results import cpu_model, write_result
from sphere_sizes import PeakMemory, dataset, nilearn_whole_brain_seconds, subset, time_nilearn

HERE = Path(__file__).resolve().parent

#: row -> (data set, radius mm, nilearn subset size)
ROWS = {"W1-10": ("haxby", 10.0, 600), "W3": ("run_betas", 6.0, 400)}

#: estimator name (given to fastsearchlight) -> the scikit-learn object nilearn is given
ESTIMATORS = {
    "lda": "LinearDiscriminantAnalysis(solver='lsqr', shrinkage='auto')",
    "ridge_classifier": "RidgeClassifierCV()",
    "ridge_classifier_fixed": "RidgeClassifier()",
    "logistic_regression": "LogisticRegression()",
    "logistic": "logistic",
    "correlation": "CorrelationClassifier()",
    "gnb": "GaussianNB()",
}

#: (estimator, row) -> spheres: pairs run on that many random spheres and scaled per sphere
#: (marked "est."). Such an estimate scales the first fit's fixed cost (loading the cached
#: kernels, the first masking of the data: about 0.8 s) with the spheres, so every other pair,
#: ``LogisticRegressionCV`` at W1 10 mm included (about 10 minutes), runs on the whole brain
OURS_SUBSET = {
    ("lda", "W3"): 40000,
}

#: (estimator, row) -> nilearn's subset size, where it differs from the row's
NILEARN_SUBSET = {("logistic", "W1-10"): 60}

#: (estimator, row) pairs that are not measured, and why
#: estimator -> its group of compiled kernels (:data:`fastsearchlight.precompile.GROUPS`)
KERNEL_GROUPS = {
    "lda": "ridge_lda",
    "ridge_classifier": "ridge_lda",
    "ridge_classifier_fixed": "ridge_lda",
    "logistic_regression": "logistic",
    "logistic": "logistic",
    "correlation": "correlation_statistics",
}


def compile_seconds(estimators) -> tuple[float, float, list[str]]:
    """Seconds to compile the kernel groups of ``estimators`` with an empty cache, and to load
    them from the filled package cache afterwards (each group in its own process, one after
    the other; imports included), and the groups."""
    groups = sorted({KERNEL_GROUPS[e] for e in estimators if e in KERNEL_GROUPS})
    if not groups:
        return 0.0, 0.0, groups
    code = (
        "import json, sys; from fastsearchlight.precompile import precompile; "
        "print(json.dumps(sum(precompile(json.loads(sys.argv[1]), n_jobs=1).values())))"
    )
    run = lambda env: float(subprocess.run([sys.executable, "-c", code, json.dumps(groups)], env=env,
                                           check=True, capture_output=True, text=True).stdout)  # fmt: skip
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        compiling = run({**os.environ, "NUMBA_CACHE_DIR": cache})
    run(os.environ)  # the measurements load the compiled code from the package's own cache
    return compiling, run(os.environ), groups


SKIPPED = {
    ("logistic", "W3"): "liblinear's LogisticRegressionCV takes two classes only (W3 has 4): "
    "NaN maps in nilearn and here",
}


def _nilearn_estimator(spec: str):
    """The scikit-learn estimator object for nilearn (a nilearn name stays a name)."""
    if not spec.endswith(")"):
        return spec
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # noqa: F401
    from sklearn.linear_model import LogisticRegression, RidgeClassifier, RidgeClassifierCV  # noqa: F401
    from sklearn.naive_bayes import GaussianNB  # noqa: F401

    from fastsearchlight.estimators.correlation import CorrelationClassifier  # noqa: F401

    return eval(spec)  # noqa: S307 - fixed expressions of this file only


def measure(tool: str, name: str, row: str, n_jobs: int) -> dict:
    """One measurement, in its own process (see ``--one``)."""
    kind, radius, n_subset = ROWS[row]
    img, mask, y, groups, cv = dataset(kind)
    # read before timing, into an image held in memory (as the user's loaded image)
    img = type(img)(np.asanyarray(img.dataobj), img.affine, img.header)
    common = dict(mask_img=mask, radius=radius, cv=cv)
    out = {"tool": tool, "estimator": name, "row": row}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the per-sphere solvers
        from fastsearchlight import SearchLight

        if tool == "ours":
            n_ours = OURS_SUBSET.get((name, row))
            process = None if n_ours is None else subset(mask, n_ours, 2)
            sl = SearchLight(estimator=name, n_jobs=n_jobs, process_mask_img=process, **common)
            with PeakMemory() as memory:
                t0, c0 = time.perf_counter(), time.process_time()
                sl.fit(img, y, groups=groups)
                out["seconds"] = time.perf_counter() - t0
                out["cpu_seconds"] = time.process_time() - c0  # this process only
            out["n_spheres"] = int((np.asarray(mask.dataobj) != 0).sum())
            if n_ours is not None:  # scaled per sphere to the whole brain
                out["estimated_from"] = int(sl.n_elements_)
                out["seconds"] *= out["n_spheres"] / out["estimated_from"]
                out["cpu_seconds"] *= out["n_spheres"] / out["estimated_from"]
            out["mean_sphere"] = float(np.mean(sl.sphere_sizes_))
            out["n_samples"] = len(y)
            out["n_train"] = int(min(len(tr) for tr, _ in cv.split(np.zeros(len(y)), y, groups)))
            out["engine"] = getattr(sl, "engine_", "?")
            out["peak_mb"] = memory.peak_mb
        else:
            from nilearn.decoding import SearchLight as NilearnSearchLight

            estimator = _nilearn_estimator(ESTIMATORS[name])
            nl, timed = time_nilearn(
                lambda process: NilearnSearchLight(process_mask_img=process, estimator=estimator, n_jobs=2, **common),
                mask, NILEARN_SUBSET.get((name, row), n_subset), (img, y), {"groups": groups},
            )  # fmt: skip
            out.update(timed)
            process = nl.process_mask_img
            ours = SearchLight(process_mask_img=process, estimator=name, **common).fit(img, y, groups=groups)
            keep = np.asarray(process.dataobj) > 0
            a, b = ours.scores_[keep], nl.scores_[keep]
            same = np.isclose(a, b, rtol=0, atol=1e-12) | (np.isnan(a) & np.isnan(b))
            out["identical"] = float(same.mean())
            out["max_diff"] = float(np.nanmax(np.abs(a - b))) if np.isfinite(a - b).any() else 0.0
            out["engine"] = getattr(ours, "engine_", "?")
    return out


def _run_one(tool: str, name: str, row: str, n_jobs: int) -> dict:
    cmd = [sys.executable, __file__, "--one", tool, name, row, "--n-jobs", str(n_jobs)]
    # one BLAS thread in our process, as joblib gives each of nilearn's workers: on a
    # shared machine, BLAS threads on small matrices compete with the other jobs' processes
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env if tool == "ours" else None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict], n_jobs: int, load_start: tuple, load_end: tuple, compiled=None) -> str:
    import nilearn
    import sklearn

    fmt = lambda load: ", ".join(f"{x:.2f}" for x in load)  # noqa: E731
    lines = [
        "# The other batched estimators, side by side with nilearn",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, shared with other jobs; load average "
        f"(1, 5, 15 min) at the start {fmt(load_start)}, at the end {fmt(load_end)}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}, nilearn {nilearn.__version__}.",
        "",
        f"Ours: the whole brain (or, marked est., a random subset scaled per sphere), first fit "
        f"of a fresh process, n_jobs={n_jobs}, one BLAS thread. nilearn: "
        "n_jobs=2 on a random subset of spheres, scaled per sphere. Identical: spheres of that "
        "subset whose scores equal nilearn's (to 1e-12); max diff: the largest score difference.",
        "",
    ]
    if compiled is not None and compiled[2]:
        lines += [
            f"Compiled kernels ({', '.join(compiled[2])}): {compiled[0]:.1f} s with an empty cache, "
            f"{compiled[1]:.1f} s loading the cache (each group's fits in and beside a process, "
            "imports included); the fits below load it.",
            "",
        ]
    lines += [
        "| estimator | row | spheres | voxels/sphere | samples (train) | ours s | nilearn s (est.) "
        "| ratio | identical | max diff | peak MB ours / nilearn | path |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(
                f"| {r['estimator']} | {r['row']} | - | - | - | - | - | - | - | - | - | {r['skipped']} |"
            )
            continue
        ours, nl = r["ours"], r["nilearn"]
        nl_whole = nilearn_whole_brain_seconds(nl, ours["n_spheres"])
        lines.append(
            f"| {r['estimator']} | {r['row']} | {ours['n_spheres']} | {ours['mean_sphere']:.0f} | "
            f"{ours['n_samples']} ({ours['n_train']}) | {ours['seconds']:.1f}{_estimated(ours)} | {nl_whole:.0f} "
            f"(on {nl['n_spheres']}) | {nl_whole / ours['seconds']:.0f}x | {nl['identical']:.1%} | "
            f"{nl['max_diff']:.2g} | {ours['peak_mb']:.0f} / {nl['peak_mb']:.0f} | {ours['engine']} |"
        )
    return "\n".join(lines)


def floors() -> str:
    """Single-core times of the unavoidable primitives at each row's size (see ``--floors``)."""
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    # row -> (spheres, samples, training samples, features, folds, logistic parameters)
    shapes = {"W1-10": (43976, 216, 162, 75, 4, 76), "W3": (204492, 32, 28, 110, 8, 3 * 29)}
    lines = [
        "# Lower bounds of the dense linear algebra (one core, CPU seconds, whole brain)",
        "",
        f"Machine: {cpu_model()}, shared; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        "each primitive timed on a batch of spheres and scaled to the whole brain.",
        "",
        "| row | gather | X'X or Gram per sphere | solve per problem | eigh per problem | "
        "one logistic Newton iteration per problem |",
        "|---|---|---|---|---|---|",
    ]

    with threadpool_limits(1):
        for row, shape in shapes.items():
            S, _, n_train, d, F, q = shape
            t = _row_floors(*shape, rng)
            k = min(n_train, d)
            lines.append(
                f"| {row} ({S} spheres, {F} folds, {n_train} x {d}) | {t['gather']:.1f} | {t['cross']:.1f} | "
                f"{t['solve']:.1f} ({k} x {k}) | {t['eigh']:.1f} ({k} x {k}) | {t['newton']:.1f} ({q} parameters) |"
            )
    return "\n".join(lines)


def _timed(fun, reps: int, *args) -> float:
    """CPU seconds of one call of ``fun(*args)`` (after one call to warm up)."""
    fun(*args)
    c0 = time.process_time()
    for _ in range(reps):
        fun(*args)
    return (time.process_time() - c0) / reps


def _row_floors(S: int, n: int, n_train: int, d: int, F: int, q: int, rng) -> dict:
    """Whole-brain CPU seconds of each primitive of a row, timed on 1000 spheres."""
    B = 1000
    scale = S / B
    data = rng.standard_normal((S // 4, n))
    vox = rng.integers(0, len(data), (B, d))
    out = {"gather": _timed(lambda: data[vox].transpose(0, 2, 1).copy(), 3) * scale}
    X = rng.standard_normal((B, n, d))
    if d < n_train:  # the cross-products of the features, else the Gram matrix of the samples
        out["cross"] = _timed(np.matmul, 3, X.transpose(0, 2, 1), X) * scale
    else:
        out["cross"] = _timed(np.matmul, 3, X, X.transpose(0, 2, 1)) * scale
    k = min(n_train, d)
    A = rng.standard_normal((B, 2 * k, k))
    M = np.matmul(A.transpose(0, 2, 1), A)
    out["solve"] = _timed(np.linalg.solve, 3, M, rng.standard_normal((B, k, 1))) * scale * F
    out["eigh"] = _timed(np.linalg.eigh, 1, M) * scale * F
    Ad = rng.standard_normal((B, n_train, q))
    weights = rng.uniform(0.1, 0.25, (B, n_train, 1))
    H = np.matmul(Ad.transpose(0, 2, 1), Ad) + np.eye(q)

    def newton_step() -> None:
        np.matmul(Ad.transpose(0, 2, 1), weights * Ad)
        np.linalg.solve(H, np.ones((B, q, 1)))

    out["newton"] = _timed(newton_step, 1) * scale * F
    return out


def _estimated(ours: dict) -> str:
    n = ours.get("estimated_from")
    return "" if n is None else f" (est. from {n})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    parser.add_argument("--n-jobs", type=int, default=1, help="fastsearchlight's n_jobs (default 1)")
    parser.add_argument("--one", nargs=3, metavar=("TOOL", "ESTIMATOR", "ROW"), help=argparse.SUPPRESS)
    parser.add_argument("--floors", action="store_true", help="time the lower bounds only")
    args = parser.parse_args(argv)
    if args.floors:
        text = floors()
        print(text)
        write_result(HERE / "results" / "estimator_floors.md", text)
        return 0
    if args.one:
        print(json.dumps(measure(*args.one, args.n_jobs)))
        return 0
    compiled = compile_seconds(args.estimators)
    load_start = os.getloadavg()
    results = []
    for row in args.rows:
        for name in args.estimators:
            r = {"estimator": name, "row": row}
            if (name, row) in SKIPPED:
                r["skipped"] = SKIPPED[name, row]
            else:
                for tool in ("ours", "nilearn"):
                    r[tool] = _run_one(tool, name, row, args.n_jobs)
                    print(
                        f"{name:>22} {row:>5} {tool:>7}: {json.dumps(r[tool])}", file=sys.stderr, flush=True
                    )
            results.append(r)
    text = table(results, args.n_jobs, load_start, os.getloadavg(), compiled)
    print(text)
    full = args.rows == list(ROWS) and args.estimators == list(ESTIMATORS)
    name = "estimators" if full else "estimators_partial"
    write_result(HERE / "results" / f"{name}.md", text)
    write_result(HERE / "results" / f"{name}.json", json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
