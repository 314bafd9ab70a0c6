"""Data sets: the Haxby slice shipped with the package, and the full Haxby 2001 data."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .io import InputError

__all__ = ["HAXBY_LAYOUT", "StudyFiles", "fetch_haxby", "haxby_slice"]

HAXBY_LAYOUT = """\
<data-dir>/haxby2001/mask.nii.gz
<data-dir>/haxby2001/MD5SUMS
<data-dir>/haxby2001/subj<N>/bold.nii.gz, labels.txt, mask4_vt.nii.gz, anat.nii.gz, ..."""


@dataclass(frozen=True)
class StudyFiles:
    """Paths of one subject's study: functional images, labels table and masks."""

    func: Path
    labels: Path
    mask: Path
    name: str
    description: str = ""


def haxby_slice() -> StudyFiles:
    """The Haxby 2001 subject-1 slice shipped inside the package (runs offline).

    Real BOLD data of one axial slice (40 x 20 x 1 voxels, 1452 volumes, 12 runs), with its
    530-voxel mask and the labels table in the Haxby layout. Provenance in the folder's
    README.md.
    """
    root = resources.files("fastsearchlight") / "data" / "haxby2001_subj1_slice"
    root = Path(str(root))
    return StudyFiles(
        func=root / "bold.nii.gz",
        labels=root / "labels.txt",
        mask=root / "mask.nii.gz",
        name="Haxby 2001 subject 1, one slice (shipped with fastsearchlight)",
        description=(root / "README.md").read_text(),
    )


def fetch_haxby(subject: int = 2, data_dir=None, *, verbose: int = 0) -> StudyFiles:
    """One subject of the full Haxby 2001 data set, through nilearn's fetcher.

    nilearn downloads the data once into ``data_dir`` (default: nilearn's data folder); with
    a local copy already there, nothing is downloaded. Offline without a copy, an
    :class:`~fastsearchlight.io.InputError` says where to put one.

    Parameters
    ----------
    subject : int
        Subject number, 1 to 6 (2 is the classic example's).
    data_dir : path-like or None
        Folder holding (or to receive) ``haxby2001/``.
    """
    from nilearn.datasets import fetch_haxby as nilearn_fetch_haxby

    if subject not in range(1, 7):
        raise InputError(f"Haxby 2001 has subjects 1 to 6, not {subject}")
    try:
        bunch = nilearn_fetch_haxby(
            data_dir=None if data_dir is None else str(data_dir), subjects=[subject], verbose=verbose
        )
    except Exception as exc:  # network errors come in many types (requests, urllib, OSError)
        where = data_dir if data_dir is not None else "nilearn's data folder"
        raise InputError(
            f"could not fetch the Haxby 2001 data for subject {subject} ({type(exc).__name__}); "
            f"offline, put a copy in {where} laid out as nilearn's fetcher leaves it "
            f"({HAXBY_LAYOUT.replace(chr(10), '; ')}) and pass --data-dir <data-dir>"
        ) from None
    return StudyFiles(
        func=Path(bunch.func[0]),
        labels=Path(bunch.session_target[0]),
        mask=Path(bunch.mask),
        name=f"Haxby 2001 subject {subject} (whole brain)",
        description=str(getattr(bunch, "description", ""))[:2000],
    )
