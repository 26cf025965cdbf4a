"""The event log's readers: the delta feed, a task's activity, and the retention cleanup.

Events are written by triggers in the changing transaction (the migration "event log"). An
event's id is its transaction id times ``EVENTS_PER_TRANSACTION`` plus its place in that
transaction, so ids order events as transaction ids do. The feed serves only ids below the
reading snapshot's ``xmin`` (every transaction below it has ended): an id it has passed can
never appear later, whatever order transactions commit in, so a client that keeps
``next_after`` misses nothing and sees nothing twice.

Who sees an event, decided when it is read: a project's events go to its members now (a
removed member stops seeing them at once, including ones not yet read), an inbox task's and a
label's to their owner, and a ``member.removed`` also to the member removed.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from app.errors import GoneError, NotFoundError
from app.services import access, sql
from app.services.common import utcnow
from app.services.query import Param, Statement, transaction
from app.tables import Task

logger = logging.getLogger("taskapi.events")

# Events deleted per statement by the cleanup (each batch its own short transaction).
PURGE_BATCH = 5000
# The cleanup's advisory lock: one instance purges at a time.
PURGE_LOCK = ("event-purge", 12)


class EventOut(msgspec.Struct, forbid_unknown_fields=True):
    """One event as the API shows it (SPEC "Changes, live updates and webhooks")."""

    id: int
    type: str
    occurred_at: dt.datetime
    actor_id: int | None
    project_id: int | None
    object: dict[str, Any]
    changes: dict[str, list[Any]] | None


_decode = msgspec.json.Decoder(EventOut).decode


@dataclass
class FeedPage:
    items: list[EventOut]
    next_after: int
    # Each item's JSON as the database wrote it (what a stream sends).
    raw: list[str]


class ResyncRequired(GoneError):
    """An ``after`` older than the retention: events after it may have been deleted."""

    def __init__(self, after: int, purged_through: int) -> None:
        super().__init__(
            f"Events after {after} are no longer kept (retention); fetch the objects again, then follow "
            f"the feed from the next_after of GET /api/v1/events (events up to {purged_through} are gone)"
        )


def _check_retained(after: int | None, purged: int | None) -> None:
    if after is not None and purged is not None and after < purged:
        raise ResyncRequired(after, purged)


async def list_events(user_id: int, *, after: int | None, limit: int) -> FeedPage:
    """The settled events after ``after`` (None: from the oldest kept) that ``user_id`` can see,
    oldest first, and the cursor to ask with next (past events the user cannot see, too)."""
    start = after if after is not None else 0
    rows = await sql.EVENT_FEED.fetch(after=start, limit=limit, user=user_id)
    _check_retained(after, rows[0]["purged"])
    raw = [row["event"] for row in rows if row["id"] is not None]
    items = [_decode(text) for text in raw]
    # A short page reached the settled bound, and everything below it is final: start there.
    next_after = items[-1].id if len(items) == limit else max(start, rows[0]["upto"] - 1)
    return FeedPage(items=items, next_after=next_after, raw=raw)


async def settled_position() -> int:
    """The newest position a client can start from: every event up to it is settled."""
    row = await sql.EVENTS_NOW.fetch_one()
    assert row is not None
    return int(row["position"])


async def check_resumable(after: int | None) -> None:
    """410 when a stream asked to resume from a point older than the retention."""
    if after is None:
        return
    row = await sql.EVENT_PURGED.fetch_one()
    _check_retained(after, row["purged_through"] if row else None)


_TASK_SEEN = Statement(Task.select(Task.id).where((Task.id == Param("task")) & access.tasks(access.READ)))


async def task_activity(user_id: int, task_id: int, *, limit: int, offset: int) -> tuple[list[EventOut], int]:
    """One task's events, newest first, and their total; 404 if the user cannot see the task."""
    if await _TASK_SEEN.fetch_one(task=task_id, user=user_id) is None:
        raise NotFoundError("Task", task_id)
    rows = await sql.TASK_ACTIVITY.fetch(task=task_id, limit=limit, offset=offset)
    total = rows[0]["total"] if rows else (await sql.TASK_ACTIVITY_COUNT.fetch(task=task_id))[0]["total"]
    return [_decode(row["event"]) for row in rows], int(total)


async def purge_events(retention_days: int, *, now: dt.datetime | None = None) -> int:
    """Delete the events older than the retention (one instance at a time); returns how many."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    deleted = 0
    async with transaction():
        locked = await sql.TRY_LOCK.fetch(key=PURGE_LOCK[0], space=PURGE_LOCK[1])
        if not locked[0]["ok"]:
            return 0
        upto = (await sql.EVENTS_PURGE_BOUND.fetch(cutoff=cutoff))[0]["upto"]
        if upto is None:
            return 0  # nothing has expired
        await sql.EVENTS_MARK_PURGED.fetch(upto=upto)
    while True:
        async with transaction():
            n = int((await sql.EVENTS_DELETE.fetch(upto=upto, batch=PURGE_BATCH))[0]["n"])
        deleted += n
        if n < PURGE_BATCH:
            break
    if deleted:
        logger.info("deleted %d events older than %d days", deleted, retention_days)
    return deleted
