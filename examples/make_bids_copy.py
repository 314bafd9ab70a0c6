"""Write a BIDS copy of a data set given as one 4D file and a labels table.

Usage (the shared 25 mm Haxby data, 12 runs)::

    python examples/make_bids_copy.py ../shared/data/haxby2001-subj1-25mm haxby-bids

writes ``haxby-bids/sub-01/func/sub-01_task-objects_run-XX_{bold.nii.gz,bold.json,events.tsv}``:
one image per run, its repetition time, and its events (each block of consecutive volumes of
one label becomes one event). Then::

    fastsearchlight run --bids haxby-bids --subject 01 --task objects \\
        --mask ../shared/data/haxby2001-subj1-25mm/mask_brain.nii.gz --radius 30 --out haxby-bids-study
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastsearchlight.bids_copy import write_bids_copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder holding bold.nii.gz and labels.txt (Haxby layout)")
    parser.add_argument("out", help="the BIDS dataset to write")
    parser.add_argument("--task", default="objects", help="task label (default objects)")
    args = parser.parse_args()
    folder = Path(args.folder)
    root = write_bids_copy(folder / "bold.nii.gz", folder / "labels.txt", args.out, task=args.task)
    print(f"BIDS copy written to {root}")


if __name__ == "__main__":
    main()
