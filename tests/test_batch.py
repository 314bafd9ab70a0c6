"""Batch mode: subjects and group level from a study file, re-runs that skip or finish, bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fastsearchlight.batch import load_batch, output_state, run_batch
from fastsearchlight.cli import main
from fastsearchlight.group import GROUP_OUTPUTS
from fastsearchlight.simulate import simulate_haxby_like, write_dataset
from fastsearchlight.stats import NullStore
from fastsearchlight.study import CHECKPOINT_NAME

DEFAULTS = {"radius": 4.0, "estimator": "gnb", "cv": "kfold:4", "permutations": 12, "seed": 5}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two simulated subjects on disk."""
    root = tmp_path_factory.mktemp("batch-data")
    for i in (1, 2):
        ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=i)
        write_dataset(ds, root / f"sub-{i}")
    return root


def toml_value(value) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them read the same in TOML


def write_study(folder: Path, data: Path, *, defaults=None, subjects=(1, 2), group=True, extra="",
                subject_extra="") -> Path:  # fmt: skip
    """A study file in ``folder`` whose paths are relative to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(data, folder)
    lines = ['out = "results"', "", "[defaults]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in {**DEFAULTS, **(defaults or {})}.items()]
    for i in subjects:
        lines += ["", "[[subjects]]", f'name = "sub-{i}"', f'func = "{rel}/sub-{i}/bold.nii.gz"',
                  f'labels = "{rel}/sub-{i}/labels.txt"', f'mask = "{rel}/sub-{i}/mask.nii.gz"']  # fmt: skip
        if subject_extra:
            lines.append(subject_extra)
    if group:
        lines += ["", "[group]", "permutations = 50", "cluster_threshold = 0.01"]
    path = folder / "study.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def maps(out: Path, subject: str) -> dict:
    return {f: nib.load(out / subject / f).get_fdata()
            for f in ("searchlight_scores.nii.gz", "p_uncorrected.nii.gz", "p_fwe.nii.gz")}  # fmt: skip


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """A complete two-subject batch with the group level."""
    folder = tmp_path_factory.mktemp("reference")
    result = run_batch(write_study(folder, data), quiet=True, echo=lambda line: None)
    assert result.ok and set(result.subjects.values()) == {"done"} and result.group == "done"
    return folder / "results"


def test_batch_writes_every_subject_and_the_group(reference):
    for subject in ("sub-1", "sub-2"):
        assert output_state(reference / subject) == "complete"
        summary = json.loads((reference / subject / "summary.json").read_text())
        assert summary["name"] == subject
        assert summary["parameters"]["radius"] == 4.0 and summary["parameters"]["n_permutations"] == 12
        assert (reference / subject / "p_fwe.nii.gz").is_file()
        assert not (reference / subject / CHECKPOINT_NAME).exists()
    for name in GROUP_OUTPUTS:
        assert (reference / "group" / name).is_file(), name
    group = json.loads((reference / "group" / "summary.json").read_text())
    assert group["parameters"]["subjects"] == 2 and group["parameters"]["chance"] == 0.5
    assert group["data"]["maps"] == [
        str(reference / s / "searchlight_scores.nii.gz") for s in ("sub-1", "sub-2")
    ]


def test_rerun_skips_complete_outputs_and_finishes_incomplete_ones(data, tmp_path, capsys, monkeypatch):
    path = write_study(tmp_path, data)
    monkeypatch.chdir(data)  # paths are read from the study file's folder, not the working one
    assert main(["batch", str(path), "--quiet"]) == 0
    out = tmp_path / "results"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["batch", str(path), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()[-4:]
    assert lines[0].startswith("sub-1: skipped") and lines[1].startswith("sub-2: skipped")
    assert lines[2].startswith("group: skipped") and lines[3].startswith("batch: 0 done, 2 skipped")
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    (out / "sub-2" / "f_scores.png").unlink()  # an incomplete subject
    assert output_state(out / "sub-2") == "incomplete"
    before = maps(out, "sub-2")
    assert main(["batch", str(path), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sub-1: skipped") and lines[1].startswith("sub-2: done")
    assert lines[2].startswith("group: done")  # a subject was recomputed
    assert output_state(out / "sub-2") == "complete"
    for name, values in maps(out, "sub-2").items():
        np.testing.assert_array_equal(values, before[name])
    assert (out / "sub-1" / "summary.json").stat().st_mtime_ns == stamps[out / "sub-1" / "summary.json"]

    (out / "group" / "group_t.nii.gz").unlink()  # only the group level is incomplete
    result = run_batch(path, quiet=True, echo=lambda line: None)
    assert result.subjects == {"sub-1": "skipped", "sub-2": "skipped"} and result.group == "done"

    result = run_batch(path, quiet=True, force=True, echo=lambda line: None)
    assert result.subjects == {"sub-1": "done", "sub-2": "done"} and result.group == "done"


def test_interrupted_subject_resumes_from_its_checkpoint(data, tmp_path, monkeypatch):
    defaults = {"permutations": 40}  # two permutation batches of 32 and 8
    full = run_batch(write_study(tmp_path / "full", data, defaults=defaults, subjects=(2,), group=False),
                     quiet=True, echo=lambda line: None)  # fmt: skip
    assert full.subjects == {"sub-2": "done"}
    path = write_study(tmp_path, data, defaults=defaults, subjects=(2,), group=False)
    original = NullStore.write
    writes = []

    def write_then_stop(self, rows, scores):
        original(self, rows, scores)
        writes.append(len(rows))
        if len(writes) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(NullStore, "write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_batch(path, quiet=True, echo=lambda line: None)
    out = tmp_path / "results" / "sub-2"
    assert (out / CHECKPOINT_NAME).exists() and output_state(out) == "incomplete"
    result = run_batch(path, quiet=True, echo=lambda line: None)
    assert result.subjects == {"sub-2": "done"}
    assert writes == [32, 8]  # the resumed run computed only the permutations left
    assert not (out / CHECKPOINT_NAME).exists()
    expected = maps(tmp_path / "full" / "results", "sub-2")
    for name, values in maps(tmp_path / "results", "sub-2").items():
        np.testing.assert_array_equal(values, expected[name])


def test_changed_settings_and_failed_subjects_are_reported(data, reference, tmp_path, capsys):
    import shutil

    shutil.copytree(reference, tmp_path / "results")
    path = write_study(tmp_path, data, defaults={"radius": 5.0})
    assert main(["batch", str(path), "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sub-1: failed: ") and "radius 4.0, not 5.0" in lines[0]
    assert "--force" in lines[0]
    assert lines[2] == "group: skipped (2 subject(s) failed)"

    # a subject whose data do not fit its settings fails alone
    path = write_study(
        tmp_path / "other", data, subject_extra='overrides = { conditions = ["face", "tree"] }'
    )
    result = run_batch(path, quiet=True, echo=lambda line: None)
    assert result.subjects == {"sub-1": "failed", "sub-2": "failed"} and not result.ok
    assert "unknown condition(s) tree" in result.messages["sub-1"]


def test_one_subject_without_group_level(data, tmp_path, capsys):
    path = write_study(tmp_path, data, subjects=(1,), group=False, defaults={"permutations": 0})
    assert main(["batch", str(path), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sub-1: done") and lines[1] == "batch: 1 done, 0 skipped, 0 failed"
    assert not (tmp_path / "results" / "group").exists()
    assert load_batch(path).subjects[0].config.n_permutations == 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.replace('out = "results"\n', ""), "missing key 'out'"),
        (lambda t: t.replace("[defaults]\n", '[defaults]\nkernel = "rbf"\n'), "[defaults]: unknown key 'kernel'"),
        (lambda t: "colour = 1\n" + t, "unknown key 'colour'"),
        (lambda t: t.replace('name = "sub-2"\n', 'name = "sub-2"\nbold = "x.nii"\n'), "subject 'sub-2': unknown key 'bold'"),
        (lambda t: t.replace("sub-2/mask.nii.gz", "sub-2/nomask.nii.gz"), "subject 'sub-2': mask file not found"),
        (lambda t: t.replace('labels = "', '# labels = "', 1), "subject 'sub-1': missing key 'labels'"),
        (lambda t: t.replace("radius = 4.0", 'radius = "big"'), "radius must be a positive number"),
        (lambda t: t.replace('name = "sub-2"', 'name = "sub-1"'), "subject 'sub-1' is listed twice"),
        (lambda t: t.replace('name = "sub-2"', 'name = "group"'), "name must be a plain folder name"),
        (lambda t: t.replace("permutations = 50", "permutations = 0"), "[group]: permutations must be"),
        (lambda t: t.replace("[group]", "[group]\nalpha = 0.05"), "[group]: unknown key 'alpha'"),
        (lambda t: t.replace("[[subjects]]", "[[subjects", 1), "is not valid TOML"),
    ],
)  # fmt: skip
def test_bad_study_file_is_a_one_line_error(data, tmp_path, capsys, change, message):
    path = write_study(tmp_path, data)
    path.write_text(change(path.read_text()))
    assert main(["batch", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastsearchlight: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()  # nothing was run


def test_group_needs_two_subjects_and_file_must_exist(data, tmp_path, capsys):
    path = write_study(tmp_path, data, subjects=(1,))
    assert main(["batch", str(path)]) == 2
    assert "the group level needs at least two subjects" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "missing.toml")]) == 2
    assert "study file not found" in capsys.readouterr().err
