"""Comments: limits, oldest-first lists, PATCH semantics, 404 for tasks that are not the caller's."""

from __future__ import annotations

from tests.api.problems import assert_problem, run_sql
from tests.conftest import count_rows
from tests.helpers import documented_fields

COMMENT = "/api/v1/comments/{comment_id}"
# SPEC "Comments": the fields every comment carries (a field added since is checked against the docs).
FIELDS = {"id", "task_id", "body", "version", "created_at", "updated_at"}


async def _task(client, user, title="task"):
    response = await client.post("/api/v1/tasks", json={"title": title}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


def _comments_url(task_id: int) -> str:
    return f"/api/v1/tasks/{task_id}/comments"


async def _comment(client, user, task_id, body="hello"):
    response = await client.post(_comments_url(task_id), json={"body": body}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


# --------------------------------------------------------------------------------------------
# Create


async def test_create(client, alice):
    task = await _task(client, alice)
    response = await client.post(_comments_url(task["id"]), json={"body": "first!"}, headers=alice.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert FIELDS <= set(body) == await documented_fields(client, COMMENT)
    assert response.headers["location"] == f"/api/v1/comments/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["task_id"] == task["id"]
    assert body["body"] == "first!"
    assert body["version"] == 1
    assert body["created_at"].endswith("Z")
    fetched = await client.get(response.headers["location"], headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


VALID_BODIES = [
    "x",
    "b" * 10_000,
    "multi\nline ✓",
]


async def test_create_accepts_valid_bodies(client, alice):
    task = await _task(client, alice)
    for text in VALID_BODIES:
        assert (await _comment(client, alice, task["id"], text))["body"] == text


BAD_CREATE_BODIES = [
    ({}, "body"),  # missing
    ({"body": ""}, "body"),  # empty
    ({"body": "b" * 10_001}, "body"),  # 10001
    ({"body": None}, "body"),  # null
    ({"body": 42}, "body"),  # number
    ({"body": "x", "task_id": 1}, "task_id"),  # task_id
    ({"body": "x", "id": 1}, "id"),  # id
    ({"body": "x", "version": 1}, "version"),  # version
    ({"body": "x", "created_at": "2020-01-01T00:00:00Z"}, "created_at"),  # created_at
    ({"body": "x", "author": "me"}, "author"),  # unknown
]


async def test_create_rejects_bad_bodies(client, alice):
    task = await _task(client, alice)
    for payload, field in BAD_CREATE_BODIES:
        response = await client.post(_comments_url(task["id"]), json=payload, headers=alice.headers)
        assert_problem(response, 400, field, case=payload)
        assert await count_rows("comment") == 0


async def test_create_on_a_missing_task_is_404(client, alice):
    response = await client.post(_comments_url(9999), json={"body": "x"}, headers=alice.headers)
    body = assert_problem(response, 404)
    assert "9999" in body["detail"]
    assert await count_rows("comment") == 0


async def test_another_users_task_is_404_exactly_like_a_missing_one(client, alice, bob):
    task = await _task(client, alice)
    await _comment(client, alice, task["id"])
    missing_id = task["id"] + 1000
    for method, payload in (("GET", None), ("POST", {"body": "sneaky"})):
        foreign = await client.request(method, _comments_url(task["id"]), json=payload, headers=bob.headers)
        missing = await client.request(method, _comments_url(missing_id), json=payload, headers=bob.headers)
        foreign_body = assert_problem(foreign, 404)
        missing_body = assert_problem(missing, 404)
        assert foreign_body["detail"].replace(str(task["id"]), "N") == missing_body["detail"].replace(
            str(missing_id), "N"
        )
        assert set(foreign_body) == set(missing_body)
    assert await count_rows("comment") == 1


# --------------------------------------------------------------------------------------------
# Lists


async def test_list_oldest_first_with_envelope(client, alice):
    task = await _task(client, alice)
    other = await _task(client, alice, "other")
    ids = [(await _comment(client, alice, task["id"], f"c{i}"))["id"] for i in range(3)]
    await _comment(client, alice, other["id"], "elsewhere")
    # Make the creation order disagree with the id order: the oldest is the last id.
    await run_sql(
        "UPDATE comment SET created_at = now() - ((100 - id) * interval '1 minute') WHERE id = ANY({})", ids[:2]
    )
    await run_sql("UPDATE comment SET created_at = now() - interval '1 day' WHERE id = {}", ids[2])
    page = await client.get(_comments_url(task["id"]), headers=alice.headers)
    assert page.status_code == 200
    body = page.json()
    assert set(body) == {"items", "total", "limit", "offset"}
    assert body["total"] == 3
    assert body["limit"] == 20
    assert body["offset"] == 0
    assert [c["id"] for c in body["items"]] == [ids[2], ids[0], ids[1]]
    documented = await documented_fields(client, COMMENT)
    assert all(FIELDS <= set(c) == documented and c["task_id"] == task["id"] for c in body["items"])


async def test_list_ties_broken_by_id_and_paging(client, alice):
    task = await _task(client, alice)
    ids = [(await _comment(client, alice, task["id"], f"c{i}"))["id"] for i in range(5)]
    await run_sql("UPDATE comment SET created_at = '2024-01-01T00:00:00Z'")
    listed = (await client.get(_comments_url(task["id"]), headers=alice.headers)).json()
    assert [c["id"] for c in listed["items"]] == ids
    page = (await client.get(_comments_url(task["id"]), params={"limit": 2, "offset": 3}, headers=alice.headers)).json()
    assert [c["id"] for c in page["items"]] == ids[3:]
    assert page["total"] == 5
    assert page["limit"] == 2
    assert page["offset"] == 3


async def test_list_of_a_task_without_comments(client, alice):
    task = await _task(client, alice)
    response = await client.get(_comments_url(task["id"]), headers=alice.headers)
    assert response.json() == {"items": [], "total": 0, "limit": 20, "offset": 0}


async def test_list_on_a_missing_task_is_404(client, alice):
    assert_problem(await client.get(_comments_url(12345), headers=alice.headers), 404)


BAD_LIST_PARAMETERS = [
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"limit": -1}, "limit"),
    ({"offset": -1}, "offset"),
]


async def test_list_rejects_bad_parameters(client, alice):
    task = await _task(client, alice)
    for params, field in BAD_LIST_PARAMETERS:
        response = await client.get(_comments_url(task["id"]), params=params, headers=alice.headers)
        body = assert_problem(response, 400, field, case=params)
        assert field in body["detail"]


# --------------------------------------------------------------------------------------------
# Patch / delete


async def test_patch_body(client, alice):
    task = await _task(client, alice)
    comment = await _comment(client, alice, task["id"], "typo")
    response = await client.patch(f"/api/v1/comments/{comment['id']}", json={"body": "fixed"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert FIELDS <= set(body) == await documented_fields(client, COMMENT)
    assert body["body"] == "fixed"
    assert body["version"] == 2
    assert body["task_id"] == task["id"]
    assert body["created_at"] == comment["created_at"]
    assert response.headers["etag"] == '"2"'


async def test_empty_patch_keeps_the_body(client, alice):
    task = await _task(client, alice)
    comment = await _comment(client, alice, task["id"], "same")
    response = await client.patch(f"/api/v1/comments/{comment['id']}", json={}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["body"] == "same"


BAD_PATCH_BODIES = [
    ({"body": None}, "body"),  # null
    ({"body": ""}, "body"),  # empty
    ({"body": "b" * 10_001}, "body"),  # 10001
    ({"task_id": 2}, "task_id"),  # task_id
    ({"id": 2}, "id"),  # id
    ({"version": 2}, "version"),  # version
    ({"updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),  # updated_at
    ({"pinned": True}, "pinned"),  # unknown
]


async def test_patch_rejects_bad_bodies_and_changes_nothing(client, alice):
    task = await _task(client, alice)
    comment = await _comment(client, alice, task["id"], "original")
    for payload, field in BAD_PATCH_BODIES:
        response = await client.patch(f"/api/v1/comments/{comment['id']}", json=payload, headers=alice.headers)
        assert_problem(response, 400, field, case=payload)
        assert (await client.get(f"/api/v1/comments/{comment['id']}", headers=alice.headers)).json() == comment


async def test_delete(client, alice):
    task = await _task(client, alice)
    keep = await _comment(client, alice, task["id"], "keep")
    drop = await _comment(client, alice, task["id"], "drop")
    response = await client.delete(f"/api/v1/comments/{drop['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(f"/api/v1/comments/{drop['id']}", headers=alice.headers), 404)
    assert_problem(await client.delete(f"/api/v1/comments/{drop['id']}", headers=alice.headers), 404)
    listed = (await client.get(_comments_url(task["id"]), headers=alice.headers)).json()
    assert listed["items"] == [keep]


async def test_missing_comment_is_404(client, alice):
    assert_problem(await client.get("/api/v1/comments/555", headers=alice.headers), 404)
    assert_problem(await client.patch("/api/v1/comments/555", json={"body": "x"}, headers=alice.headers), 404)
    assert_problem(await client.delete("/api/v1/comments/555", headers=alice.headers), 404)


async def test_deleting_the_task_deletes_its_comments(client, alice):
    task = await _task(client, alice)
    other = await _task(client, alice, "other")
    comment = await _comment(client, alice, task["id"])
    await _comment(client, alice, other["id"])
    assert (await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).status_code == 204
    assert_problem(await client.get(f"/api/v1/comments/{comment['id']}", headers=alice.headers), 404)
    assert await count_rows("comment") == 1
