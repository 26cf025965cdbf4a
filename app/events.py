"""Live events: one hub per process feeds every Server-Sent Events stream it serves.

The hub holds ONE connection of its own to PostgreSQL itself (``DATABASE_DIRECT_URL``: LISTEN
needs a session, which a transaction pooler does not keep; STYLE.md 16). It LISTENs on
``taskapi_events``, and on each wake-up reads the newly settled events from the ``event`` table
(app/services/sql.py EVENTS_SINCE) once for all its subscribers, keeping the recent ones as
ready SSE frames. So a stream and ``GET /api/v1/events`` serve the same rows by the same
gap-free rule, and a NOTIFY only says "look": one lost while reconnecting costs nothing.

Wake-ups: a write request answered here (``EventPoke``, after its commit), a NOTIFY from
another instance (each hub sends one after its own process's writes, at most one per
``NOTIFY_SPACING``), and a poll every ``events_poll_seconds``, sooner while committed events
wait behind a transaction still running. Writers never NOTIFY themselves: a NOTIFY inside a
transaction takes a lock held through its commit, which serialises every writer's commits
(measured: 16 writers, 5 800 to 500 commits/s).

The connection reconnects by itself (backoff up to 2 s) when the database restarts; what
committed meanwhile is read on reconnecting.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.db import engine_config
from app.services import events as event_service
from app.services import sql
from app.services.events import ResyncRequired
from app.settings import Settings

logger = logging.getLogger("taskapi.events")

CHANNEL = "taskapi_events"
# Events read per statement, and kept for streams that are a little behind.
FETCH_LIMIT = 1000
BUFFER_SIZE = 8192
# While committed events wait behind a running transaction, look again this soon.
HELD_BACK_POLL = 0.05
# At most one NOTIFY per this long from one process, however many writes it answers.
NOTIFY_SPACING = 0.02
RECONNECT_MAX_DELAY = 2.0
# Types whose events change who may see a project's events.
MEMBERSHIP_TYPES = frozenset({"member.added", "member.removed", "project.created", "project.deleted"})
# Events per page when a stream catches up from the table, and how soon it tries again when
# the database did not answer.
CATCH_UP_PAGE = 100
CATCH_UP_RETRY = 0.5
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(slots=True)
class Buffered:
    id: int
    project_id: int | None
    owner_id: int | None
    frame: bytes
    # A task that left a project: that project, and what its members get (sql.DEPARTURE_JSON).
    moved_from: int | None = None
    departure: bytes | None = None
    # A deleted project's members at the time (nobody is a member afterwards).
    audience: tuple[int, ...] = ()


def frame(event_id: int, event_type: str, data: str) -> bytes:
    """One SSE message; ``data`` is single-line JSON."""
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode()


HEARTBEAT = b": keep-alive\n\n"


@dataclass(eq=False)
class Subscription:
    user_id: int
    hub: EventHub
    projects: set[int] = field(default_factory=set)

    def frame_for(self, item: Buffered) -> bytes | None:
        """What this subscriber gets of an event: all of it, that a task left, or nothing."""
        if (
            item.owner_id == self.user_id
            or (item.project_id is not None and item.project_id in self.projects)
            or self.user_id in item.audience
        ):
            return item.frame
        if item.moved_from is not None and item.moved_from in self.projects:
            return item.departure
        return None


class EventHub:
    """The process's LISTEN connection and the recent settled events, as SSE frames."""

    def __init__(self, settings: Settings, *, dsn_config: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self._config = dsn_config or engine_config(settings, direct=True)
        # Every settled event with buffer_start < id <= position is in the buffer (None: not
        # following the log, nobody here listens).
        self.position: int | None = None
        self.buffer_start: int | None = None
        self._ids: list[int] = []
        self._items: list[Buffered] = []
        self._subscribers: dict[int, set[Subscription]] = {}
        self._projects: dict[int, set[int]] = {}
        self._reloads = 0
        self._wake = asyncio.Event()
        self._round = asyncio.Event()
        self._notify_others = False
        self._task: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        self.connected = False
        self.connections = 0  # how many times the LISTEN connection was opened (tests)
        self.closing = False
        self._signal_handlers: dict[int, tuple[Any, Any]] = {}

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="taskapi-event-hub")
        self._purger = asyncio.create_task(self._purge_loop(), name="taskapi-event-purge")
        self._chain_stop_signals()

    async def stop(self) -> None:
        for sig, (ours, previous) in self._signal_handlers.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)
        for task in (self._task, self._purger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.close_streams()

    def _chain_stop_signals(self) -> None:
        """On SIGTERM / SIGINT, end the streams, then do what the server does (uvicorn installs
        its handlers before the lifespan starts, and waits for open answers before it ends it)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.close_streams)
                previous(signum, frame)

            signal.signal(sig, handler)
            self._signal_handlers[sig] = (handler, previous)

    def close_streams(self) -> None:
        """End every stream (the server is stopping): each answer completes at once, so open
        streams do not hold a graceful shutdown for its whole timeout; clients reconnect."""
        self.closing = True
        round_done, self._round = self._round, asyncio.Event()
        round_done.set()

    def poke(self) -> None:
        """A write was answered here: read the log now, and tell the other instances."""
        self._notify_others = True
        self._wake.set()

    # ------------------------------------------------------------------ subscribers

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: int) -> AsyncIterator[Subscription]:
        sub = Subscription(user_id, self)
        known = user_id in self._projects
        # One set per user, shared by their subscriptions and updated in place by reloads.
        sub.projects = self._projects.setdefault(user_id, set())
        self._subscribers.setdefault(user_id, set()).add(sub)
        try:
            if not known:
                reloads = self._reloads
                rows = await sql.MEMBERSHIPS.fetch(users=[user_id])
                if self._reloads == reloads:  # else a reload meanwhile read a newer state
                    sub.projects.update(p for row in rows for p in row["projects"])
            self._wake.set()
            yield sub
        finally:
            subs = self._subscribers.get(user_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[user_id]
                    self._projects.pop(user_id, None)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def since(self, after: int) -> list[Buffered]:
        """The buffered events after ``after`` (the caller checked ``after >= buffer_start``)."""
        return self._items[bisect.bisect_right(self._ids, after) :]

    def following(self, after: int) -> bool:
        """Whether the buffer holds every settled event after ``after`` up to ``position``."""
        return self.buffer_start is not None and after >= self.buffer_start

    # ------------------------------------------------------------------ the connection

    async def _run(self) -> None:
        delay = 0.1
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(**self._config)
                await connection.add_listener(CHANNEL, self._on_notify)
                self.connected = True
                self.connections += 1
                delay = 0.1
                # Whatever committed while there was no connection is read now.
                self.position = self.buffer_start = None
                await self._serve(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected:
                    logger.warning("event hub: LISTEN connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                self.connected = False
                if connection is not None:
                    connection.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def _on_notify(self, connection: Any, pid: int, _channel: str, _payload: str) -> None:
        if pid != connection.get_server_pid():  # not our own NOTIFY coming back
            self._wake.set()

    async def _serve(self, connection: asyncpg.Connection) -> None:
        held_back = False
        loop = asyncio.get_running_loop()
        while True:
            timeout = HELD_BACK_POLL if held_back else self.settings.events_poll_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if connection.is_closed():
                raise ConnectionError("the LISTEN connection was closed")
            started = loop.time()
            held_back = await self._fetch(connection)
            if self._notify_others:
                self._notify_others = False
                await connection.execute(f"NOTIFY {CHANNEL}")
                await asyncio.sleep(max(0.0, NOTIFY_SPACING - (loop.time() - started)))

    async def _fetch(self, connection: asyncpg.Connection) -> bool:
        """Read what settled since ``position``; returns whether events wait behind a running
        transaction (so the next look comes soon)."""
        if not self._subscribers:
            self.position = self.buffer_start = None
            self._ids.clear()
            self._items.clear()
            return False
        changed_members = False
        held_back = False
        before = self.position
        while True:
            after = self.position if self.position is not None else -1
            rows = await connection.fetch(
                sql.EVENTS_SINCE.sql, *sql.EVENTS_SINCE.bind({"after": after, "limit": FETCH_LIMIT})
            )
            upto, newest = rows[0]["upto"], rows[0]["newest"]
            if self.position is None:
                # Start following from the settled bound: older events come from the table.
                self.position = self.buffer_start = upto - 1
                self._ids.clear()
                self._items.clear()
                held_back = newest is not None and newest >= upto
                break
            fresh = [row for row in rows if row["id"] is not None]
            for row in fresh:
                self._ids.append(row["id"])
                departure = row["departure"]
                self._items.append(
                    Buffered(
                        row["id"],
                        row["project_id"],
                        row["owner_id"],
                        frame(row["id"], row["type"], row["event"]),
                        row["moved_from"],
                        None if departure is None else frame(row["id"], row["type"], departure),
                        tuple(row["audience"] or ()),
                    )
                )
                changed_members = changed_members or row["type"] in MEMBERSHIP_TYPES
            self.position = fresh[-1]["id"] if len(fresh) == FETCH_LIMIT else max(self.position, upto - 1)
            held_back = newest is not None and newest >= upto
            if len(fresh) < FETCH_LIMIT:
                break
        if changed_members:
            await self._reload_memberships(connection)
        if len(self._items) > BUFFER_SIZE:
            drop = len(self._items) - BUFFER_SIZE
            self.buffer_start = self._ids[drop - 1]
            del self._ids[:drop]
            del self._items[:drop]
        if self.position != before:
            round_done, self._round = self._round, asyncio.Event()
            round_done.set()
        return held_back

    async def _reload_memberships(self, connection: asyncpg.Connection) -> None:
        users = list(self._subscribers)
        rows = await connection.fetch(sql.MEMBERSHIPS.sql, *sql.MEMBERSHIPS.bind({"users": users}))
        found = {row["member"]: set(row["projects"]) for row in rows}
        self._reloads += 1
        for user in users:
            projects = self._projects.setdefault(user, set())
            projects.clear()  # in place: each subscription holds this set
            projects.update(found.get(user, ()))

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.events_purge_seconds)
            try:
                await event_service.purge_events(self.settings.events_retention_days)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("event cleanup failed (%s); trying again later", type(exc).__name__)

    # ------------------------------------------------------------------ a stream

    async def _catch_up(self, user_id: int, cursor: int) -> event_service.FeedPage | None:
        """The next page from the table, or None when the database did not answer (a restart):
        the stream stays open and tries again."""
        try:
            return await event_service.list_events(user_id, after=cursor, limit=CATCH_UP_PAGE)
        except ResyncRequired:
            raise
        except Exception as exc:
            logger.info("event stream: catching up failed (%s); trying again", type(exc).__name__)
            return None

    async def stream(self, user_id: int, after: int) -> AsyncIterator[bytes]:
        """One subscriber's SSE body: the events after ``after`` (the caller fixes "from now" as
        the settled position before answering), then live ones as they settle, with a heartbeat
        comment when nothing was sent for a while."""
        async with self.subscribe(user_id) as sub:
            yield b"retry: 2000\n\n"
            heartbeat = self.settings.sse_heartbeat_seconds
            loop = asyncio.get_running_loop()
            last_sent = loop.time()
            cursor = after
            while not self.closing:
                current = self._round
                sent = False
                if not self.following(cursor):
                    page = await self._catch_up(user_id, cursor)
                    if page is None:
                        await asyncio.sleep(CATCH_UP_RETRY)
                        if loop.time() - last_sent >= heartbeat:
                            yield HEARTBEAT
                            last_sent = loop.time()
                        continue
                    for item, raw in zip(page.items, page.raw, strict=True):
                        yield frame(item.id, item.type, raw)
                        sent = True
                    cursor = page.next_after
                    if len(page.items) == CATCH_UP_PAGE:
                        continue
                if self.following(cursor):
                    # One write for everything that came since: 1 000 streams wake at each event.
                    frames = [seen for item in self.since(cursor) if (seen := sub.frame_for(item)) is not None]
                    if frames:
                        yield b"".join(frames)
                        sent = True
                    if self.position is not None:
                        cursor = max(cursor, self.position)
                if sent:
                    last_sent = loop.time()
                    continue
                try:
                    # asyncio.timeout, not wait_for: no task per wait (3.11 makes one).
                    async with asyncio.timeout(max(0.0, last_sent + heartbeat - loop.time())):
                        await current.wait()
                except TimeoutError:
                    yield HEARTBEAT
                    last_sent = loop.time()


class EventPoke:
    """ASGI middleware: after a write request answered successfully (its transaction has
    committed by then), wake the hub so streams here and on other instances get it at once."""

    def __init__(self, app: Any, hub: EventHub) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def recording(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            if status < 400:
                self.hub.poke()
