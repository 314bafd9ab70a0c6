"""The compiled kernels of the estimators are built with the options the speed notes rely on."""

import importlib
import pkgutil

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import fastsearchlight.estimators as estimators
from fastsearchlight.estimators._logistic_kernel import _binary_trial


def _kernels():
    """Every compiled function defined in a module of ``fastsearchlight.estimators``."""
    found = []
    for info in pkgutil.iter_modules(estimators.__path__):
        module = importlib.import_module(f"{estimators.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__:
                found.append((f"{info.name}.{name}", obj))
    return found


KERNELS = _kernels()


def test_the_estimators_define_compiled_kernels():
    names = [name for name, _ in KERNELS]
    assert len(names) > 100
    assert "_logistic_kernel._newton_binary" in names
    assert "_svm_gram_kernel._solve_dual" in names


@pytest.mark.parametrize("name,kernel", KERNELS, ids=[name for name, _ in KERNELS])
def test_every_kernel_is_cached_and_uses_numpys_error_model(name, kernel):
    # numpy's error model: a float division by zero gives inf or nan instead of raising, so
    # no check and branch per division inside the loops (LLVM vectorises them)
    assert kernel.targetoptions.get("error_model") == "numpy", name
    assert kernel._cache.__class__.__name__ != "NullCache", name


def test_a_division_by_zero_in_a_kernel_gives_nan_not_an_exception():
    # the log-loss trial divides by the number of samples: with none, 0 / 0
    z = np.zeros(0)
    assert np.isnan(_binary_trial(z, z, 1.0, z, np.zeros(0), np.zeros(0)))
