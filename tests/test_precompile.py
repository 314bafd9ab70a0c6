"""Compiling the kernels ahead of their first use (``fastsearchlight precompile``)."""

import pytest

from fastsearchlight.cli import main
from fastsearchlight.precompile import precompile


def test_the_command_compiles_or_loads_each_group_in_its_own_process(capsys):
    assert main(["precompile", "--groups", "correlation_statistics", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("correlation_statistics: ") and "compiled or loaded in" in out


def test_unknown_groups_and_bad_process_counts_are_refused():
    with pytest.raises(ValueError, match=r"Unknown kernel groups \['nope'\]"):
        precompile(["svc", "nope"])
    with pytest.raises(ValueError, match="n_jobs must be a positive integer"):
        precompile(n_jobs=0)
    assert main(["precompile", "--groups", "nope"]) == 2
