"""When the dashboard fan-out runs: on the next tick while the hub is idle, less often under load.

Ingest and health come first. The fan-out is the one piece of work the hub can postpone without
being wrong: a skipped tick leaves its dirty marks in place, so the next run sends their latest
state once (coalesced). The clock is passed in (any monotonic seconds).
"""

from __future__ import annotations

__all__ = ["Cadence"]


class Cadence:
    """Paces fan-out runs and the slower table refresh from how long the last run took."""

    def __init__(self, tick: float, table_refresh: float) -> None:
        self.tick = tick
        self.table_refresh = table_refresh
        self.busy = False  # whether the last run said the hub is under load
        self.skipped = 0  # ticks the fan-out let pass to keep the loop free (a counter)
        self._tables_due = 0.0

    def ran(self, started: float, spent: float, lag: float) -> float:
        """A run began at `started` and took `spent` s while the loop lagged `lag` s: the next run.

        Idle: the next tick, on a steady period. Under load (the run took over half a tick or
        the loop is late): the loop gets at least as long as the run took before the next one,
        so the fan-out never holds more than about half of it.
        """
        self.busy = spent > self.tick / 2 or lag > self.tick / 2
        if not self.busy:
            return started + self.tick
        rest = max(self.tick, spent, lag)
        following = started + spent + rest
        self.skipped += max(0, int((following - started) / self.tick) - 1)
        return following

    def tables_now(self, now: float) -> bool:
        """Whether this run sends tables and log tails: always when idle, at their cadence if busy."""
        if self.busy and now < self._tables_due:
            return False
        self._tables_due = now + self.table_refresh
        return True
