"""Webhook deliveries end to end: a real local HTTP receiver (tests/webhook_receiver.py), the real
worker (app/webhooks_worker.py) against the test database, signatures checked with the
standardwebhooks verifier. Retries, 410, Retry-After, timeouts, redirects, the send-time address
check, two workers at once, a worker that dies holding a claim, visibility, and a
``taskapi serve`` killed with SIGKILL between commit and delivery."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from app.errors import ConflictError, NotFoundError
from app.services import sql, webhooks
from app.settings import Settings, get_settings
from app.webhooks_worker import WebhookWorker, backoff, next_delay, retry_after_seconds
from tests.api.problems import run_sql
from tests.dbserver import with_database
from tests.serverproc import PROJECT_ROOT, TASKAPI, run_migrate, server_env, start_server
from tests.webhook_receiver import Answer, Received, Receiver

HOOKS = "/api/v1/webhooks"


def worker_settings(**changes: Any) -> Settings:
    """The test settings with a fast worker: private addresses allowed, short backoff."""
    settings = get_settings()
    fast = {
        "allow_private": True,
        "poll_seconds": 0.05,
        "retry_base": 0.2,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "lease_seconds": 5.0,
    }
    return replace(settings, webhooks=replace(settings.webhooks, **{**fast, **changes}))


@pytest.fixture
async def workers() -> AsyncIterator[Callable[..., WebhookWorker]]:
    """``workers(**webhook_settings)`` -> a worker, stopped after the test."""
    made: list[WebhookWorker] = []

    def make(**changes: Any) -> WebhookWorker:
        worker = WebhookWorker(worker_settings(**changes))
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.stop(grace=0.1)


async def hook(
    user_id: int, url: str, events: list[str] | None = None, project_id: int | None = None
) -> tuple[int, str]:
    """A webhook made by the service (private addresses allowed); returns (id, secret)."""
    created, secret, _ = await webhooks.create_webhook(
        user_id, url=url, events=events or ["*"], project_id=project_id, allow_private=True
    )
    return created.id, secret


async def deliveries(webhook_id: int | None = None) -> list[dict[str, Any]]:
    where = "" if webhook_id is None else f"WHERE webhook = {int(webhook_id)}"
    return [dict(r) for r in await run_sql(f"SELECT * FROM webhook_delivery {where} ORDER BY id")]


async def until(predicate: Callable[[], Any], within: float = 10.0, step: float = 0.05) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(step)


def verify(secret: str, request: Received) -> Any:
    return Verifier(secret).verify(request.body, request.headers)


def script(*answers: Answer) -> Callable[[Received], Any]:
    """A responder answering ``answers`` in turn, then 200 for ever."""
    queue = list(answers)

    async def respond(request: Received) -> Answer:
        return queue.pop(0) if queue else Answer()

    return respond


# --------------------------------------------------------------------------------------------
# Signatures and the delivery log


async def test_a_ping_arrives_signed_per_standard_webhooks(alice, workers, client):
    async with Receiver() as receiver:
        webhook_id, secret = await hook(alice.id, receiver.url)
        queued, _ = await webhooks.ping(alice.id, webhook_id)
        await asyncio.wait_for(workers().run_until_idle(), 10)
        (request,) = receiver.requests
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == queued.message_id
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10
    assert request.headers["webhook-signature"].startswith("v1,")
    body = verify(secret, request)  # raises unless the signature is right
    assert body["type"] == "webhook.ping"
    assert body["object"]["webhook_id"] == webhook_id
    with pytest.raises(WebhookVerificationError):
        Verifier("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)
    tampered = dict(request.headers, **{"webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(request.body, tampered)
    (row,) = await deliveries(webhook_id)
    assert row["status"] == "delivered"
    assert row["attempts"] == 1
    assert row["last_status_code"] == 200
    assert row["last_error"] is None
    assert isinstance(row["last_response_ms"], int)
    assert row["delivered_at"] is not None
    shown = await client.get(f"{HOOKS}/{webhook_id}/deliveries/{row['id']}", headers=alice.headers)
    assert shown.json()["status"] == "delivered"
    assert shown.json()["last_status_code"] == 200


async def test_a_failing_receiver_is_retried_with_growing_backoff_until_it_recovers(alice, workers, client):
    failures = 3
    async with Receiver(script(*[Answer(500, body=b"boom")] * failures)) as receiver:
        webhook_id, secret = await hook(alice.id, receiver.url)
        await webhooks.ping(alice.id, webhook_id)
        worker = workers(retry_base=0.2)
        await worker.start()
        await receiver.wait_for(failures + 1, within=15)
        await until(lambda: _delivered(webhook_id))
    times = [r.at for r in receiver.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # After the n-th failure the wait is between half and all of 0.2 * 2^(n-1) seconds.
    for n, gap in enumerate(gaps, start=1):
        assert gap >= 0.5 * 0.2 * 2 ** (n - 1) - 0.02, gaps
        assert gap <= 0.2 * 2 ** (n - 1) + 0.5, gaps
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # one message, retried
    assert all(verify(secret, r) for r in receiver.requests)
    (row,) = await deliveries(webhook_id)
    assert row["attempts"] == failures + 1
    assert row["status"] == "delivered"
    # The delivery log shows every attempt and its outcome.
    shown = (await client.get(f"{HOOKS}/{webhook_id}/deliveries/{row['id']}", headers=alice.headers)).json()
    assert [a["attempt"] for a in shown["history"]] == [1, 2, 3, 4]
    assert [a["status_code"] for a in shown["history"]] == [500, 500, 500, 200]
    assert [a["error"] for a in shown["history"]] == ["HTTP 500: boom"] * 3 + [None]
    assert all(a["at"].endswith("Z") and isinstance(a["response_ms"], int) for a in shown["history"])
    assert [a["at"] for a in shown["history"]] == sorted(a["at"] for a in shown["history"])


async def _delivered(webhook_id: int) -> bool:
    return all(r["status"] == "delivered" for r in await deliveries(webhook_id))


async def test_retries_land_in_the_order_they_were_scheduled(alice, workers):
    """One at a time to a webhook: queued p1, p2, p3 while the receiver fails its first two
    requests. p1 and p2 fail and are rescheduled, p3 lands, then the retries land in the order
    of their scheduled times, each no earlier than scheduled."""
    async with Receiver(script(Answer(500), Answer(500))) as receiver:
        webhook_id, _ = await hook(alice.id, receiver.url)
        pings = [(await webhooks.ping(alice.id, webhook_id))[0] for _ in range(3)]
        worker = workers(per_webhook=1, concurrency=1, retry_base=0.3)
        await worker.start()
        await receiver.wait_for(5, within=15)
    order = [r.headers["webhook-id"] for r in receiver.requests]
    ids = [p.message_id for p in pings]
    assert order[:3] == ids
    assert sorted(order[3:]) == sorted(ids[:2])
    first_try = {r.headers["webhook-id"]: r.at for r in receiver.requests[:2]}
    for retry in receiver.requests[3:]:
        assert retry.at - first_try[retry.headers["webhook-id"]] >= 0.5 * 0.3 - 0.02
    rows = await deliveries(webhook_id)
    assert [r["attempts"] for r in rows] == [2, 2, 1]


async def test_410_disables_the_webhook_and_cancels_what_is_queued(alice, workers, client):
    async with Receiver(script(Answer(410, body=b"unsubscribed"))) as receiver:
        webhook_id, _ = await hook(alice.id, receiver.url)
        await webhooks.ping(alice.id, webhook_id)
        await webhooks.ping(alice.id, webhook_id)
        await asyncio.wait_for(workers(per_webhook=1, concurrency=1).run_until_idle(), 10)
        assert len(receiver.requests) == 1
    first, second = await deliveries(webhook_id)
    assert first["status"] == "failed"
    assert first["last_status_code"] == 410
    assert [a["status_code"] for a in json.loads(first["history"])] == [410]
    assert second["status"] == "cancelled"
    state = (await client.get(f"{HOOKS}/{webhook_id}", headers=alice.headers)).json()
    assert state["enabled"] is False
    assert state["disabled_reason"] == "the receiver answered 410 Gone"
    with pytest.raises(ConflictError):
        await webhooks.ping(alice.id, webhook_id)


async def test_retry_after_is_honoured_on_503_and_429(alice, workers):
    async with Receiver(script(Answer(503, {"retry-after": "2"}), Answer(429, {"retry-after": "1"}))) as receiver:
        webhook_id, _ = await hook(alice.id, receiver.url)
        await webhooks.ping(alice.id, webhook_id)
        await workers(retry_base=0.05).start()
        await receiver.wait_for(3, within=15)
    first, second, third = (r.at for r in receiver.requests)
    assert second - first >= 1.95  # not the 0.05 s backoff
    assert third - second >= 0.95
    (row,) = await deliveries(webhook_id)
    assert row["attempts"] == 3


def test_retry_after_parsing_and_the_backoff_schedule():
    now = 1_700_000_000.0
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    w = get_settings().webhooks  # production defaults
    first = [backoff(1, w) for _ in range(200)]
    assert max(first) <= 60  # the first retry within a minute
    assert min(first) >= w.retry_base / 2
    assert all(backoff(30, w) <= w.retry_max_delay for _ in range(50))
    # Retry-After is never cut short; a receiver asking for 0 s still gets the backoff's quarter.
    assert next_delay(1, 0, w, retry_after=120) == 120
    assert 15 / 8 <= next_delay(1, 0, w, retry_after=0) <= 15 / 4
    assert next_delay(10, 0, w, retry_after=0) >= w.retry_max_delay / 8
    # Retries go on for the whole window (at least 24 h), the last one at its end.
    age, failures = 0.0, 0
    while (delay := next_delay(failures + 1, age, w)) is not None:
        failures += 1
        age += delay
    assert age >= 24 * 3600
    assert failures < 60


async def test_a_receiver_that_does_not_answer_times_out(alice, workers):
    release = asyncio.Event()

    async def hang(request: Received) -> Answer:
        await release.wait()
        return Answer()

    async with Receiver(hang) as receiver:
        webhook_id, _ = await hook(alice.id, receiver.url)
        await webhooks.ping(alice.id, webhook_id)
        started = time.monotonic()
        await asyncio.wait_for(
            workers(read_timeout=0.5, connect_timeout=0.5, lease_seconds=2, retry_base=30).run_until_idle(), 10
        )
        elapsed = time.monotonic() - started
        release.set()
    assert elapsed < 1.5
    (row,) = await deliveries(webhook_id)
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert row["last_error"].startswith("timeout")
    assert row["last_status_code"] is None
    (attempt,) = json.loads(row["history"])
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("timeout")


async def test_redirects_are_not_followed(alice, workers):
    async with Receiver() as elsewhere:
        async with Receiver(script(Answer(302, {"location": elsewhere.url}))) as receiver:
            webhook_id, _ = await hook(alice.id, receiver.url)
            await webhooks.ping(alice.id, webhook_id)
            await asyncio.wait_for(workers(retry_base=30).run_until_idle(), 10)
            assert len(receiver.requests) == 1
        assert elsewhere.requests == []
    (row,) = await deliveries(webhook_id)
    assert row["last_status_code"] == 302
    assert row["status"] == "pending"


async def test_the_address_is_checked_again_when_sending(alice, workers):
    """A webhook saved while its host was public (here: saved with the setting on) is not sent
    once its host resolves to a loopback address (DNS rebinding)."""
    async with Receiver() as receiver:
        webhook_id, _ = await hook(alice.id, receiver.url.replace("127.0.0.1", "localhost"))
        await webhooks.ping(alice.id, webhook_id)
        await asyncio.wait_for(workers(allow_private=False, retry_base=30).run_until_idle(), 10)
        assert receiver.requests == []
    (row,) = await deliveries(webhook_id)
    assert row["status"] == "pending"
    assert row["last_error"].startswith("refused: localhost resolves to 127.0.0.1, a loopback address")


async def test_a_host_with_several_addresses_is_tried_on_the_next_when_one_refuses(workers):
    from app.services.webhooks import Target

    async with Receiver() as receiver:  # listens on 127.0.0.1 only: 127.0.0.2 refuses
        target = Target("http", "hooks.test", receiver.port, ("127.0.0.2", "127.0.0.1"))
        url = httpx.URL(f"http://hooks.test:{receiver.port}/hook")
        outcome = await workers()._post(target, url, b"{}", {"content-type": "application/json"})
        (request,) = receiver.requests
        refused = await workers()._post(replace(target, addresses=("127.0.0.2",)), url, b"{}", {})
    assert outcome.status == 200
    assert request.headers["host"] == f"hooks.test:{receiver.port}"  # the name, not the address
    assert refused.status is None
    assert refused.error.startswith("ConnectError")


async def test_gives_up_after_the_retry_window(alice, workers):
    async with Receiver(script(*[Answer(500)] * 50)) as receiver:
        webhook_id, _ = await hook(alice.id, receiver.url)
        await webhooks.ping(alice.id, webhook_id)
        await workers(retry_base=0.1, retry_window=0.6, retry_max_delay=0.2).start()
        await until(lambda: _status(webhook_id, "failed"))
        attempts = len(receiver.requests)
    assert attempts >= 3
    (row,) = await deliveries(webhook_id)
    assert row["last_error"] == "HTTP 500: ok"


async def _status(webhook_id: int, status: str) -> bool:
    return [r["status"] for r in await deliveries(webhook_id)] == [status]


# --------------------------------------------------------------------------------------------
# Several workers, and a worker that dies


async def test_two_workers_never_send_one_delivery_twice(alice, workers):
    async with Receiver() as receiver:
        hooks = [(await hook(alice.id, receiver.url))[0] for _ in range(3)]
        expected = set()
        for webhook_id in hooks:
            for _ in range(100):
                expected.add((await webhooks.ping(alice.id, webhook_id))[0].message_id)
        first, second = workers(concurrency=8, per_webhook=4), workers(concurrency=8, per_webhook=4)
        await asyncio.wait_for(asyncio.gather(first.run_until_idle(), second.run_until_idle()), 30)
        received = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(received) == len(expected) == 300
    assert set(received) == expected
    assert first.sent["delivered"] > 0
    assert second.sent["delivered"] > 0
    assert {r["status"] for r in await deliveries()} == {"delivered"}


async def test_a_claim_left_by_a_dead_worker_is_sent_once_its_lease_ends(alice, workers):
    async with Receiver() as receiver:
        webhook_id, secret = await hook(alice.id, receiver.url)
        await webhooks.ping(alice.id, webhook_id)
        # A worker claims it for 1 s and dies before sending (nothing records an outcome).
        connection = await asyncpg.connect(os.environ["DATABASE_URL"])
        try:
            values = {"busy": [], "busy_room": [], "scan": 10, "per_webhook": 5, "room": 5, "lease": 1.0}
            claimed = await connection.fetch(sql.CLAIM_DELIVERIES.sql, *sql.CLAIM_DELIVERIES.bind(values))
        finally:
            await connection.close()
        assert len(claimed) == 1
        survivor = workers()
        await asyncio.wait_for(survivor.run_until_idle(), 10)
        assert receiver.requests == []  # still leased: nobody else may send it yet
        await asyncio.sleep(1.1)
        await asyncio.wait_for(survivor.run_until_idle(), 10)
        (request,) = receiver.requests
    verify(secret, request)
    (row,) = await deliveries(webhook_id)
    assert row["status"] == "delivered"
    assert row["attempts"] == 2


async def test_stopping_a_worker_hands_back_what_it_had_not_sent(alice, workers):
    release = asyncio.Event()

    async def hang(request: Received) -> Answer:
        await release.wait()
        return Answer()

    async with Receiver(hang) as receiver:
        webhook_id, _ = await hook(alice.id, receiver.url)
        await webhooks.ping(alice.id, webhook_id)
        worker = workers(read_timeout=5, lease_seconds=30)
        await worker.start()
        await receiver.wait_for(1)
        await worker.stop(grace=0.1)
        release.set()
    (row,) = await deliveries(webhook_id)
    assert row["status"] == "pending"
    assert row["attempts"] == 0
    assert row["next_attempt_at"] <= (await run_sql("SELECT now() AS t"))[0]["t"]


# --------------------------------------------------------------------------------------------
# `taskapi serve` killed between commit and delivery; `taskapi worker`

SERVE_ENV = {
    "TASKAPI_WEBHOOK_ALLOW_PRIVATE": "true",
    "TASKAPI_WEBHOOK_POLL_SECONDS": "0.1",
    "TASKAPI_WEBHOOK_CONNECT_TIMEOUT": "1",
    "TASKAPI_WEBHOOK_READ_TIMEOUT": "1",
    "TASKAPI_WEBHOOK_LEASE_SECONDS": "3",
    "TASKAPI_WEBHOOK_RETRY_BASE": "0.2",
}


@pytest.mark.slow
async def test_a_delivery_survives_kill_9_of_the_api_between_commit_and_delivery(admin_url):
    """The receiver holds the first request open; the API is killed with SIGKILL; a new
    ``taskapi serve`` on the same database delivers the same message after the claim's lease."""
    hold = asyncio.Event()

    async def hold_then_ok(request: Received) -> Answer:
        if not hold.is_set():
            await asyncio.sleep(30)  # the first attempt never gets an answer
        return Answer()

    database = f"webhook_kill_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    env = server_env(with_database(admin_url, database), **SERVE_ENV)
    servers = []
    try:
        await asyncio.to_thread(run_migrate, env)
        async with Receiver(hold_then_ok) as receiver:
            first = start_server(env)
            servers.append(first)
            await asyncio.to_thread(first.wait_healthy)
            async with httpx.AsyncClient(base_url=first.base_url, timeout=10) as api:
                user = {"email": "kill@example.com", "password": "correct-horse-battery"}
                assert (await api.post("/api/v1/auth/register", json=user)).status_code == 201
                token = (await api.post("/api/v1/auth/token", json=user)).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                created = await api.post(HOOKS, json={"url": receiver.url, "events": ["*"]}, headers=headers)
                assert created.status_code == 201, created.text
                secret = created.json()["secret"]
                task = await api.post("/api/v1/tasks", json={"title": "survive"}, headers=headers)
                assert task.status_code == 201  # committed, with its event and its delivery
            await receiver.wait_for(1, within=10)
            first.process.send_signal(signal.SIGKILL)
            assert first.process.wait(timeout=10) == -signal.SIGKILL
            hold.set()
            db = await asyncpg.connect(env["DATABASE_URL"])
            try:
                status = await db.fetchval("SELECT status FROM webhook_delivery")
                assert status == "sending"  # claimed, never answered, owner gone
                second = start_server(env)
                servers.append(second)
                await asyncio.to_thread(second.wait_healthy)
                requests = await receiver.wait_for(2, within=15)
                await until(lambda: _one_status(db, "delivered"), within=10)
                attempts = await db.fetchval("SELECT attempts FROM webhook_delivery")
            finally:
                await db.close()
        assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
        delivered = verify(secret, requests[1])
        assert delivered["type"] == "task.created"
        assert delivered["object"]["title"] == "survive"
        assert attempts == 2
    finally:
        for server in servers:
            server.stop()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


async def _one_status(db: asyncpg.Connection, status: str) -> bool:
    return bool(await db.fetchval("SELECT status = $1 FROM webhook_delivery", status))


@pytest.mark.slow
async def test_taskapi_worker_delivers_alone_and_stops_on_sigterm(alice):
    async with Receiver() as receiver:
        webhook_id, secret = await hook(alice.id, receiver.url)
        await webhooks.ping(alice.id, webhook_id)
        env = {**os.environ, "TASKAPI_ENV": "test", "PYTHONUNBUFFERED": "1", **SERVE_ENV}
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, then waited for off the loop
            [*TASKAPI, "worker"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            (request,) = await receiver.wait_for(1, within=20)
        finally:
            process.send_signal(signal.SIGTERM)
            output = (await asyncio.to_thread(process.communicate, timeout=20))[0].decode()
    assert process.returncode == 0, output
    assert "webhook worker running" in output
    assert verify(secret, request)["object"]["webhook_id"] == webhook_id
    assert (await deliveries(webhook_id))[0]["status"] == "delivered"


# --------------------------------------------------------------------------------------------
# Events: queued in the change's transaction, to those who can read them

TASKS = "/api/v1/tasks"


async def _team(client: httpx.AsyncClient, owner: Any, member: Any) -> int:
    """A project of ``owner`` with ``member`` as an editor; returns its id."""
    project = (await client.post("/api/v1/projects", json={"name": "Team"}, headers=owner.headers)).json()
    invitation = await client.post(
        f"/api/v1/projects/{project['id']}/invitations",
        json={"email": member.email, "role": "editor"},
        headers=owner.headers,
    )
    accepted = await client.post(f"/api/v1/invitations/{invitation.json()['id']}/accept", headers=member.headers)
    assert accepted.status_code == 200, accepted.text
    return int(project["id"])


async def test_an_event_is_delivered_as_the_feed_shows_it(alice, workers, client):
    from app.services import events

    async with Receiver() as receiver:
        webhook_id, secret = await hook(alice.id, receiver.url, ["task.*"])
        label = (await client.post("/api/v1/labels", json={"name": "l"}, headers=alice.headers)).json()
        task = (await client.post(TASKS, json={"title": "Write"}, headers=alice.headers)).json()
        # One PATCH that changes the title and the labels: one event, whatever the statements.
        patched = await client.patch(
            f"{TASKS}/{task['id']}", json={"title": "Write more", "label_ids": [label["id"]]}, headers=alice.headers
        )
        assert patched.status_code == 200
        await asyncio.wait_for(workers(per_webhook=1, concurrency=1).run_until_idle(), 10)
        bodies = [verify(secret, r) for r in receiver.requests]
    assert [b["type"] for b in bodies] == ["task.created", "task.updated"]  # no label.created: not subscribed
    feed = (await events.list_events(alice.id, after=None, limit=100)).items
    shown = {e.id: json.loads(msgspec.json.encode(e)) for e in feed}
    for body in bodies:
        assert body == shown[body["id"]]
    assert bodies[0]["object"]["id"] == task["id"]
    assert bodies[1]["object"]["title"] == "Write more"
    assert set(bodies[1]["changes"]) >= {"title", "label_ids"}
    rows = await deliveries(webhook_id)
    assert [r["event_id"] for r in rows] == [b["id"] for b in bodies]
    assert [r["message_id"] for r in rows] == [f"msg_{b['id']}_{webhook_id}" for b in bodies]


async def test_a_rolled_back_change_queues_nothing(alice, bob, client):
    async with Receiver() as receiver:
        await hook(alice.id, receiver.url)
        bob_label = (await client.post("/api/v1/labels", json={"name": "theirs"}, headers=bob.headers)).json()
        refused = await client.post(TASKS, json={"title": "x", "label_ids": [bob_label["id"]]}, headers=alice.headers)
        assert refused.status_code == 422
        conflict = await client.post("/api/v1/labels", json={"name": "dup"}, headers=alice.headers)
        again = await client.post("/api/v1/labels", json={"name": "DUP"}, headers=alice.headers)
        assert (conflict.status_code, again.status_code) == (201, 409)
    assert [r["type"] for r in await deliveries()] == ["label.created"]


async def test_who_receives_a_projects_events_and_a_removed_member_stops(alice, bob, register, workers, client):
    carol = await register()
    project_id = await _team(client, alice, bob)
    other = (await client.post("/api/v1/projects", json={"name": "Other"}, headers=bob.headers)).json()
    async with Receiver() as receiver:
        bob_all, bob_secret = await hook(bob.id, receiver.url)
        bob_other, _ = await hook(bob.id, receiver.url, project_id=other["id"])
        carol_all, _ = await hook(carol.id, receiver.url)
        alice_scoped, _ = await hook(alice.id, receiver.url, ["task.created"], project_id=project_id)
        shared = await client.post(TASKS, json={"title": "shared", "project_id": project_id}, headers=alice.headers)
        inbox = await client.post(TASKS, json={"title": "mine"}, headers=alice.headers)
        assert shared.status_code == inbox.status_code == 201
        queued = {(r["webhook"], r["type"]) for r in await deliveries()}
        assert queued == {(bob_all, "task.created"), (alice_scoped, "task.created")}
        # Removing bob cancels what is still queued for him from the project, and tells him.
        removed = await client.delete(f"/api/v1/projects/{project_id}/members/{bob.id}", headers=alice.headers)
        assert removed.status_code == 204
        after = await client.post(TASKS, json={"title": "later", "project_id": project_id}, headers=alice.headers)
        assert after.status_code == 201
        await asyncio.wait_for(workers().run_until_idle(), 10)
        by_hook = {}
        for row in await deliveries():
            by_hook.setdefault(row["webhook"], []).append((row["type"], row["status"]))
        received = [verify(bob_secret, r) for r in receiver.requests if r.headers["webhook-id"].endswith(f"_{bob_all}")]
    assert by_hook[bob_all] == [("task.created", "cancelled"), ("member.removed", "delivered")]
    assert by_hook[alice_scoped] == [("task.created", "delivered"), ("task.created", "delivered")]
    assert bob_other not in by_hook
    assert carol_all not in by_hook
    assert [b["type"] for b in received] == ["member.removed"]
    assert received[0]["object"]["user"]["id"] == bob.id
    # Redelivering a project event after leaving it is refused like a missing delivery.
    cancelled = next(r for r in await deliveries(bob_all) if r["type"] == "task.created")
    with pytest.raises(NotFoundError):
        await webhooks.redeliver(bob.id, bob_all, cancelled["id"])


async def test_the_worker_setting_and_its_checks(monkeypatch):
    from app.settings import SettingsError, load_settings
    from app.webhooks_worker import start_webhook_worker

    monkeypatch.setenv("TASKAPI_WEBHOOK_WORKER", "false")
    monkeypatch.setenv("TASKAPI_WEBHOOK_ALLOW_PRIVATE", "true")
    settings = load_settings()
    assert settings.webhooks.allow_private is True
    assert await start_webhook_worker(settings) is None  # serve then leaves delivery to `taskapi worker`
    monkeypatch.setenv("TASKAPI_WEBHOOK_ALLOW_PRIVATE", "maybe")
    with pytest.raises(SettingsError, match="TASKAPI_WEBHOOK_ALLOW_PRIVATE"):
        load_settings()
    monkeypatch.delenv("TASKAPI_WEBHOOK_ALLOW_PRIVATE")
    monkeypatch.setenv("TASKAPI_WEBHOOK_LEASE_SECONDS", "10")  # not longer than 5 + 10
    with pytest.raises(SettingsError, match="LEASE"):
        load_settings().validate()


async def test_the_history_keeps_the_last_25_attempts(alice):
    webhook_id, _ = await hook(alice.id, "http://127.0.0.1:9/hook")
    old = json.dumps([{"attempt": n} for n in range(1, 26)])
    await run_sql(
        "INSERT INTO webhook_delivery (webhook, type, message_id, payload, status, attempts, history, last_attempt_at)"
        " VALUES ({}, 'webhook.ping', 'msg_h', jsonb_build_object(), 'sending', 26, {}::jsonb, now())",
        webhook_id,
        old,
    )
    (row,) = await deliveries(webhook_id)
    await sql.RECORD_FAILED.fetch(delay=1.0, code=502, error="HTTP 502", ms=7, id=row["id"], attempts=26)
    (row,) = await deliveries(webhook_id)
    history = json.loads(row["history"])
    assert [a["attempt"] for a in history] == list(range(2, 27))
    assert history[-1]["status_code"] == 502
    assert row["status"] == "pending"


async def test_members_of_the_project_a_task_left_get_its_departure(alice, bob, client):
    from app.services import events

    first = await _team(client, alice, bob)
    second = (await client.post("/api/v1/projects", json={"name": "Elsewhere"}, headers=alice.headers)).json()["id"]
    task = (await client.post(TASKS, json={"title": "secret plan", "project_id": first}, headers=alice.headers)).json()
    bob_all, _ = await hook(bob.id, "http://127.0.0.1:9/hook", ["task.updated"])
    bob_first, _ = await hook(bob.id, "http://127.0.0.1:9/hook", ["task.*"], project_id=first)
    alice_all, _ = await hook(alice.id, "http://127.0.0.1:9/hook", ["task.updated"])
    moved = await client.patch(f"{TASKS}/{task['id']}", json={"project_id": second}, headers=alice.headers)
    assert moved.status_code == 200, moved.text
    rows = {r["webhook"]: json.loads(r["payload"]) for r in await deliveries()}
    assert set(rows) == {bob_all, bob_first, alice_all}
    assert rows[alice_all]["object"]["title"] == "secret plan"  # alice reads both projects: the whole event
    departure = rows[bob_all]
    assert departure == rows[bob_first]
    assert departure["object"] == {"id": task["id"], "project_id": second}  # that it went, not what it is
    assert departure["changes"] == {"project_id": [first, second]}
    assert departure["project_id"] == first
    feed = (await events.list_events(bob.id, after=None, limit=100)).items
    shown = {e.id: json.loads(msgspec.json.encode(e)) for e in feed}
    assert departure == shown[departure["id"]]
    alice_feed = (await events.list_events(alice.id, after=None, limit=100)).items
    assert rows[alice_all] == {e.id: json.loads(msgspec.json.encode(e)) for e in alice_feed}[departure["id"]]


async def test_a_deleted_projects_members_get_project_deleted(alice, bob, register, client):
    carol = await register()
    project_id = await _team(client, alice, bob)
    bob_all, _ = await hook(bob.id, "http://127.0.0.1:9/hook", ["project.*"])
    bob_scoped, _ = await hook(bob.id, "http://127.0.0.1:9/hook", ["*"], project_id=project_id)
    carol_all, _ = await hook(carol.id, "http://127.0.0.1:9/hook")
    deleted = await client.delete(f"/api/v1/projects/{project_id}", headers=alice.headers)
    assert deleted.status_code == 204
    rows = await deliveries()
    assert [(r["webhook"], r["type"]) for r in rows] == [(bob_all, "project.deleted")]
    body = json.loads(rows[0]["payload"])
    assert body["object"] == {"id": project_id}
    assert body["project_id"] == project_id
    assert bob_scoped not in {r["webhook"] for r in rows}  # went with the project
    assert carol_all not in {r["webhook"] for r in rows}
