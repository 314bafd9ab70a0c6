"""The dask backend: same scores, null maps and p-values as in-process, data sent once, lost workers.

The cluster is a ``LocalCluster`` of two worker processes on the loopback interface.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sklearn.model_selection import KFold

from fastsearchlight import SearchLight
from fastsearchlight.cli import main
from fastsearchlight.engine import MissingDependencyError
from fastsearchlight.simulate import simulate_haxby_like, write_dataset

SHAPE = (9, 10, 9)


def dataset(seed=2):
    ds = simulate_haxby_like(shape=SHAPE, n_regions=1, region_radius_mm=5.0, random_state=seed)
    return ds, ds.labels["labels"].to_numpy(), ds.labels["chunks"].to_numpy()


def fit(ds, y, groups, **kw):
    kw.setdefault("estimator", "svc")
    kw.setdefault("random_state", 11)
    kw.setdefault("n_permutations", 12)
    kw.setdefault("permutation_batch", 4)
    sl = SearchLight(mask_img=ds.mask_img, radius=4.0, cv=KFold(4), keep_null=True, **kw)
    return sl.fit(ds.func_img, y, groups=groups)


def assert_same_results(a, b):
    np.testing.assert_array_equal(a.fold_scores_, b.fold_scores_)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    if a.n_permutations:
        np.testing.assert_array_equal(a.null_scores_, b.null_scores_)
        np.testing.assert_array_equal(a.p_values_, b.p_values_)
        np.testing.assert_array_equal(a.p_fwe_, b.p_fwe_)
        np.testing.assert_array_equal(a.max_null_, b.max_null_)
        assert a.clusters_ == b.clusters_


# --------------------------------------------------------------------------- without a cluster
def test_missing_dask_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    ds, y, groups = dataset()
    with pytest.raises(MissingDependencyError, match=r'pip install "fastsearchlight\[dask\]"'):
        fit(ds, y, groups, backend="dask", n_permutations=0)
    assert main(["demo", "--out", str(tmp_path / "out"), "--quiet", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "fastsearchlight[dask]"' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_backend_is_refused():
    ds, y, groups = dataset()
    with pytest.raises(ValueError, match="backend must be one of"):
        fit(ds, y, groups, backend="spark")


# --------------------------------------------------------------------------- on a cluster
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        client.wait_for_workers(2, timeout=60)
        yield cluster, client


@pytest.mark.parametrize("estimator", ["svc", "gnb"])
def test_same_scores_null_maps_and_pvalues_as_in_process(cluster, monkeypatch, estimator):
    _, client = cluster
    ds, y, groups = dataset()
    serial = fit(ds, y, groups, estimator=estimator)
    scattered = []
    original = client.scatter

    def spy(data, *args, **kwargs):
        scattered.append(data)
        return original(data, *args, **kwargs)

    monkeypatch.setattr(client, "scatter", spy)
    on_cluster = fit(ds, y, groups, estimator=estimator, backend="dask", scheduler=client)
    assert_same_results(serial, on_cluster)
    # the data went to the workers once for the whole fit (observed labels + 3 permutation
    # batches of 4); the sphere blocks once per number of label vectors solved together (the
    # blocks are sized for the memory budget with all of them: 1, then 4)
    assert sum(isinstance(d, np.ndarray) for d in scattered) == 1
    assert len(scattered) == 3
    if estimator == "gnb":
        assert_same_results(serial, fit(ds, y, groups, estimator=estimator, n_jobs=2))


def test_generic_estimator_and_scheduler_as_address_or_default_client(cluster):
    from sklearn.neighbors import KNeighborsClassifier

    local, _ = cluster
    ds, y, groups = dataset()
    knn = KNeighborsClassifier(n_neighbors=5)
    centres = np.asarray(ds.mask_img.dataobj).astype(bool)
    centres[:, :, :4] = centres[:, :, 5:] = False  # one slice of centres: one fit per sphere and fold
    kw = dict(estimator=knn, n_permutations=1, process_mask_img=nib.Nifti1Image(
        centres.astype(np.uint8), ds.mask_img.affine))  # fmt: skip
    serial = fit(ds, y, groups, **kw)
    assert serial.engine_ == "generic"
    by_address = fit(ds, y, groups, backend="dask", scheduler=local.scheduler_address, **kw)
    assert_same_results(serial, by_address)
    by_default = fit(ds, y, groups, estimator="gnb", n_permutations=0, backend="dask")
    assert_same_results(fit(ds, y, groups, estimator="gnb", n_permutations=0), by_default)


def test_no_current_client_and_unreachable_scheduler_are_clear_errors(cluster, monkeypatch):
    import dask
    import distributed

    ds, y, groups = dataset()

    def no_client(*args, **kwargs):
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "get_client", no_client)
    with pytest.raises(ValueError, match="there is none"):
        fit(ds, y, groups, backend="dask", n_permutations=0)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ConnectionError, match="could not connect to the dask scheduler"):
            fit(ds, y, groups, backend="dask", scheduler="tcp://127.0.0.1:1", n_permutations=0)
    with pytest.raises(TypeError, match="scheduler must be"):
        fit(ds, y, groups, backend="dask", scheduler=3.5, n_permutations=0)


def write_study(folder: Path, data: Path, out: str, n_subjects: int = 2) -> Path:
    subjects = "".join(
        f'\n[[subjects]]\nname = "sub-{i}"\nfunc = "{data}/sub-{i}/bold.nii.gz"\n'
        f'labels = "{data}/sub-{i}/labels.txt"\nmask = "{data}/sub-{i}/mask.nii.gz"\n'
        for i in range(1, n_subjects + 1)
    )
    path = folder / f"{out}.toml"
    path.write_text(
        f'out = "{out}"\n\n[defaults]\nradius = 4.0\nestimator = "gnb"\ncv = "kfold:4"\n'
        f"permutations = 12\nseed = 5\n{subjects}\n[group]\npermutations = 50\n"
    )
    return path


def test_batch_on_the_cluster_gives_the_serial_maps(cluster, tmp_path, capsys):
    local, _ = cluster
    data = tmp_path / "data"
    for i in (1, 2):
        write_dataset(dataset(seed=i)[0], data / f"sub-{i}")
    serial = write_study(tmp_path, data, "serial")
    distributed_ = write_study(tmp_path, data, "cluster")
    assert main(["batch", str(serial), "--quiet"]) == 0
    assert main(["batch", str(distributed_), "--quiet", "--scheduler", local.scheduler_address]) == 0
    out = capsys.readouterr().out
    assert out.count("sub-1: done") == 2 and out.count("group: done") == 2
    for name in ("sub-1", "sub-2"):
        for f in ("searchlight_scores.nii.gz", "p_uncorrected.nii.gz", "p_fwe.nii.gz"):
            a = nib.load(tmp_path / "serial" / name / f).get_fdata()
            b = nib.load(tmp_path / "cluster" / name / f).get_fdata()
            np.testing.assert_array_equal(a, b)
    for f in ("group_mean_scores.nii.gz", "group_t.nii.gz", "group_logp_fwe.nii.gz"):
        a = nib.load(tmp_path / "serial" / "group" / f).get_fdata()
        b = nib.load(tmp_path / "cluster" / "group" / f).get_fdata()
        np.testing.assert_array_equal(a, b)
    # one study with `run --scheduler`
    sub = data / "sub-1"
    assert main(["run", "--func", str(sub / "bold.nii.gz"), "--labels", str(sub / "labels.txt"),
                 "--mask", str(sub / "mask.nii.gz"), "--out", str(tmp_path / "run"), "--quiet",
                 "--radius", "4", "--estimator", "gnb", "--permutations", "12", "--seed", "5", "--cv", "kfold:4",
                 "--scheduler", local.scheduler_address]) == 0  # fmt: skip
    for f in ("searchlight_scores.nii.gz", "p_fwe.nii.gz"):
        a = nib.load(tmp_path / "serial" / "sub-1" / f).get_fdata()
        np.testing.assert_array_equal(a, nib.load(tmp_path / "run" / f).get_fdata())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["parameters"]["backend"] == "dask"
    assert summary["parameters"]["scheduler"] == local.scheduler_address


def test_clone_keeps_the_client(cluster):
    from sklearn.base import clone

    _, client = cluster
    sl = SearchLight(radius=3.0, backend="dask", scheduler=client, estimator_args={"C": 0.5})
    copy = clone(sl)
    assert copy.scheduler is client and copy.radius == 3.0
    assert copy.estimator_args == {"C": 0.5} and copy.estimator_args is not sl.estimator_args


def test_a_killed_worker_loses_nothing(cluster):
    """Kill a worker process while its tasks run: they are recomputed on the other."""
    _, client = cluster
    ds, y, groups = dataset()
    kw = dict(estimator="svc", n_permutations=40, permutation_batch=4)
    serial = fit(ds, y, groups, **kw)
    pids = client.run(os.getpid)
    box = {}

    def run():
        try:
            box["result"] = fit(ds, y, groups, backend="dask", scheduler=client, **kw)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    victim, deadline = None, time.monotonic() + 60
    while victim is None and thread.is_alive() and time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any(str(k).startswith("fastsearchlight-") for k in keys):
                victim = worker
                break
        time.sleep(0.005)
    assert victim is not None, "no searchlight task was seen running on the cluster"
    os.kill(pids[victim], signal.SIGKILL)
    killed_during_the_run = thread.is_alive()
    thread.join(120)
    assert not thread.is_alive()
    assert "error" not in box, box.get("error")
    assert killed_during_the_run
    assert_same_results(serial, box["result"])
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker
    assert pids[victim] not in client.run(os.getpid).values()


def _total(values, extra):
    return float(np.sum(values)) + extra


def test_a_scatter_cut_by_a_dying_worker_is_sent_again(cluster, monkeypatch):
    """A worker that dies while receiving a broadcast closes its connection in the middle
    of the transfer: the session scatters again (to the workers that remain), and gives up
    with the error after a few attempts."""
    from distributed.comm.core import CommClosedError

    from fastsearchlight.engine import DaskSession

    _, client = cluster
    session = DaskSession(client)
    real_scatter = client.scatter
    calls = []

    def scatter_cut_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise CommClosedError("in <TCP (closed) ConnectionPool.scatter>: Stream is closed")
        return real_scatter(*args, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter_cut_once)
    values = np.arange(5.0)
    future = session.scatter(values)
    assert len(calls) == 2
    np.testing.assert_array_equal(future.result(), values)

    def scatter_always_cut(*args, **kwargs):
        calls.append(args)
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(client, "scatter", scatter_always_cut)
    calls.clear()
    with pytest.raises(ConnectionResetError):
        session.scatter(np.ones(3))
    assert len(calls) == 3
    session.close()


def test_data_lost_from_the_cluster_are_scattered_again(cluster):
    """The scheduler may drop the extra copies of broadcast data; when the last copy dies
    with its worker, the tasks that need it are cancelled: the session scatters the data
    again and resubmits them."""
    from fastsearchlight.engine import DaskSession

    _, client = cluster
    session = DaskSession(client)
    values = np.arange(10.0)
    parts = [np.ones(3), np.full(2, 2.0)]
    one = session.scatter(values)
    many = session.scatter(parts, key="parts")
    client.cancel([one, many[1]])  # as if their workers had died with them
    argsets = [(one, 0.0), (many[0], 1.0), (many[1], 2.0)]
    results = dict(session.map_unordered(_total, argsets))
    assert results == {0: 45.0, 1: 4.0, 2: 6.0}
    assert session.scatter(values) is not one  # the new copies serve later calls
    assert session.scatter(parts, key="parts")[0] is not many[0]
    session.close()
