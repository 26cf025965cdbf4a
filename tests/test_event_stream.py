"""SPEC "Changes, live updates and webhooks": GET /api/v1/events/stream as real processes see it.

Server-Sent Events from ``taskapi serve``: live events, heartbeats, resuming with
Last-Event-ID, an event committed through one instance reaching a stream held by another within
a second, and the stream going on after the database restarts under the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.dbserver import with_database
from tests.serverproc import (
    ServerProcess,
    run_migrate,
    server_env,
    start_embedded,
    start_server,
    stop_embedded,
)

STREAM = "/api/v1/events/stream"
FAST = {"TASKAPI_SSE_HEARTBEAT_SECONDS": "0.5"}


@dataclass
class Message:
    id: int | None = None
    event: str | None = None
    data: Any = None
    comment: str | None = None
    received: float = field(default_factory=time.monotonic)


class Stream:
    """An open SSE response, read into messages (comments included) as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        current = Message()
        async for line in self.response.aiter_lines():
            if line == "":
                if current.event is not None or current.comment is not None:
                    current.received = time.monotonic()
                    await self.messages.put(current)
                current = Message()
            elif line.startswith(":"):
                await self.messages.put(Message(comment=line[1:].strip()))
            else:
                name, _, value = line.partition(": ")
                if name == "id":
                    current.id = int(value)
                elif name == "event":
                    current.event = value
                elif name == "data":
                    current.data = json.loads(value)

    async def next_event(self, within: float = 5.0) -> Message:
        deadline = time.monotonic() + within
        while True:
            message = await asyncio.wait_for(self.messages.get(), max(0.01, deadline - time.monotonic()))
            if message.event is not None:
                return message

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self.response.aclose()


@contextlib.asynccontextmanager
async def open_stream(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> AsyncIterator[Stream]:
    async with client.stream("GET", STREAM, headers=headers, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        try:
            yield stream
        finally:
            await stream.close()


async def account(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    credentials = {"email": email, "password": "correct-horse-battery"}
    assert (await client.post("/api/v1/auth/register", json=credentials)).status_code == 201
    token = (await client.post("/api/v1/auth/token", json=credentials)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def instances(admin_url: str, count: int, **env: str) -> AsyncIterator[list[ServerProcess]]:
    """``count`` ``taskapi serve`` processes on one fresh, migrated database."""
    database = f"events_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    servers: list[ServerProcess] = []
    try:
        server_vars = server_env(with_database(admin_url, database), **env)
        await asyncio.to_thread(run_migrate, server_vars)
        servers = [start_server(server_vars) for _ in range(count)]
        for server in servers:
            await asyncio.to_thread(server.wait_healthy)
        yield servers
    finally:
        for server in servers:
            server.stop()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


async def test_live_events_heartbeats_and_resuming_with_last_event_id(admin_url):
    async with (
        instances(admin_url, 1, **FAST) as [server],
        httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client,
    ):
        headers = await account(client, "ada@example.com")
        other = await account(client, "bob@example.com")
        async with open_stream(client, headers) as stream, open_stream(client, other) as theirs:
            # Only what happens from now on: nothing was written yet, so a heartbeat comes first.
            first = await asyncio.wait_for(stream.messages.get(), 2.0)
            assert first.comment is not None
            for title in ("one", "two", "three"):
                assert (await client.post("/api/v1/tasks", json={"title": title}, headers=headers)).status_code == 201
            got = [await stream.next_event(2.0) for _ in range(3)]
            assert [m.event for m in got] == ["task.created"] * 3
            assert [m.data["object"]["title"] for m in got] == ["one", "two", "three"]
            assert [m.id for m in got] == [m.data["id"] for m in got]
            assert [m.id for m in got] == sorted(m.id for m in got)
            # The same events as the feed.
            feed = (await client.get("/api/v1/events", headers=headers)).json()["items"]
            assert [m.data for m in got] == feed
            # Heartbeats keep an idle stream alive; bob saw none of ada's inbox.
            await asyncio.sleep(1.2)
            comments = []
            while not stream.messages.empty():
                comments.append(stream.messages.get_nowait())
            assert comments and all(m.comment is not None for m in comments)
            while not theirs.messages.empty():
                assert theirs.messages.get_nowait().event is None

        # Reconnecting with the first event's id replays the two after it, then goes on live.
        async with open_stream(client, {**headers, "Last-Event-ID": str(got[0].id)}) as resumed:
            replay = [await resumed.next_event(2.0) for _ in range(2)]
            assert [m.id for m in replay] == [m.id for m in got[1:]]
            assert (await client.post("/api/v1/tasks", json={"title": "four"}, headers=headers)).status_code == 201
            assert (await resumed.next_event(2.0)).data["object"]["title"] == "four"
        async with open_stream(client, headers, after=got[1].id) as resumed:
            assert (await resumed.next_event(2.0)).id == got[2].id

        bad = await client.get(STREAM, headers={**headers, "Last-Event-ID": "x"})
        assert bad.status_code == 400


async def test_an_event_reaches_a_stream_on_another_instance_within_a_second(admin_url):
    async with (
        instances(admin_url, 2, **FAST) as (a, b),
        httpx.AsyncClient(base_url=a.base_url, timeout=10.0) as on_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=10.0) as on_b,
    ):
        headers = await account(on_a, "ada@example.com")
        async with open_stream(on_b, headers) as stream:
            await asyncio.wait_for(stream.messages.get(), 5.0)  # the stream is up (its first heartbeat)
            delays = []
            for n in range(5):
                started = time.monotonic()
                created = await on_a.post("/api/v1/tasks", json={"title": f"t{n}"}, headers=headers)
                assert created.status_code == 201
                message = await stream.next_event(5.0)
                delays.append(message.received - started)
                assert message.data["object"]["id"] == created.json()["id"]
    print("cross-instance delays (s):", [round(d, 3) for d in delays])
    assert max(delays) < 1.0, delays


async def test_the_stream_goes_on_after_the_database_restarts():
    data_dir = Path(tempfile.mkdtemp(prefix="taskapi-events-")) / "pgdata"
    server: ServerProcess | None = None
    try:
        dsn = start_embedded(data_dir)
        env = server_env(dsn, **FAST)
        run_migrate(env)
        server = start_server(env)
        await asyncio.to_thread(server.wait_healthy)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
            headers = await account(client, "ada@example.com")
            async with open_stream(client, headers) as stream:
                assert (
                    await client.post("/api/v1/labels", json={"name": "before"}, headers=headers)
                ).status_code == 201
                assert (await stream.next_event(3.0)).data["object"]["name"] == "before"

                await asyncio.to_thread(stop_embedded, data_dir)
                await asyncio.sleep(1.0)
                assert await asyncio.to_thread(start_embedded, data_dir) == dsn

                deadline = time.monotonic() + 20.0
                while time.monotonic() < deadline:
                    written = await client.post("/api/v1/labels", json={"name": "after"}, headers=headers)
                    if written.status_code == 201:
                        break
                    await asyncio.sleep(0.2)
                assert written.status_code == 201, written.text
                # The hub reconnected by itself: the event written after the restart arrives.
                try:
                    arrived = await stream.next_event(5.0)
                except TimeoutError:
                    log = server.output()[-4000:]
                    raise AssertionError(f"no event after the restart; server log:\n{log}") from None
                assert arrived.data["object"]["name"] == "after"
    finally:
        if server is not None:
            server.stop()
        with contextlib.suppress(Exception):
            stop_embedded(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


async def test_an_open_stream_ends_when_the_server_stops_and_does_not_hold_it(admin_url):
    async with (
        instances(admin_url, 1, **FAST) as [server],
        httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client,
    ):
        headers = await account(client, "ada@example.com")
        async with client.stream("GET", STREAM, headers=headers) as response:
            assert response.status_code == 200
            chunks = response.aiter_bytes()
            assert await anext(chunks)  # the stream is open
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            async for _ in chunks:  # ends cleanly: the answer completes
                pass
        code = await asyncio.to_thread(server.process.wait, 30)
        stopped = time.monotonic() - started
    assert code == 0
    assert stopped < 5.0, stopped  # the graceful shutdown's timeout is 10 s
