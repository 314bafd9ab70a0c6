"""Execution: run the spheres in memory-bounded blocks, batched or one by one.

Two paths give per-fold scores of every sphere:

- :func:`run_batched` gathers blocks of equal-size spheres into one dense array
  (spheres x samples x voxels) sized to the memory budget, and hands each block to a
  batched estimator that solves all spheres and folds at once;
- :func:`run_generic` fits a scikit-learn estimator per sphere and fold, exactly as nilearn
  does, for estimators or metrics the batched path does not cover.

Both run in-process with ``n_jobs=1``, in joblib processes with ``n_jobs > 1``
(``backend="loky"``), or on a dask.distributed cluster (``backend="dask"``, see
:class:`DaskSession`), and report progress with tqdm. Whatever the backend, every sphere is
computed the same way and the results are assembled by sphere id, so the scores are
bit-identical.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from .cv import CVPlan
from .estimators.base import BatchedClassifier
from .neighbourhoods import Neighbourhoods
from .scoring import batched_scores
from .shared import exit_with_parent
from .sphere_sums import run_sphere_sums, supports_sphere_sums

#: default working-memory budget of a block, in megabytes
DEFAULT_MEMORY_MB = 512.0

#: execution backends: joblib processes (in-process with ``n_jobs=1``) or a dask cluster
BACKENDS = ("loky", "dask")

#: times a task on a dask cluster is retried after an error before the run fails (a task
#: lost with a worker that died is recomputed elsewhere in any case)
DASK_RETRIES = 3

#: how to install the optional dask dependency
DASK_INSTALL_HINT = 'pip install "fastsearchlight[dask]"'


#: times a cancelled task (its scattered data lost with a worker) is scattered and sent again
_RESUBMISSIONS = 3


def effective_n_jobs(n_jobs: int | None) -> int:
    """Number of workers for ``n_jobs`` (joblib's convention: -1 means all cores)."""
    from joblib import effective_n_jobs as _eff

    return max(1, _eff(n_jobs if n_jobs is not None else 1))


def spheres_per_block(bytes_per_sphere: int, memory_mb: float, n_workers: int = 1) -> int:
    """How many spheres fit in one block so that all workers stay under ``memory_mb``."""
    if not np.isfinite(memory_mb) or memory_mb <= 0:
        raise ValueError(f"memory budget must be a positive number of MB, got {memory_mb!r}.")
    budget = memory_mb * 2**20 / max(1, n_workers)
    return int(max(1, min(4096, budget // max(1, bytes_per_sphere))))


def check_backend(backend: str) -> str:
    """Validate a backend name (one of :data:`BACKENDS`)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}.")
    return backend


class MissingDependencyError(ImportError):
    """An optional dependency needed by the requested feature is not installed."""


def import_distributed():
    """``dask.distributed``, imported lazily; a clear error naming the extra when missing."""
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError(
            f'backend="dask" needs dask.distributed, which is not installed: {DASK_INSTALL_HINT}'
        ) from exc
    return distributed


class DaskSession:
    """A dask.distributed client and the data scattered to its workers, for one fit.

    The session scatters each array (or other object) once, to every worker, and keeps the
    future for as long as it is open, so that every task of a fit — the observed labels and
    every batch of permutations — reuses the copy already on the workers. A worker that dies
    loses no work: its tasks are recomputed on the others (tasks are submitted with
    ``retries``), and data that died with it (the scheduler may drop the extra copies of a
    broadcast) are scattered again for the tasks that need them.

    Parameters
    ----------
    scheduler : Client, str, cluster, DaskSession or None
        A ``distributed.Client``; the address of a scheduler (``"tcp://host:port"``), to which
        the session connects and which it disconnects from when closed; a cluster object
        with a ``scheduler_address`` (e.g. ``LocalCluster``, dask-jobqueue's
        ``SLURMCluster``); or None for the current default client
        (``distributed.get_client()``).
    retries : int
        Times a failed task is retried.

    Raises
    ------
    MissingDependencyError
        If dask.distributed is not installed.
    ValueError
        If ``scheduler`` is None and there is no current client.
    ConnectionError
        If the scheduler at the address given cannot be reached.
    """

    def __init__(self, scheduler: Any = None, *, retries: int = DASK_RETRIES):
        distributed = import_distributed()
        self.retries = int(retries)
        self._owns_client = False
        self._scattered: dict[Any, tuple[Any, Any]] = {}
        #: scattered future key -> (cache key, position in a scattered list or None)
        self._origin: dict[Any, tuple[Any, int | None]] = {}
        #: anything derived from the scattered data that callers keep for the session
        self.memo: dict[Any, Any] = {}
        if isinstance(scheduler, DaskSession):
            scheduler = scheduler.client
        if scheduler is None:
            try:
                self.client = distributed.get_client()
            except ValueError:
                raise ValueError(
                    'backend="dask" with scheduler=None uses the current dask client, and there '
                    "is none: create one (distributed.Client(...)) or give scheduler as a "
                    'Client or a scheduler address such as "tcp://host:8786".'
                ) from None
        elif isinstance(scheduler, distributed.Client):
            self.client = scheduler
        elif isinstance(scheduler, str) or hasattr(scheduler, "scheduler_address"):
            address = scheduler if isinstance(scheduler, str) else scheduler.scheduler_address
            try:
                self.client = distributed.Client(address, set_as_default=False)
            except (OSError, ValueError, TypeError) as exc:
                message = " ".join(str(exc).split()) or type(exc).__name__
                raise ConnectionError(
                    f"could not connect to the dask scheduler at {address!r}: {message}"
                ) from None
            self._owns_client = True
        else:
            raise TypeError(
                "scheduler must be a distributed.Client, a scheduler address string, a cluster "
                f"or None, got {type(scheduler).__name__}."
            )

    # ------------------------------------------------------------------ cluster facts
    def worker_threads(self) -> dict[str, int]:
        """Threads of each worker of the cluster, now."""
        return dict(self.client.nthreads())

    # ------------------------------------------------------------------ data
    def scatter(self, obj: Any, key: Any = None):
        """A future of ``obj`` on every worker, scattered once per session.

        Parameters
        ----------
        obj : object
            The data (an array, or a list of objects: then a list of futures is returned).
        key : hashable or None
            Cache key; by default the identity of ``obj`` (the session keeps a reference, so
            the identity is not reused while it is open).
        """
        key = ("id", id(obj)) if key is None else key
        cached = self._scattered.get(key)
        if cached is not None:
            return cached[1]
        futures = self.client.scatter(obj, broadcast=True, hash=False)
        self._scattered[key] = (obj, futures)
        for position, future in enumerate(futures if isinstance(futures, list) else [futures]):
            self._origin[future.key] = (key, position if isinstance(futures, list) else None)
        return futures

    def _rescattered(self, args: tuple) -> tuple:
        """``args`` with every scattered future whose data the cluster has lost replaced by
        a new scatter of the same object.

        Broadcasting puts a copy on every worker, but the scheduler's memory manager may
        later drop the extra copies; a worker that dies with the last one loses the data,
        and tasks that need it are cancelled ("lost dependencies").
        """
        distributed = import_distributed()
        out = []
        for arg in args:
            origin = self._origin.get(arg.key) if isinstance(arg, distributed.Future) else None
            if origin is None or arg.status == "finished":
                out.append(arg)
                continue
            key, position = origin
            obj, _ = self._scattered.pop(key)
            futures = self.scatter(obj, key=key)
            out.append(futures if position is None else futures[position])
        return tuple(out)

    # ------------------------------------------------------------------ tasks
    def map_unordered(
        self, func: Callable, argsets: Iterable[tuple], *, name: str = "fastsearchlight"
    ) -> Iterator[tuple[int, Any]]:
        """Run ``func(*args)`` for every ``args`` on the cluster, yielding ``(i, result)``.

        Results come as they complete (:func:`distributed.as_completed`); ``i`` is the
        position of the task's arguments in ``argsets``. Futures among the arguments are
        resolved on the workers. Tasks still pending when the caller stops iterating (an
        error, an interruption) are cancelled.
        """
        distributed = import_distributed()
        token = uuid.uuid4().hex[:12]
        argsets = list(argsets)

        def submit(i: int, attempt: int = 0):
            key = f"{name}-{token}-{i}" + (f"-{attempt}" if attempt else "")
            return self.client.submit(func, *argsets[i], key=key, retries=self.retries, pure=False)

        futures = [submit(i) for i in range(len(argsets))]
        position = {f.key: (i, 0) for i, f in enumerate(futures)}
        try:
            completed = distributed.as_completed(futures, loop=self.client.loop, with_results=True)
            for future, result in completed:
                i, attempt = position[future.key]
                if future.status == "cancelled":
                    # its data were lost with a worker: scatter them again and resubmit
                    if attempt >= _RESUBMISSIONS:
                        raise RuntimeError(
                            f"a task of the cluster was cancelled {attempt + 1} times "
                            f"({result!r}): its data could not be kept on the workers."
                        )
                    argsets[i] = self._rescattered(argsets[i])
                    again = submit(i, attempt + 1)
                    position[again.key] = (i, attempt + 1)
                    futures.append(again)
                    completed.add(again)
                    continue
                yield i, result
        finally:
            pending = [f for f in futures if not f.done()]
            if pending:
                self.client.cancel(pending)

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        """Release the scattered data, and close the client if the session opened it."""
        for _, futures in self._scattered.values():
            for f in futures if isinstance(futures, list) else [futures]:
                try:
                    f.release()
                except Exception:  # noqa: BLE001 - the cluster may be gone already
                    pass
        self._scattered.clear()
        self.memo.clear()
        if self._owns_client:
            self.client.close()
            self._owns_client = False

    def __enter__(self) -> DaskSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _BorrowedSession:
    """Context manager: the given :class:`DaskSession`, or a new one closed on exit."""

    def __init__(self, scheduler):
        self._given = scheduler if isinstance(scheduler, DaskSession) else None
        self._scheduler = scheduler

    def __enter__(self) -> DaskSession:
        if self._given is not None:
            return self._given
        self._own = DaskSession(self._scheduler)
        return self._own

    def __exit__(self, *exc) -> None:
        if self._given is None:
            self._own.close()


def run_batched(
    X: np.ndarray,
    neighbourhoods: Neighbourhoods,
    estimator: BatchedClassifier,
    ys: np.ndarray,
    n_classes: int,
    plan: CVPlan,
    metric: str,
    *,
    memory_mb: float = DEFAULT_MEMORY_MB,
    n_jobs: int | None = 1,
    verbose: int = 0,
    progress_desc: str = "searchlight",
    backend: str = "loky",
    scheduler: Any = None,
    cache: dict | None = None,
) -> np.ndarray:
    """Per-fold scores of every sphere with a batched estimator.

    Parameters
    ----------
    X : ndarray (n_samples, n_mask_voxels) or VoxelMajor
        Masked data, read once (see :func:`voxel_major`).
    neighbourhoods : Neighbourhoods
    estimator : BatchedClassifier
    ys : ndarray (n_label_sets, n_samples) of class codes
        Label vectors scored on the same spheres (the observed labels, permutations).
    n_classes : int
    plan : CVPlan
    metric : str
        One of :data:`fastsearchlight.scoring.BATCHED_SCORINGS`.
    memory_mb : float
        Working-memory budget for the blocks in flight, in MB (per worker process on a
        dask cluster).
    n_jobs : int
        Blocks processed at the same time (joblib processes); ignored by the dask backend,
        which uses every thread of the cluster.
    verbose : int
        Progress bar when > 0.
    backend : {"loky", "dask"}
        Joblib processes (in-process when ``n_jobs=1``), or a dask.distributed cluster.
    scheduler : DaskSession, Client, str or None
        With ``backend="dask"``: the cluster (see :class:`DaskSession`). Give a
        :class:`DaskSession` to reuse the data it has scattered across calls.
    cache : dict or None
        Kept by the caller across calls on the same data (e.g. batches of permutations):
        the label-independent work of models computed by sphere sums
        (:mod:`fastsearchlight.sphere_sums`) is done once.

    Returns
    -------
    ndarray (n_label_sets, n_spheres, n_folds)
    """
    check_backend(backend)
    ys = np.atleast_2d(ys)
    # voxel-major data: a block's gather then reads whole contiguous rows (three times
    # faster than gathering columns of the sample-major array)
    X = voxel_major(X)
    if backend == "dask":
        with _BorrowedSession(scheduler) as session:
            return _run_batched_dask(
                session, X, neighbourhoods, estimator, ys, n_classes, plan, metric,
                memory_mb=memory_mb, verbose=verbose, progress_desc=progress_desc,
            )  # fmt: skip
    n_workers = effective_n_jobs(n_jobs)
    if supports_sphere_sums(estimator, metric):
        with _progress(ys.shape[0] * neighbourhoods.n_spheres, verbose, progress_desc) as bar:
            return run_sphere_sums(
                X, neighbourhoods, estimator, ys, n_classes, plan, metric,
                ExactSpheres(X, neighbourhoods, estimator, n_classes, plan, metric, memory_mb),
                memory_mb=memory_mb, n_jobs=n_workers, progress=bar.update, cache=cache,
            )  # fmt: skip
    blocks = _blocks(X, neighbourhoods, estimator, n_classes, plan, memory_mb, n_workers)
    out = np.full((ys.shape[0], neighbourhoods.n_spheres, plan.n_folds), np.nan)
    with _progress(neighbourhoods.n_spheres, verbose, progress_desc) as bar:
        if n_workers == 1:
            for ids, vox in blocks:
                out[:, ids] = _batched_block(X, vox, estimator, ys, n_classes, plan, metric)
                bar.update(len(ids))
        else:
            # processes, not threads: the solver's many small array operations hold the
            # interpreter lock. X is memory-mapped to the workers once by joblib.
            tasks = _group_blocks(blocks, 4 * n_workers)
            plain = X.view(np.ndarray)  # joblib memory-maps plain arrays, not subclasses
            results = Parallel(n_jobs=n_workers, return_as="generator_unordered")(
                delayed(_batched_task)(plain, task, estimator, ys, n_classes, plan, metric)
                for task in tasks
            )
            for ids, scores in results:
                out[:, ids] = scores
                bar.update(len(ids))
    return out


class VoxelMajor(np.ndarray):
    """Masked data stored voxel by voxel, (n_mask_voxels, n_samples), C-contiguous."""


def voxel_major(X: np.ndarray) -> VoxelMajor:
    """The (n_samples, n_mask_voxels) data as a :class:`VoxelMajor` array (no copy if it is one).

    Callers that run several searchlights on the same data (permutation batches) convert
    once and pass the result, so that the copy, and a cluster's scatter, happen once.
    """
    if isinstance(X, VoxelMajor):
        return X
    return np.ascontiguousarray(np.asarray(X, dtype=np.float64).T).view(VoxelMajor)


def _blocks(X, neighbourhoods, estimator, n_classes, plan, memory_mb, n_workers):
    """Blocks of equal-size spheres, each sized so that ``n_workers`` of them fit the budget.

    ``X`` is voxel-major, (n_mask_voxels, n_samples).
    """
    n_samples = X.shape[1]
    per_block = {
        int(k): spheres_per_block(
            estimator.bytes_per_sphere(n_samples, int(k), plan.n_folds, n_classes),
            memory_mb,
            n_workers,
        )
        for k in np.unique(neighbourhoods.sizes)
    }
    return list(neighbourhoods.blocks(lambda k: per_block[k]))


def _progress(total: int, verbose: int, desc: str):
    from tqdm.auto import tqdm  # here: worker processes, which import this module, need none

    return tqdm(total=total, disable=verbose <= 0, desc=desc, unit="sphere", leave=False)


def _run_batched_dask(session, X, neighbourhoods, estimator, ys, n_classes, plan, metric, *,
                      memory_mb, verbose, progress_desc):  # fmt: skip
    """:func:`run_batched` on a dask cluster: X and the task groups are scattered once."""
    X_future = session.scatter(X)
    threads = session.worker_threads()
    n_threads = max(1, sum(threads.values()))
    per_worker = max([1, *threads.values()])
    # the grouping depends on the cluster's size when the data were first scattered; it is
    # kept for the session (the scores do not depend on it)
    cache_key = ("batched-tasks", id(neighbourhoods), id(estimator), n_classes, plan.n_folds,
                 X.shape, float(memory_mb))  # fmt: skip
    memo = session.memo.get(cache_key)
    if memo is None:
        blocks = _blocks(X, neighbourhoods, estimator, n_classes, plan, memory_mb, per_worker)
        # the memo holds the objects of the key, so their identities are not reused
        memo = (neighbourhoods, estimator, _group_blocks(blocks, 4 * n_threads))
        session.memo[cache_key] = memo
    tasks = session.scatter(memo[2], key=cache_key)  # scattered once (again if lost)
    out = np.full((ys.shape[0], neighbourhoods.n_spheres, plan.n_folds), np.nan)
    argsets = [(X_future, task, estimator, ys, n_classes, plan, metric) for task in tasks]
    with _progress(neighbourhoods.n_spheres, verbose, progress_desc) as bar:
        results = session.map_unordered(_batched_task, argsets, name="fastsearchlight-batched")
        for _, (ids, scores) in results:
            out[:, ids] = scores
            bar.update(len(ids))
    return out


def _batched_block(X, vox, estimator, ys, n_classes, plan, metric):
    """Per-fold scores of one block of equal-size spheres, shape (n_label_sets, spheres, folds).

    ``X`` is voxel-major, (n_mask_voxels, n_samples).
    """
    # one contiguous gather of whole rows, seen as (spheres, samples, voxels); the
    # estimators copy into the layout they need, so no copy is made here
    block = X[vox].transpose(0, 2, 1)
    proba_like = estimator.proba_like if metric == "roc_auc" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        decisions = estimator.many_fold_decisions(block, ys, n_classes, plan)
    return np.stack(
        [
            np.column_stack(
                [
                    batched_scores(metric, dec, y[test], n_classes, proba_like)
                    for dec, test in zip(folds, plan.test_indices)
                ]
            )
            for y, folds in zip(ys, decisions)
        ]
    )


@dataclass(frozen=True)
class ExactSpheres:
    """Per-fold scores of some spheres by the block path, in-process: the exact fallback of
    :func:`~fastsearchlight.sphere_sums.run_sphere_sums` (a picklable callable)."""

    X: np.ndarray
    neighbourhoods: Neighbourhoods
    estimator: BatchedClassifier
    n_classes: int
    plan: CVPlan
    metric: str
    memory_mb: float

    def __call__(self, ids: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Scores ``(len(ids), n_folds)`` of spheres ``ids`` for labels ``y``."""
        hoods = self.neighbourhoods
        sub = Neighbourhoods(hoods.adjacency[ids], hoods.seeds_ijk[ids])
        out = np.empty((len(ids), self.plan.n_folds))
        for rows, vox in _blocks(self.X, sub, self.estimator, self.n_classes, self.plan, self.memory_mb, 1):
            out[rows] = _batched_block(
                self.X, vox, self.estimator, y[None, :], self.n_classes, self.plan, self.metric
            )[0]
        return out

    def with_data(self, X: np.ndarray, neighbourhoods: Neighbourhoods | None = None) -> ExactSpheres:
        """The same, on other copies of the data (e.g. memory-mapped for worker processes)."""
        return replace(self, X=X, neighbourhoods=neighbourhoods or self.neighbourhoods)


def _batched_task(X, task, estimator, ys, n_classes, plan, metric):
    """Run several blocks in a worker; return their sphere ids and scores."""
    exit_with_parent()
    ids = np.concatenate([ids for ids, _ in task])
    scores = np.concatenate(
        [_batched_block(X, vox, estimator, ys, n_classes, plan, metric) for _, vox in task], axis=1
    )
    return ids, scores


def _group_blocks(blocks, n_tasks):
    """Split blocks into about ``n_tasks`` groups of similar numbers of spheres."""
    total = sum(len(ids) for ids, _ in blocks)
    target = max(1, total // max(1, n_tasks))
    tasks, current, count = [], [], 0
    for block in blocks:
        current.append(block)
        count += len(block[0])
        if count >= target:
            tasks.append(current)
            current, count = [], 0
    if current:
        tasks.append(current)
    return tasks


def _generic_block(estimator, X, rows, y, folds, scoring):
    """Per-fold scores of a list of spheres, one scikit-learn fit per sphere and fold.

    What ``cross_val_score`` computes with ``error_score=np.nan`` (nilearn's call): a fit or
    a score that raises gives NaN. Returns the scores and the failures, as a dict
    ``{(stage, message): count}`` with ``stage`` "fit" or "score".
    """
    exit_with_parent()
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import check_scoring

    scorer = check_scoring(estimator, scoring=scoring)
    out = np.empty((len(rows), len(folds)))
    failures: dict[tuple[str, str], int] = {}

    def failed(stage, exc):
        key = (stage, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        failures[key] = failures.get(key, 0) + 1
        return np.nan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r, row in enumerate(rows):
            X_sphere = X[:, row]
            for f, (train, test) in enumerate(folds):
                try:
                    fitted = clone(estimator).fit(X_sphere[train], y[train])
                except Exception as exc:  # noqa: BLE001 - scikit-learn's error_score=nan
                    out[r, f] = failed("fit", exc)
                    continue
                try:
                    out[r, f] = scorer(fitted, X_sphere[test], y[test])
                except Exception as exc:  # noqa: BLE001
                    out[r, f] = failed("score", exc)
    return out, failures


def _no_cv_block(estimator, X, rows, y, groups):
    """Scores of a list of spheres of an estimator scored on its own training data
    (``nilearn_searchlight_uses_cv = False``): ``fit(X, y, groups=groups)`` then
    ``score(X, y, groups=groups)`` on all samples."""
    exit_with_parent()
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    out = np.empty((len(rows), 1))
    failures: dict[tuple[str, str], int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r, row in enumerate(rows):
            X_sphere = X[:, row]
            for stage in ("fit", "score"):
                try:
                    if stage == "fit":
                        fitted = clone(estimator).fit(X_sphere, y, groups=groups)
                    else:
                        out[r, 0] = fitted.score(X_sphere, y, groups=groups)
                except Exception as exc:  # noqa: BLE001
                    key = (stage, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
                    failures[key] = failures.get(key, 0) + 1
                    out[r, 0] = np.nan
                    break
    return out, failures


def run_without_cv(X, neighbourhoods, estimator, y, groups, *, n_jobs=1, verbose=0,
                   block_size=64, progress_desc="searchlight (per sphere)"):  # fmt: skip
    """Scores ``(n_spheres, 1)`` of an estimator that does its own validation
    (``nilearn_searchlight_uses_cv = False``, as in nilearn): one fit on all samples of
    each sphere, with ``groups``, scored by its ``score(X, y, groups=groups)``."""
    adjacency = neighbourhoods.adjacency
    rows = [neighbourhoods.voxels(s) for s in range(adjacency.shape[0])]
    starts = list(range(0, len(rows), block_size))
    out = np.empty((len(rows), 1))
    failures: dict = {}
    with _progress(len(rows), verbose, progress_desc) as bar:
        results = Parallel(n_jobs=effective_n_jobs(n_jobs), return_as="generator")(
            delayed(_no_cv_block)(estimator, X, rows[s : s + block_size], y, groups) for s in starts
        )
        for s, (scores, failed) in zip(starts, results):
            out[s : s + len(scores)] = scores
            _merge_failures(failures, failed)
            bar.update(len(scores))
    warn_failures(failures, out.size)
    return out


def warn_failures(failures: dict, n_total: int) -> None:
    """One warning per stage for the sphere fits or scores that failed (their scores are NaN),
    as scikit-learn's ``cross_val_score`` warns with ``error_score=np.nan``."""
    from sklearn.exceptions import FitFailedWarning

    for stage, category in (("fit", FitFailedWarning), ("score", UserWarning)):
        found = {msg: n for (s, msg), n in failures.items() if s == stage}
        if not found:
            continue
        count = sum(found.values())
        common = max(found, key=found.get)
        what = "fits" if stage == "fit" else "scores"
        warnings.warn(
            f"{count} of {n_total} sphere-fold {what} failed and score NaN; the most "
            f"frequent error ({found[common]} times): {common}",
            category,
            stacklevel=3,
        )


def _merge_failures(total: dict, more: dict) -> None:
    for key, n in more.items():
        total[key] = total.get(key, 0) + n


def run_generic(
    X: np.ndarray,
    neighbourhoods: Neighbourhoods,
    estimator,
    y: np.ndarray,
    plan: CVPlan,
    scoring: str | Callable | None,
    *,
    n_jobs: int | None = 1,
    verbose: int = 0,
    block_size: int = 64,
    progress_desc: str = "searchlight (per sphere)",
    backend: str = "loky",
    scheduler: Any = None,
) -> np.ndarray:
    """Per-fold scores of every sphere, one scikit-learn fit per sphere and fold.

    The same computation as nilearn's ``SearchLight`` (``cross_val_score`` on each sphere,
    with ``error_score=np.nan``: a fit or score that fails gives NaN, and one warning per
    call counts them), with the folds of ``plan``, on ``X`` and ``y`` as given (the user's
    labels, the data's dtype); blocks of spheres run in parallel processes, or as tasks on
    a dask cluster with ``backend="dask"`` (see :func:`run_batched` for ``backend`` and
    ``scheduler``; a custom ``scoring`` callable must then be importable by the workers or
    picklable by value).

    Returns
    -------
    ndarray (n_spheres, n_folds)
    """
    check_backend(backend)
    folds = list(zip(plan.train_indices, plan.test_indices))
    adjacency = neighbourhoods.adjacency
    rows = [adjacency.indices[adjacency.indptr[s] : adjacency.indptr[s + 1]] for s in range(adjacency.shape[0])]
    starts = list(range(0, len(rows), block_size))
    out = np.empty((len(rows), len(folds)))
    failures: dict = {}
    with _progress(len(rows), verbose, progress_desc) as bar:
        if backend == "dask":
            with _BorrowedSession(scheduler) as session:
                X_future = session.scatter(X)
                argsets = [
                    (estimator, X_future, rows[s : s + block_size], y, folds, scoring) for s in starts
                ]
                results = session.map_unordered(_generic_block, argsets, name="fastsearchlight-generic")
                for i, (scores, failed) in results:
                    out[starts[i] : starts[i] + len(scores)] = scores
                    _merge_failures(failures, failed)
                    bar.update(len(scores))
        else:
            results = Parallel(n_jobs=effective_n_jobs(n_jobs), return_as="generator")(
                delayed(_generic_block)(estimator, X, rows[s : s + block_size], y, folds, scoring)
                for s in starts
            )
            for s, (scores, failed) in zip(starts, results):
                out[s : s + len(scores)] = scores
                _merge_failures(failures, failed)
                bar.update(len(scores))
    warn_failures(failures, out.size)
    return out
