"""Nothing lost, nothing wrong, no traceback: bad parameters, bad files, failing file systems,
two runs into one folder, and a batch whose subject fails."""

import errno
import json
import os
import stat
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from sklearn.model_selection import KFold

from fastsearchlight import SearchLight
from fastsearchlight.cli import main
from fastsearchlight.cv import make_cv_plan
from fastsearchlight.io import LOCK_NAME
from fastsearchlight.simulate import simulate_haxby_like, write_dataset
from fastsearchlight.study import CHECKPOINT_NAME


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=3)
    write_dataset(ds, root)
    return root


def run_args(data, out, *extra):
    return ["run", "--func", str(data / "bold.nii.gz"), "--labels", str(data / "labels.txt"),
            "--mask", str(data / "mask.nii.gz"), "--radius", "4", "--estimator", "gnb",
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("fastsearchlight: error: "), err
    for word in words:
        assert word in err, err
    return err


# ----------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "params, name",
    [
        ({"n_jobs": 1.5}, "n_jobs"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"n_permutations": 2.7}, "n_permutations"),
        ({"n_permutations": -1}, "n_permutations"),
        ({"cluster_alpha": 2.0}, "cluster_alpha"),
        ({"cluster_alpha": 0.0}, "cluster_alpha"),
        ({"memory_mb": 0}, "memory_mb"),
        ({"memory_mb": -5.0}, "memory_mb"),
        ({"permutation_batch": 0}, "permutation_batch"),
        ({"verbose": -1}, "verbose"),
        ({"verbose": "yes"}, "verbose"),
        ({"radius": float("nan")}, "radius"),
    ],
)
def test_bad_parameters_are_refused_before_reading_data(params, name):
    # the images do not exist: the parameter is refused first
    with pytest.raises(ValueError, match=f"^{name} must be"):
        SearchLight(**params).fit("no-such-file.nii.gz", [0, 1])


def test_good_parameters_pass(data):
    y = np.loadtxt(data / "labels.txt", dtype=str, skiprows=1)[:, 0]
    sl = SearchLight(mask_img=str(data / "mask.nii.gz"), radius=4.0, estimator="gnb", cv=KFold(2),
                     n_jobs=np.int64(1), verbose=False, memory_mb=64, n_permutations=np.int64(0))  # fmt: skip
    sl.fit(str(data / "bold.nii.gz"), y)
    assert np.all(np.isfinite(sl.masked_scores_))


def test_radius_beyond_the_image_is_one_clear_error(data):
    y = np.loadtxt(data / "labels.txt", dtype=str, skiprows=1)[:, 0]
    with pytest.raises(ValueError, match="exceeds the image's extent"):
        SearchLight(radius=1e300, cv=2).fit(str(data / "bold.nii.gz"), y)


@pytest.mark.parametrize(
    "extra, word",
    [
        (["--cluster-alpha", "2"], "cluster_alpha"),
        (["--cluster-alpha", "0"], "cluster_alpha"),
        (["--permutations", "-3"], "n_permutations"),
        (["--memory-mb", "0"], "memory_mb"),
        (["--n-jobs", "0"], "n_jobs"),
        (["--radius", "1e300"], "exceeds the image's extent"),
    ],
)
def test_cli_refuses_bad_parameters_in_one_line(data, tmp_path, capsys, extra, word):
    out = tmp_path / "out"
    assert main(run_args(data, out, *extra)) == 2
    one_line_error(capsys, word)
    assert not out.exists()


def write_maps(folder, values=(0.55, 0.6, 0.62)):
    paths = []
    for i, v in enumerate(values):
        path = folder / f"sub-{i}.nii.gz"
        data = np.full((4, 4, 4), v) + 0.01 * np.random.default_rng(i).standard_normal((4, 4, 4))
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(
    "extra, word",
    [
        (["--chance", "2"], "chance"),
        (["--chance", "0"], "chance"),
        (["--permutations", "0"], "n_permutations"),
        (["--cluster-threshold", "1.5"], "cluster_threshold"),
    ],
)
def test_group_refuses_bad_parameters_in_one_line(tmp_path, capsys, extra, word):
    maps = write_maps(tmp_path)
    out = tmp_path / "group"
    assert main(["group", *maps, "--out", str(out), "--quiet", *extra]) == 2
    one_line_error(capsys, word)
    assert not out.exists()


def test_cv_indices_out_of_range_are_refused():
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="test index 10, outside 0..9"):
        make_cv_plan([(np.arange(5), np.arange(5, 11))], y)
    with pytest.raises(ValueError, match="train index -1"):
        make_cv_plan([(np.array([-1, 0, 1]), np.arange(5, 10))], y)


# ----------------------------------------------------------------------------- bad files
def truncated(src, dst):
    raw = src.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2])
    return dst


@pytest.mark.parametrize("which", ["--func", "--mask"])
@pytest.mark.parametrize("damage", ["truncated", "not nifti"])
def test_corrupted_inputs_are_one_line_naming_the_file(data, tmp_path, capsys, which, damage):
    name = {"--func": "bold.nii.gz", "--mask": "mask.nii.gz"}[which]
    bad = tmp_path / name
    if damage == "truncated":
        truncated(data / name, bad)
    else:
        bad.write_text("this is not an image\n")
    args = run_args(data, tmp_path / "out")
    args[args.index(which) + 1] = str(bad)
    assert main(args) == 2
    one_line_error(capsys, str(bad))
    assert not (tmp_path / "out").exists()


def test_read_only_output_folder_is_one_line(data, tmp_path, capsys, monkeypatch):
    from pathlib import Path

    original = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.name == "out":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(run_args(data, tmp_path / "out")) == 2
    one_line_error(capsys, "Read-only file system", str(tmp_path / "out"))


def test_full_disk_is_one_line_and_leaves_nothing(data, tmp_path, capsys, monkeypatch):
    from fastsearchlight import study

    def full(img, path, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(study, "save_img", full)
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 2
    one_line_error(capsys, "No space left on device")
    assert not out.exists()


def test_corrupted_checkpoint_is_named(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / CHECKPOINT_NAME).write_bytes(b"\x93NUMPY garbage")
    (out / CHECKPOINT_NAME).with_suffix(".json").write_text('{"fingerprint": "ab')  # cut short
    assert main(run_args(data, out, "--permutations", "4")) == 2
    one_line_error(capsys, str((out / CHECKPOINT_NAME).with_suffix(".json")))


# ----------------------------------------------------------------------------- outputs
def test_checkpoint_is_kept_until_the_outputs_are_in_place(data, tmp_path, monkeypatch):
    from fastsearchlight import report

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "report.html")

    monkeypatch.setattr(report, "write_report", boom)
    out = tmp_path / "out"
    assert main(run_args(data, out, "--permutations", "4")) == 2
    assert (out / CHECKPOINT_NAME).is_file()  # the permutations are not lost
    assert not (out / LOCK_NAME).exists()
    monkeypatch.undo()
    assert main(run_args(data, out, "--permutations", "4")) == 0
    assert not (out / CHECKPOINT_NAME).exists() and (out / "p_fwe.nii.gz").is_file()


def test_outputs_follow_the_umask(data, tmp_path):
    old = os.umask(0o027)
    try:
        assert main(run_args(data, tmp_path / "out")) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert modes["searchlight_scores.nii.gz"] == modes["summary.json"] == modes["searchlight.png"] == 0o640


def dead_pid():
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_a_folder_in_use_is_refused_and_a_stale_lock_taken_over(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{os.getpid()}\n")  # a live process writes there
    assert main(run_args(data, out)) == 2
    one_line_error(capsys, str(out), f"process {os.getpid()}")
    assert not (out / "summary.json").exists()

    (out / LOCK_NAME).write_text(f"{dead_pid()}\n")  # left by a process that died
    assert main(run_args(data, out)) == 0
    assert (out / "summary.json").is_file() and not (out / LOCK_NAME).exists()


# ----------------------------------------------------------------------------- batch
def test_batch_goes_on_past_a_corrupted_subject(tmp_path, capsys):
    from fastsearchlight.batch import run_batch

    lines = ['out = "results"', "", "[defaults]", 'estimator = "gnb"', "radius = 4.0", "permutations = 0"]
    for i in (1, 2, 3):
        ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=i)
        write_dataset(ds, tmp_path / f"sub-{i}")
        lines += ["", "[[subjects]]", f'name = "sub-{i}"', f'func = "sub-{i}/bold.nii.gz"',
                  f'labels = "sub-{i}/labels.txt"', f'mask = "sub-{i}/mask.nii.gz"']  # fmt: skip
    lines += ["", "[group]", "permutations = 20", "cluster_threshold = false"]
    study = tmp_path / "study.toml"
    study.write_text("\n".join(lines) + "\n")
    bold = tmp_path / "sub-2" / "bold.nii.gz"
    truncated(bold, bold)
    messages = []
    result = run_batch(study, quiet=True, echo=messages.append)
    assert result.subjects == {"sub-1": "done", "sub-2": "failed", "sub-3": "done"}
    assert str(bold) in result.messages["sub-2"]
    assert result.group == "done" and not result.ok
    group = json.loads((tmp_path / "results" / "group" / "summary.json").read_text())
    assert group["parameters"]["subjects"] == 2
