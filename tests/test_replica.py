"""Replica reads with read-your-writes, against a real streaming replica.

A private primary and a replica made with ``pg_basebackup -R`` (Debian's PostgreSQL 15, run as
the postgres user) serve one ``taskapi serve`` with DATABASE_REPLICA_URLS. A GET reads from the
replica only once it has replayed the caller's last write, and from the primary when the replica
is behind or down.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.scaleout import (
    Cluster,
    User,
    deployment_env,
    primary_and_replica,
    register,
    servers,
    wait_until_replayed,
)
from tests.serverproc import ServerProcess

ROUNDS = 1000


@dataclass
class Deployment:
    primary: Cluster
    replica: Cluster
    env: dict[str, str]
    primary_url: str
    replica_url: str


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    with primary_and_replica() as pair:
        yield pair


@pytest.fixture(scope="module")
async def deployment(clusters: tuple[Cluster, Cluster]) -> AsyncIterator[Deployment]:
    primary, replica = clusters
    admin = await asyncpg.connect(primary.url())
    try:
        await admin.execute("CREATE DATABASE taskapi")
    finally:
        await admin.close()
    await wait_until_replayed(primary.url(), replica.url())
    env = deployment_env(primary.url("taskapi"), DATABASE_REPLICA_URLS=replica.url("taskapi"))
    yield Deployment(primary, replica, env, primary.url("taskapi"), replica.url("taskapi"))


async def replica_transactions(deployment: Deployment) -> int:
    """Transactions the replica has run in taskapi's database (flushed when sessions end)."""
    connection = await asyncpg.connect(deployment.replica.url())
    try:
        sql = "SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database WHERE datname = 'taskapi'"
        return int(await connection.fetchval(sql))
    finally:
        await connection.close()


async def test_create_then_read_at_once_never_misses(deployment: Deployment) -> None:
    before = await replica_transactions(deployment)
    misses = []
    async with servers(deployment.env) as (server,), httpx.AsyncClient(base_url=server.base_url) as http:
        user = await register(http, server.base_url, "reader@example.com")
        for i in range(ROUNDS):
            created = await http.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=user.headers)
            assert created.status_code == 201, created.text
            read = await http.get(f"/api/v1/tasks/{created.json()['id']}", headers=user.headers)
            listed = await http.get("/api/v1/tasks?limit=1", headers=user.headers)
            if read.status_code != 200 or listed.json()["items"][0]["id"] != created.json()["id"]:
                misses.append((i, read.status_code, listed.text[:200]))
    assert misses == []
    # The server is stopped, so its replica sessions have ended and flushed their statistics:
    # the replica answered a good share of those 2 000 reads (the rest went to the primary).
    served = await replica_transactions(deployment) - before
    print(f"replica transactions during {2 * ROUNDS} reads: {served}")
    assert served > ROUNDS // 4


@pytest.fixture(scope="module")
async def server(deployment: Deployment) -> AsyncIterator[ServerProcess]:
    async with servers(deployment.env) as (started,):
        yield started


async def _get_title(http: httpx.AsyncClient, user: User, task_id: int) -> str:
    response = await http.get(f"/api/v1/tasks/{task_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return str(response.json()["title"])


async def test_reads_follow_the_callers_writes(deployment: Deployment, server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        user = await register(http, server.base_url, "writer@example.com")
        created = await http.post("/api/v1/tasks", json={"title": "v1"}, headers=user.headers)
        assert created.status_code == 201
        task_id = created.json()["id"]
        await wait_until_replayed(deployment.primary_url, deployment.replica_url)
        replica = await asyncpg.connect(deployment.replica_url)
        primary = await asyncpg.connect(deployment.primary_url)
        try:
            await replica.execute("SELECT pg_wal_replay_pause()")
            # A change the API did not make: no caller waits for it, so the replica may serve the
            # row without it, which shows where the read came from.
            await primary.execute("UPDATE task SET title = 'behind the API' WHERE id = $1", task_id)
            assert await _get_title(http, user, task_id) == "v1"
            # The caller's own write: the paused replica has not replayed it, so the primary answers.
            patched = await http.patch(f"/api/v1/tasks/{task_id}", json={"title": "v2"}, headers=user.headers)
            assert patched.status_code == 200
            assert await _get_title(http, user, task_id) == "v2"
            listed = await http.get("/api/v1/tasks", headers=user.headers)
            assert [item["title"] for item in listed.json()["items"]] == ["v2"]
        finally:
            await replica.execute("SELECT pg_wal_replay_resume()")
            await replica.close()
            await primary.close()
        await wait_until_replayed(deployment.primary_url, deployment.replica_url)
        assert await _get_title(http, user, task_id) == "v2"


async def test_reads_fall_back_to_the_primary_when_the_replica_is_down(
    deployment: Deployment, server: ServerProcess
) -> None:
    # Last in this module: it stops the replica.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        user = await register(http, server.base_url, "fallback@example.com")
        created = await http.post("/api/v1/tasks", json={"title": "before"}, headers=user.headers)
        task_id = created.json()["id"]
        await wait_until_replayed(deployment.primary_url, deployment.replica_url)
        assert await _get_title(http, user, task_id) == "before"
        deployment.replica.stop()
        for title in ("after", "again"):
            patched = await http.patch(f"/api/v1/tasks/{task_id}", json={"title": title}, headers=user.headers)
            assert patched.status_code == 200
            for _ in range(3):
                started = time.monotonic()
                assert await _get_title(http, user, task_id) == title
                listed = await http.get("/api/v1/tasks", headers=user.headers)
                assert listed.status_code == 200 and listed.json()["total"] == 1
                assert time.monotonic() - started < 3
        assert "replica read failed" in server.output()


@pytest.mark.parametrize(
    ("sql", "replica"),
    [
        ("SELECT * FROM task WHERE id = $1", True),
        ("  (SELECT 1) UNION (SELECT 2)", True),
        ("WITH t AS (SELECT id FROM task) SELECT count(*) FROM t", True),
        ('SELECT "task"."updated_at" FROM task', True),  # a column named like a keyword is fine
        ("WITH moved AS (UPDATE task SET position = 1 RETURNING id) SELECT * FROM moved", False),
        ("SELECT * FROM task WHERE id = $1 FOR UPDATE", False),
        ("SELECT * FROM task FOR NO KEY UPDATE", False),
        ("SELECT pg_try_advisory_xact_lock(1)", False),
        ("SELECT nextval('task_id_seq')", False),
        ("SELECT pg_current_xact_id()", False),
        ("INSERT INTO task (title) VALUES ($1)", False),
        ("DELETE FROM task WHERE id = $1", False),
        ("SHOW statement_timeout", False),
    ],
)
def test_only_plain_reads_may_go_to_a_replica(sql: str, replica: bool) -> None:
    from app.db import is_read_only

    assert is_read_only(sql) is replica
