"""Lower bounds, on this machine, for batched LDA and ridge on the whole-brain workload.

The issue's targets ask for LDA and ridge (nilearn's ``"ridge_classifier"``,
``RidgeClassifierCV``) over the whole brain in at most 0.5 s on 2 cores. Each (sphere, fold)
problem needs a small dense factorisation that no sum over voxels replaces (the sphere's
covariance couples its voxels), so a numpy/scipy engine must at least:

- read the masked data (one pass over the 4D image);
- form every sphere's cross-product matrix (``X'X``), from which each fold's is obtained by
  subtracting the test samples' part;
- solve one ``p x p`` system per sphere and fold (LDA and RidgeClassifier), or
  eigendecompose one ``p x p`` matrix per sphere and fold (RidgeClassifierCV's
  leave-one-out choice of alpha, as scikit-learn computes it).

This engine also starts two worker processes (numpy releases the interpreter lock inside its
batched routines but not between their many small calls, so the work runs in processes) and
gathers every sphere's samples.

This script times each of these primitives alone, at the workload's size (43,976 spheres
of the median sphere size, 216 samples, 4 folds), single-threaded, and reports the sum of
the ideal two-core times: no implementation built on these routines can be faster than
that floor. The floor leaves out the worker start and the gather (shown, and added in a
second figure), and everything else the estimators compute (class means, shrinkage,
leave-one-out errors, decisions).

Usage::

    python benchmarks/numpy_floors.py     # prints the table, and writes results/numpy_floors.md
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread: per-core throughput
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from _results import write_result  # noqa: E402


def _best(f, repeats: int = 3) -> float:
    """Best of a few wall-clock timings of ``f()``, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def _worker_start() -> float:
    """Seconds for a fresh pool of two loky workers to return a trivial task each."""
    import subprocess
    import sys

    code = (
        "import time; t0 = time.perf_counter()\n"
        "from joblib import Parallel, delayed\n"
        "Parallel(n_jobs=2)(delayed(abs)(i) for i in range(2))\n"
        "print(time.perf_counter() - t0)\n"
    )
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(3)]  # fmt: skip
    return min(runs)


def main() -> int:
    from sklearn.model_selection import KFold

    from fastsearchlight.images import masked_data
    from fastsearchlight.neighbourhoods import build_neighbourhoods
    from fastsearchlight.simulate import simulate_haxby_like

    ds = simulate_haxby_like(shape=(40, 64, 64), random_state=0)
    mask = np.asarray(ds.mask_img.dataobj) != 0
    func = ds.func_img
    func.get_fdata(dtype=np.float32)
    X = masked_data(func, mask)  # (n, V)
    hoods = build_neighbourhoods(mask, func.affine, mask, func.affine, 5.6)
    S, n = hoods.n_spheres, X.shape[0]
    p = int(np.median(hoods.sizes))
    n_folds = 4
    train = next(KFold(n_folds).split(np.arange(n)))[0]
    problems = S * n_folds
    rng = np.random.default_rng(0)
    chunk = 512  # spheres at a time, as the engine's cache-sized batches

    # gather the spheres' samples (voxel-major rows, as the engine reads them)
    Xv = np.ascontiguousarray(X.T)
    vox = rng.integers(0, Xv.shape[0], size=(chunk, p))

    def gather():
        for _ in range(0, S, chunk):
            Xv[vox]

    # cross-products: the cheapest known way is one pass over every sphere's samples (each
    # fold's training matrix is the total minus its test samples' part, which together
    # cost one more pass), so one n x p product per sphere is counted
    block = rng.standard_normal((chunk, n, p))

    def grams():
        for _ in range(0, S, chunk):
            np.matmul(block.transpose(0, 2, 1), block)

    spd = np.matmul(block[:, train].transpose(0, 2, 1), block[:, train]) + np.eye(p)
    rhs = rng.standard_normal((chunk, p, 1))

    def solves():
        for _ in range(0, problems, chunk):
            np.linalg.solve(spd, rhs)

    def eighs():
        for _ in range(0, problems, chunk):
            np.linalg.eigh(spd)

    read = _best(lambda: masked_data(func, mask))
    start = _worker_start()
    t = {"gather": _best(gather), "grams": _best(grams), "solve": _best(solves), "eigh": _best(eighs, 1)}

    lines = []
    lines.append(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
                 f"numpy {np.__version__}.")  # fmt: skip
    lines.append(
        f"Workload: {S} spheres (median {p} voxels), {n} samples, {n_folds} folds = "
        f"{problems} problems; primitives single-threaded, ideal 2-core time = half."
    )
    lines.append("")
    lines.append("| primitive | 1 core (s) | ideal on 2 cores (s) |")
    lines.append("|---|---|---|")
    lines.append(f"| read the masked data (once) | {read:.3f} | {read:.3f} |")
    lines.append(f"| start two worker processes | {start:.3f} | {start:.3f} |")
    for name, label in [("gather", "gather every sphere's samples"),
                        ("grams", f"{S} cross-products X'X ({n} x {p}), one per sphere"),
                        ("solve", f"{problems} solves of {p} x {p} systems (np.linalg.solve)"),
                        ("eigh", f"{problems} eigendecompositions {p} x {p} (np.linalg.eigh)")]:  # fmt: skip
        lines.append(f"| {label} | {t[name]:.3f} | {t[name] / 2:.3f} |")
    # the gather is left out of the floors (a design could form X'X without it), and so is
    # the worker start (threads would not pay it, if they could keep both cores busy)
    lda = read + (t["grams"] + t["solve"]) / 2
    ridge_cv = read + (t["grams"] + t["eigh"]) / 2
    lines.append("")
    lines.append(
        f"Floor for LDA / RidgeClassifier (read + X'X + solve): {lda:.2f} s; with the "
        f"gather and two worker processes: {lda + t['gather'] / 2 + start:.2f} s"
    )
    lines.append(
        f"Floor for RidgeClassifierCV (read + X'X + eigh): {ridge_cv:.2f} s; with the "
        f"gather and two worker processes: {ridge_cv + t['gather'] / 2 + start:.2f} s"
    )
    text = "\n".join(lines)
    print(text)
    write_result(Path(__file__).resolve().parent / "results" / "numpy_floors.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
