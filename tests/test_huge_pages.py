"""Memory without huge pages: an array of ordinary pages, and the scope without numpy's
huge-page advice (off inside, restored after)."""

import numpy as np
import pytest

from fastsearchlight._huge_pages import _switch, empty_small_pages, without_huge_pages


def _state(switch) -> bool:
    """numpy's current setting, read by setting it and putting it back."""
    before = switch(True)
    switch(before)
    return before


@pytest.fixture
def switch():
    switch = _switch()
    if switch is None:
        pytest.skip("this numpy has no huge-page switch")
    before = _state(switch)
    yield switch
    switch(before)


@pytest.mark.parametrize("initial", [True, False])
def test_off_inside_and_restored_after(switch, initial):
    switch(initial)
    with without_huge_pages():
        assert _state(switch) is False
        np.ones(2**20)  # an allocation of 8 MB inside the scope
    assert _state(switch) is initial


def test_restored_after_an_error(switch):
    switch(True)
    with pytest.raises(RuntimeError), without_huge_pages():
        raise RuntimeError("inside")
    assert _state(switch) is True


def test_overlapping_scopes_of_two_threads_restore_the_first_setting(switch):
    # thread A opens, thread B opens, A closes (B still inside: still off), B closes: the
    # setting found by A comes back, not the one B found
    import threading

    switch(True)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with without_huge_pages():
            a_in.set()
            b_in.wait()
        a_out.set()

    def second():
        a_in.wait()
        with without_huge_pages():
            b_in.set()
            a_out.wait()
            seen["after A closed"] = _state(switch)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert seen == {"after A closed": False}
    assert _state(switch) is True


def test_empty_small_pages_is_a_writable_array():
    for shape, dtype in [((1000, 300), np.float64), ((7,), np.float32), ((0, 3), np.float64)]:
        a = empty_small_pages(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.writeable
        a[...] = 2.0
        assert np.all(a == 2.0)
