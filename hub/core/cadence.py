"""When the dashboard fan-out runs: on the next tick while the hub is idle, less often under load.

Ingest and health come first. The fan-out is the one piece of work the hub can postpone without
being wrong: a skipped tick leaves its dirty marks in place, so the next run sends their latest
state once (coalesced). The clock is passed in (any monotonic seconds).
"""

from __future__ import annotations

__all__ = ["MAX_REST", "Cadence"]

MAX_REST = 1.0  # seconds the fan-out rests at most after a run while the loop is late


class Cadence:
    """Paces fan-out runs and the slower table refresh from how long the last run took."""

    def __init__(self, tick: float, table_refresh: float, max_rest: float = MAX_REST) -> None:
        self.tick = tick
        self.max_rest = max_rest
        self.table_refresh = table_refresh
        self.busy = False  # whether the last run said the hub is under load
        self.skipped = 0  # ticks the fan-out let pass to keep the loop free (a counter)
        self._tables_due = 0.0

    def ran(self, started: float, spent: float, lag: float) -> float:
        """A run began at `started` and took `spent` s while the loop lagged `lag` s: the next run.

        The next tick, on a steady period (a run that overran it is followed at once: it yields
        to the loop as it goes, so engine reads interleave with it). Only while the loop itself is
        late (`lag` over half a tick, measured by the ticker) does the fan-out rest as long as
        the loop is behind, at most `max_rest`, so pages still get a frame every second or so.
        """
        self.busy = spent > self.tick / 2 or lag > self.tick / 2
        following = started + self.tick
        if lag > self.tick / 2:
            following = max(following, started + spent + min(lag, self.max_rest))
            self.skipped += max(0, round((following - started) / self.tick) - 1)
        return following

    def tables_now(self, now: float) -> bool:
        """Whether this run sends tables and log tails: always when idle, at their cadence if busy."""
        if self.busy and now < self._tables_due:
            return False
        self._tables_due = now + self.table_refresh
        return True
