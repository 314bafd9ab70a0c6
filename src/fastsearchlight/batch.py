"""Batch mode: every subject's study, then the group level, from one TOML file.

A study file names an output folder, the analysis parameters shared by all subjects, one
``[[subjects]]`` entry per subject and, optionally, a ``[group]`` table that asks for the
group-level test::

    out = "results"                     # output folder

    [defaults]                          # the study's parameters, for every subject
    conditions = ["face", "house"]
    label_column = "labels"
    group_column = "chunks"             # false (or "none") when there are no runs
    radius = 5.6
    estimator = "svc"
    cv = "kfold:4"
    scoring = "accuracy"
    permutations = 100
    seed = 0
    n_jobs = 1

    [[subjects]]
    name = "sub-01"                     # its outputs go to <out>/sub-01/
    func = "sub-01/bold.nii.gz"
    labels = "sub-01/labels.txt"
    mask = "sub-01/mask.nii.gz"
    # process_mask = "sub-01/centres.nii.gz"
    # overrides = { radius = 4.0 }      # any [defaults] key, for this subject only

    [group]                             # optional: the second level, into <out>/group/
    chance = 0.5                        # default: the subjects' chance level
    permutations = 5000
    cluster_threshold = 0.001           # false: no cluster inference

Relative paths are read from the study file's folder. :func:`run_batch` runs each subject's
:func:`~fastsearchlight.study.run_study` into ``<out>/<name>/`` and then
:func:`~fastsearchlight.group.run_group` on the subjects' ``searchlight_scores.nii.gz``
into ``<out>/group/``. Run again, it skips the subjects whose outputs are complete (their
``summary.json`` and every file it lists exist), finishes the others (a subject stopped
during its permutations resumes from the checkpoint kept in its folder), and redoes the
group level when a subject was computed or the group outputs are incomplete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from ._options import (
    GROUP_CLUSTER_THRESHOLD,
    GROUP_PERMUTATIONS,
    STUDY_FILE_KEYS,
    check_file_value,
    is_int,
    is_number,
)
from .io import InputError
from .study import StudyConfig

__all__ = [
    "BatchResult",
    "BatchSpec",
    "GroupSpec",
    "SubjectSpec",
    "load_batch",
    "output_state",
    "run_batch",
]

#: keys of ``[defaults]`` (and of a subject's ``overrides``) and the StudyConfig fields they set
DEFAULT_KEYS: dict[str, str] = STUDY_FILE_KEYS
TOP_KEYS = ("out", "defaults", "subjects", "group")
SUBJECT_REQUIRED = ("name", "func", "labels", "mask")
SUBJECT_OPTIONAL = ("process_mask", "overrides")
GROUP_KEYS = ("chance", "permutations", "cluster_threshold")
GROUP_FOLDER = "group"

_TOML_KEYS = {v: k for k, v in DEFAULT_KEYS.items()}
#: StudyConfig fields that do not change a subject's results (not compared on a re-run)
_NOT_RESULT_FIELDS = ("n_jobs", "memory_mb", "backend", "scheduler")

#: errors that fail one subject (bad data, bad parameters) without stopping the batch
_SUBJECT_ERRORS = (InputError, ValueError, TypeError, OSError)


@dataclass
class SubjectSpec:
    """One subject of a batch: its files and its study's parameters."""

    name: str
    func: Path
    labels: Path
    mask: Path
    process_mask: Path | None
    config: StudyConfig


@dataclass
class GroupSpec:
    """Parameters of the group level (``chance`` None: the subjects' chance level)."""

    chance: float | None = None
    n_permutations: int = GROUP_PERMUTATIONS
    cluster_threshold: float | None = GROUP_CLUSTER_THRESHOLD
    seed: int = 0
    n_jobs: int = 1


@dataclass
class BatchSpec:
    """A study file, read and checked."""

    path: Path
    out: Path
    subjects: list[SubjectSpec]
    group: GroupSpec | None = None


@dataclass
class BatchResult:
    """What :func:`run_batch` did: one status per subject ("done", "skipped", "failed")."""

    subjects: dict[str, str] = field(default_factory=dict)
    group: str | None = None
    messages: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return "failed" not in self.subjects.values() and self.group != "failed"


# --------------------------------------------------------------------------- reading
def _table(where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a table, got {value!r}")
    return value


def _check_keys(where: str, table: dict, allowed, required=()) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise InputError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(allowed)})"
        )
    missing = [k for k in required if k not in table]
    if missing:
        raise InputError(
            f"{where}: missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
        )


def _config(where: str, table: dict, base: StudyConfig) -> StudyConfig:
    _check_keys(where, table, tuple(DEFAULT_KEYS))
    changes = {DEFAULT_KEYS[k]: check_file_value(where, k, v) for k, v in table.items()}
    return replace(base, **changes)


def _input_path(where: str, key: str, value: Any, root: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: {key} must be a path, got {value!r}")
    path = (root / Path(value).expanduser()).resolve()
    if not path.is_file():
        raise InputError(f"{where}: {key} file not found: {path}")
    return path


def load_batch(path) -> BatchSpec:
    """Read and check a study file (see the module's documentation for its layout).

    Parameters
    ----------
    path : path-like
        The TOML study file.

    Returns
    -------
    BatchSpec

    Raises
    ------
    InputError
        On a missing file, a TOML syntax error, a missing or unknown key, a value of the
        wrong type or an input file that does not exist — in one line naming the place.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"study file not found: {path}")
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path.name} is not valid TOML: {exc}") from None
    root = path.resolve().parent
    name = path.name
    _check_keys(name, data, TOP_KEYS, required=("out", "subjects"))
    if not isinstance(data["out"], str) or not data["out"]:
        raise InputError(f"{name}: out must be the output folder, got {data['out']!r}")
    out = (root / Path(data["out"]).expanduser()).resolve()
    defaults = _config(
        f"{name} [defaults]", _table(f"{name}: [defaults]", data.get("defaults", {})), StudyConfig()
    )

    entries = data["subjects"]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{name}: subjects must be a list of [[subjects]] tables with at least one subject")
    subjects: list[SubjectSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, 1):
        subjects.append(_subject(name, i, entry, root, defaults, seen))
    group = _group_spec(name, data["group"], defaults, len(subjects)) if "group" in data else None
    return BatchSpec(path=path.resolve(), out=out, subjects=subjects, group=group)


def _subject(name: str, i: int, entry: Any, root: Path, defaults: StudyConfig, seen: set[str]) -> SubjectSpec:
    """The ``i``-th ``[[subjects]]`` entry of the study file ``name``, checked (its name
    added to ``seen``, the names of the entries before it)."""
    where = f"{name} subject {i}"
    entry = _table(where, entry)
    if isinstance(entry.get("name"), str) and entry["name"]:
        where = f"{name} subject {entry['name']!r}"
    _check_keys(where, entry, SUBJECT_REQUIRED + SUBJECT_OPTIONAL, required=SUBJECT_REQUIRED)
    subject = entry["name"]
    if (
        not isinstance(subject, str) or not subject.strip() or subject != subject.strip()
        or any(c in subject for c in '/\\:*?"<>|') or subject.startswith(".")
        or subject == GROUP_FOLDER
    ):  # fmt: skip
        raise InputError(
            f"{where}: name must be a plain folder name (no slashes, not starting with '.', "
            f"not {GROUP_FOLDER!r}), got {subject!r}"
        )
    if subject in seen:
        raise InputError(f"{name}: subject {subject!r} is listed twice")
    seen.add(subject)
    files = {k: _input_path(where, k, entry[k], root) for k in ("func", "labels", "mask")}
    process_mask = (
        _input_path(where, "process_mask", entry["process_mask"], root) if "process_mask" in entry else None
    )
    overrides = _table(f"{where}: overrides", entry.get("overrides", {}))
    config = _config(f"{where} overrides", overrides, defaults)
    return SubjectSpec(subject, files["func"], files["labels"], files["mask"], process_mask, config)


def _group_spec(name: str, value: Any, defaults: StudyConfig, n_subjects: int) -> GroupSpec:
    """The study file's ``[group]`` table, checked."""
    table = _table(f"{name}: [group]", value)
    where = f"{name} [group]"
    _check_keys(where, table, GROUP_KEYS)
    group = GroupSpec(seed=defaults.seed, n_jobs=defaults.n_jobs)
    if "chance" in table:
        if not is_number(table["chance"]) or not 0 < table["chance"] < 1:
            raise InputError(f"{where}: chance must be a number in (0, 1), got {table['chance']!r}")
        group.chance = float(table["chance"])
    if "permutations" in table:
        if not is_int(table["permutations"]) or table["permutations"] < 1:
            raise InputError(f"{where}: permutations must be an integer >= 1, got {table['permutations']!r}")
        group.n_permutations = table["permutations"]
    if "cluster_threshold" in table:
        value = table["cluster_threshold"]
        if value is False:
            group.cluster_threshold = None
        elif is_number(value) and 0 < value < 1:
            group.cluster_threshold = float(value)
        else:
            raise InputError(
                f"{where}: cluster_threshold must be a p between 0 and 1 or false, got {value!r}"
            )
    if n_subjects < 2:
        raise InputError(f"{where}: the group level needs at least two subjects, the file lists {n_subjects}")
    return group


# --------------------------------------------------------------------------- state on disk
def output_state(folder: Path) -> str:
    """``"complete"`` (summary.json and every output it lists exist), ``"incomplete"``
    (the folder exists but is not complete) or ``"absent"``."""
    folder = Path(folder)
    if not folder.is_dir():
        return "absent"
    summary = _read_summary(folder)
    if summary is not None:
        outputs = summary.get("outputs")
        if isinstance(outputs, list) and outputs and all((folder / str(n)).is_file() for n in outputs):
            return "complete"
    return "incomplete"


def _read_summary(folder: Path) -> dict | None:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _subject_changes(subject: SubjectSpec, summary: dict) -> list[str]:
    """How the outputs on disk differ from what the study file asks (empty: they match)."""
    changes = []
    made = summary.get("parameters", {})
    for f in fields(StudyConfig):
        if f.name in _NOT_RESULT_FIELDS:
            continue
        want = _normalised(getattr(subject.config, f.name))
        if f.name in made and _normalised(made[f.name]) != want:
            key = _TOML_KEYS.get(f.name, f.name)
            changes.append(f"{key} {made[f.name]!r}, not {want!r}")
    data = summary.get("data", {})
    for key, path in (
        ("functional images", subject.func),
        ("labels table", subject.labels),
        ("mask", subject.mask),
    ):
        if key in data and data[key] != str(path):
            changes.append(f"{key} {data[key]}, not {path}")
    return changes


def _group_changes(spec: BatchSpec, chance: float, maps: list[Path], summary: dict) -> bool:
    made = summary.get("parameters", {})
    group = spec.group
    want = {"subjects": len(maps), "chance": chance, "permutations": group.n_permutations,
            "cluster-forming threshold (p)": group.cluster_threshold, "seed": group.seed}  # fmt: skip
    if any(_normalised(made.get(k)) != _normalised(v) for k, v in want.items()):
        return True
    return summary.get("data", {}).get("maps") != [str(m) for m in maps]


# --------------------------------------------------------------------------- running
def run_batch(
    study,
    *,
    force: bool = False,
    quiet: bool = False,
    scheduler: str | None = None,
    echo: Callable[[str], Any] = print,
) -> BatchResult:
    """Run every subject's study, then the group level, as a study file says.

    Parameters
    ----------
    study : path-like or BatchSpec
        The TOML study file (or one already read with :func:`load_batch`).
    force : bool
        Recompute everything, overwriting the outputs.
    quiet : bool
        No progress bars (the status lines are printed all the same).
    scheduler : str or None
        Address of a dask.distributed scheduler (``"tcp://host:8786"``): the searchlights
        run on that cluster (``backend="dask"``). The results are the same.
    echo : callable
        Receives the one-line status of each subject and of the group level.

    Returns
    -------
    BatchResult
        The status of each subject ("done", "skipped" or "failed") and of the group level.

    Raises
    ------
    InputError
        If the study file is wrong (nothing is run then).
    ConnectionError
        If the scheduler cannot be reached.
    """
    from .engine import DaskSession, import_distributed
    from .group import run_group
    from .study import run_study

    spec = study if isinstance(study, BatchSpec) else load_batch(study)
    if scheduler is not None:
        import_distributed()
        DaskSession(scheduler).close()  # an unreachable scheduler fails now, not per subject
    result = BatchResult()
    recomputed = False
    for subject in spec.subjects:
        folder = spec.out / subject.name
        config = subject.config
        if scheduler is not None:
            config = replace(config, backend="dask", scheduler=scheduler)
        state = output_state(folder)
        if state == "complete" and not force:
            changes = _subject_changes(subject, _read_summary(folder) or {})
            if changes:
                message = (f"{folder} holds outputs made with other settings ({'; '.join(changes)}): "
                           "delete the folder or use --force to recompute")  # fmt: skip
                _status(result, echo, subject.name, "failed", message)
            else:
                _status(result, echo, subject.name, "skipped", f"complete outputs in {folder}")
            continue
        t0 = time.perf_counter()
        try:
            summary = run_study(
                subject.func, subject.labels, subject.mask, folder, process_mask=subject.process_mask,
                config=config, force=force or state != "absent", quiet=quiet, name=subject.name,
            )  # fmt: skip
        except _SUBJECT_ERRORS as exc:
            _status(result, echo, subject.name, "failed", " ".join(str(exc).split()))
            continue
        recomputed = True
        r = summary["results"]
        _status(result, echo, subject.name, "done",
                f"{time.perf_counter() - t0:.1f} s, max {config.scoring} {r['max score']:.3f}")  # fmt: skip

    if spec.group is not None:
        _run_group_step(spec, result, recomputed, force=force, quiet=quiet, echo=echo, run_group=run_group)
    return result


def _run_group_step(spec: BatchSpec, result: BatchResult, recomputed: bool, *, force, quiet, echo, run_group):
    failed = [s for s, status in result.subjects.items() if status == "failed"]
    subjects = [s for s in spec.subjects if result.subjects.get(s.name) != "failed"]
    if len(subjects) < 2:  # the others still make a group level when there are two
        _status(result, echo, GROUP_FOLDER, "skipped", f"{len(failed)} subject(s) failed")
        return
    left_out = f"; without {', '.join(failed)} (failed)" if failed else ""
    folder = spec.out / GROUP_FOLDER
    maps = [spec.out / s.name / "searchlight_scores.nii.gz" for s in subjects]
    chance = spec.group.chance
    if chance is None:
        levels = sorted({(_read_summary(spec.out / s.name) or {}).get("results", {}).get("chance level")
                         for s in subjects}, key=str)  # fmt: skip
        if len(levels) != 1 or not is_number(levels[0]):
            listed = ", ".join(map(str, levels))
            _status(result, echo, GROUP_FOLDER, "failed",
                    f"the subjects' chance levels differ ({listed}): set chance in [group]")  # fmt: skip
            return
        chance = float(levels[0])
    state = output_state(folder)
    if state == "complete" and not force and not recomputed:
        if not _group_changes(spec, chance, maps, _read_summary(folder) or {}):
            _status(result, echo, GROUP_FOLDER, "skipped", f"complete outputs in {folder}")
            return
    t0 = time.perf_counter()
    try:
        summary = run_group(
            maps, folder, chance=chance, n_permutations=spec.group.n_permutations,
            cluster_threshold=spec.group.cluster_threshold, random_state=spec.group.seed,
            n_jobs=spec.group.n_jobs, force=force or state != "absent", quiet=quiet,
        )  # fmt: skip
    except _SUBJECT_ERRORS as exc:
        _status(result, echo, GROUP_FOLDER, "failed", " ".join(str(exc).split()))
        return
    r = summary["results"]
    _status(result, echo, GROUP_FOLDER, "done",
            f"{time.perf_counter() - t0:.1f} s, {r['voxels with FWE p < 0.05']} voxels with FWE p < 0.05"
            f"{left_out}")  # fmt: skip


def _status(result: BatchResult, echo, name: str, status: str, message: str) -> None:
    """Record a status (subjects cannot be called "group") and print its line."""
    if name == GROUP_FOLDER:
        result.group = status
    else:
        result.subjects[name] = status
    result.messages[name] = message
    echo(f"{name}: {status}: {message}" if status == "failed" else f"{name}: {status} ({message})")
