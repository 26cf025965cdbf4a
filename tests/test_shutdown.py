"""Graceful shutdown: SIGTERM in the middle of a burst of writes.

A real ``taskapi serve`` process on its own fresh database gets SIGTERM while creates are in
flight. It must finish what it accepted (every 2xx is stored), close its pool (no 'taskapi'
connection left on the database), and exit 0 within TASKAPI_SHUTDOWN_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.dbserver import with_database
from tests.serverproc import run_migrate, server_env, start_server

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT = 8
BURST = 400
CONCURRENCY = 40
SIGNAL_AFTER = 40  # successful creates before SIGTERM


@dataclass
class Result:
    title: str
    status: int | None
    finished: float
    task_id: int | None = None
    error: str = ""


async def _taskapi_connections(admin_url: str, database: str) -> int:
    connection = await asyncpg.connect(admin_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'taskapi'",
                database,
            )
        )
    finally:
        await connection.close()


async def test_sigterm_mid_burst_drains_stores_every_2xx_closes_the_pool_and_exits_0(admin_url):
    database = f"taskapi_shutdown_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    database_url = with_database(admin_url, database)
    server = None
    try:
        env = server_env(database_url, TASKAPI_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT))
        await asyncio.to_thread(run_migrate, env)
        server = start_server(env)
        await asyncio.to_thread(server.wait_healthy)
        assert await _taskapi_connections(admin_url, database) >= 1  # the pool is open

        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0, limits=limits) as client:
            credentials = {"email": "shutdown@example.com", "password": "pw-12345678"}
            assert (await client.post("/api/v1/auth/register", json=credentials)).status_code == 201
            token = (await client.post("/api/v1/auth/token", json=credentials)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}

            successes = 0
            enough = asyncio.Event()

            async def create(n: int) -> Result:
                nonlocal successes
                title = f"burst-{n}"
                try:
                    response = await client.post("/api/v1/tasks", json={"title": title}, headers=headers)
                except httpx.HTTPError as exc:
                    return Result(title, None, time.monotonic(), error=repr(exc))
                result = Result(title, response.status_code, time.monotonic())
                if response.is_success:
                    result.task_id = response.json()["id"]
                    successes += 1
                    if successes >= SIGNAL_AFTER:
                        enough.set()
                return result

            burst = [asyncio.create_task(create(n)) for n in range(BURST)]
            await asyncio.wait_for(enough.wait(), timeout=30)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*burst)

        try:
            # The bound is TASKAPI_SHUTDOWN_TIMEOUT for draining, plus interpreter exit.
            code = await asyncio.to_thread(server.process.wait, SHUTDOWN_TIMEOUT + 5)
        except Exception:
            pytest.fail(f"taskapi did not exit after SIGTERM:\n{server.output()[-3000:]}")
        exit_seconds = time.monotonic() - signalled
        log = server.output()
        assert code == 0, f"exit status {code}:\n{log[-3000:]}"
        assert "Application shutdown complete" in log  # the lifespan (which closes the pool) ran

        created = [r for r in results if r.status is not None and 200 <= r.status < 300]
        assert len(created) >= SIGNAL_AFTER
        # Requests the server had already accepted were finished, not dropped.
        assert any(r.finished > signalled for r in created)
        # Nothing but success or a refused/closed connection: no 5xx from a half-closed pool.
        assert all(r.status is None or r.status < 300 for r in results), [r for r in results if r.status]

        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch("SELECT id, title FROM task")
        finally:
            await connection.close()
        stored = {row["id"]: row["title"] for row in rows}
        lost = [r for r in created if stored.get(r.task_id) != r.title]
        assert not lost, f"acknowledged creates missing: {lost}"

        # The pool was closed: no connection from the application is left behind.
        remaining = await _taskapi_connections(admin_url, database)
        for _ in range(20):  # a backend needs a moment to exit after its client said goodbye
            if remaining == 0:
                break
            await asyncio.sleep(0.1)
            remaining = await _taskapi_connections(admin_url, database)
        assert remaining == 0
        after = sum(r.finished > signalled for r in created)
        print(f"\n{len(created)}/{BURST} creates succeeded, {after} after SIGTERM; exited {exit_seconds:.2f}s after it")
    finally:
        if server is not None:
            server.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
