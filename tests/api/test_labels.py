"""Labels: limits, per-user case-insensitive uniqueness, PATCH semantics, lists, detaching."""

from __future__ import annotations

from tests.api.problems import assert_problem, run_sql
from tests.conftest import count_rows
from tests.helpers import documented_fields

URL = "/api/v1/labels"
# SPEC "Labels": the fields every label carries (a field added since is checked against the docs).
FIELDS = {"id", "name", "color", "version", "created_at", "updated_at"}


async def _create(client, user, name="label", **body):
    response = await client.post(URL, json={"name": name, **body}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


# --------------------------------------------------------------------------------------------
# Create


async def test_create_with_defaults(client, alice):
    response = await client.post(URL, json={"name": "urgent"}, headers=alice.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert FIELDS <= set(body) == await documented_fields(client, f"{URL}/{{label_id}}")
    assert response.headers["location"] == f"{URL}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["name"] == "urgent"
    assert body["color"] is None
    assert body["version"] == 1
    assert body["created_at"].endswith("Z")
    fetched = await client.get(response.headers["location"], headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert await count_rows("label") == 1


async def test_create_with_color_and_max_name(client, alice):
    body = await _create(client, alice, name="l" * 100, color="#00fF00")
    assert body["name"] == "l" * 100
    assert body["color"] == "#00fF00"


BAD_CREATE_BODIES = [
    ({}, "name"),  # missing-name
    ({"name": ""}, "name"),  # name-empty
    ({"name": "l" * 101}, "name"),  # name-101
    ({"name": None}, "name"),  # name-null
    ({"name": ["x"]}, "name"),  # name-list
    ({"name": "x", "color": "green"}, "color"),  # color-word
    ({"name": "x", "color": "#00ff0"}, "color"),  # color-short
    ({"name": "x", "color": "00ff00"}, "color"),  # color-no-hash
    ({"name": "x", "color": 0x00FF00}, "color"),  # color-int
    ({"name": "x", "id": 1}, "id"),  # id
    ({"name": "x", "version": 1}, "version"),  # version
    ({"name": "x", "created_at": "2020-01-01T00:00:00Z"}, "created_at"),  # created_at
    ({"name": "x", "owner": 1}, "owner"),  # owner
    ({"name": "x", "task_ids": [1]}, "task_ids"),  # unknown
]


async def test_create_rejects_bad_bodies(client, alice):
    for body, field in BAD_CREATE_BODIES:
        response = await client.post(URL, json=body, headers=alice.headers)
        assert_problem(response, 400, field, case=body)
        assert await count_rows("label") == 0


async def test_name_is_unique_per_user_case_insensitively(client, alice, bob):
    original = await _create(client, alice, name="Urgent")
    for name in ("Urgent", "urgent", "URGENT", "uRgEnT"):
        response = await client.post(URL, json={"name": name}, headers=alice.headers)
        assert_problem(response, 409)
    assert await count_rows("label") == 1
    listed = (await client.get(URL, headers=alice.headers)).json()
    assert listed["items"] == [original]
    # Another user may use the same name.
    other = await client.post(URL, json={"name": "urgent"}, headers=bob.headers)
    assert other.status_code == 201, other.text
    assert await count_rows("label") == 2


async def test_rename_to_a_taken_name_is_409_and_changes_nothing(client, alice):
    await _create(client, alice, name="Home")
    work = await _create(client, alice, name="Work", color="#111111")
    response = await client.patch(f"{URL}/{work['id']}", json={"name": "HOME", "color": None}, headers=alice.headers)
    assert_problem(response, 409)
    after = await client.get(f"{URL}/{work['id']}", headers=alice.headers)
    assert after.json() == work


async def test_rename_changing_only_the_case_is_allowed(client, alice):
    label = await _create(client, alice, name="home")
    response = await client.patch(f"{URL}/{label['id']}", json={"name": "Home"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Home"
    assert response.json()["version"] == 2


async def test_a_deleted_name_can_be_reused(client, alice):
    label = await _create(client, alice, name="temp")
    assert (await client.delete(f"{URL}/{label['id']}", headers=alice.headers)).status_code == 204
    again = await client.post(URL, json={"name": "TEMP"}, headers=alice.headers)
    assert again.status_code == 201, again.text


# --------------------------------------------------------------------------------------------
# Patch


async def test_patch_is_partial(client, alice):
    label = await _create(client, alice, name="old", color="#abcdef")
    response = await client.patch(f"{URL}/{label['id']}", json={"name": "new"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert FIELDS <= set(body) == await documented_fields(client, f"{URL}/{{label_id}}")
    assert body["name"] == "new"
    assert body["color"] == "#abcdef"
    assert body["version"] == 2
    assert body["created_at"] == label["created_at"]
    assert response.headers["etag"] == '"2"'


async def test_patch_null_clears_color(client, alice):
    label = await _create(client, alice, name="c", color="#abcdef")
    response = await client.patch(f"{URL}/{label['id']}", json={"color": None}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["color"] is None
    assert response.json()["name"] == "c"


BAD_PATCH_BODIES = [
    ({"name": None}, "name"),  # name-null
    ({"name": ""}, "name"),  # name-empty
    ({"name": "l" * 101}, "name"),  # name-101
    ({"color": "#zzzzzz"}, "color"),  # color-bad
    ({"id": 3}, "id"),  # id
    ({"version": 9}, "version"),  # version
    ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),  # created_at
    ({"updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),  # updated_at
    ({"priority": 1}, "priority"),  # unknown
]


async def test_patch_rejects_bad_bodies_and_changes_nothing(client, alice):
    label = await _create(client, alice, name="same", color="#101010")
    for body, field in BAD_PATCH_BODIES:
        response = await client.patch(f"{URL}/{label['id']}", json=body, headers=alice.headers)
        assert_problem(response, 400, field, case=body)
        assert (await client.get(f"{URL}/{label['id']}", headers=alice.headers)).json() == label


async def test_missing_label_is_404(client, alice):
    assert_problem(await client.get(f"{URL}/77", headers=alice.headers), 404)
    assert_problem(await client.patch(f"{URL}/77", json={"name": "x"}, headers=alice.headers), 404)
    assert_problem(await client.delete(f"{URL}/77", headers=alice.headers), 404)
    assert await count_rows("label") == 0


# --------------------------------------------------------------------------------------------
# Delete detaches


async def test_delete_detaches_from_tasks(client, alice):
    keep = await _create(client, alice, name="keep")
    drop = await _create(client, alice, name="drop")
    task = await client.post(
        "/api/v1/tasks", json={"title": "t", "label_ids": [keep["id"], drop["id"]]}, headers=alice.headers
    )
    assert task.status_code == 201, task.text
    assert [label["name"] for label in task.json()["labels"]] == ["drop", "keep"]
    assert await count_rows("task_label") == 2

    response = await client.delete(f"{URL}/{drop['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""

    after = await client.get(f"/api/v1/tasks/{task.json()['id']}", headers=alice.headers)
    assert after.status_code == 200
    assert after.json()["labels"] == [{"id": keep["id"], "name": "keep", "color": None}]
    assert await count_rows("task_label") == 1
    assert await count_rows("task") == 1
    assert await count_rows("label") == 1
    filtered = await client.get("/api/v1/tasks", params={"label_id": drop["id"]}, headers=alice.headers)
    assert filtered.json()["total"] == 0


async def test_renamed_label_shows_on_tasks(client, alice):
    label = await _create(client, alice, name="before", color="#000001")
    task = (
        await client.post("/api/v1/tasks", json={"title": "t", "label_ids": [label["id"]]}, headers=alice.headers)
    ).json()
    await client.patch(f"{URL}/{label['id']}", json={"name": "after", "color": None}, headers=alice.headers)
    fetched = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).json()
    assert fetched["labels"] == [{"id": label["id"], "name": "after", "color": None}]


# --------------------------------------------------------------------------------------------
# Lists


async def test_list_envelope_sorted_by_name_with_ties_by_id(client, alice):
    assert (await client.get(URL, headers=alice.headers)).json() == {"items": [], "total": 0, "limit": 20, "offset": 0}
    names = ["delta", "alpha", "charlie", "bravo"]
    created = {name: await _create(client, alice, name=name) for name in names}
    page = (await client.get(URL, headers=alice.headers)).json()
    assert set(page) == {"items", "total", "limit", "offset"}
    assert page["total"] == 4
    assert [label["name"] for label in page["items"]] == sorted(names)
    assert page["items"][0] == created["alpha"]

    second = (await client.get(URL, params={"limit": 2, "offset": 2}, headers=alice.headers)).json()
    assert [label["name"] for label in second["items"]] == ["charlie", "delta"]
    assert second["total"] == 4
    assert second["limit"] == 2
    assert second["offset"] == 2


async def test_list_ties_broken_by_id(client, alice):
    ids = [(await _create(client, alice, name=f"n{i}"))["id"] for i in range(3)]
    await run_sql("UPDATE label SET created_at = '2024-01-01T00:00:00Z'")
    ascending = (await client.get(URL, params={"sort": "created_at"}, headers=alice.headers)).json()["items"]
    assert [label["id"] for label in ascending] == ids
    descending = (await client.get(URL, params={"sort": "-created_at"}, headers=alice.headers)).json()["items"]
    assert [label["id"] for label in descending] == ids[::-1]
    by_name_desc = (await client.get(URL, params={"sort": "-name"}, headers=alice.headers)).json()["items"]
    assert [label["id"] for label in by_name_desc] == ids[::-1]


BAD_LIST_PARAMETERS = [
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"limit": -1}, "limit"),
    ({"offset": -1}, "offset"),
    ({"sort": "color"}, "sort"),
]


async def test_list_rejects_bad_parameters(client, alice):
    for params, field in BAD_LIST_PARAMETERS:
        response = await client.get(URL, params=params, headers=alice.headers)
        body = assert_problem(response, 400, field, case=params)
        assert field in body["detail"]
