"""SPEC "Safe writes": a database outage gives quick 503s, the process recovers by itself, and
every write that got a 2xx is durable.

A separate embedded PostgreSQL (not the suite's server) is started in a temporary directory and
a real ``taskapi serve`` process runs against it. Workers keep writing while the database is
stopped and started again underneath the same process.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.serverproc import run_migrate, server_env, start_embedded, start_server, stop_embedded

pytestmark = pytest.mark.slow

BOUND_503 = 5.0  # SPEC: a 503 "within a few seconds"; the brief fixes 5 s
RECOVERY_WAIT = 20.0
CREDENTIALS = {"email": "outage@example.com", "password": "pw-12345678"}


@dataclass
class Outcome:
    phase: str
    method: str
    path: str
    status: int | None  # None: the client gave up (a hang)
    seconds: float
    retry_after: str | None = None
    error: str = ""


@dataclass
class Recorder:
    client: httpx.AsyncClient
    phase: str = "up"
    outcomes: list[Outcome] = field(default_factory=list)
    created: dict[int, str] = field(default_factory=dict)  # id -> title of every 2xx create

    async def call(self, method: str, path: str, **kwargs: object) -> httpx.Response | None:
        phase = self.phase
        started = time.monotonic()
        try:
            response = await self.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            self.outcomes.append(Outcome(phase, method, path, None, time.monotonic() - started, error=repr(exc)))
            return None
        seconds = time.monotonic() - started
        self.outcomes.append(
            Outcome(phase, method, path, response.status_code, seconds, response.headers.get("retry-after"))
        )
        return response


async def _writer(recorder: Recorder, headers: dict[str, str], names: count, stop: asyncio.Event) -> None:
    while not stop.is_set():
        title = f"outage-{next(names)}"
        response = await recorder.call("POST", "/api/v1/tasks", json={"title": title}, headers=headers)
        if response is not None and response.is_success:
            body = response.json()
            assert body["title"] == title
            recorder.created[body["id"]] = title
        await asyncio.sleep(0.02)


async def _mixed_requests(recorder: Recorder, headers: dict[str, str], task_id: int, tag: str) -> None:
    """One of each kind of request that needs the database."""
    await recorder.call("GET", "/api/v1/tasks", headers=headers)
    await recorder.call("GET", "/api/v1/tasks", params={"cursor": "", "sort": "title"}, headers=headers)
    await recorder.call("GET", f"/api/v1/tasks/{task_id}", headers=headers)
    await recorder.call("PATCH", f"/api/v1/tasks/{task_id}", json={"priority": 2}, headers=headers)
    await recorder.call("GET", "/api/v1/users/me", headers=headers)
    await recorder.call("GET", "/api/v1/projects", headers=headers)
    await recorder.call("POST", "/api/v1/labels", json={"name": f"label-{tag}"}, headers=headers)
    await recorder.call(
        "POST",
        "/api/v1/tasks",
        json={"title": f"keyed-{tag}"},
        headers={**headers, "Idempotency-Key": f"key-{tag}"},
    )
    await recorder.call("POST", "/api/v1/tasks/bulk", json={"tasks": [{"title": f"bulk-{tag}"}]}, headers=headers)
    await recorder.call("POST", "/api/v1/auth/token", json=CREDENTIALS)
    await recorder.call("POST", "/api/v1/auth/register", json={**CREDENTIALS, "email": f"{tag}@example.com"})


async def test_outage_answers_503_quickly_and_recovers_without_restart():
    data_dir = Path(tempfile.mkdtemp(prefix="taskapi-outage-")) / "pgdata"
    server = None
    try:
        dsn = start_embedded(data_dir)
        # A small pool makes a leaked connection show up as a hang or a lasting 503.
        env = server_env(dsn, DB_POOL_MAX_SIZE="4")
        run_migrate(env)
        server = start_server(env)
        await asyncio.to_thread(server.wait_healthy)
        pid = server.process.pid

        async with httpx.AsyncClient(base_url=server.base_url, timeout=15.0) as client:
            recorder = Recorder(client)
            assert (await client.post("/api/v1/auth/register", json=CREDENTIALS)).status_code == 201
            token = (await client.post("/api/v1/auth/token", json=CREDENTIALS)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            first = await client.post("/api/v1/tasks", json={"title": "before"}, headers=headers)
            assert first.status_code == 201
            recorder.created[first.json()["id"]] = "before"

            stop = asyncio.Event()
            names = count()
            workers = [asyncio.create_task(_writer(recorder, headers, names, stop)) for _ in range(6)]
            await asyncio.sleep(1.0)

            # Stop the database under live traffic.
            recorder.phase = "stopping"
            await asyncio.to_thread(stop_embedded, data_dir)

            recorder.phase = "down"
            for round_ in range(2):
                await _mixed_requests(recorder, headers, first.json()["id"], f"down{round_}")
            health = await client.get("/health")
            ready = await client.get("/ready")
            await asyncio.sleep(2.0)  # the writers keep meeting the outage meanwhile

            # Bring the database back; the same process must serve again by itself.
            recorder.phase = "restarting"
            restarted_dsn = await asyncio.to_thread(start_embedded, data_dir)
            assert restarted_dsn == dsn

            recorder.phase = "recovering"
            deadline = time.monotonic() + RECOVERY_WAIT
            recovered = False
            while time.monotonic() < deadline:
                probe = await recorder.call("POST", "/api/v1/tasks", json={"title": "after"}, headers=headers)
                if probe is not None and probe.status_code == 201:
                    recorder.created[probe.json()["id"]] = "after"
                    recovered = True
                    break
                await asyncio.sleep(0.25)

            recorder.phase = "up-again"
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*workers)
            ready_after = await client.get("/ready")
            me_after = await client.get("/api/v1/users/me", headers=headers)
            listed_after = await client.get("/api/v1/tasks", params={"limit": 1}, headers=headers)

        log = server.output()
        assert server.process.poll() is None, f"the server process died:\n{log[-4000:]}"
        assert server.process.pid == pid

        assert health.status_code == 200
        assert ready.status_code == 503
        assert ready.headers.get("retry-after")
        assert recovered, f"no successful write within {RECOVERY_WAIT}s of the database coming back:\n{log[-4000:]}"
        assert ready_after.status_code == 200
        assert me_after.status_code == 200
        assert listed_after.status_code == 200

        outcomes = recorder.outcomes
        for outcome in outcomes:
            # Never a 500 or a hang; only success or a 503 (valid requests, so no 4xx either).
            assert outcome.status is not None, f"request hung: {outcome}"
            assert outcome.status < 300 or outcome.status == 503, f"{outcome}\n{log[-4000:]}"
        unavailable = [o for o in outcomes if o.status == 503]
        for outcome in unavailable:
            assert outcome.retry_after, f"503 without Retry-After: {outcome}"
            assert outcome.seconds < BOUND_503, f"503 took {outcome.seconds:.2f}s: {outcome}"
        down = [o for o in outcomes if o.phase == "down"]
        assert len(down) >= 22
        assert all(o.status == 503 for o in down), [o for o in down if o.status != 503]
        assert any(o.phase == "up" and o.status == 201 for o in outcomes)
        assert any(o.phase == "up-again" and o.status == 201 for o in outcomes)

        latencies = sorted(o.seconds for o in unavailable)
        print(
            f"\n503s: {len(latencies)}, max {latencies[-1]:.3f}s, "
            f"median {latencies[len(latencies) // 2]:.3f}s; 2xx writes: {len(recorder.created)}"
        )

        # Every write that got a 2xx is in the database.
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch("SELECT id, title FROM task")
        finally:
            await connection.close()
        stored = {row["id"]: row["title"] for row in rows}
        missing = {task_id: title for task_id, title in recorder.created.items() if stored.get(task_id) != title}
        assert not missing, f"acknowledged writes lost: {missing}"
    finally:
        if server is not None:
            server.stop()
        stop_embedded(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


# --- The pool under the same faults, in-process on the suite's own database -------------------


async def test_an_exhausted_pool_answers_503_instead_of_hanging(client, alice):
    """Piccolo acquires without a timeout; the engine bounds it (DB_ACQUIRE_TIMEOUT)."""
    from app.db import get_engine

    pool = get_engine().pool
    assert pool is not None
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        started = time.monotonic()
        async with asyncio.timeout(BOUND_503 * 2):  # fail, rather than hang, if acquire is unbounded
            response = await client.get("/api/v1/users/me", headers=alice.headers)
        seconds = time.monotonic() - started
    finally:
        for connection in held:
            await pool.release(connection)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert seconds < BOUND_503
    assert (await client.get("/api/v1/users/me", headers=alice.headers)).status_code == 200


@pytest.mark.parametrize("killed_before", ["statement", "commit"])
async def test_a_transaction_whose_connection_dies_gives_the_connection_back(client, alice, killed_before):
    """A server-side kill inside a transaction is an outage error, and the pool keeps its size."""
    import os

    from app.db import UNAVAILABLE_ERRORS, get_engine

    engine = get_engine()
    pool = engine.pool
    assert pool is not None
    admin = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        for _ in range(pool.get_max_size() + 2):
            with pytest.raises(UNAVAILABLE_ERRORS):
                async with engine.transaction() as transaction:
                    pid = await transaction.connection.fetchval("SELECT pg_backend_pid()")
                    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                    await asyncio.sleep(0.05)
                    if killed_before == "statement":
                        await transaction.connection.fetch("SELECT 1")
            assert engine.current_transaction.get() is None
    finally:
        await admin.close()
    # Every connection went back: the whole pool can be taken again, and the API answers.
    held = [await pool.acquire(timeout=2.0) for _ in range(pool.get_max_size())]
    for connection in held:
        await pool.release(connection)
    response = await client.get("/api/v1/users/me", headers=alice.headers)
    assert response.status_code == 200
