"""Two ``taskapi serve`` instances on one database behind PgBouncer (transaction mode).

What a load balancer in front of several instances relies on: both migrate at once safely (the
advisory lock runs on DATABASE_DIRECT_URL), a mixed workload spread over both has no failures, a
retried idempotent POST that lands on the other instance replays the first answer, If-Match
races between instances have exactly one winner, and an event committed through one instance
reaches a stream held by the other within a second.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx

from tests.dbserver import with_database
from tests.scaleout import client, database, deployment_env, failures, mixed_burst, pgbouncer, register
from tests.serverproc import ServerProcess, run_migrate, start_server


async def test_two_instances_behind_pgbouncer(admin_url: str) -> None:
    with pgbouncer(admin_url) as bouncer:
        async with database(admin_url, "taskapi_two") as name:
            env = deployment_env(
                bouncer.url(name),
                DATABASE_DIRECT_URL=with_database(admin_url, name),
                DATABASE_POOLER="pgbouncer",
                DB_ACQUIRE_TIMEOUT="60",
                DB_REQUEST_TIMEOUT="90",
            )
            # Two deploys migrating at once: one applies, the other waits on the lock and finds nothing to do.
            await asyncio.gather(asyncio.to_thread(run_migrate, env), asyncio.to_thread(run_migrate, env))
            instances = [start_server(env), start_server(env)]
            try:
                await asyncio.gather(*(asyncio.to_thread(server.wait_healthy) for server in instances))
                async with client(200) as http:
                    await _workload(http, instances)
            finally:
                for server in instances:
                    server.stop()


async def _workload(http: object, instances: list[ServerProcess]) -> None:
    assert isinstance(http, httpx.AsyncClient)
    a, b = (server.base_url for server in instances)
    users = [await register(http, base, f"u{i}@example.com") for i, base in enumerate((a, b, a))]

    results = await mixed_burst(http, [a, b], users, 400)
    assert failures(results) == []

    # Idempotent retries on the other instance: one creation, then replays of the same answer.
    user = users[1]
    body = {"title": "pay rent"}
    first = await http.post(f"{a}/api/v1/tasks", json=body, headers={**user.headers, "Idempotency-Key": "k-seq"})
    retry = await http.post(f"{b}/api/v1/tasks", json=body, headers={**user.headers, "Idempotency-Key": "k-seq"})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json() and retry.headers["location"] == first.headers["location"]
    other = await http.post(
        f"{b}/api/v1/tasks", json={"title": "other"}, headers={**user.headers, "Idempotency-Key": "k-seq"}
    )
    assert other.status_code == 422

    # The same key sent to both instances at once, 20 times: each key creates exactly one task.
    before = (await http.get(f"{a}/api/v1/tasks?limit=1", headers=user.headers)).json()["total"]
    outcomes: Counter[tuple[int, bool]] = Counter()
    for round_ in range(20):
        headers = {**user.headers, "Idempotency-Key": f"k-race-{round_}"}
        answers = await asyncio.gather(
            *(http.post(f"{base}/api/v1/tasks", json={"title": f"race {round_}"}, headers=headers) for base in (a, b))
        )
        outcomes.update((r.status_code, r.headers.get("idempotent-replayed") == "true") for r in answers)
        created = [r for r in answers if r.status_code == 201 and "idempotent-replayed" not in r.headers]
        assert len(created) == 1, [(r.status_code, r.text) for r in answers]
        assert all(r.status_code in {201, 409} for r in answers)
    after = (await http.get(f"{b}/api/v1/tasks?limit=1", headers=user.headers)).json()["total"]
    assert after - before == 20, outcomes

    # If-Match races: four writers with the same version, two on each instance: one wins.
    for round_ in range(15):
        task = (await http.post(f"{a}/api/v1/tasks", json={"title": f"r{round_}"}, headers=user.headers)).json()
        tag = f'"{task["version"]}"'
        answers = await asyncio.gather(
            *(
                http.patch(
                    f"{base}/api/v1/tasks/{task['id']}",
                    json={"title": f"writer {i}"},
                    headers={**user.headers, "If-Match": tag},
                )
                for i, base in enumerate((a, b, a, b))
            )
        )
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200, 412, 412, 412], [r.text for r in answers]
        winner = next(r for r in answers if r.status_code == 200).json()
        current = await http.get(f"{b}/api/v1/tasks/{task['id']}", headers=user.headers)
        assert current.json()["title"] == winner["title"] and current.json()["version"] == task["version"] + 1
        assert all(r.headers["etag"] == f'"{task["version"] + 1}"' for r in answers if r.status_code == 412)

    await _event_crosses_instances(http, a, b, user.headers)


async def _event_crosses_instances(http: httpx.AsyncClient, a: str, b: str, headers: dict[str, str]) -> None:
    """A stream on instance b sees a task created through instance a within a second (SPEC)."""
    async with http.stream("GET", f"{b}/api/v1/events/stream", headers=headers) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        created = await http.post(f"{a}/api/v1/tasks", json={"title": "seen elsewhere"}, headers=headers)
        assert created.status_code == 201
        started = time.monotonic()
        async with asyncio.timeout(5):
            async for line in lines:
                if line.startswith("data:"):
                    event = json.loads(line.removeprefix("data:"))
                    if event["type"] == "task.created" and event["object"]["id"] == created.json()["id"]:
                        break
        assert time.monotonic() - started < 1.0
