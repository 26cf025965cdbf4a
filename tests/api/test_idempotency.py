"""Idempotency-Key on every creating POST (SPEC "Safe writes").

Choices where SPEC is silent (pinned here so a change is deliberate):
- "Same body" means the same bytes on the same method and path: the key is bound to a
  fingerprint of all three, so the same key on another endpoint (or another task's comments) is a
  422 like a different body.
- Only a successful create stores an answer. A request that fails (422 foreign project, 409
  duplicate label, 400 bad body) stores nothing, so a retry with the same key runs again: the
  same bad body fails the same way, a corrected body creates the object. SPEC's 422 for "the same
  key with a different body" applies only once a first answer exists to be replayed.
- Keys are scoped per user: two users never see each other's answers, conflicts or in-flight 409s.
- A replay answers the first response exactly (status, body bytes, Location and ETag as first
  sent), even if the object has changed or been deleted since.
- After the retention (24 h) a key is forgotten: a retry then creates again, and
  ``purge_expired_keys`` deletes the old rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from app.services.idempotency import purge_expired_keys
from app.settings import get_settings
from tests.api.problems import assert_problem
from tests.conftest import count_rows

API = "/api/v1"
REPLAYED = "idempotent-replayed"
KINDS = ["project", "label", "task", "comment", "bulk"]


@dataclass
class Endpoint:
    """A creating POST: where it goes, a body for it, a second body, and the table it fills."""

    url: str
    body: dict[str, Any]
    other_body: dict[str, Any]
    table: str
    # Where the first created object lives, from the answer (for PATCH-after-create).
    field: str

    def object_path(self, answer: dict[str, Any]) -> str:
        if "items" in answer:
            return f"{API}/tasks/{answer['items'][0]['id']}"
        if "task_id" in answer:
            return f"{API}/comments/{answer['id']}"
        return f"{API}/{self.table}s/{answer['id']}"


async def _endpoint(client: httpx.AsyncClient, user: Any, kind: str) -> Endpoint:
    if kind == "project":
        return Endpoint(f"{API}/projects", {"name": "Home"}, {"name": "Work"}, "project", "name")
    if kind == "label":
        return Endpoint(f"{API}/labels", {"name": "urgent"}, {"name": "later"}, "label", "name")
    if kind == "task":
        label = await client.post(f"{API}/labels", json={"name": "l"}, headers=user.headers)
        assert label.status_code == 201
        body = {"title": "Buy milk", "label_ids": [label.json()["id"]]}
        return Endpoint(f"{API}/tasks", body, {"title": "Buy bread"}, "task", "title")
    if kind == "comment":
        task = await client.post(f"{API}/tasks", json={"title": "host"}, headers=user.headers)
        assert task.status_code == 201
        url = f"{API}/tasks/{task.json()['id']}/comments"
        return Endpoint(url, {"body": "first!"}, {"body": "second"}, "comment", "body")
    assert kind == "bulk"
    body = {"tasks": [{"title": "one"}, {"title": "two", "priority": 2}]}
    return Endpoint(f"{API}/tasks/bulk", body, {"tasks": [{"title": "three"}]}, "task", "title")


def _keyed(user: Any, key: str) -> dict[str, str]:
    return {**user.headers, "Idempotency-Key": key}


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """A problem answer, never flagged as a replay."""
    assert REPLAYED not in response.headers
    return assert_problem(response, status)


def _assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert replay.status_code == 201, replay.text
    assert replay.headers[REPLAYED] == "true"
    assert replay.content == first.content
    assert replay.headers.get("location") == first.headers.get("location")
    assert replay.headers.get("etag") == first.headers.get("etag")
    assert replay.headers["content-type"] == first.headers["content-type"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_retry_replays_the_first_response_and_creates_nothing(client, alice, kind):
    endpoint = await _endpoint(client, alice, kind)
    before = await count_rows(endpoint.table)
    first = await client.post(endpoint.url, json=endpoint.body, headers=_keyed(alice, "k-1"))
    assert first.status_code == 201, first.text
    if kind == "bulk":
        assert "location" not in first.headers
    else:
        assert first.headers["location"] == endpoint.object_path(first.json())
    created = await count_rows(endpoint.table)
    assert created > before
    labels = await count_rows("task_label")
    for _ in range(3):
        replay = await client.post(endpoint.url, json=endpoint.body, headers=_keyed(alice, "k-1"))
        _assert_replay_of(replay, first)
    assert await count_rows(endpoint.table) == created
    assert await count_rows("task_label") == labels
    assert await count_rows("idempotency_key") == 1


async def test_without_a_key_every_post_creates(client, alice, kind):
    endpoint = await _endpoint(client, alice, kind)
    if kind == "label":
        endpoint.other_body = {"name": "another"}
    first = await client.post(endpoint.url, json=endpoint.body, headers=alice.headers)
    second = await client.post(endpoint.url, json=endpoint.other_body, headers=alice.headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert REPLAYED not in first.headers
    assert REPLAYED not in second.headers
    assert first.content != second.content
    assert await count_rows("idempotency_key") == 0


async def test_the_replay_is_the_first_answer_even_after_the_object_changed(client, alice, kind):
    endpoint = await _endpoint(client, alice, kind)
    first = await client.post(endpoint.url, json=endpoint.body, headers=_keyed(alice, "k-1"))
    assert first.status_code == 201, first.text
    path = endpoint.object_path(first.json())
    patched = await client.patch(path, json={endpoint.field: "changed since"}, headers=alice.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    replay = await client.post(endpoint.url, json=endpoint.body, headers=_keyed(alice, "k-1"))
    _assert_replay_of(replay, first)
    assert "changed since" not in replay.text
    current = await client.get(path, headers=alice.headers)
    assert current.json()[endpoint.field] == "changed since"
    assert current.json()["version"] == 2


async def test_the_replay_survives_deleting_the_object(client, alice):
    first = await client.post(f"{API}/projects", json={"name": "gone"}, headers=_keyed(alice, "k"))
    assert first.status_code == 201
    assert (await client.delete(first.headers["location"], headers=alice.headers)).status_code == 204
    replay = await client.post(f"{API}/projects", json={"name": "gone"}, headers=_keyed(alice, "k"))
    _assert_replay_of(replay, first)
    assert await count_rows("project") == 0


async def test_the_same_key_with_a_different_body_is_422(client, alice, kind):
    endpoint = await _endpoint(client, alice, kind)
    first = await client.post(endpoint.url, json=endpoint.body, headers=_keyed(alice, "k-1"))
    assert first.status_code == 201, first.text
    created = await count_rows(endpoint.table)
    different = await client.post(endpoint.url, json=endpoint.other_body, headers=_keyed(alice, "k-1"))
    _assert_problem(different, 422)
    assert await count_rows(endpoint.table) == created
    # The first answer is still there for a faithful retry.
    _assert_replay_of(await client.post(endpoint.url, json=endpoint.body, headers=_keyed(alice, "k-1")), first)


async def test_the_same_json_with_other_formatting_is_a_different_body(client, alice):
    headers = {**_keyed(alice, "k"), "Content-Type": "application/json"}
    first = await client.post(f"{API}/projects", content=b'{"name": "Home"}', headers=headers)
    assert first.status_code == 201
    spaced = await client.post(f"{API}/projects", content=b'{ "name" : "Home" }', headers=headers)
    _assert_problem(spaced, 422)
    assert await count_rows("project") == 1


async def test_the_same_key_on_another_endpoint_is_422(client, alice):
    first = await client.post(f"{API}/projects", json={"name": "Home"}, headers=_keyed(alice, "k"))
    assert first.status_code == 201
    for url, body in (
        (f"{API}/labels", {"name": "Home"}),
        (f"{API}/tasks", {"title": "Home"}),
        (f"{API}/tasks/bulk", {"tasks": [{"title": "Home"}]}),
    ):
        _assert_problem(await client.post(url, json=body, headers=_keyed(alice, "k")), 422)
    assert await count_rows("label") == 0
    assert await count_rows("task") == 0


async def test_the_same_key_on_another_tasks_comments_is_422(client, alice):
    one = (await client.post(f"{API}/tasks", json={"title": "one"}, headers=alice.headers)).json()
    two = (await client.post(f"{API}/tasks", json={"title": "two"}, headers=alice.headers)).json()
    body = {"body": "same words"}
    first = await client.post(f"{API}/tasks/{one['id']}/comments", json=body, headers=_keyed(alice, "k"))
    assert first.status_code == 201
    _assert_problem(await client.post(f"{API}/tasks/{two['id']}/comments", json=body, headers=_keyed(alice, "k")), 422)
    assert await count_rows("comment") == 1


async def test_keys_are_per_user(client, alice, bob):
    body = {"name": "Home"}
    alices = await client.post(f"{API}/projects", json=body, headers=_keyed(alice, "shared"))
    bobs = await client.post(f"{API}/projects", json=body, headers=_keyed(bob, "shared"))
    assert (alices.status_code, bobs.status_code) == (201, 201)
    assert REPLAYED not in bobs.headers
    assert bobs.json()["id"] != alices.json()["id"]
    # Bob may use the key with another body or endpoint too: it is his own.
    bobs_label = await client.post(f"{API}/labels", json={"name": "x"}, headers=_keyed(bob, "alices-other"))
    alices_label = await client.post(f"{API}/labels", json={"name": "y"}, headers=_keyed(alice, "alices-other"))
    assert (bobs_label.status_code, alices_label.status_code) == (201, 201)
    assert REPLAYED not in alices_label.headers
    # Each user's retry replays their own answer.
    _assert_replay_of(await client.post(f"{API}/projects", json=body, headers=_keyed(alice, "shared")), alices)
    _assert_replay_of(await client.post(f"{API}/projects", json=body, headers=_keyed(bob, "shared")), bobs)
    assert [p["id"] for p in (await client.get(f"{API}/projects", headers=bob.headers)).json()["items"]] == [
        bobs.json()["id"]
    ]
    assert await count_rows("project") == 2
    assert await count_rows("idempotency_key") == 4


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_a_key_of_length_0_or_256_is_400(client, alice, key):
    response = await client.post(f"{API}/projects", json={"name": "Home"}, headers=_keyed(alice, key))
    body = _assert_problem(response, 400)
    assert [(e["field"], e["source"]) for e in body["errors"]] == [("Idempotency-Key", "header")]
    assert await count_rows("project") == 0
    assert await count_rows("idempotency_key") == 0


@pytest.mark.parametrize("key", ["k", "k" * 255, "order-42:retry/1", "' OR 1=1 --", "ünïcode".encode()])
async def test_keys_of_1_to_255_chars_work(client, alice, key):
    headers: dict[str, Any] = {**alice.headers, "Idempotency-Key": key}
    first = await client.post(f"{API}/projects", json={"name": "Home"}, headers=headers)
    assert first.status_code == 201, first.text
    _assert_replay_of(await client.post(f"{API}/projects", json={"name": "Home"}, headers=headers), first)
    assert await count_rows("project") == 1


async def test_a_failed_create_stores_nothing_and_a_corrected_retry_succeeds(client, alice, bob):
    bobs = (await client.post(f"{API}/projects", json={"name": "bob's"}, headers=bob.headers)).json()
    bad = {"title": "t", "project_id": bobs["id"]}
    for _ in range(2):  # the same bad request fails the same way: it was never answered with success
        _assert_problem(await client.post(f"{API}/tasks", json=bad, headers=_keyed(alice, "k")), 422)
    assert await count_rows("task") == 0
    assert await count_rows("idempotency_key") == 0
    fixed = await client.post(f"{API}/tasks", json={"title": "t"}, headers=_keyed(alice, "k"))
    assert fixed.status_code == 201, fixed.text
    assert REPLAYED not in fixed.headers
    _assert_replay_of(await client.post(f"{API}/tasks", json={"title": "t"}, headers=_keyed(alice, "k")), fixed)
    # Once answered, the key is bound to the corrected body.
    _assert_problem(await client.post(f"{API}/tasks", json=bad, headers=_keyed(alice, "k")), 422)
    assert await count_rows("task") == 1


async def test_a_failed_bulk_create_stores_nothing(client, alice):
    bad = {"tasks": [{"title": "ok"}, {"title": "t", "label_ids": [999]}]}
    body = _assert_problem(await client.post(f"{API}/tasks/bulk", json=bad, headers=_keyed(alice, "k")), 422)
    assert body["errors"][0]["index"] == 1
    assert await count_rows("task") == 0
    assert await count_rows("idempotency_key") == 0
    good = {"tasks": [{"title": "ok"}]}
    first = await client.post(f"{API}/tasks/bulk", json=good, headers=_keyed(alice, "k"))
    assert first.status_code == 201, first.text
    assert await count_rows("task") == 1


async def test_a_conflicting_label_stores_nothing(client, alice):
    assert (await client.post(f"{API}/labels", json={"name": "dup"}, headers=alice.headers)).status_code == 201
    _assert_problem(await client.post(f"{API}/labels", json={"name": "DUP"}, headers=_keyed(alice, "k")), 409)
    assert await count_rows("idempotency_key") == 0
    renamed = await client.post(f"{API}/labels", json={"name": "other"}, headers=_keyed(alice, "k"))
    assert renamed.status_code == 201
    assert await count_rows("label") == 2


async def test_an_invalid_body_stores_nothing(client, alice):
    _assert_problem(await client.post(f"{API}/projects", json={"name": ""}, headers=_keyed(alice, "k")), 400)
    assert await count_rows("idempotency_key") == 0
    assert (await client.post(f"{API}/projects", json={"name": "ok"}, headers=_keyed(alice, "k"))).status_code == 201


async def test_comment_on_a_missing_task_stores_nothing(client, alice, bob):
    bobs_task = (await client.post(f"{API}/tasks", json={"title": "b"}, headers=bob.headers)).json()
    url = f"{API}/tasks/{bobs_task['id']}/comments"
    _assert_problem(await client.post(url, json={"body": "hi"}, headers=_keyed(alice, "k")), 404)
    assert await count_rows("comment") == 0
    assert await count_rows("idempotency_key") == 0


# --------------------------------------------------------------------------------------------
# In flight: the first request holds a transaction-scoped advisory lock on (user, key).


@pytest.fixture
async def raw_db() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        yield connection
    finally:
        await connection.close()


LOCK = "SELECT pg_advisory_lock(hashtextextended($1, 7))"
UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 7))"


async def test_a_retry_while_the_first_is_in_flight_is_409_and_creates_nothing(client, alice, raw_db, kind):
    endpoint = await _endpoint(client, alice, kind)
    before = await count_rows(endpoint.table)
    await raw_db.execute(LOCK, f"{alice.id}:k-busy")
    try:
        busy = await client.post(endpoint.url, json=endpoint.body, headers=_keyed(alice, "k-busy"))
        _assert_problem(busy, 409)
        assert await count_rows(endpoint.table) == before
        assert await count_rows("idempotency_key") == 0
        # Another key, and the same key for another user, are not blocked.
        other = await client.post(f"{API}/projects", json={"name": "free"}, headers=_keyed(alice, "k-free"))
        assert other.status_code == 201
    finally:
        assert await raw_db.fetchval(UNLOCK, f"{alice.id}:k-busy") is True
    done = await client.post(endpoint.url, json=endpoint.body, headers=_keyed(alice, "k-busy"))
    assert done.status_code == 201, done.text
    assert REPLAYED not in done.headers
    assert await count_rows(endpoint.table) > before


async def test_the_in_flight_lock_is_per_user(client, alice, bob, raw_db):
    await raw_db.execute(LOCK, f"{alice.id}:k")
    try:
        response = await client.post(f"{API}/projects", json={"name": "bob's"}, headers=_keyed(bob, "k"))
        assert response.status_code == 201, response.text
    finally:
        await raw_db.execute(UNLOCK, f"{alice.id}:k")


async def test_concurrent_posts_with_one_key_create_exactly_once(client, alice):
    body = {"tasks": [{"title": f"t{n}"} for n in range(20)]}
    responses = await asyncio.gather(
        *(client.post(f"{API}/tasks/bulk", json=body, headers=_keyed(alice, "race")) for _ in range(8))
    )
    fresh = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    replays = [r for r in responses if r.status_code == 201 and REPLAYED in r.headers]
    busy = [r for r in responses if r.status_code == 409]
    assert len(fresh) == 1, [r.status_code for r in responses]
    assert len(fresh) + len(replays) + len(busy) == 8
    for replay in replays:
        assert replay.content == fresh[0].content
    assert await count_rows("task") == 20
    assert await count_rows("idempotency_key") == 1


# --------------------------------------------------------------------------------------------
# Retention


async def _age_keys(raw_db: asyncpg.Connection, hours: float) -> None:
    await raw_db.execute("UPDATE idempotency_key SET created_at = created_at - $1::interval", dt.timedelta(hours=hours))


async def test_a_key_inside_the_retention_still_replays(client, alice, raw_db):
    ttl = get_settings().idempotency_ttl_hours
    assert ttl >= 24
    first = await client.post(f"{API}/projects", json={"name": "Home"}, headers=_keyed(alice, "k"))
    assert first.status_code == 201
    await _age_keys(raw_db, ttl - 0.5)
    _assert_replay_of(await client.post(f"{API}/projects", json={"name": "Home"}, headers=_keyed(alice, "k")), first)
    assert await purge_expired_keys() == 0
    assert await count_rows("idempotency_key") == 1


async def test_an_expired_key_is_ignored(client, alice, raw_db):
    ttl = get_settings().idempotency_ttl_hours
    first = await client.post(f"{API}/projects", json={"name": "Home"}, headers=_keyed(alice, "k"))
    assert first.status_code == 201
    await _age_keys(raw_db, ttl + 1)
    again = await client.post(f"{API}/projects", json={"name": "Home"}, headers=_keyed(alice, "k"))
    assert again.status_code == 201, again.text
    assert REPLAYED not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert await count_rows("project") == 2
    # The expired row was replaced by the new answer, which now replays.
    assert await count_rows("idempotency_key") == 1
    _assert_replay_of(await client.post(f"{API}/projects", json={"name": "Home"}, headers=_keyed(alice, "k")), again)
    # An expired key may also be reused with another body.
    await _age_keys(raw_db, ttl + 1)
    other = await client.post(f"{API}/projects", json={"name": "Else"}, headers=_keyed(alice, "k"))
    assert other.status_code == 201, other.text
    assert REPLAYED not in other.headers


async def test_purge_deletes_only_expired_keys(client, alice, bob, raw_db):
    ttl = get_settings().idempotency_ttl_hours
    for user, key in ((alice, "old-1"), (bob, "old-2")):
        assert (await client.post(f"{API}/labels", json={"name": key}, headers=_keyed(user, key))).status_code == 201
    await _age_keys(raw_db, ttl + 1)
    fresh = await client.post(f"{API}/labels", json={"name": "fresh"}, headers=_keyed(alice, "fresh"))
    assert fresh.status_code == 201
    assert await purge_expired_keys() == 2
    keys = await raw_db.fetch("SELECT key FROM idempotency_key")
    assert [row["key"] for row in keys] == ["fresh"]
    assert await purge_expired_keys() == 0
    assert await count_rows("label") == 3  # purging forgets answers, never the objects
    _assert_replay_of(await client.post(f"{API}/labels", json={"name": "fresh"}, headers=_keyed(alice, "fresh")), fresh)


async def test_a_replayed_body_is_valid_json_of_the_created_object(client, alice):
    body = {"title": "T", "priority": 3, "due_at": "2030-01-02T03:04:05+02:00"}
    first = await client.post(f"{API}/tasks", json=body, headers=_keyed(alice, "k"))
    assert first.status_code == 201
    replay = await client.post(f"{API}/tasks", json=body, headers=_keyed(alice, "k"))
    data = json.loads(replay.content)
    assert data["due_at"] == "2030-01-02T01:04:05Z"
    assert data == (await client.get(first.headers["location"], headers=alice.headers)).json()


async def test_a_task_answer_stored_before_labels_were_kept_as_json_text_still_replays(client, alice, raw_db):
    # Snapshots taken before this change hold a task's labels as a list, not as JSON text.
    label = (await client.post(f"{API}/labels", json={"name": "red"}, headers=alice.headers)).json()
    body = {"title": "T", "label_ids": [label["id"]]}
    first = await client.post(f"{API}/tasks", json=body, headers=_keyed(alice, "k"))
    assert first.status_code == 201, first.text
    stored = await raw_db.fetchval("SELECT snapshot FROM idempotency_key WHERE key = 'k'")
    rows = json.loads(stored)
    assert isinstance(rows[0]["labels"], str)  # the present format: the text PostgreSQL built
    rows[0]["labels"] = json.loads(rows[0]["labels"])
    await raw_db.execute("UPDATE idempotency_key SET snapshot = $1::jsonb WHERE key = 'k'", json.dumps(rows))
    replay = await client.post(f"{API}/tasks", json=body, headers=_keyed(alice, "k"))
    assert replay.status_code == 201, replay.text
    assert replay.headers[REPLAYED] == "true"
    assert replay.json() == first.json()
    assert replay.json()["labels"] == [{"id": label["id"], "name": "red", "color": None}]
