"""``/api/v1/events``: the ``events`` stream as Server-Sent Events (viewer).

Each SSE message is one event of the stream: ``id:`` is its sequence number, ``event:`` its
type (``node.transition``, ``manifest.published``, …) and ``data:`` the event as JSON. The
stream first replays the events after the cursor — ``Last-Event-ID`` (what a reconnecting
``EventSource`` sends), else ``?after=``, else 0 (everything) — and then follows new ones,
reading the store every ``event_poll_interval`` seconds while nothing is new (one indexed
read, whatever the backend). ``?follow=false`` ends the response after the replay. Idle
streams get a keep-alive comment from FastAPI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from accord.lifecycle import events
from accord.server import auth
from accord.server.context import Ctx
from accord.server.problems import BadRequest

router = APIRouter(tags=["events"])
BATCH = 200
After = Annotated[int | None, Query(ge=0, le=2**62, description="Replay after this seq.")]
LastEventId = Annotated[str | None, Header(max_length=32)]


def cursor(after: After = None, last_event_id: LastEventId = None) -> int:
    """Where the stream starts: ``Last-Event-ID`` wins over ``after``."""
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isdigit() or len(text) > 18:
            raise BadRequest(f"Last-Event-ID must be a sequence number, not {last_event_id!r}")
        return int(text)
    return after or 0


@router.get("/events", response_class=EventSourceResponse)
async def stream_events(
    ctx: Ctx,
    caller: auth.Viewer,
    start: Annotated[int, Depends(cursor)],
    follow: Annotated[bool, Query(description="Keep streaming new events.")] = True,
) -> AsyncIterator[ServerSentEvent]:
    """Replay the events after the cursor, then (``follow``) stream new ones as they come."""
    seen = start
    while True:
        batch = await events.read(ctx.store, after=seen, limit=BATCH)
        for seq, event in batch:
            yield ServerSentEvent(id=str(seq), event=event.type, data=event.model_dump(mode="json"))
            seen = seq
        if len(batch) < BATCH:
            if not follow:
                return
            await asyncio.sleep(ctx.event_poll_interval)
