"""The study's options, each written once: its default, its command-line flag and help, its
study-file key and check, and the SearchLight parameter it sets.

:data:`OPTIONS` generates :class:`~fastsearchlight.study.StudyConfig` (its fields, in this
order, and their defaults), the analysis options of the command line
(:func:`add_cli_options`, :func:`config_from_args`), the ``[defaults]`` keys of a study file
(:data:`STUDY_FILE_KEYS`, :func:`check_file_value`) and the SearchLight call
(:func:`searchlight_params`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cleaning import STANDARDIZE_CHOICES
from .io import InputError

#: defaults of the group level (``fastsearchlight group``, a study file's ``[group]``)
GROUP_PERMUTATIONS = 5000
GROUP_CLUSTER_THRESHOLD = 0.001


class FileValueError(Exception):
    """A study-file value of the wrong kind; the message says what is expected."""


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _conditions(value: Any) -> list[str] | None:
    if isinstance(value, str) and value.lower() == "all":
        return None
    if not isinstance(value, list) or not all(isinstance(c, (str, int)) for c in value):
        raise FileValueError('a list of condition names (or "all")')
    return [str(c) for c in value]


def _cli_conditions(values: list[str]) -> list[str] | None:
    """``--conditions``: the names, or None for ``all``."""
    return None if [v.lower() for v in values] == ["all"] else list(values)


def _group_column(value: Any) -> str | None:
    if value is False or (isinstance(value, str) and value.lower() in ("none", "")):
        return None
    if not isinstance(value, str):
        raise FileValueError("a column name, or false when there are no runs")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise FileValueError("a non-empty string")
    return value


def _positive(value: Any) -> float:
    if not is_number(value) or value <= 0:
        raise FileValueError("a positive number")
    return float(value)


def _fraction(value: Any) -> float:
    if not is_number(value) or not 0 < value < 1:
        raise FileValueError("a number between 0 and 1")
    return float(value)


def _count(value: Any) -> int:
    if not is_int(value) or value < 0:
        raise FileValueError("an integer >= 0")
    return value


def _n_jobs(value: Any) -> int:
    if not is_int(value) or value == 0:
        raise FileValueError("a nonzero integer (-1: all cores)")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FileValueError("true or false")
    return value


def _permute(value: Any) -> str:
    if value not in ("blocks", "samples"):
        raise FileValueError('"blocks" or "samples"')
    return value


def tfce_dh(value: str) -> float | str:
    """The TFCE step from the command line: ``"auto"`` or a positive number."""
    if value == "auto":
        return value
    try:
        dh = float(value)
    except ValueError:
        dh = float("nan")
    if not dh > 0 or dh == float("inf"):
        raise InputError(f"--tfce-dh must be 'auto' or a positive number, got {value!r}")
    return dh


def _standardize(value: Any) -> str:
    if value is False or value is None:
        return "none"
    if value not in STANDARDIZE_CHOICES:
        raise FileValueError(f"one of {', '.join(STANDARDIZE_CHOICES)}")
    return value


def _parse_value(text: str) -> Any:
    """A command-line estimator parameter's value: a number, true/false/none, or the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def estimator_args(values: list[str] | None) -> dict | None:
    """``--estimator-param NAME=VALUE`` (repeated) as the estimator's keyword arguments."""
    if not values:
        return None
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise InputError(f"--estimator-param {item!r}: write NAME=VALUE, e.g. C=0.1")
        out[name.strip()] = _parse_value(value)
    return out


def _estimator_params(value: Any) -> dict | None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise FileValueError("a table of estimator parameters, e.g. { C = 0.1 }")
    return dict(value) or None


def _none_word(value: str | None) -> str | None:
    return None if str(value).lower() in ("none", "") else value


@dataclass(frozen=True)
class Option:
    """One study option.

    Attributes
    ----------
    name : str
        The StudyConfig field.
    type : str
        Its type annotation.
    default : Any
        Its default (copied for each StudyConfig, so a list default is never shared).
    help : str
        Command-line help; ``{default}`` is replaced by the default.
    flag : str or None
        Command-line flag (None: not on the command line).
    cli : dict
        Further ``add_argument`` keywords (type, nargs, metavar, choices, action).
    from_cli : callable or None
        Turns the parsed command-line value into the field's value.
    key : str or None
        Key in a study file's ``[defaults]`` (None: not in study files).
    check : callable or None
        Checks a study-file value and returns the field's value (raises FileValueError).
    searchlight : str or None
        The SearchLight parameter the field sets (None: none directly).
    """

    name: str
    type: str
    default: Any
    help: str = ""
    flag: str | None = None
    cli: dict = field(default_factory=dict)
    from_cli: Callable[[Any], Any] | None = None
    key: str | None = None
    check: Callable[[Any], Any] | None = None
    searchlight: str | None = None

    @property
    def dest(self) -> str:
        """Attribute of the parsed command line holding the option."""
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add the option's command-line argument to ``parser``."""
        kwargs = dict(self.cli)
        if kwargs.get("action") != "store_true":
            kwargs["default"] = copy.copy(self.default)
        shown = " ".join(self.default) if isinstance(self.default, list) else self.default
        parser.add_argument(self.flag, help=self.help.format(default=shown), **kwargs)


#: the study's options, in StudyConfig's (and summary.json's) order
OPTIONS: tuple[Option, ...] = (
    Option("conditions", "list[str] | None", ["face", "house"],
           "conditions to decode (default: {default}; 'all': every condition)",
           "--conditions", {"nargs": "+", "metavar": "C"}, from_cli=_cli_conditions,
           key="conditions", check=_conditions),
    Option("label_column", "str", "labels", "labels table column of conditions (default {default})",
           "--label-column", key="label_column", check=_text),
    Option("group_column", "str | None", "chunks",
           "labels table column of runs, fed to cv as groups (default {default}; 'none' for none)",
           "--group-column", from_cli=_none_word, key="group_column", check=_group_column),
    Option("radius", "float", 5.6, "sphere radius in mm (default {default})", "--radius",
           {"type": float}, key="radius", check=_positive, searchlight="radius"),
    Option("estimator", "str", "svc",
           "{default} (default), gnb, lda, ridge_classifier, logistic_regression, correlation, "
           "or any nilearn estimator name",
           "--estimator", key="estimator", check=_text, searchlight="estimator"),
    Option("cv", "str", "auto",
           "{default} (default: logo, leave one run out, when the runs are known, else kfold:4), "
           "kfold:N, stratified:N, groupkfold:N or logo", "--cv", key="cv", check=_text),
    Option("scoring", "str", "accuracy", "{default} (default), balanced_accuracy or roc_auc",
           "--scoring", key="scoring", check=_text, searchlight="scoring"),
    Option("n_jobs", "int", 1, "parallel workers (default {default}; -1: all cores)", "--n-jobs", {"type": int},
           key="n_jobs", check=_n_jobs, searchlight="n_jobs"),
    Option("memory_mb", "float", 512.0, "working-memory budget in MB (default {default})", "--memory-mb",
           {"type": float}, key="memory_mb", check=_positive, searchlight="memory_mb"),
    Option("n_permutations", "int", 0,
           "label permutations (within runs) for p-values corrected over the map; all distinct "
           "ones when the design allows no more than N; an interrupted run resumes from a "
           "checkpoint in the output folder",
           "--permutations", {"type": int, "metavar": "N"}, key="permutations", check=_count,
           searchlight="n_permutations"),
    Option("permute", "str", "blocks",
           "what is exchanged: the labels of whole blocks of consecutive volumes of one "
           "condition within a run (default; block designs), or of single samples within a "
           "run (randomised event-related designs, trial betas)",
           "--permute", {"choices": ("blocks", "samples")}, key="permute", check=_permute,
           searchlight="permute"),
    Option("tfce", "bool", False,
           "with --permutations: also threshold-free cluster enhancement, with family-wise "
           "p-values (p_fwe_tfce.nii.gz)",
           "--tfce", {"action": "store_true"}, key="tfce", check=_flag, searchlight="tfce"),
    Option("tfce_dh", "float | str", "auto",
           "TFCE step between thresholds (default {default}: 100 steps)", "--tfce-dh",
           from_cli=tfce_dh, searchlight="tfce_dh"),
    Option("cluster_alpha", "float", 0.001,
           "cluster-forming threshold as a quantile of the null (default {default})",
           "--cluster-alpha", {"type": float}, key="cluster_alpha", check=_fraction,
           searchlight="cluster_alpha"),
    Option("seed", "int", 0, "seed of the permutations (default {default})", "--seed", {"type": int}, key="seed",
           check=_count, searchlight="random_state"),
    Option("backend", "str", "loky", searchlight="backend"),
    Option("estimator_args", "dict | None", None,
           "a parameter of the estimator, NAME=VALUE (e.g. C=0.1); repeat for several",
           "--estimator-param", {"action": "append", "metavar": "NAME=VALUE"}, from_cli=estimator_args,
           key="estimator_params", check=_estimator_params, searchlight="estimator_args"),
    Option("standardize", "str", "zscore_sample",
           "standardise each voxel's time series within each run: {default} (default, as nilearn's "
           "decoders), psc or none", "--standardize", {"choices": STANDARDIZE_CHOICES},
           key="standardize", check=_standardize),
    Option("detrend", "bool", False, "remove each run's linear trend (default: no, as nilearn's decoders)",
           "--detrend", {"action": "store_true"}, key="detrend", check=_flag),
    Option("high_pass", "float | None", None,
           "high-pass filter each run at HZ (Butterworth; default none, as nilearn's decoders)",
           "--high-pass", {"type": float, "metavar": "HZ"}, key="high_pass", check=_positive),
    Option("confounds", "str | None", None,
           "confounds removed within each run: a table of one row per volume (.tsv/.csv), or "
           "with --bids --derivatives one of nilearn's fMRIPrep strategies: simple, scrubbing, "
           "compcor, ica_aroma (default none)", "--confounds", {"metavar": "TABLE|STRATEGY"},
           from_cli=_none_word),
    Option("fold_maps", "bool", False, "also write the map of each fold (fold_scores.nii.gz)",
           "--fold-maps", {"action": "store_true"}, key="fold_maps", check=_flag),
    Option("scheduler", "str | None", None,
           "run the searchlight on the dask.distributed cluster whose scheduler is at ADDRESS "
           "(e.g. tcp://node1:8786); needs fastsearchlight[dask]",
           "--scheduler", {"metavar": "ADDRESS"}, searchlight="scheduler"),
)  # fmt: skip

_BY_NAME = {option.name: option for option in OPTIONS}

#: keys of a study file's ``[defaults]`` (and of a subject's ``overrides``) -> StudyConfig fields
STUDY_FILE_KEYS: dict[str, str] = {o.key: o.name for o in OPTIONS if o.key is not None}


def config_fields() -> list[tuple[str, str, Any]]:
    """``(name, type, field)`` of every option, for :func:`dataclasses.make_dataclass`."""
    return [
        (o.name, o.type, dataclasses.field(default_factory=lambda o=o: copy.copy(o.default))) for o in OPTIONS
    ]


def default(name: str) -> Any:
    """The default of option ``name`` (a copy)."""
    return copy.copy(_BY_NAME[name].default)


def add_scheduler_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--scheduler`` to ``parser``."""
    _BY_NAME["scheduler"].add_to(parser)


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """Add every study option that has a command-line flag to ``parser``."""
    for option in OPTIONS:
        if option.flag is not None:
            option.add_to(parser)


def config_from_args(args: argparse.Namespace, config_type: type):
    """The StudyConfig of a parsed command line (``--scheduler`` selects the dask backend)."""
    values = {}
    for option in OPTIONS:
        if option.flag is None:
            continue
        value = getattr(args, option.dest)
        values[option.name] = option.from_cli(value) if option.from_cli else value
    values["scheduler"] = args.scheduler or None
    values["backend"] = "dask" if args.scheduler else "loky"
    return config_type(**values)


def check_file_value(where: str, key: str, value: Any) -> Any:
    """A study file's ``[defaults]`` value, checked, as the StudyConfig field wants it."""
    option = _BY_NAME[STUDY_FILE_KEYS[key]]
    try:
        return option.check(value)
    except FileValueError as exc:
        raise InputError(f"{where}: {key} must be {exc}, got {value!r}") from None


def searchlight_params(config) -> dict[str, Any]:
    """The SearchLight parameters a StudyConfig sets directly."""
    return {o.searchlight: getattr(config, o.name) for o in OPTIONS if o.searchlight is not None}
