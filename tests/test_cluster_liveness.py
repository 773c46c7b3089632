"""Node liveness, sans-I/O: who is gone, who is back, and nobody judged while blind."""

from __future__ import annotations

import pytest

from hub.core.liveness import NodeWatch


def test_a_silent_node_is_gone_once_and_back_when_it_stamps_again() -> None:
    """Past the timeout a node is reported gone (once); a fresh stamp reports it back."""
    watch = NodeWatch("a", 5.0)
    assert watch.observe({"a": 100.0, "b": 100.0}, 100.0).gone == []  # starts judging at 105
    verdict = watch.observe({"a": 106.0, "b": 100.5, "c": 106.0}, 106.0)
    assert (verdict.gone, verdict.back) == (["b"], [])
    assert watch.observe({"a": 107.0, "b": 100.5}, 107.0).gone == [], "reported once"
    verdict = watch.observe({"a": 108.0, "b": 108.0}, 108.0)
    assert (verdict.gone, verdict.back) == ([], ["b"])


def test_nobody_is_judged_until_this_node_stamped_a_whole_timeout() -> None:
    """After Redis was away every stamp is old, ours too: judging waits one timeout again."""
    watch = NodeWatch("a", 5.0)
    watch.observe({"b": 0.0}, 0.0)
    watch.lost()
    assert watch.observe({"a": 50.0, "b": 10.0}, 50.0).gone == []
    assert watch.observe({"a": 54.0, "b": 53.0}, 54.0).gone == []
    assert watch.observe({"a": 60.0, "b": 53.0}, 60.0).gone == ["b"]


def test_a_watch_needs_a_positive_timeout() -> None:
    """A zero timeout is a clear error, not every node gone at once."""
    with pytest.raises(ValueError, match="positive"):
        NodeWatch("a", 0.0)
