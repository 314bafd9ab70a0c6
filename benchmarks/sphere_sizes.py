"""Speed at every sphere size and data shape, side by side with nilearn, in one command.

Rows (svc, nilearn's ``LinearSVC`` default):

- **W1**: the Haxby-sized whole brain (:func:`fastsearchlight.simulate.simulate_haxby_like`:
  40 x 64 x 64 grid of 3.5 x 3.75 x 3.75 mm, 216 volumes, 2 classes, 12 runs), KFold(4), at
  radius 5.6, 8, 10 and 12 mm;
- **W2, trial betas**: nilearn's MNI152 grey-matter mask at 2 mm
  (``load_mni152_gm_mask(resolution=2)``, shipped inside nilearn), 8 runs x 40 beta maps,
  2 classes, radius 6 mm, LeaveOneGroupOut;
- **W3, run-wise betas**: the same mask, 8 runs x 4 condition betas (32 samples), 4 classes,
  radius 6 mm, LeaveOneGroupOut.

W2 and W3 are Gaussian noise smoothed in space (sigma 1 voxel) with class-selective patterns
planted in five 8 mm balls, on the mask's bounding box. Each measurement runs in a fresh
process, on the image read into memory beforehand (as a user's loaded image). Peak memory is
the kernel's high-water mark of the process's resident memory during the fit, the input image
held in memory included; for nilearn, the sum of those of the process and its worker
processes, an upper bound (see :class:`PeakMemory`):

- fastsearchlight on every sphere (the first fit of the process: worker start included,
  numba's compiled code loaded from its cache; the compile time is measured on its own);
- nilearn's ``SearchLight`` (``n_jobs=2``) on a random subset of spheres, scaled per sphere:
  its whole-brain estimate is its fixed cost per call (timed on 2 spheres, after an untimed
  call in which its workers import scikit-learn) plus its time per sphere on the subset times
  the number of spheres;
- agreement: on 100 random spheres, the scores equal to those of a tightly solved
  ``LinearSVC`` (liblinear's primal solver, tol 1e-10) run by nilearn, and the Newton
  iterations per problem (one problem = a sphere, a fold and a one-vs-rest class);
- proven exact: on the same spheres, the share whose score is *proven* to be the exact
  optimum's (:mod:`_certify`). The objective is 1-strongly convex, so any weights ``w`` lie
  within ``|grad f(w)|`` of the optimum and each decision within ``|grad f(w)| * |x|`` of the
  exact one: a prediction whose margin exceeds that bound is the exact optimum's (certified
  by the bound). Gradients are recomputed in numpy (extended precision) at our weights and at
  the tight ``LinearSVC``'s. A fold the bound cannot decide is solved again in exact rational
  arithmetic (its optimum's active set checked exactly). Both tools' scores are compared with
  the proven exact scores (liblinear's primal solver can stop short on the larger spheres, so
  the tight reference is not always the exact one). It refits the tight ``LinearSVC`` per problem, in this
  process, to read its weights: about twice the agreement's time at W1 12 mm (20 spheres:
  14 minutes with ``n_jobs=1``).

Usage::

    python benchmarks/sphere_sizes.py                  # every row (about an hour)
    python benchmarks/sphere_sizes.py --rows W1-5.6 W3 # some rows
    python benchmarks/sphere_sizes.py --no-agreement W1-12  # that row without the tight LinearSVC
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _certify import certify_spheres
from _certify import summary as certificate_summary
from _results import cpu_model, write_result

HERE = Path(__file__).resolve().parent
DATA = Path(tempfile.gettempdir()) / "fastsearchlight-benchmark-data"

#: row -> (data set, radius mm, nilearn subset size): subsets that keep nilearn busy for at
#: least about 5 s (W2's 60 spheres took 2.5 s, and its whole-brain estimate moved from
#: 13,717 s to 8,427 s between two runs)
ROWS = {
    "W1-5.6": ("haxby", 5.6, 1500),
    "W1-8": ("haxby", 8.0, 1500),
    "W1-10": ("haxby", 10.0, 200),
    "W1-12": ("haxby", 12.0, 300),
    "W2": ("trial_betas", 6.0, 300),
    "W3": ("run_betas", 6.0, 800),
}


def _betas(name: str):
    """The W2 or W3 data: written once as NIfTI (the bounding box of the 2 mm mask)."""
    import nibabel as nib
    import pandas as pd

    folder = DATA / name
    if not (folder / "labels.tsv").exists():
        from nilearn.datasets import load_mni152_gm_mask
        from scipy.ndimage import gaussian_filter

        gm = load_mni152_gm_mask(resolution=2)
        full = np.asarray(gm.dataobj) > 0
        lo, hi = np.argwhere(full).min(0) - 1, np.argwhere(full).max(0) + 2
        mask = full[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        affine = gm.affine.copy()
        affine[:3, 3] += affine[:3, :3] @ lo
        per_run = {"trial_betas": ["a"] * 20 + ["b"] * 20, "run_betas": ["a", "b", "c", "d"]}[name]
        rng = np.random.default_rng(0)
        labels = np.concatenate([rng.permutation(per_run) for _ in range(8)])
        runs = np.repeat(np.arange(8), len(per_run))
        data = np.empty(mask.shape + (len(labels),), np.float32)
        for t in range(len(labels)):
            noise = gaussian_filter(rng.standard_normal(mask.shape), sigma=1.0)
            data[..., t] = noise / noise.std()
        grid = np.stack(np.indices(mask.shape), -1) * 2.0
        classes = sorted(set(per_run))
        for centre in np.argwhere(mask)[rng.choice(mask.sum(), 5, replace=False)]:
            ball = np.linalg.norm(grid - centre * 2.0, axis=-1) <= 8.0
            for c in classes:
                pattern = 0.7 * rng.standard_normal(ball.sum()).astype(np.float32)
                sub = data[ball]
                sub[:, labels == c] += pattern[:, None]
                data[ball] = sub
        folder.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), folder / "betas.nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), folder / "mask.nii.gz")
        pd.DataFrame({"labels": labels, "chunks": runs}).to_csv(folder / "labels.tsv", sep="\t", index=False)
    table = pd.read_csv(folder / "labels.tsv", sep="\t")
    img = nib.load(folder / "betas.nii.gz")
    return img, nib.load(folder / "mask.nii.gz"), table["labels"].to_numpy(), table["chunks"].to_numpy()


def dataset(kind: str):
    """(image, mask, labels, groups, cv) of a row's data set."""
    from sklearn.model_selection import KFold, LeaveOneGroupOut

    if kind == "haxby":
        from fastsearchlight.simulate import simulate_haxby_like

        ds = simulate_haxby_like(random_state=0)
        return ds.func_img, ds.mask_img, ds.labels["labels"].to_numpy(), None, KFold(4)
    img, mask, y, groups = _betas(kind)
    return img, mask, y, groups, LeaveOneGroupOut()


def subset(mask_img, n: int, seed: int):
    import nibabel as nib

    mask = np.asarray(mask_img.dataobj) != 0
    ijk = np.argwhere(mask)
    pick = ijk[np.sort(np.random.default_rng(seed).choice(len(ijk), size=min(n, len(ijk)), replace=False))]
    out = np.zeros(mask.shape, np.uint8)
    out[tuple(pick.T)] = 1
    return nib.Nifti1Image(out, mask_img.affine)


def _process_tree(pid: int) -> list[int]:
    """A process and its descendants (Linux ``/proc``), those that exist now."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:  # ended meanwhile
            continue
    return found


def _peak_resident_mb(pid: int) -> float:
    """The kernel's high-water mark of a process's resident memory (``VmHWM``), 0 when the
    process has ended."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class PeakMemory:
    """Peak memory of this process and its workers during a ``with`` block, from the Linux
    kernel's own high-water marks of resident memory: reset for the process and its
    descendants on entry (``5`` written to ``/proc/PID/clear_refs``), read from
    ``/proc/PID/status`` (``VmHWM``) on exit, summed over the process and its descendants.

    Nothing runs during the block. A thread that sampled the processes' proportional set
    size every 50 ms (``/proc/PID/smaps_rollup``, which walks their page tables) slowed
    the timed fits it watched: W1 12 mm, three alternations in fresh processes, ours 17.6-18.7
    s without it and 18.5-20.1 s with it (1.08 times the time), nilearn's 300 spheres
    10.3-11.2 s against 11.2-12.7 s (1.10).

    For one process (fastsearchlight's fits, threads) the result is its exact peak resident
    memory. For several (nilearn's worker processes) it is the sum of their peaks: an upper
    bound on their peak together, in which pages they share (the memory-mapped data) count
    once per process. A worker that ends inside the block is not counted.
    """

    def __enter__(self) -> PeakMemory:
        for pid in _process_tree(os.getpid()):
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            except OSError as exc:
                if pid == os.getpid():
                    raise RuntimeError(
                        f"cannot reset this process's peak memory (/proc/{pid}/clear_refs): {exc}"
                    ) from exc
        self.peak_mb = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.peak_mb = sum(_peak_resident_mb(pid) for pid in _process_tree(os.getpid()))


def time_nilearn(make, mask_img, n_subset: int, fit_args: tuple, fit_kwargs: dict) -> tuple:
    """Time nilearn fairly: an untimed call first (its workers import scikit-learn, a cost
    paid once per session that, scaled per sphere, would inflate its estimate), then its
    fixed cost per call on 2 spheres (not scaled), then the subset of ``n_subset`` spheres.

    ``make(process_mask_img)`` returns an unfitted nilearn ``SearchLight``. Returns the fitted
    subset searchlight and a dict of ``fixed_seconds``, ``seconds``, ``n_spheres`` and
    ``peak_mb`` (see :func:`nilearn_whole_brain_seconds`).
    """
    two = subset(mask_img, 2, 0)
    make(two).fit(*fit_args, **fit_kwargs)
    t0 = time.perf_counter()
    make(two).fit(*fit_args, **fit_kwargs)
    out = {"fixed_seconds": time.perf_counter() - t0}
    sl = make(subset(mask_img, n_subset, 0))
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        sl.fit(*fit_args, **fit_kwargs)
        out["seconds"] = time.perf_counter() - t0
    out["n_spheres"] = int(np.asarray(sl.process_mask_).sum())
    out["peak_mb"] = memory.peak_mb
    return sl, out


def nilearn_whole_brain_seconds(nl: dict, n_spheres: int) -> float:
    """nilearn's whole-brain estimate: its fixed cost per call plus its time per sphere on the
    subset times ``n_spheres``."""
    fixed = nl.get("fixed_seconds", 0.0)
    return fixed + max(nl["seconds"] - fixed, 0.0) / nl["n_spheres"] * n_spheres


def measure(tool: str, row: str) -> dict:
    """One measurement, in its own process (see ``--one``)."""
    kind, radius, n_subset = ROWS[row]
    img, mask, y, groups, cv = dataset(kind)
    # read before timing, into an image held in memory (as the user's loaded image), so that
    # neither tool reads the file during the measurement
    img = type(img)(np.asanyarray(img.dataobj), img.affine, img.header)
    common = dict(mask_img=mask, radius=radius, cv=cv, n_jobs=2)
    out = {"tool": tool, "row": row}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's convergence warnings
        if tool == "ours":
            from fastsearchlight import SearchLight

            sl = SearchLight(estimator="svc", **common)
            with PeakMemory() as memory:
                t0 = time.perf_counter()
                sl.fit(img, y, groups=groups)
                out["seconds"] = time.perf_counter() - t0
            out["n_spheres"] = int(sl.n_elements_)
            out["mean_sphere"] = float(np.mean(sl.sphere_sizes_))
            out["n_samples"] = len(y)
            out["n_train"] = int(min(len(tr) for tr, _ in cv.split(np.zeros(len(y)), y, groups)))
            out["peak_mb"] = memory.peak_mb
        elif tool == "nilearn":
            from nilearn.decoding import SearchLight

            _, timed = time_nilearn(
                lambda process: SearchLight(process_mask_img=process, estimator="svc", **common),
                mask, n_subset, (img, y), {"groups": groups},
            )  # fmt: skip
            out.update(timed)
        else:  # certificate, iterations (and agreement with the tight LinearSVC) on 100 spheres
            out.update(_agreement(img, y, groups, common, subset(mask, 100, 1), tool == "agreement"))
    return out


def _agreement(img, y, groups, common, process, liblinear: bool = True) -> dict:
    """On the spheres of ``process``: our Newton iterations, the certificate of exactness,
    and, with ``liblinear``, the agreement with nilearn's tight ``LinearSVC`` and that
    solver's own gradients."""
    from nilearn.decoding import SearchLight as NilearnSearchLight
    from sklearn.svm import LinearSVC

    import fastsearchlight.estimators.svm as svm
    from fastsearchlight import SearchLight

    iterations = []
    solve = svm.BatchedLinearSVC._solve  # every fit's problems go through it

    def recording(self, *args, **kwargs):
        out = solve(self, *args, **kwargs)
        iterations.append(out[3].ravel().copy())
        return out

    svm.BatchedLinearSVC._solve = recording
    ours = SearchLight(process_mask_img=process, estimator="svc", **{**common, "n_jobs": 1})
    ours.fit(img, y, groups=groups)
    keep = np.asarray(process.dataobj) > 0
    it = np.concatenate(iterations)
    svm.BatchedLinearSVC._solve = solve
    # the certificate: every fold's problems of every sphere solved again, one sphere at a
    # time, by our solver (and by the tight LinearSVC), checked in numpy (in the order of
    # the process mask's voxels, as scores_[keep])
    cert = certify_spheres(
        img, y, groups, common["mask_img"], process, common["radius"], common["cv"], liblinear=liblinear
    )
    out = {
        "iterations_mean": float(it.mean()),
        "iterations_p99": float(np.percentile(it, 99)),
        "iterations_max": int(it.max()),
        **certificate_summary(cert, ours.scores_[keep]),
    }
    if liblinear:
        tight = LinearSVC(dual=False, tol=1e-10, max_iter=100000)
        ref = NilearnSearchLight(process_mask_img=process, estimator=tight, **common).fit(
            img, y, groups=groups
        )
        out["identical"] = float(np.isclose(ours.scores_[keep], ref.scores_[keep], rtol=0, atol=1e-12).mean())
        # sanity check of the certificate's own sphere extraction and refits
        out["tight_refit_equals_nilearn"] = float(
            np.mean(np.isclose(cert["liblinear_score"], ref.scores_[keep], rtol=0, atol=1e-12))
        )
    return out


def compile_seconds() -> tuple[float, float]:
    """Seconds to compile svc's kernels with an empty cache, and to load them from the filled
    package cache afterwards (:func:`fastsearchlight.precompile.precompile`'s ``svc`` group,
    in a process of its own each time; imports included).

    The package's cache is filled the same way before the measurements, so that no row's
    first fit compiles: a few binary fits alone left W3's multi-class kernels to its fit
    (16.1 s in stop 62's run with an emptied cache, against 9.6-10.4 s once compiled)."""
    code = (
        "import json; from fastsearchlight.precompile import precompile; "
        "print(json.dumps(sum(precompile(['svc'], n_jobs=1).values())))"
    )
    run = lambda env: float(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                           capture_output=True, text=True).stdout)  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        compiling = run({**os.environ, "NUMBA_CACHE_DIR": cache})
    run(os.environ)  # the measurements load the compiled code from the package's own cache
    return compiling, run(os.environ)


def _run_one(tool: str, row: str) -> dict:
    cmd = [sys.executable, __file__, "--one", tool, row]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: dict, compile_s: tuple[float, float]) -> str:
    import nilearn
    import sklearn

    load = os.getloadavg()
    lines = [
        "# Speed at every sphere size and data shape (svc), side by side with nilearn",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; load average at the end {load[0]:.2f}, "
        f"{load[1]:.2f}, {load[2]:.2f}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, nilearn {nilearn.__version__}.",
        "",
        f"Compiled kernels (svc's group of `fastsearchlight precompile`): {compile_s[0]:.1f} s with an "
        f"empty cache (compiling), {compile_s[1]:.1f} s in a later process (loading the cache; both "
        "include imports); the fits below load it.",
        "",
        "| row | spheres | voxels/sphere | samples (train) | ours s | ours spheres/s | nilearn s (est.) "
        "| ratio | identical to tight LinearSVC | proven exact [by the bound] (ours = exact / tight = exact) "
        "| max gradient ours / tight | Newton iterations mean / p99 / max | peak MB ours / nilearn |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, r in results.items():
        ours, nl, ag = r["ours"], r["nilearn"], r.get("agreement")
        nl_whole = nilearn_whole_brain_seconds(nl, ours["n_spheres"])
        pct = lambda v, f="{:.0%}": "not run" if v is None or np.isnan(v) else f.format(v)  # noqa: E731
        certified = (
            f"{pct(ag.get('proven', ag['certified']))} [{pct(ag['certified'])}] "
            f"({pct(ag.get('ours_equals_exact'))} / "
            f"{pct(ag.get('liblinear_equals_exact'))}) | "
            f"{pct(ag['grad_max_ours'], '{:.1e}')} / {pct(ag.get('grad_max_liblinear'), '{:.1e}')}"
            if ag and "certified" in ag
            else "not run | not run"
        )
        agreement = (
            f"{pct(ag.get('identical'), '{:.1%}')} | {certified} | {ag['iterations_mean']:.1f} / "
            f"{ag['iterations_p99']:.0f} / {ag['iterations_max']}"
            if ag
            else "not run | not run | not run | not run"
        )
        lines.append(
            f"| {row} | {ours['n_spheres']} | {ours['mean_sphere']:.0f} | {ours['n_samples']} "
            f"({ours['n_train']}) | {ours['seconds']:.1f} | {ours['n_spheres'] / ours['seconds']:.0f} | "
            f"{nl_whole:.0f} (on {nl['n_spheres']}) | {nl_whole / ours['seconds']:.0f}x | "
            f"{agreement} | {ours['peak_mb']:.0f} / {nl['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument(
        "--no-agreement", nargs="*", default=[], choices=list(ROWS), metavar="ROW",
        help="rows whose agreement with the tight LinearSVC is not run (slow at W1-12); their "
        "certificate of exactness and Newton iterations still are",
    )  # fmt: skip
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "ROW"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one)))
        return 0
    compile_s = compile_seconds()
    results = {}
    for row in args.rows:
        results[row] = {}
        for tool in ("ours", "nilearn", "agreement"):
            # without the tight LinearSVC: the certificate and the iterations only
            run = "certificate" if tool == "agreement" and row in args.no_agreement else tool
            results[row][tool] = r = _run_one(run, row)
            print(f"{row:>7} {tool:>9}: {json.dumps(r)}", file=sys.stderr, flush=True)
    text = table(results, compile_s)
    print(text)
    name = "sphere_sizes" if args.rows == list(ROWS) else "sphere_sizes_partial"
    write_result(HERE / "results" / f"{name}.md", text)
    write_result(HERE / "results" / f"{name}.json", json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
