"""Causal chains over HTTP: `GET /api/telemetry/chain?event_id=N` and the `/chain?event_id=N` page.

The hub's in-memory index (hub/core/chains.py) knows recent chained events, including those the
store has not committed yet; the store knows the rest, from before a restart too. A chain is
walked in both and merged, so any member finds the whole of it wherever its steps are kept.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from hub.core.chains import MAX_CHAIN, Step, walk
from hub.core.messages import INT64_MAX
from hub.live.chains import ChainView
from hub.web.api import error_response, json_response
from hub.web.pages import csp
from hub.web.params import BadRequest
from hub.web.runtime import Hub

__all__ = ["find_chain", "routes"]


def _event_id(request: Request) -> int:
    """The required `event_id` parameter: a positive integer (the `id` events carry)."""
    raw = request.query_params.get("event_id", "")
    if not raw:
        raise BadRequest("event_id is required, e.g. ?event_id=42 (an event's id in the API)")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) <= INT64_MAX:
        raise BadRequest(f"event_id must be a positive integer, got {raw[:32]!r}")
    return int(raw)


async def find_chain(hub: Hub, event_id: int, limit: int = MAX_CHAIN) -> tuple[list[Step], bool]:
    """The chain `event_id` belongs to, from memory and history merged (empty: not a member)."""
    index = hub.state.chains
    start = index.step(event_id)
    held, cut = walk(index, [start.link], limit) if start is not None else ([], False)
    stored, stored_cut = await hub.store.chain(event_id, held, limit)
    # Stored members may lead to recent ones only memory holds yet (not committed).
    more, more_cut = walk(index, [s.link for s in stored], limit) if stored else ([], False)
    merged: dict[int, Step] = {}
    for step in stored:
        merged[step.link.event_id] = step
    for link in (*held, *more):
        kept = index.step(link.event_id)
        if kept is not None and kept.event is not None:
            merged[link.event_id] = kept
        elif link.event_id not in merged:
            merged[link.event_id] = kept or Step(link, None)
    steps = sorted(merged.values(), key=lambda s: (s.link.ts, s.link.event_id))
    return steps[:limit], cut or stored_cut or more_cut or len(steps) > limit


def _not_member(event_id: int) -> str:
    return (
        f"no event with id {event_id} is part of a causal chain this hub knows: the id is "
        "unknown, or the event carried no chain link (record_signal/record_decision/"
        "record_order with parent= or cycle_id=, docs/client.md)"
    )


async def chain_api(request: Request) -> Response:
    """`GET /api/telemetry/chain?event_id=N`: the whole chain N belongs to, with timings."""
    hub: Hub = request.app.state.hub
    event_id = _event_id(request)
    steps, cut = await find_chain(hub, event_id)
    if not steps:
        return error_response(404, "not_found", _not_member(event_id))
    return json_response(ChainView(event_id, steps, cut).as_dict())


async def chain_page(request: Request) -> Response:
    """`/chain?event_id=N`: the chain's steps with timings, each linking to the timeline."""
    hub: Hub = request.app.state.hub
    env, now = hub.env, round(time.time(), 3)
    viewer = request.scope.get("user")
    try:
        event_id = _event_id(request)
    except BadRequest as exc:
        context = {"status": "Bad request", "message": str(exc)}
        html = env.get_template("error.html").render(context, now=now, viewer=viewer)
        return HTMLResponse(html, 400, headers=csp())
    steps, cut = await find_chain(hub, event_id)
    if not steps:
        context = {"status": "Chain not found", "message": _not_member(event_id)}
        html = env.get_template("error.html").render(context, now=now, viewer=viewer)
        return HTMLResponse(html, 404, headers=csp())
    chain = ChainView(event_id, steps, cut)
    html = env.get_template("chain.html").render(
        chain=chain, limit=MAX_CHAIN, now=now, oob=False, viewer=viewer
    )
    return HTMLResponse(html, headers=csp())


routes = [
    Route("/api/telemetry/chain", chain_api),
    Route("/chain", chain_page),
]
