"""Where the tasks of a searchlight run: in this process, in local worker processes, or on a
dask.distributed cluster, behind one interface.

An executor runs ``func(*args)`` for a list of argument tuples and yields ``(i, result)`` as
results come (``i``: the position of the arguments), so that callers assemble results by
position and every executor gives the same scores. It also says how many tasks should be in
flight (to size blocks to the memory budget) and turns data into what its tasks receive (the
array itself, or a dask future scattered once per fit). A GPU or compiled executor drops in
by implementing the same four members.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np

from ._dask_session import DaskSession

__all__ = [
    "DaskExecutor", "Executor", "InProcess", "LocalProcesses", "Threads", "effective_n_jobs", "make_executor",
]  # fmt: skip


def effective_n_jobs(n_jobs: int | None) -> int:
    """Number of workers for ``n_jobs`` (joblib's convention: -1 means all cores)."""
    from joblib import effective_n_jobs as _eff

    return max(1, _eff(n_jobs if n_jobs is not None else 1))


class Executor(Protocol):
    """What the core needs of a place to run tasks."""

    #: tasks computed at the same time (blocks are sized so that this many fit the budget)
    n_workers: int
    #: how many groups to make of the blocks (None: every block is a task of its own)
    n_tasks: int | None

    def share(self, obj: Any, key: Any = None) -> Any:
        """``obj`` as the tasks receive it."""

    def map_unordered(
        self, func: Callable, argsets: Iterable[tuple], *, name: str
    ) -> Iterator[tuple[int, Any]]:
        """``(i, func(*argsets[i]))`` for every task, in any order."""


class InProcess:
    """Tasks one after the other in this process."""

    n_workers = 1
    n_tasks = None
    is_dask = False

    def share(self, obj: Any, key: Any = None) -> Any:
        return obj

    def map_unordered(self, func, argsets, *, name: str = "") -> Iterator[tuple[int, Any]]:
        for i, args in enumerate(argsets):
            yield i, func(*args)


class Threads:
    """Tasks in threads of this process, for work that releases the interpreter lock (sparse
    products, BLAS, compiled kernels): a context manager that starts ``n_threads`` threads and
    holds BLAS to one thread each, so that they share the cores rather than oversubscribe
    them. With one thread the tasks run in this thread, BLAS held to one thread too (the
    compiled kernels' small products lose more to BLAS's own threads than they gain: W2's
    fits took 1.3 s with one BLAS thread and 1.4-7.0 s with two, on a shared 2-core
    machine). ``pool`` is the thread pool (None with one thread), for code that maps over
    chunks itself."""

    is_dask = False
    n_tasks = None

    def __init__(self, n_threads: int):
        self.n_workers = max(1, int(n_threads))
        self.pool = None
        self._context = None

    def __enter__(self) -> Threads:
        from contextlib import ExitStack

        import scipy.linalg  # noqa: F401  (its BLAS, which compiled kernels call, is limited too)
        from threadpoolctl import threadpool_limits

        self._context = ExitStack()
        if self.n_workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = self._context.enter_context(ThreadPoolExecutor(self.n_workers))
        self._context.enter_context(threadpool_limits(1, user_api="blas"))
        return self

    def __exit__(self, *exc) -> None:
        if self._context is not None:
            self._context.close()
        self.pool = self._context = None

    def share(self, obj: Any, key: Any = None) -> Any:
        return obj

    def map_unordered(self, func, argsets, *, name: str = "") -> Iterator[tuple[int, Any]]:
        if self._context is None:  # not started: threads and limits for this call only
            with self:
                yield from self.map_unordered(func, argsets, name=name)
            return
        if self.pool is None:
            yield from InProcess().map_unordered(func, argsets)
            return
        from concurrent.futures import as_completed

        futures = {self.pool.submit(func, *args): i for i, args in enumerate(argsets)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _indexed(i: int, func: Callable, args: tuple) -> tuple[int, Any]:
    return i, func(*args)


class LocalProcesses:
    """Tasks in ``n_jobs`` joblib (loky) worker processes, which memory-map large arrays;
    processes, not threads: the solvers' many small array operations hold the interpreter
    lock."""

    is_dask = False

    def __init__(self, n_jobs: int):
        self.n_workers = effective_n_jobs(n_jobs)
        self.n_tasks = 4 * self.n_workers

    def share(self, obj: Any, key: Any = None) -> Any:
        # joblib memory-maps plain arrays (and passes memory maps by file name), not other
        # subclasses such as the voxel-major view
        if isinstance(obj, np.ndarray) and not isinstance(obj, np.memmap):
            return obj.view(np.ndarray)
        return obj

    def map_unordered(self, func, argsets, *, name: str = "") -> Iterator[tuple[int, Any]]:
        from joblib import Parallel, delayed

        yield from Parallel(n_jobs=self.n_workers, return_as="generator_unordered")(
            delayed(_indexed)(i, func, args) for i, args in enumerate(argsets)
        )


class DaskExecutor:
    """Tasks on a dask.distributed cluster (see :class:`DaskSession`): data scattered once
    per fit, lost tasks recomputed elsewhere."""

    is_dask = True

    def __init__(self, session: DaskSession):
        self.session = session
        threads = session.worker_threads()
        #: blocks are sized for the busiest worker's threads
        self.n_workers = max([1, *threads.values()])
        self.n_tasks = 4 * max(1, sum(threads.values()))

    def share(self, obj: Any, key: Any = None) -> Any:
        return self.session.scatter(obj, key=key)

    def map_unordered(self, func, argsets, *, name: str = "fastsearchlight") -> Iterator[tuple[int, Any]]:
        return self.session.map_unordered(func, argsets, name=name)


def prefers_threads(measure, neighbourhoods, plan) -> bool:
    """Whether a batched measure's fits release the interpreter lock on these spheres and
    folds (``BatchedClassifier.releases_gil``), so that local runs use threads."""
    ask = getattr(measure, "releases_gil", None)
    if ask is None or neighbourhoods.n_spheres == 0:
        return False
    return bool(ask(int(neighbourhoods.sizes.max()), int(plan.train_masks.sum(axis=1).min())))


def make_executor(
    backend: str, n_jobs: int | None, session: DaskSession | None, *, threads: bool = False
) -> Executor:
    """The executor of a backend: "dask" (with its session), else threads (``threads``: work
    that releases the interpreter lock; one job runs in this thread, BLAS held to one
    thread), or in-process for one job and local processes for more."""
    if backend == "dask":
        return DaskExecutor(session)
    n = effective_n_jobs(n_jobs)
    if threads:
        return Threads(n)
    return InProcess() if n == 1 else LocalProcesses(n)
