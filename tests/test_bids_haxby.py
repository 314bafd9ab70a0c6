"""A BIDS copy of the real 25 mm Haxby data (12 runs, events built from its labels) gives
the map of the 4D file + labels table. Skipped without the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

# the shared folder as tests/conftest.py finds it
_SHARED = Path(os.environ.get("FASTSEARCHLIGHT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
BRAIN25_DIR = _SHARED / "data" / "haxby2001-subj1-25mm"

pytestmark = pytest.mark.skipif(
    not (BRAIN25_DIR / "bold.nii.gz").exists(), reason=f"real data not found in {BRAIN25_DIR}"
)


@pytest.fixture(scope="module")
def bids_copy(tmp_path_factory):
    from fastsearchlight.bids_copy import write_bids_copy

    root = tmp_path_factory.mktemp("haxby") / "bids"
    return write_bids_copy(BRAIN25_DIR / "bold.nii.gz", BRAIN25_DIR / "labels.txt", root, task="objects")


def _config():
    from fastsearchlight.study import StudyConfig

    return StudyConfig(radius=30.0, conditions=["face", "house"])


def test_events_label_every_volume_as_the_table(bids_copy):
    from fastsearchlight.bids import find_runs, read_events, volume_labels

    table = pd.read_csv(BRAIN25_DIR / "labels.txt", sep=" ")
    subject = find_runs(bids_copy, "01", "objects")
    assert len(subject.runs) == 12 and subject.t_r == 2.5
    labels = np.concatenate([volume_labels(read_events(r.events), 121, r.t_r) for r in subject.runs])
    assert list(labels) == list(table["labels"])


@pytest.mark.parametrize("shift", [0.0, 5.0])
def test_bids_copy_gives_the_map_of_the_4d_file(bids_copy, tmp_path, shift):
    from fastsearchlight.bids_study import BidsSpec, run_bids_study
    from fastsearchlight.study import run_study

    table = pd.read_csv(BRAIN25_DIR / "labels.txt", sep=" ")
    if shift:  # volume i takes the label of volume i - 2 of its run (5 s = 2 TR later), none before
        lagged = table.groupby("chunks")["labels"].shift(int(shift / 2.5)).fillna("none")
        table = table.assign(labels=lagged)
    table.to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    mask = BRAIN25_DIR / "mask_brain.nii.gz"
    by_table = run_study(BRAIN25_DIR / "bold.nii.gz", tmp_path / "labels.tsv", mask, tmp_path / "table",
                         config=_config(), quiet=True)  # fmt: skip
    spec = BidsSpec(bids_copy, "01", "objects", shift=shift)
    by_bids = run_bids_study(spec, tmp_path / "bids", mask=mask, config=_config(), quiet=True)
    a = nib.load(tmp_path / "table" / "searchlight_scores.nii.gz").get_fdata()
    b = nib.load(tmp_path / "bids" / "searchlight_scores.nii.gz").get_fdata()
    np.testing.assert_array_equal(a, b)
    assert by_bids["data"]["volumes per condition"] == by_table["data"]["volumes per condition"]
    assert by_bids["parameters"]["n_folds"] == 12
