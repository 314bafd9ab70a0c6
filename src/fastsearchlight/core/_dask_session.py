"""A dask.distributed client and the data scattered to its workers, for one fit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = [
    "DASK_INSTALL_HINT", "DASK_RETRIES", "DaskSession", "MissingDependencyError", "borrowed_session",
    "import_distributed",
]  # fmt: skip

#: how to install the optional dask dependency
DASK_INSTALL_HINT = 'pip install "fastsearchlight[dask]"'

#: times a task on a dask cluster is retried after an error before the run fails (a task
#: lost with a worker that died is recomputed elsewhere in any case)
DASK_RETRIES = 3

#: times a cancelled task (its scattered data lost with a worker) is scattered and sent again
_RESUBMISSIONS = 3

#: attempts at a broadcast scatter, which fails when a worker dies while receiving it, and
#: the pause in seconds between them
_SCATTER_ATTEMPTS = 3
_SCATTER_PAUSE = 0.5


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
        futures = self._broadcast(obj)
        self._scattered[key] = (obj, futures)
        for position, future in enumerate(futures if isinstance(futures, list) else [futures]):
            self._origin[future.key] = (key, position if isinstance(futures, list) else None)
        return futures

    def _broadcast(self, obj: Any):
        """``obj`` scattered to every worker; again, to the workers that remain, when a worker
        dies while receiving it (its connection closes in the middle of the transfer: dask's
        ``CommClosedError``, or the ``OSError`` of a reset connection)."""
        from distributed.comm.core import CommClosedError

        attempts_left = _SCATTER_ATTEMPTS
        while True:
            try:
                return self.client.scatter(obj, broadcast=True, hash=False)
            except (CommClosedError, OSError):
                attempts_left -= 1
                if attempts_left == 0:
                    raise
                time.sleep(_SCATTER_PAUSE)  # for the scheduler to see the worker gone

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


class borrowed_session:  # noqa: N801 - a context manager used as a function
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
