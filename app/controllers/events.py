"""The event log over HTTP: the delta feed, its Server-Sent Events stream, a task's activity."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from app.controllers.params import Limit, ObjectId, Offset, UserRequest
from app.errors import BadParameterError
from app.events import EventHub
from app.http_hygiene import HEAD_AS_GET
from app.openapi import problem_responses
from app.services import events
from app.services.events import EventOut

MAX_EVENT_ID = 2**63 - 1

After = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_EVENT_ID,
        description="The next_after of the previous page (or the last event id seen); absent: the oldest kept",
    ),
]
StreamAfter = Annotated[
    int | None,
    QueryParameter(
        name="after",
        ge=0,
        le=MAX_EVENT_ID,
        description="Resume after this event id (Last-Event-ID wins when both are sent); absent: new events only",
    ),
]
LastEventId = Annotated[
    str | None,
    HeaderParameter(name="Last-Event-ID", max_length=20, description="Resume after this event id (SSE reconnect)"),
]


class EventPage(msgspec.Struct):
    """A page of the feed; ask again with ``after=next_after``."""

    items: list[EventOut]
    next_after: int


class ActivityPage(msgspec.Struct):
    items: list[EventOut]
    total: int
    limit: int
    offset: int


def _last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) > MAX_EVENT_ID:
        raise BadParameterError("Last-Event-ID", "expected an event id", source="header")
    return int(value)


class EventController(Controller):
    path = "/api/v1"
    tags = ["events"]

    @get("/events", responses=problem_responses(410))
    async def list_events(self, request: UserRequest, after: After = None, limit: Limit = 20) -> EventPage:
        """The events of objects the caller can see, oldest first: keep ``next_after`` and ask
        again with it to get every later event exactly once. 410: ``after`` is older than the
        retention; fetch the objects again and follow from a fresh ``next_after``."""
        page = await events.list_events(request.user.id, after=after, limit=limit)
        return EventPage(items=page.items, next_after=page.next_after)

    @get(
        "/events/stream",
        responses={
            200: ResponseSpec(
                data_container=str,
                media_type="text/event-stream",
                description="Server-Sent Events: id (the event id), event (its type), data (the event JSON);"
                " a comment line as heartbeat",
            ),
            **problem_responses(410),
        },
    )
    async def stream_events(
        self, request: UserRequest, last_event_id: LastEventId = None, after: StreamAfter = None
    ) -> Stream:
        """The feed as Server-Sent Events, live; resume with ``Last-Event-ID`` (or ``after``)."""
        resume = _last_event_id(last_event_id)
        start = resume if resume is not None else after
        await events.check_resumable(start)
        if start is None:
            # "From now" is fixed before the answer starts: a write the client makes once it has
            # the answer is always in the stream.
            start = await events.settled_position()
        hub: EventHub = request.app.state.event_hub
        # HEAD: the headers a stream would start with, and no endless body.
        body = iter(()) if request.scope.get(HEAD_AS_GET) else hub.stream(request.user.id, start)  # type: ignore[misc]
        return Stream(
            body, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    @get("/tasks/{task_id:int}/activity")
    async def task_activity(
        self, request: UserRequest, task_id: ObjectId, limit: Limit = 20, offset: Offset = 0
    ) -> ActivityPage:
        """One task's events, newest first."""
        items, total = await events.task_activity(request.user.id, task_id, limit=limit, offset=offset)
        return ActivityPage(items=items, total=total, limit=limit, offset=offset)
