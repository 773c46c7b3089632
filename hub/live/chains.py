"""A causal chain as the API and the `/chain` page show it: steps, stages and the time between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from hub.core.chains import Step
from hub.core.records import EventView, utc

__all__ = ["ChainView", "StepView", "duration_text", "stage_of", "timeline_url"]

_TYPE_STAGES = {"signal_event": "signal", "decision_trace": "decision", "order_event": "order"}
_ORDER_STAGES = {
    "create": "order",
    "new": "order",
    "fill": "fill",
    "filled": "fill",
    "partial_fill": "fill",
    "reject": "reject",
    "rejected": "reject",
    "cancel": "cancel",
    "cancelled": "cancel",
}
_ENDS = {"fill": "filled", "reject": "rejected", "cancel": "cancelled"}
AROUND_SECONDS = 300  # the timeline shows this much either side of a step (its own default)


def stage_of(event_type: str, payload: dict[str, Any] | None) -> str:
    """What a step is in words: signal, decision, order, fill, reject, cancel, or its event type."""
    stage = _TYPE_STAGES.get(event_type, event_type)
    if stage == "order" and payload is not None:
        status = payload.get("status")
        if isinstance(status, str):
            return _ORDER_STAGES.get(status.lower(), "order")
    return stage


def duration_text(seconds: float) -> str:
    """A duration as people read it: 0.4 ms, 420 ms, 3.2 s, 12 min, 2.5 h."""
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def timeline_url(engine: str, ts: float) -> str:
    """The timeline around `ts` (engine names match [A-Za-z0-9_.-], and are encoded anyway)."""
    return "/timeline?" + urlencode({"engine": engine, "around": f"{ts:.3f}"})


@dataclass(frozen=True, slots=True)
class StepView:
    """One step: its event (None when history no longer holds it), stage and timings."""

    event_id: int
    engine: str
    type: str
    stage: str
    ts: float
    since_previous: float | None  # seconds after the step before (None: the first)
    since_start: float
    ref: int | None
    parent: int | None
    cycle: str | None
    event: EventView | None
    payload: dict[str, Any] | None

    @property
    def timeline(self) -> str:
        """The timeline around this step."""
        return timeline_url(self.engine, self.ts)

    @property
    def after_previous(self) -> str:
        """E.g. "+420 ms" ("" for the first step)."""
        return "" if self.since_previous is None else "+" + duration_text(self.since_previous)

    @property
    def from_start(self) -> str:
        """Time since the first step, in words."""
        return duration_text(self.since_start)

    def as_dict(self) -> dict[str, Any]:
        """As the API shows it (times in ms)."""
        return {
            "event_id": self.event_id,
            "engine": self.engine,
            "type": self.type,
            "stage": self.stage,
            "timestamp": utc(self.ts),
            "since_previous_ms": None
            if self.since_previous is None
            else round(self.since_previous * 1000, 3),
            "since_start_ms": round(self.since_start * 1000, 3),
            "ref": self.ref,
            "parent": self.parent,
            "cycle": self.cycle,
            "timeline": timeline_url(self.engine, self.ts),
            "event": self.event,
        }


class ChainView:
    """The steps of one chain in time order, where it ended, and how long it took end to end."""

    def __init__(self, event_id: int, steps: list[Step], truncated: bool) -> None:
        self.event_id = event_id
        self.truncated = truncated
        self.steps: list[StepView] = []
        start = steps[0].link.ts if steps else 0.0
        previous: float | None = None
        for step in steps:
            link, event = step.link, step.event
            payload = event.data() if event is not None else None
            self.steps.append(
                StepView(
                    link.event_id,
                    link.engine,
                    link.type,
                    stage_of(link.type, payload),
                    link.ts,
                    None if previous is None else link.ts - previous,
                    link.ts - start,
                    link.ref,
                    link.parent,
                    link.cycle,
                    None if event is None else event.view(),
                    payload,
                )
            )
            previous = link.ts
        ends = [s for s in self.steps if s.stage in _ENDS]
        self.end = ends[-1] if ends else (self.steps[-1] if self.steps else None)
        self.outcome = _ENDS[self.end.stage] if ends and self.end else "open"

    @property
    def first(self) -> StepView | None:
        """The chain's first step."""
        return self.steps[0] if self.steps else None

    @property
    def total(self) -> float:
        """Seconds from the first step to the end (the last fill, reject or cancel, else the last)."""
        first, end = self.first, self.end
        return 0.0 if first is None or end is None else end.ts - first.ts

    @property
    def summary(self) -> str:
        """E.g. "signal to fill: 420 ms"."""
        first, end = self.first, self.end
        if first is None or end is None:
            return ""
        return f"{first.stage} to {end.stage}: {duration_text(self.total)}"

    def as_dict(self) -> dict[str, Any]:
        """The API's answer (docs/api.md)."""
        first, end = self.first, self.end
        return {
            "event_id": self.event_id,
            "outcome": self.outcome,
            "summary": self.summary,
            "from": None if first is None else first.stage,
            "to": None if end is None else end.stage,
            "total_ms": round(self.total * 1000, 3),
            "truncated": self.truncated,
            "steps": [s.as_dict() for s in self.steps],
        }
