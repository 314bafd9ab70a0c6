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

or a point of ``cost_growth.py`` (its simulated W1 data: a radius in mm and a number of
runs of 18 samples), with ``--growth RADIUS RUNS`` in place of ``--row``::

    python benchmarks/profile_kernels.py --growth 14.5 12 --spheres 300 --estimator lda

``--refcounts`` also names the compiled functions that call numba's reference counting
(``NRT_incref``, ``NRT_decref``: an atomic operation each, for every array view, iterator or
argument the compiler does not prove unneeded), by share of all samples. ``perf`` cannot
unwind numba's code, so the sampling records each sample's user stack (``--call-graph
dwarf``); in a sample inside those two leaf functions, which push nothing, the return
address is the stack's first word.
"""

from __future__ import annotations

import argparse
import bisect
import collections
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


def refcount_callers(record: Path, perf_map: Path) -> tuple[int, collections.Counter]:
    """The callers of ``NRT_incref`` and ``NRT_decref`` in a ``perf record --call-graph
    dwarf`` profile: the number of samples, and per (operation, calling function) the
    samples spent in the operation. Each sample's raw record (``perf script -D``) holds its
    instruction pointer and its user stack; the return address is the stack's first
    word, named from ``perf_map`` (:func:`write_perf_map`)."""
    rows = []
    for line in perf_map.read_text().splitlines():
        address, size, name = line.split(" ", 2)
        rows.append((int(address, 16), int(size, 16), name))
    rows.sort()
    starts = [r[0] for r in rows]

    def name_of(address: int) -> str | None:
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < rows[i][0] + rows[i][1]:
            return rows[i][2]
        return None

    dump = subprocess.run(["perf", "script", "-D", "-i", str(record)], capture_output=True, text=True).stdout
    counts: collections.Counter = collections.Counter()
    n_samples = 0
    raw: list[int] = []
    for line in dump.splitlines():
        if "raw event" in line:
            raw = []
        elif re.match(r"\.  [0-9a-f]{4}:", line):
            raw.extend(int(b, 16) for b in line[8:56].split())
        elif "PERF_RECORD_SAMPLE" in line:
            n_samples += 1
            ip = re.search(r"\d+/\d+: (0x[0-9a-f]+)", line)
            leaf = name_of(int(ip.group(1), 16)) if ip else None
            if leaf in ("NRT_incref", "NRT_decref") and len(raw) >= 0xF0:
                # the user stack follows the registers: its size at 0xe0, then its words
                caller = name_of(int.from_bytes(bytes(raw[0xE8:0xF0]), "little"))
                counts[(leaf, caller or "?")] += 1
    return n_samples, counts


def _prepare(row: str, growth: tuple[float, int] | None = None) -> tuple:
    """A row's data (image read into memory, mask, labels, groups, splitter, radius), or with
    ``growth`` (radius, runs) a point of ``cost_growth.py``."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    if growth is not None:
        from cost_growth import _data

        radius, n_runs = growth
        img, mask, y, cv = _data(int(n_runs))
        return img, mask, y, None, cv, float(radius)
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
    parser.add_argument(
        "--growth", nargs=2, type=float, metavar=("RADIUS", "RUNS"),
        help="a point of cost_growth.py instead of a row (radius in mm, number of runs)",
    )  # fmt: skip
    parser.add_argument("--spheres", type=int, default=2000)
    parser.add_argument("--permutations", type=int, default=0)
    parser.add_argument("--top", type=int, default=25, help="functions to print")
    parser.add_argument("--estimator", default="svc", help="the searchlight's estimator (default svc)")
    parser.add_argument(
        "--refcounts", action="store_true", help="also name the callers of numba's reference counting"
    )
    args = parser.parse_args(argv)
    # compile here, not from the cache: only code compiled in this process can be named
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastsearchlight-profile-")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    data = _prepare(args.row, args.growth)
    where = args.row if args.growth is None else f"growth {args.growth[0]:g} mm, {int(args.growth[1])} runs"
    print("compiling (a small fit)...", flush=True)
    _fit(data, 20, min(args.permutations, 2), args.estimator)
    n = write_perf_map(compiled_dispatchers())
    print(f"{n} compiled functions named in /tmp/perf-{os.getpid()}.map", flush=True)
    record = Path(tempfile.mkdtemp(prefix="fastsearchlight-perf-")) / "perf.data"
    stacks = ["--call-graph", "dwarf,512"] if args.refcounts else []
    perf = subprocess.Popen(
        ["perf", "record", "-F", "2000", *stacks, "-o", str(record), "-p", str(os.getpid())]
    )
    time.sleep(1.0)  # perf attaches
    t0 = time.perf_counter()
    _fit(data, args.spheres, args.permutations, args.estimator)
    seconds = time.perf_counter() - t0
    perf.send_signal(signal.SIGINT)
    perf.wait()
    print(f"profiled fit: {seconds:.1f} s ({args.estimator}, {where}, {args.spheres} spheres, "
          f"{args.permutations} permutations, n_jobs=1)")  # fmt: skip
    report = subprocess.run(
        ["perf", "report", "-i", str(record), "--no-children", "--sort", "sym", "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [line for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]
    print("\n".join(lines[: args.top]))
    if args.refcounts:
        n_samples, counts = refcount_callers(record, Path(f"/tmp/perf-{os.getpid()}.map"))
        share = 100.0 * sum(counts.values()) / max(n_samples, 1)
        print(f"\nreference counting: {share:.2f}% of {n_samples} samples, by caller")
        for (leaf, caller), count in counts.most_common(args.top):
            print(f"    {100.0 * count / n_samples:5.2f}%  {leaf:10}  {caller}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
