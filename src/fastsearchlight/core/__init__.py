"""The core: a fit's problem, the executors it runs on, and the one function that turns a
problem and label vectors into scores.

- :class:`Problem`: the data (voxel-major for batched measures), the neighbourhoods (any
  sparse sphere-by-voxel matrix: a volume's spheres, later a mesh's), the cross-validation
  plan, the measure (a batched classifier, or a scikit-learn estimator fitted per sphere),
  the metrics, the memory budget and the label-independent cache;
- executors (:class:`InProcess`, :class:`Threads`, :class:`LocalProcesses`,
  :class:`DaskExecutor`) behind one interface (``n_workers``, ``n_tasks``, ``share``,
  ``map_unordered``);
- :func:`compute_scores`: problem + label sets + executor -> scores of shape
  (label sets, spheres, folds, metrics); the only place where the path is chosen (per-sphere
  fits, sphere sums, or blocks of spheres solved at once).

See ``docs/architecture.md`` for the data flow and where a new space, measure or executor
goes.
"""

from ._blocks import ExactSpheres, VoxelMajor, spheres_per_block, voxel_major
from ._compute import DEFAULT_MEMORY_MB, Problem, compute_scores, progress_bar
from ._dask_session import (
    DASK_INSTALL_HINT,
    DASK_RETRIES,
    DaskSession,
    MissingDependencyError,
    borrowed_session,
    import_distributed,
)
from ._executors import (
    DaskExecutor,
    Executor,
    InProcess,
    LocalProcesses,
    Threads,
    effective_n_jobs,
    make_executor,
    prefers_threads,
)
from ._routing import batched_plan_ok, choose_measure

__all__ = [
    "DASK_INSTALL_HINT",
    "DASK_RETRIES",
    "DEFAULT_MEMORY_MB",
    "DaskExecutor",
    "DaskSession",
    "ExactSpheres",
    "Executor",
    "InProcess",
    "LocalProcesses",
    "MissingDependencyError",
    "Problem",
    "Threads",
    "VoxelMajor",
    "batched_plan_ok",
    "borrowed_session",
    "choose_measure",
    "compute_scores",
    "effective_n_jobs",
    "import_distributed",
    "make_executor",
    "prefers_threads",
    "progress_bar",
    "spheres_per_block",
    "voxel_major",
]
