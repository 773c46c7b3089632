"""The garbage collector's freeze policy (hub/web/collector.py): survivors of a full collection
are frozen, a thaw lets the next one free their cycles, and a hub holds it only while serving."""

from __future__ import annotations

import gc
import weakref

import pytest

from hub.settings import Settings, SettingsError
from hub.web.collector import COLLECTOR, FreezePolicy
from tests.conftest import running_hub


class _Node:
    """A reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_survivors_are_frozen_until_a_thaw_lets_their_cycles_go() -> None:
    assert COLLECTOR.interval is None, "a hub of an earlier test still holds the collector"
    clock = _Clock()
    policy = FreezePolicy(clock)
    gc.disable()  # only this test's collections, so the counts are exact
    policy.hold(600)
    try:
        node = _Node()
        gone = weakref.ref(node)
        gc.collect()  # node survives: frozen with everything else alive
        assert policy.freezes == 1 and gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert gone() is not None, "a frozen cycle was walked by a full collection"
        assert policy.freezes == 2
        clock.now += 600
        gc.collect()  # this one ends with a thaw ...
        assert policy.thaws == 1 and policy.freezes == 2 and gc.get_freeze_count() == 0
        gc.collect()  # ... so the next walks everything: the cycle goes, the rest is frozen again
        assert gone() is None
        assert policy.freezes == 3 and gc.get_freeze_count() > 0
    finally:
        policy.release(600)
        gc.enable()
    assert gc.get_freeze_count() == 0 and policy.interval is None
    gc.collect()
    assert policy.freezes == 3 and gc.get_freeze_count() == 0  # the callback is gone


async def test_a_hub_holds_the_policy_while_serving_and_gives_it_back() -> None:
    assert COLLECTOR.interval is None
    async with running_hub(gc_thaw_interval=600):
        assert COLLECTOR.interval == 600
        async with running_hub(gc_thaw_interval=30):
            assert COLLECTOR.interval == 30  # the shortest thaw of overlapping hubs
            gc.collect()
            assert gc.get_freeze_count() > 0
        assert COLLECTOR.interval == 600
    assert COLLECTOR.interval is None and gc.get_freeze_count() == 0
    async with running_hub():  # tests' hubs turn it off (gc_thaw_interval=0)
        assert COLLECTOR.interval is None


def test_the_thaw_interval_is_checked() -> None:
    assert Settings().gc_thaw_interval == 600
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(SettingsError, match="gc_thaw_interval"):
            Settings(gc_thaw_interval=bad)
