"""A run killed with SIGKILL (the out-of-memory killer, a job's walltime) leaves no process and
no temporary file behind, and the rerun resumes to the maps of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import KFold

from fastsearchlight import SearchLight
from fastsearchlight.shared import PREFIX, remove_stale_folders
from fastsearchlight.simulate import simulate_haxby_like

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SCRIPT = """
import sys
from sklearn.model_selection import KFold
from fastsearchlight import SearchLight
from fastsearchlight.simulate import simulate_haxby_like
ds = simulate_haxby_like(shape=(16, 20, 18), random_state=0)
SearchLight(mask_img=ds.mask_img, radius=5.6, cv=KFold(4), estimator="gnb", n_jobs=2,
            n_permutations=60, permute="samples", random_state=3, checkpoint=sys.argv[1],
            permutation_batch=4).fit(ds.func_img, ds.labels["labels"].to_numpy(),
                                     groups=ds.labels["chunks"].to_numpy())
"""


def fit(**kw):
    ds = simulate_haxby_like(shape=(16, 20, 18), random_state=0)
    sl = SearchLight(mask_img=ds.mask_img, radius=5.6, cv=KFold(4), estimator="gnb", n_jobs=2,
                     n_permutations=60, permute="samples", random_state=3, permutation_batch=4,
                     keep_null=True, **kw)  # fmt: skip
    return sl.fit(ds.func_img, ds.labels["labels"].to_numpy(), groups=ds.labels["chunks"].to_numpy())


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def files_of(pid: int) -> list[str]:
    names = []
    for root in ("/dev/shm", "/tmp"):
        if os.path.isdir(root):
            names += [
                n for n in os.listdir(root) if f"{pid}" in n.replace("-", " ").replace("_", " ").split()
            ]
    return names


def test_sigkill_during_permutations_leaves_nothing_and_the_rerun_resumes(tmp_path):
    ckpt = tmp_path / "null.npy"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(ckpt)])
    record = ckpt.with_suffix(".json")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until some permutations are done (and saved)
        if record.exists():
            try:
                if len(json.loads(record.read_text())["done"]) >= 8:
                    break
            except (ValueError, KeyError):
                pass
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.1)
    else:
        pytest.fail("no permutation was checkpointed in time")
    workers = children(proc.pid)
    # the loky workers (and resource trackers): gnb runs in processes (lda, svc in threads)
    assert len(workers) >= 2
    assert files_of(proc.pid)  # its shared data
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (any(map(alive, workers)) or files_of(proc.pid)):
        time.sleep(0.2)
    assert not [w for w in workers if alive(w)], "worker processes outlived their parent"
    assert not files_of(proc.pid), "temporary files outlived their process"
    done = len(json.loads(record.read_text())["done"])
    assert 8 <= done < 60
    resumed = fit(checkpoint=ckpt)
    full = fit()
    np.testing.assert_array_equal(resumed.null_scores_, full.null_scores_)
    np.testing.assert_array_equal(resumed.p_fwe_, full.p_fwe_)


def test_folders_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = Path("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp") / f"{PREFIX}{dead}-test"
    stale.mkdir()
    (stale / "data.dat").write_bytes(b"0" * 10)
    mine = Path("/tmp") / f"{PREFIX}{os.getpid()}-test"
    mine.mkdir(exist_ok=True)
    try:
        assert str(stale) in remove_stale_folders()
        assert not stale.exists() and mine.exists()  # a live process keeps its own
    finally:
        mine.rmdir()
