"""Webhooks over HTTP (SPEC "Changes, live updates and webhooks"): create with a secret shown
once, list/get/patch/delete, validation (422 naming the field), the SSRF guard, ping and
redeliver, isolation, and how secrets are stored. Sending is tested in
tests/test_webhook_delivery.py."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from app.services.webhooks import EVENT_TYPES, matches, signing_secret
from tests.api.problems import assert_problem, run_sql
from tests.conftest import count_rows

HOOKS = "/api/v1/webhooks"
PUBLIC_URL = "https://1.1.1.1/hooks/taskapi"  # a public address literal: nothing is resolved or sent


def _app(*, allow_private: bool) -> Any:
    from app.asgi import create_app
    from app.settings import get_settings

    settings = get_settings()
    return create_app(replace(settings, webhooks=replace(settings.webhooks, allow_private=allow_private)))


@pytest.fixture(scope="module")
def app() -> Any:
    """The app as deployed by default: private addresses refused."""
    return _app(allow_private=False)


@pytest.fixture(scope="module")
def lenient_app() -> Any:
    return _app(allow_private=True)


@pytest.fixture
async def lenient(lenient_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with TASKAPI_WEBHOOK_ALLOW_PRIVATE=true."""
    transport = httpx.ASGITransport(app=lenient_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def create(client: httpx.AsyncClient, user: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("url", PUBLIC_URL)
    body.setdefault("events", ["*"])
    response = await client.post(HOOKS, json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# --------------------------------------------------------------------------------------------
# Create, read, change, delete


async def test_create_answers_the_webhook_and_its_secret_once(client, alice):
    response = await client.post(
        HOOKS, json={"url": PUBLIC_URL, "events": ["task.*", "comment.created"]}, headers=alice.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"{HOOKS}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["url"] == PUBLIC_URL
    assert body["events"] == ["task.*", "comment.created"]
    assert body["project_id"] is None
    assert body["enabled"] is True
    assert body["disabled_reason"] is None
    assert body["version"] == 1
    assert body["created_at"].endswith("Z")
    # Standard Webhooks secret: whsec_ + base64 of 24..64 bytes.
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    # Never again: not in GET, not in the list, not in PATCH answers.
    one = await client.get(f"{HOOKS}/{body['id']}", headers=alice.headers)
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert {k: v for k, v in body.items() if k != "secret"} == one.json()
    listed = await client.get(HOOKS, headers=alice.headers)
    assert listed.json()["total"] == 1
    assert "secret" not in listed.json()["items"][0]
    patched = await client.patch(f"{HOOKS}/{body['id']}", json={"events": ["*"]}, headers=alice.headers)
    assert patched.status_code == 200
    assert "secret" not in patched.json()
    assert not any("secret" in key for key in patched.json())


async def test_the_secret_is_not_stored_but_derived_from_the_server_key(client, alice):
    from app.settings import get_settings

    first = await create(client, alice)
    second = await create(client, alice)
    assert first["secret"] != second["secret"]
    rows = await run_sql("SELECT row_to_json(w)::text AS raw, secret_salt FROM webhook w WHERE id = {}", first["id"])
    raw_secret = first["secret"].removeprefix("whsec_")
    # Nothing in the row holds the secret, in either encoding.
    assert raw_secret not in rows[0]["raw"]
    assert base64.b64decode(raw_secret).hex() not in rows[0]["raw"]
    # The server recomputes it from the salt and its own key; another key gives another secret.
    assert signing_secret(get_settings().secret_key, rows[0]["secret_salt"]) == first["secret"]
    assert signing_secret("another-server-secret-of-enough-length!", rows[0]["secret_salt"]) != first["secret"]


async def test_list_is_the_callers_own_paged_oldest_first(client, alice, bob):
    ids = [(await create(client, alice))["id"] for _ in range(3)]
    await create(client, bob)
    page = await client.get(f"{HOOKS}?limit=2&offset=1", headers=alice.headers)
    assert page.status_code == 200
    assert page.json()["total"] == 3
    assert [h["id"] for h in page.json()["items"]] == ids[1:3]
    assert page.json()["limit"] == 2
    assert page.json()["offset"] == 1
    bad = await client.get(f"{HOOKS}?limit=0", headers=alice.headers)
    assert_problem(bad, 400, "limit")


async def test_patch_and_delete(client, alice):
    hook = await create(client, alice)
    url = f"{HOOKS}/{hook['id']}"
    response = await client.patch(
        url, json={"events": ["task.created", "task.created", "label.*"]}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["events"] == ["task.created", "label.*"]  # duplicates dropped
    assert response.json()["version"] == 2
    assert response.headers["etag"] == '"2"'
    off = await client.patch(url, json={"enabled": False}, headers=alice.headers)
    assert off.json()["enabled"] is False
    assert off.json()["disabled_reason"] == "disabled by its owner"
    on = await client.patch(url, json={"enabled": True}, headers=alice.headers)
    assert on.json()["enabled"] is True
    assert on.json()["disabled_reason"] is None
    stale = await client.patch(url, json={"enabled": False}, headers={**alice.headers, "If-Match": '"1"'})
    assert_problem(stale, 412)
    assert stale.headers["etag"] == '"4"'
    read_only = await client.patch(url, json={"secret": "whsec_x"}, headers=alice.headers)
    assert_problem(read_only, 400, "secret")
    null_url = await client.patch(url, json={"url": None}, headers=alice.headers)
    assert_problem(null_url, 400, "url")
    gone = await client.delete(url, headers=alice.headers)
    assert gone.status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404
    assert await count_rows("webhook") == 0


async def test_another_users_webhook_is_missing_to_them(client, alice, bob):
    hook = await create(client, alice)
    await client.post(f"{HOOKS}/{hook['id']}/ping", headers=alice.headers)
    url = f"{HOOKS}/{hook['id']}"
    missing = f"{HOOKS}/999999"
    for method, path, body in [
        ("GET", url, None),
        ("PATCH", url, {"enabled": False}),
        ("DELETE", url, None),
        ("GET", f"{url}/deliveries", None),
        ("POST", f"{url}/ping", None),
        ("POST", f"{url}/deliveries/1/redeliver", None),
    ]:
        theirs = await client.request(method, path, json=body, headers=bob.headers)
        nobody = await client.request(method, path.replace(url, missing), json=body, headers=bob.headers)
        assert theirs.status_code == nobody.status_code == 404, (method, path, theirs.text)
    assert (await client.get(url, headers=alice.headers)).json()["enabled"] is True
    assert await count_rows("webhook_delivery") == 1


# --------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"url": PUBLIC_URL, "events": ["task.exploded"]}, 422, "events"),
        ({"url": PUBLIC_URL, "events": ["tasks.*"]}, 422, "events"),
        ({"url": PUBLIC_URL, "events": ["webhook.ping"]}, 422, "events"),
        ({"url": PUBLIC_URL, "events": []}, 400, "events"),
        ({"url": PUBLIC_URL, "events": "task.*"}, 400, "events"),
        ({"url": PUBLIC_URL}, 400, "events"),
        ({"events": ["*"]}, 400, "url"),
        ({"url": "ftp://1.1.1.1/x", "events": ["*"]}, 422, "url"),
        ({"url": "file:///etc/passwd", "events": ["*"]}, 422, "url"),
        ({"url": "not a url", "events": ["*"]}, 422, "url"),
        ({"url": "http://1.1.1.1:99999/", "events": ["*"]}, 422, "url"),
        ({"url": "https://" + "a" * 2000, "events": ["*"]}, 400, "url"),
        ({"url": PUBLIC_URL, "events": ["*"], "project_id": 0}, 400, "project_id"),
        ({"url": PUBLIC_URL, "events": ["*"], "secret": "mine"}, 400, "secret"),
    ],
)
async def test_bad_bodies_name_the_field_and_write_nothing(client, alice, body, status, field):
    response = await client.post(HOOKS, json=body, headers=alice.headers)
    assert_problem(response, status, field, case=body)
    assert await count_rows("webhook") == 0


async def test_project_id_must_be_a_project_the_caller_is_a_member_of(client, alice, bob):
    project = (await client.post("/api/v1/projects", json={"name": "P"}, headers=bob.headers)).json()
    response = await client.post(
        HOOKS, json={"url": PUBLIC_URL, "events": ["*"], "project_id": project["id"]}, headers=alice.headers
    )
    assert_problem(response, 422, "project_id")
    missing = await client.post(
        HOOKS, json={"url": PUBLIC_URL, "events": ["*"], "project_id": 999999}, headers=alice.headers
    )
    assert_problem(missing, 422, "project_id")
    assert missing.json()["errors"][0]["message"] == response.json()["errors"][0]["message"].replace(
        str(project["id"]), "999999"
    )
    assert await count_rows("webhook") == 0
    own = await create(client, bob, project_id=project["id"])
    assert own["project_id"] == project["id"]
    moved = await client.patch(f"{HOOKS}/{own['id']}", json={"project_id": 999999}, headers=bob.headers)
    assert_problem(moved, 422, "project_id")
    everywhere = await client.patch(f"{HOOKS}/{own['id']}", json={"project_id": None}, headers=bob.headers)
    assert everywhere.json()["project_id"] is None


# --------------------------------------------------------------------------------------------
# SSRF guard


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://127.8.9.10/", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "non-public"),
        ("http://localhost:8000/hook", "loopback"),
        ("http://LOCALHOST./hook", "loopback"),
        ("https://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
    ],
)
async def test_urls_that_reach_non_public_addresses_are_refused(client, alice, url, kind):
    response = await client.post(HOOKS, json={"url": url, "events": ["*"]}, headers=alice.headers)
    body = assert_problem(response, 422, "url", case=url)
    assert f"a {kind} address" in body["errors"][0]["message"], body
    assert await count_rows("webhook") == 0
    # And on PATCH.
    hook = await create(client, alice)
    patched = await client.patch(f"{HOOKS}/{hook['id']}", json={"url": url}, headers=alice.headers)
    assert_problem(patched, 422, "url")
    assert (await client.get(f"{HOOKS}/{hook['id']}", headers=alice.headers)).json()["url"] == PUBLIC_URL


async def test_a_host_that_does_not_resolve_is_refused(client, alice):
    response = await client.post(
        HOOKS, json={"url": "https://no-such-host.invalid/hook", "events": ["*"]}, headers=alice.headers
    )
    body = assert_problem(response, 422, "url")
    assert "does not resolve" in body["errors"][0]["message"]


async def test_the_setting_allows_private_addresses(lenient, alice):
    response = await lenient.post(
        HOOKS, json={"url": "http://127.0.0.1:9/hook", "events": ["*"]}, headers=alice.headers
    )
    assert response.status_code == 201, response.text
    still_scheme = await lenient.post(
        HOOKS, json={"url": "gopher://127.0.0.1/", "events": ["*"]}, headers=alice.headers
    )
    assert_problem(still_scheme, 422, "url")


# --------------------------------------------------------------------------------------------
# Ping, deliveries, redeliver


async def test_ping_queues_a_delivery_listed_newest_first(client, alice):
    hook = await create(client, alice)
    pings = []
    for _ in range(3):
        response = await client.post(f"{HOOKS}/{hook['id']}/ping", headers=alice.headers)
        assert response.status_code == 201, response.text
        pings.append(response.json())
        assert response.headers["location"] == f"{HOOKS}/{hook['id']}/deliveries/{response.json()['id']}"
    first = pings[0]
    assert first["webhook_id"] == hook["id"]
    assert first["type"] == "webhook.ping"
    assert first["status"] == "pending"
    assert first["attempts"] == 0
    assert first["event_id"] is None
    assert first["message_id"].startswith("msg_")
    assert "payload" not in first
    listed = await client.get(f"{HOOKS}/{hook['id']}/deliveries?limit=2", headers=alice.headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 3
    assert [d["id"] for d in listed.json()["items"]] == [pings[2]["id"], pings[1]["id"]]
    one = await client.get(f"{HOOKS}/{hook['id']}/deliveries/{first['id']}", headers=alice.headers)
    assert one.json() == first
    payload = (await run_sql("SELECT payload::text AS p FROM webhook_delivery WHERE id = {}", first["id"]))[0]["p"]
    assert '"type": "webhook.ping"' in payload
    assert f'"webhook_id": {hook["id"]}' in payload


async def test_redeliver_queues_the_same_message_again(client, alice):
    hook = await create(client, alice)
    ping = (await client.post(f"{HOOKS}/{hook['id']}/ping", headers=alice.headers)).json()
    response = await client.post(f"{HOOKS}/{hook['id']}/deliveries/{ping['id']}/redeliver", headers=alice.headers)
    assert response.status_code == 201, response.text
    again = response.json()
    assert again["id"] != ping["id"]
    assert again["message_id"] == ping["message_id"]  # webhook-id stays: receivers deduplicate on it
    assert again["redelivery_of"] == ping["id"]
    assert again["status"] == "pending"
    rows = await run_sql("SELECT payload::text AS p FROM webhook_delivery ORDER BY id")
    assert rows[0]["p"] == rows[1]["p"]
    missing = await client.post(f"{HOOKS}/{hook['id']}/deliveries/999999/redeliver", headers=alice.headers)
    assert_problem(missing, 404)


async def test_a_disabled_webhook_takes_no_ping_and_its_queue_is_cancelled(client, alice):
    hook = await create(client, alice)
    ping = (await client.post(f"{HOOKS}/{hook['id']}/ping", headers=alice.headers)).json()
    await client.patch(f"{HOOKS}/{hook['id']}", json={"enabled": False}, headers=alice.headers)
    refused = await client.post(f"{HOOKS}/{hook['id']}/ping", headers=alice.headers)
    assert_problem(refused, 409)
    redeliver = await client.post(f"{HOOKS}/{hook['id']}/deliveries/{ping['id']}/redeliver", headers=alice.headers)
    assert_problem(redeliver, 409)
    queued = await client.get(f"{HOOKS}/{hook['id']}/deliveries/{ping['id']}", headers=alice.headers)
    assert queued.json()["status"] == "cancelled"
    assert await count_rows("webhook_delivery") == 1


async def test_idempotent_create_replays_the_same_secret(client, alice):
    headers = {**alice.headers, "Idempotency-Key": "hook-1"}
    first = await client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["*"]}, headers=headers)
    again = await client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["*"]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert await count_rows("webhook") == 1
    other = await client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["task.*"]}, headers=headers)
    assert_problem(other, 422)
    # Ping and redeliver queue something: a retry with the same key queues nothing more.
    hook_id = first.json()["id"]
    ping_headers = {**alice.headers, "Idempotency-Key": "ping-1"}
    ping = await client.post(f"{HOOKS}/{hook_id}/ping", headers=ping_headers)
    ping_again = await client.post(f"{HOOKS}/{hook_id}/ping", headers=ping_headers)
    assert ping.status_code == ping_again.status_code == 201
    assert ping_again.headers["idempotent-replayed"] == "true"
    assert ping_again.json() == ping.json()
    assert ping_again.headers["location"] == ping.headers["location"]
    redeliver_headers = {**alice.headers, "Idempotency-Key": "redeliver-1"}
    path = f"{HOOKS}/{hook_id}/deliveries/{ping.json()['id']}/redeliver"
    again = [await client.post(path, headers=redeliver_headers) for _ in range(2)]
    assert [r.status_code for r in again] == [201, 201]
    assert again[1].json() == again[0].json()
    assert await count_rows("webhook_delivery") == 2


# --------------------------------------------------------------------------------------------
# Event patterns: the database and the service agree


async def test_event_patterns_match_the_same_in_sql_and_python():
    patterns_cases = [["*"], ["task.*"], ["task.created"], ["comment.*", "member.added"], ["label.deleted"]]
    for patterns in patterns_cases:
        for event_type in sorted(EVENT_TYPES):
            rows = await run_sql("SELECT webhook_event_matches({}::varchar[], {}::varchar) AS m", patterns, event_type)
            assert rows[0]["m"] is matches(patterns, event_type), (patterns, event_type)
    assert matches(["task.*"], "task.updated")
    assert not matches(["task.*"], "comment.created")


async def test_at_most_so_many_webhooks_per_user(client, alice, bob, monkeypatch):
    from app.services import webhooks

    monkeypatch.setattr(webhooks, "MAX_WEBHOOKS_PER_USER", 2)
    await create(client, alice)
    await create(client, alice)
    refused = await client.post(HOOKS, json={"url": PUBLIC_URL, "events": ["*"]}, headers=alice.headers)
    assert_problem(refused, 409)
    await create(client, bob)  # per user
    assert await count_rows("webhook") == 3


async def test_enabling_again_does_not_send_what_was_queued_while_disabled(client, alice):
    hook = await create(client, alice)
    await client.patch(f"{HOOKS}/{hook['id']}", json={"enabled": False}, headers=alice.headers)
    # An event that committed while the webhook was being disabled (its transaction saw it enabled).
    await run_sql(
        "INSERT INTO webhook_delivery (webhook, type, message_id, payload)"
        " VALUES ({}, 'task.created', 'msg_x', jsonb_build_object())",
        hook["id"],
    )
    await client.patch(f"{HOOKS}/{hook['id']}", json={"enabled": True}, headers=alice.headers)
    rows = await run_sql("SELECT status FROM webhook_delivery")
    assert [r["status"] for r in rows] == ["cancelled"]
