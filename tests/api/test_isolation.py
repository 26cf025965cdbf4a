"""Two users: another user's object answers exactly like a missing one, on every endpoint.

Bob probes alice's ids and ids that do not exist; the answers must be indistinguishable (same
status, same body keys and title, same detail once the id is masked), bob's lists never show
alice's data, and naming alice's project / label / parent task in a body is a 422 naming the field.
After every probe alice's data is exactly as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.tables import ALL_TABLES, RateLimit
from tests.api.problems import assert_problem
from tests.conftest import ApiUser, count_rows

MISSING = 900_000
# Every table but the rate-limit counts, which every request may lease from.
TABLES = [table._meta.tablename for table in ALL_TABLES if table is not RateLimit]


@dataclass
class World:
    project: dict[str, Any]
    label: dict[str, Any]
    task: dict[str, Any]
    subtask: dict[str, Any]
    comment: dict[str, Any]


async def _post(client: httpx.AsyncClient, user: ApiUser, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(url, json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _world(client: httpx.AsyncClient, user: ApiUser, tag: str) -> World:
    project = await _post(client, user, "/api/v1/projects", {"name": f"{tag} project", "color": "#aa0000"})
    label = await _post(client, user, "/api/v1/labels", {"name": f"{tag} label"})
    task = await _post(
        client,
        user,
        "/api/v1/tasks",
        {"title": f"{tag} task secret", "project_id": project["id"], "label_ids": [label["id"]]},
    )
    subtask = await _post(client, user, "/api/v1/tasks", {"title": f"{tag} subtask", "parent_id": task["id"]})
    comment = await _post(client, user, f"/api/v1/tasks/{task['id']}/comments", {"body": f"{tag} comment"})
    return World(project, label, task, subtask, comment)


@pytest.fixture
async def worlds(client, alice, bob) -> tuple[World, World]:
    return await _world(client, alice, "alice"), await _world(client, bob, "bob")


async def _snapshot(client: httpx.AsyncClient, user: ApiUser, world: World) -> dict[str, Any]:
    """Everything alice can read about her objects, plus row counts."""
    urls = {
        "project": f"/api/v1/projects/{world.project['id']}",
        "label": f"/api/v1/labels/{world.label['id']}",
        "task": f"/api/v1/tasks/{world.task['id']}",
        "subtask": f"/api/v1/tasks/{world.subtask['id']}",
        "comment": f"/api/v1/comments/{world.comment['id']}",
        "comments": f"/api/v1/tasks/{world.task['id']}/comments",
        "tasks": "/api/v1/tasks",
    }
    snapshot: dict[str, Any] = {}
    for key, url in urls.items():
        response = await client.get(url, headers=user.headers)
        assert response.status_code == 200, response.text
        snapshot[key] = response.json()
    for table in TABLES:
        snapshot[f"rows:{table}"] = await count_rows(table)
    return snapshot


def _masked(response: httpx.Response, object_id: int) -> dict[str, Any]:
    """The body with the probed id masked (not list indexes such as ``tasks[1]``)."""
    pattern = re.compile(rf"(?<!tasks\[)\b{object_id}\b")
    body = dict(response.json())
    body["detail"] = pattern.sub("<id>", body["detail"])
    for error in body.get("errors", []):
        error["message"] = pattern.sub("<id>", error["message"])
    return body


def _assert_indistinguishable(
    foreign: httpx.Response, missing: httpx.Response, foreign_id: int, missing_id: int, status: int = 404
) -> None:
    assert_problem(foreign, status)
    assert_problem(missing, status)
    assert foreign.headers["content-type"] == missing.headers["content-type"]
    assert ("etag" in foreign.headers) == ("etag" in missing.headers)
    assert _masked(foreign, foreign_id) == _masked(missing, missing_id)


def _endpoints(world: World) -> list[tuple[str, str, int, dict[str, Any] | None, dict[str, str]]]:
    """(method, url template with {id}, alice's id, body, extra headers) for every id-taking endpoint."""
    if_match = {"If-Match": '"1"'}
    return [
        ("GET", "/api/v1/projects/{id}", world.project["id"], None, {}),
        ("PATCH", "/api/v1/projects/{id}", world.project["id"], {"name": "pwned"}, {}),
        ("PATCH", "/api/v1/projects/{id}", world.project["id"], {"name": "pwned"}, if_match),
        ("DELETE", "/api/v1/projects/{id}", world.project["id"], None, {}),
        ("DELETE", "/api/v1/projects/{id}", world.project["id"], None, if_match),
        ("GET", "/api/v1/labels/{id}", world.label["id"], None, {}),
        ("PATCH", "/api/v1/labels/{id}", world.label["id"], {"name": "pwned"}, {}),
        ("PATCH", "/api/v1/labels/{id}", world.label["id"], {"color": None}, if_match),
        ("DELETE", "/api/v1/labels/{id}", world.label["id"], None, {}),
        ("DELETE", "/api/v1/labels/{id}", world.label["id"], None, if_match),
        ("GET", "/api/v1/tasks/{id}", world.task["id"], None, {}),
        ("PATCH", "/api/v1/tasks/{id}", world.task["id"], {"title": "pwned"}, {}),
        ("PATCH", "/api/v1/tasks/{id}", world.task["id"], {"status": "done"}, if_match),
        ("PATCH", "/api/v1/tasks/{id}", world.task["id"], {"label_ids": []}, {}),
        ("PATCH", "/api/v1/tasks/{id}", world.subtask["id"], {"parent_id": None}, {}),
        ("DELETE", "/api/v1/tasks/{id}", world.task["id"], None, {}),
        ("DELETE", "/api/v1/tasks/{id}", world.subtask["id"], None, if_match),
        ("GET", "/api/v1/tasks/{id}/comments", world.task["id"], None, {}),
        ("POST", "/api/v1/tasks/{id}/comments", world.task["id"], {"body": "pwned"}, {}),
        ("POST", "/api/v1/tasks/{id}/comments", world.task["id"], {"body": "pwned"}, {"Idempotency-Key": "k1"}),
        ("GET", "/api/v1/comments/{id}", world.comment["id"], None, {}),
        ("PATCH", "/api/v1/comments/{id}", world.comment["id"], {"body": "pwned"}, {}),
        ("PATCH", "/api/v1/comments/{id}", world.comment["id"], {"body": "pwned"}, if_match),
        ("DELETE", "/api/v1/comments/{id}", world.comment["id"], None, {}),
        ("DELETE", "/api/v1/comments/{id}", world.comment["id"], None, if_match),
    ]


async def test_every_id_endpoint_answers_like_a_missing_id(client, alice, bob, worlds):
    a, _ = worlds
    before = await _snapshot(client, alice, a)
    for method, template, foreign_id, body, headers in _endpoints(a):
        foreign = await client.request(
            method, template.format(id=foreign_id), json=body, headers={**bob.headers, **headers}
        )
        missing = await client.request(
            method, template.format(id=MISSING), json=body, headers={**bob.headers, **headers}
        )
        assert foreign.status_code == 404, (method, template, foreign.text)
        _assert_indistinguishable(foreign, missing, foreign_id, MISSING)
    assert await _snapshot(client, alice, a) == before


async def test_bulk_patch_of_a_foreign_id_is_404_naming_it_and_changes_nothing(client, alice, bob, worlds):
    a, b = worlds
    before_alice = await _snapshot(client, alice, a)
    before_bob = await _snapshot(client, bob, b)
    for ids in ([a.task["id"]], [b.task["id"], a.task["id"]], [a.subtask["id"], b.subtask["id"]]):
        foreign_id = next(i for i in ids if i in (a.task["id"], a.subtask["id"]))
        foreign = await client.patch(
            "/api/v1/tasks/bulk", json={"ids": ids, "changes": {"title": "pwned"}}, headers=bob.headers
        )
        missing_ids = [MISSING if i == foreign_id else i for i in ids]
        missing = await client.patch(
            "/api/v1/tasks/bulk", json={"ids": missing_ids, "changes": {"title": "pwned"}}, headers=bob.headers
        )
        _assert_indistinguishable(foreign, missing, foreign_id, MISSING)
        assert str(foreign_id) in foreign.json()["detail"]
    assert await _snapshot(client, alice, a) == before_alice
    assert await _snapshot(client, bob, b) == before_bob


async def test_lists_never_show_another_users_data(client, alice, bob, worlds):
    a, b = worlds
    projects = (await client.get("/api/v1/projects", headers=bob.headers)).json()
    assert [p["id"] for p in projects["items"]] == [b.project["id"]]
    assert projects["total"] == 1
    archived = (await client.get("/api/v1/projects", params={"archived": "false"}, headers=bob.headers)).json()
    assert [p["id"] for p in archived["items"]] == [b.project["id"]]
    labels = (await client.get("/api/v1/labels", headers=bob.headers)).json()
    assert [label["id"] for label in labels["items"]] == [b.label["id"]]
    assert labels["total"] == 1
    tasks = (await client.get("/api/v1/tasks", params={"limit": 100}, headers=bob.headers)).json()
    assert {t["id"] for t in tasks["items"]} == {b.task["id"], b.subtask["id"]}
    assert tasks["total"] == 2
    comments = (await client.get(f"/api/v1/tasks/{b.task['id']}/comments", headers=bob.headers)).json()
    assert [c["id"] for c in comments["items"]] == [b.comment["id"]]
    assert comments["total"] == 1
    # Filtering by alice's ids answers like filtering by ids that do not exist: nothing.
    for params in (
        {"project_id": a.project["id"]},
        {"parent_id": a.task["id"]},
        {"label_id": a.label["id"]},
        {"label_id": [a.label["id"], MISSING]},
        {"q": "alice"},
        {"q": "secret"},
        {"inbox": "false"},
        {"status": "todo"},
    ):
        response = await client.get("/api/v1/tasks", params=params, headers=bob.headers)
        assert response.status_code == 200, response.text
        ids = {t["id"] for t in response.json()["items"]}
        assert not ids & {a.task["id"], a.subtask["id"]}, params
    foreign_filter = await client.get("/api/v1/tasks", params={"project_id": a.project["id"]}, headers=bob.headers)
    missing_filter = await client.get("/api/v1/tasks", params={"project_id": MISSING}, headers=bob.headers)
    assert foreign_filter.json() == missing_filter.json() == {"items": [], "total": 0, "limit": 20, "offset": 0}
    cursor_page = await client.get("/api/v1/tasks", params={"paginate": "cursor", "limit": 100}, headers=bob.headers)
    assert cursor_page.status_code == 200, cursor_page.text
    assert {t["id"] for t in cursor_page.json()["items"]} == {b.task["id"], b.subtask["id"]}


async def test_labels_on_bobs_tasks_are_only_bobs(client, alice, bob, worlds):
    a, b = worlds
    task = (await client.get(f"/api/v1/tasks/{b.task['id']}", headers=bob.headers)).json()
    assert [label["id"] for label in task["labels"]] == [b.label["id"]]
    # Same label name for both users is fine and stays separate.
    shared = await client.post("/api/v1/labels", json={"name": "alice label"}, headers=bob.headers)
    assert shared.status_code == 201, shared.text
    assert shared.json()["id"] != a.label["id"]


async def test_users_me_is_the_callers_own(client, alice, bob):
    for user in (alice, bob):
        me = await client.get("/api/v1/users/me", headers=user.headers)
        assert me.status_code == 200
        assert me.json()["id"] == user.id
        assert me.json()["email"] == user.email


async def test_a_cursor_is_not_transferable_between_users(client, alice, bob, worlds):
    for _ in range(3):
        await _post(client, alice, "/api/v1/tasks", {"title": "more"})
    first = await client.get("/api/v1/tasks", params={"paginate": "cursor", "limit": 1}, headers=alice.headers)
    cursor = first.json()["next_cursor"]
    assert cursor
    response = await client.get("/api/v1/tasks", params={"cursor": cursor, "limit": 1}, headers=bob.headers)
    assert_problem(response, 400, "cursor")


# --------------------------------------------------------------------------------------------
# Referencing another user's objects in a body


def _references(a: World) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(field, body naming alice's object, the same body naming a missing object)."""
    return [
        ("project_id", {"project_id": a.project["id"]}, {"project_id": MISSING}),
        ("label_ids", {"label_ids": [a.label["id"]]}, {"label_ids": [MISSING]}),
        ("parent_id", {"parent_id": a.task["id"]}, {"parent_id": MISSING}),
        ("parent_id", {"parent_id": a.subtask["id"]}, {"parent_id": MISSING}),
    ]


def _reference_id(body: dict[str, Any]) -> int:
    value = next(iter(body.values()))
    return value[0] if isinstance(value, list) else value


async def test_create_task_referencing_foreign_objects_is_422(client, alice, bob, worlds):
    a, b = worlds
    before = await _snapshot(client, alice, a)
    for field, foreign_ref, missing_ref in _references(a):
        foreign = await client.post("/api/v1/tasks", json={"title": "t", **foreign_ref}, headers=bob.headers)
        missing = await client.post("/api/v1/tasks", json={"title": "t", **missing_ref}, headers=bob.headers)
        assert_problem(foreign, 422, field)
        _assert_indistinguishable(foreign, missing, _reference_id(foreign_ref), MISSING, status=422)
    # A mix of bob's and alice's labels is refused as a whole.
    mixed = await client.post(
        "/api/v1/tasks", json={"title": "t", "label_ids": [b.label["id"], a.label["id"]]}, headers=bob.headers
    )
    assert_problem(mixed, 422, "label_ids")
    assert await _snapshot(client, alice, a) == before


async def test_patch_task_referencing_foreign_objects_is_422(client, alice, bob, worlds):
    a, b = worlds
    before_alice = await _snapshot(client, alice, a)
    before_bob = await _snapshot(client, bob, b)
    for field, foreign_ref, missing_ref in _references(a):
        url = f"/api/v1/tasks/{b.subtask['id']}"
        foreign = await client.patch(url, json=foreign_ref, headers=bob.headers)
        missing = await client.patch(url, json=missing_ref, headers=bob.headers)
        assert_problem(foreign, 422, field)
        _assert_indistinguishable(foreign, missing, _reference_id(foreign_ref), MISSING, status=422)
        # A valid change next to the bad reference is not applied either.
        combined = await client.patch(url, json={"title": "changed", **foreign_ref}, headers=bob.headers)
        assert_problem(combined, 422, field)
    mixed = await client.patch(
        f"/api/v1/tasks/{b.task['id']}", json={"label_ids": [b.label["id"], a.label["id"]]}, headers=bob.headers
    )
    assert_problem(mixed, 422, "label_ids")
    assert await _snapshot(client, alice, a) == before_alice
    assert await _snapshot(client, bob, b) == before_bob


async def test_bulk_create_referencing_foreign_objects_is_422_naming_the_item(client, alice, bob, worlds):
    a, b = worlds
    before_alice = await _snapshot(client, alice, a)
    before_bob = await _snapshot(client, bob, b)
    for field, foreign_ref, missing_ref in _references(a):
        items = [{"title": "fine"}, {"title": "bad", **foreign_ref}]
        foreign = await client.post("/api/v1/tasks/bulk", json={"tasks": items}, headers=bob.headers)
        missing_items = [{"title": "fine"}, {"title": "bad", **missing_ref}]
        missing = await client.post("/api/v1/tasks/bulk", json={"tasks": missing_items}, headers=bob.headers)
        assert_problem(foreign, 422, f"tasks[1].{field}")
        _assert_indistinguishable(foreign, missing, _reference_id(foreign_ref), MISSING, status=422)
    assert await _snapshot(client, alice, a) == before_alice
    assert await _snapshot(client, bob, b) == before_bob


async def test_bulk_patch_referencing_foreign_objects_is_422(client, alice, bob, worlds):
    a, b = worlds
    before_alice = await _snapshot(client, alice, a)
    before_bob = await _snapshot(client, bob, b)
    for field, foreign_ref, missing_ref in _references(a):
        ids = [b.task["id"], b.subtask["id"]]
        foreign = await client.patch(
            "/api/v1/tasks/bulk", json={"ids": ids, "changes": foreign_ref}, headers=bob.headers
        )
        missing = await client.patch(
            "/api/v1/tasks/bulk", json={"ids": ids, "changes": missing_ref}, headers=bob.headers
        )
        assert_problem(foreign, 422, f"changes.{field}")
        _assert_indistinguishable(foreign, missing, _reference_id(foreign_ref), MISSING, status=422)
    assert await _snapshot(client, alice, a) == before_alice
    assert await _snapshot(client, bob, b) == before_bob


async def test_own_references_work(client, alice, bob, worlds):
    """Control for the 422s above: the same bodies naming bob's own objects succeed."""
    _, b = worlds
    created = await client.post(
        "/api/v1/tasks",
        json={"title": "t", "project_id": b.project["id"], "label_ids": [b.label["id"]], "parent_id": b.task["id"]},
        headers=bob.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["project_id"] == b.project["id"]
    assert body["parent_id"] == b.task["id"]
    assert [label["id"] for label in body["labels"]] == [b.label["id"]]


async def test_idempotency_keys_are_per_user(client, alice, bob):
    """The same key and body from another user is a new request, never a replay of alice's answer."""
    headers = {"Idempotency-Key": "shared-key-1"}
    first = await client.post("/api/v1/projects", json={"name": "Same"}, headers={**alice.headers, **headers})
    assert first.status_code == 201, first.text
    other = await client.post("/api/v1/projects", json={"name": "Same"}, headers={**bob.headers, **headers})
    assert other.status_code == 201, other.text
    assert "idempotent-replayed" not in other.headers
    assert other.json()["id"] != first.json()["id"]
    assert (await client.get(other.headers["location"], headers=bob.headers)).status_code == 200
    assert_problem(await client.get(first.headers["location"], headers=bob.headers), 404)
    assert await count_rows("project") == 2
    # A different body under the same key from the other user is not a mismatch either.
    task = await client.post("/api/v1/tasks", json={"title": "x"}, headers={**bob.headers, "Idempotency-Key": "k2"})
    assert task.status_code == 201
    mine = await client.post("/api/v1/tasks", json={"title": "y"}, headers={**alice.headers, "Idempotency-Key": "k2"})
    assert mine.status_code == 201, mine.text
    assert mine.json()["title"] == "y"
