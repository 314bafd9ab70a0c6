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
    """The processor's model name (from /proc/cpuinfo), or "unknown CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
