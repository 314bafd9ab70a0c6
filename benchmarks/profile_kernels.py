"""Where the compiled kernels spend their time: a ``perf`` profile with their functions named.

``perf`` sees numba's compiled code as anonymous addresses. This script compiles the kernels
in its own process (into a temporary numba cache, so that their LLVM code can be read), writes
the address of every compiled function, the kernels' inlined callees included, to
``/tmp/perf-<pid>.map`` (the file ``perf`` reads for code generated at run time), then samples
one fit with ``perf record`` (the data prepared beforehand: the fit alone is sampled) and
prints ``perf report``'s functions by share of the samples.

Needs Linux's ``perf`` (``perf record -p`` on this process). Workloads are those of
``sphere_sizes.py``: a block of neighbouring spheres (as the whole-brain fit visits them) of a
row, with or without permutations::

    python benchmarks/profile_kernels.py --row W3 --spheres 3000 --permutations 16
    python benchmarks/profile_kernels.py --row W1-12 --spheres 300
    python benchmarks/profile_kernels.py --row W1-10 --spheres 5000 --estimator lda
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: the sphere_sizes rows: (data set, radius in mm)
ROWS = {
    "W1-5.6": ("haxby", 5.6), "W1-8": ("haxby", 8.0), "W1-10": ("haxby", 10.0),
    "W1-12": ("haxby", 12.0), "W2": ("trial_betas", 6.0), "W3": ("run_betas", 6.0),
}  # fmt: skip


def compiled_dispatchers(package: str = "fastsearchlight") -> list:
    """Every numba dispatcher of the imported modules of ``package`` that has compiled code."""
    from numba.core.dispatcher import Dispatcher

    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package or name.startswith(package + ".")):
            continue
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value.overloads:
                found[id(value)] = value
    return list(found.values())


def write_perf_map(dispatchers, path: Path | None = None) -> int:
    """Write the address and length of every function compiled for ``dispatchers`` (each
    one's LLVM library: the kernel and the callees compiled into it) to ``path`` (by
    default ``/tmp/perf-<pid>.map``). Returns the number of functions written. Only code
    compiled in this process can be read: numba's cached code has no LLVM to inspect."""
    entries = {}
    for dispatcher in dispatchers:
        for compiled in dispatcher.overloads.values():
            library = compiled.library
            engine = library._codegen._engine
            for match in re.finditer(r'^define [^@]*@"?([^"(\s]+)"?\(', library.get_llvm_str(), re.M):
                symbol = match.group(1)
                address = engine.get_function_address(symbol)
                if address:
                    # numba's mangled names: module, function, then the argument types
                    parts = re.findall(r"\d+([a-z_][a-z0-9_]+)", symbol[:200])
                    entries[address] = ".".join(parts[:4]) or symbol[:80]
    addresses = sorted(entries)
    path = Path(f"/tmp/perf-{os.getpid()}.map") if path is None else path
    with open(path, "w") as out:
        for i, address in enumerate(addresses):
            size = min(addresses[i + 1] - address if i + 1 < len(addresses) else 1 << 16, 1 << 20)
            out.write(f"{address:x} {size:x} {entries[address]}\n")
    return len(addresses)


def _prepare(row: str) -> tuple:
    """A row's data (image read into memory, mask, labels, groups, splitter, radius)."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from sphere_sizes import dataset

    kind, radius = ROWS[row]
    img, mask, y, groups, cv = dataset(kind)
    img = type(img)(np.asanyarray(img.dataobj), img.affine, img.header)
    return img, mask, y, groups, cv, radius


def _fit(data: tuple, n_spheres: int, n_permutations: int, estimator: str = "svc") -> None:
    """One fit (n_jobs=1) of ``n_spheres`` neighbouring spheres (consecutive in the mask)."""
    import nibabel as nib
    import numpy as np

    from fastsearchlight import SearchLight

    img, mask, y, groups, cv, radius = data
    inside = np.asarray(mask.dataobj) != 0
    ijk = np.argwhere(inside)
    start = len(ijk) // 2
    block = np.zeros(inside.shape, np.uint8)
    block[tuple(ijk[start : start + n_spheres].T)] = 1
    options = {"permute": "blocks"} if groups is not None and n_permutations else {}
    SearchLight(
        estimator=estimator, mask_img=mask, process_mask_img=nib.Nifti1Image(block, mask.affine),
        radius=radius, cv=cv, n_permutations=n_permutations, n_jobs=1, random_state=0, **options,
    ).fit(img, y, groups=groups)  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--row", choices=list(ROWS), default="W3")
    parser.add_argument("--spheres", type=int, default=2000)
    parser.add_argument("--permutations", type=int, default=0)
    parser.add_argument("--top", type=int, default=25, help="functions to print")
    parser.add_argument("--estimator", default="svc", help="the searchlight's estimator (default svc)")
    args = parser.parse_args(argv)
    # compile here, not from the cache: only code compiled in this process can be named
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastsearchlight-profile-")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    data = _prepare(args.row)
    print("compiling (a small fit)...", flush=True)
    _fit(data, 20, min(args.permutations, 2), args.estimator)
    n = write_perf_map(compiled_dispatchers())
    print(f"{n} compiled functions named in /tmp/perf-{os.getpid()}.map", flush=True)
    record = Path(tempfile.mkdtemp(prefix="fastsearchlight-perf-")) / "perf.data"
    perf = subprocess.Popen(["perf", "record", "-F", "2000", "-o", str(record), "-p", str(os.getpid())])
    time.sleep(1.0)  # perf attaches
    t0 = time.perf_counter()
    _fit(data, args.spheres, args.permutations, args.estimator)
    seconds = time.perf_counter() - t0
    perf.send_signal(signal.SIGINT)
    perf.wait()
    print(f"profiled fit: {seconds:.1f} s ({args.estimator}, {args.row}, {args.spheres} spheres, "
          f"{args.permutations} permutations, n_jobs=1)")  # fmt: skip
    report = subprocess.run(
        ["perf", "report", "-i", str(record), "--no-children", "--sort", "sym", "--stdio"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [line for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]
    print("\n".join(lines[: args.top]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
