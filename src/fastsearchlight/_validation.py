"""Parameter checks in scikit-learn's constraint style, in one place for the estimator,
the study, the group level and the command line.

A parameter's constraints are a list; the value must satisfy one of them::

    check_params({"n_jobs": 1.5}, {"n_jobs": [Interval(Integral, 1, None), Interval(Integral, None, -1), None]})

raises ``InvalidParameterError: n_jobs must be an int >= 1, an int <= -1 or None, got 1.5.``
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

__all__ = ["InvalidParameterError", "Interval", "check_params", "N_JOBS", "VERBOSE"]


class InvalidParameterError(ValueError, TypeError):
    """A parameter of the wrong type or value (a ValueError and a TypeError, as
    scikit-learn's)."""


@dataclass(frozen=True)
class Interval:
    """Numbers of a type (``Integral`` or ``Real``) between ``left`` and ``right`` (None:
    unbounded), ``closed`` on "both", "left", "right" or "neither" side. Reals must be finite."""

    kind: type
    left: float | None
    right: float | None
    closed: str = "both"

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if self.kind is Real and not math.isfinite(value):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        what = "an int" if self.kind is Integral else "a number"
        lo_closed = self.closed in ("both", "left")
        hi_closed = self.closed in ("both", "right")
        if self.left is not None and self.right is not None:
            return (
                f"{what} in {'[' if lo_closed else '('}{self.left}, {self.right}{']' if hi_closed else ')'}"
            )
        if self.left is not None:
            return f"{what} {'>=' if lo_closed else '>'} {self.left}"
        if self.right is not None:
            return f"{what} {'<=' if hi_closed else '<'} {self.right}"
        return what


def _accepts(constraint, value) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, Interval):
        return constraint.accepts(value)
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return value == constraint and type(value) is type(constraint)  # a single allowed value


def _describe(constraint) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return f"a {constraint.__name__}"
    return str(constraint) if isinstance(constraint, Interval) else repr(constraint)


def _plain(value):
    """numpy scalars as Python numbers, so that np.int64(3) is an int."""
    return value.item() if isinstance(value, np.generic) else value


def check_params(params: dict, constraints: dict, *, prefix: str = "") -> None:
    """Check every value of ``params`` named in ``constraints``.

    Raises
    ------
    InvalidParameterError
        ``"<prefix><name> must be <constraints>, got <value>."`` for the first bad value.
    """
    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = _plain(params[name])
        if not any(_accepts(c, value) for c in allowed):
            options = [_describe(c) for c in allowed]
            text = options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]
            raise InvalidParameterError(f"{prefix}{name} must be {text}, got {params[name]!r}.")


#: joblib's n_jobs: a positive number of workers, or -1, -2... (all cores, all but one...)
N_JOBS = [Interval(Integral, 1, None), Interval(Integral, None, -1), None]
#: a verbosity level
VERBOSE = [Interval(Integral, 0, None), bool]
