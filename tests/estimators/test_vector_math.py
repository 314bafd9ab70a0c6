"""The vectorisable ``exp``, ``log1p`` and ``log`` of the logistic kernels against the C library's
(numpy's): within 1, 3 and 2 units in the last place over their domains."""

import math

import numpy as np
from numba import njit

from fastsearchlight.estimators._vector_math import divide, exp_nonpositive, log1p_unit, log_normal


@njit(cache=False)
def _evaluate(x, out_exp, out_log1p):
    for i in range(x.shape[0]):
        out_exp[i] = exp_nonpositive(x[i])
        out_log1p[i] = log1p_unit(math.exp(x[i]))


def _arguments():
    rng = np.random.default_rng(0)
    return -np.concatenate(
        [
            rng.exponential(5.0, 100_000),
            rng.uniform(0.0, 708.0, 50_000),
            rng.uniform(0.0, 1e-6, 10_000),
            [0.0, 1e-300, 5e-324, 0.5 * math.log(2.0), math.log(2.0), 707.9, 708.0],
        ]
    )


def test_exp_and_log1p_match_the_c_library():
    x = _arguments()
    got_exp, got_log1p = np.empty_like(x), np.empty_like(x)
    _evaluate(x, got_exp, got_log1p)
    want_exp, want_log1p = np.exp(x), np.log1p(np.exp(x))
    assert np.all(np.abs(got_exp - want_exp) <= 1.0 * np.spacing(want_exp))
    assert np.all(np.abs(got_log1p - want_log1p) <= 3.0 * np.spacing(want_log1p))
    assert got_exp[x == 0.0][0] == 1.0 and got_log1p[x == 0.0][0] == math.log(2.0)


def test_exp_is_zero_below_its_floor_and_finite_at_it():
    x = np.array([-708.0, -708.5, -745.2, -1e6, -np.inf])
    got_exp, got_log1p = np.empty_like(x), np.empty_like(x)
    _evaluate(x, got_exp, got_log1p)
    assert abs(got_exp[0] - np.exp(-708.0)) <= np.spacing(np.exp(-708.0))
    assert np.all(got_exp[1:] == 0.0)
    assert np.all(got_exp[1:-1] <= 3.3e-308)  # the C library's results are below this


@njit(cache=False)
def _divide(a, b):
    return divide(a, b)


def test_divide_follows_ieee_without_raising():
    assert _divide(1.0, 4.0) == 0.25
    assert _divide(1.0, 0.0) == np.inf
    assert np.isnan(_divide(0.0, 0.0))


@njit(cache=False)
def _log(x, out):
    for i in range(x.shape[0]):
        out[i] = log_normal(x[i])


def test_log_matches_the_c_library_over_the_normal_numbers():
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.uniform(1.0, 16.0, 100_000),  # a softmax's normalisers
            np.exp(rng.uniform(-700.0, 700.0, 100_000)),
            [1.0, 2.0, 0.5, math.sqrt(2.0), np.nextafter(math.sqrt(2.0), 2.0), np.nextafter(1.0, 0.0)],
            [np.finfo(np.float64).tiny, np.finfo(np.float64).max],
        ]
    )
    got = np.empty_like(x)
    _log(x, got)
    want = np.log(x)
    assert np.all(np.abs(got - want) <= 2.0 * np.spacing(np.abs(want)))
    assert got[x == 1.0][0] == 0.0 and got[x == 2.0][0] == math.log(2.0)
