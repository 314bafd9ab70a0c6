"""Writing benchmark results: a file appears whole under its final name, or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def write_result(path: Path, text: str) -> None:
    """Write ``text`` (with a final newline) to ``path``, through a temporary file renamed
    into place; the parent folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo) and its micro-architecture as the
    compiler of the kernels sees it (LLVM's host CPU name, e.g. "znver5": cloud machines
    often report only "AMD EPYC", whatever their generation), or "unknown CPU"."""
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from llvmlite import binding

        return f"{name} ({binding.get_host_cpu_name()})"
    except Exception:  # no llvmlite: the model name alone
        return name
