"""``fetchflow validate`` checks a file with the cyclic garbage collector off (linear cost)."""

from __future__ import annotations

import gc

import pytest

from fetchflow.cli.validate import no_cyclic_gc


def test_the_collector_is_off_and_the_heap_frozen_inside_and_back_after() -> None:
    assert gc.isenabled()
    with no_cyclic_gc():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_an_error_inside_still_turns_it_back_on() -> None:
    with pytest.raises(RuntimeError), no_cyclic_gc():
        raise RuntimeError("boom")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_collector_already_off_stays_off() -> None:
    gc.disable()
    try:
        with no_cyclic_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
