"""frozen_heap: what is alive on entry is left out of collections until the outermost block
ends; what is made inside is still collected."""

from __future__ import annotations

import gc
import weakref

from maskopt.trainer.memory import free_memory, frozen_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_frozen_on_entry_unfrozen_after_the_outermost_block() -> None:
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():  # nested: nothing more frozen, nothing unfrozen on its exit
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0


def test_cycles_made_inside_are_still_collected() -> None:
    with frozen_heap():
        ref = weakref.ref(Node())
        assert ref() is not None
        free_memory()
        assert ref() is None


def test_garbage_on_entry_is_collected_not_frozen() -> None:
    gc.disable()  # so that nothing collects the cycle before the block does
    try:
        ref = weakref.ref(Node())
        with frozen_heap():
            assert ref() is None
    finally:
        gc.enable()
