"""What a study was run from: the command line, and a checksum of each input file."""

from __future__ import annotations

import hashlib
import shlex
import sys
from pathlib import Path

__all__ = ["command_line", "describe_sources", "file_checksum"]


def file_checksum(path) -> str:
    """SHA-256 of a file's bytes, as ``"sha256:<hex>"``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def command_line(argv: list[str] | None = None) -> str:
    """The command line as a shell would take it (``fastsearchlight`` and its arguments)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["fastsearchlight", *map(str, args)])


def _paths(value) -> list[Path]:
    if isinstance(value, (str, Path)) and Path(value).is_file():
        return [Path(value)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _paths(v)]
    return []


def describe_sources(sources: dict) -> tuple[dict, dict]:
    """The sources as text for the summary, and the checksum of every input file in them.

    Parameters
    ----------
    sources : dict
        Name -> a path, a list of paths, text, or an in-memory image.
    """
    shown, checksums = {}, {}
    for name, value in sources.items():
        if isinstance(value, (str, Path)):
            shown[name] = str(value)
        elif isinstance(value, (list, tuple)):
            shown[name] = [str(v) for v in value]
        else:
            shown[name] = "in memory"
        for path in _paths(value):
            checksums[str(path)] = file_checksum(path)
    return shown, checksums
