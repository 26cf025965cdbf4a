"""Projects: every SPEC line (defaults, limits, PATCH semantics, lists, cascade)."""

from __future__ import annotations

import datetime as dt

from tests.api.problems import assert_problem, run_sql
from tests.conftest import count_rows
from tests.helpers import documented_fields

URL = "/api/v1/projects"
# SPEC "Projects": the fields every project carries (a field added since is checked against the docs).
FIELDS = {"id", "name", "description", "color", "archived", "version", "created_at", "updated_at"}


async def _create(client, user, **body):
    response = await client.post(URL, json={"name": "Project", **body}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


# --------------------------------------------------------------------------------------------
# Create


async def test_create_with_defaults(client, alice):
    response = await client.post(URL, json={"name": "Home"}, headers=alice.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert FIELDS <= set(body) == await documented_fields(client, f"{URL}/{{project_id}}")
    assert response.headers["location"] == f"{URL}/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["name"] == "Home"
    assert body["description"] == ""
    assert body["color"] is None
    assert body["archived"] is False
    assert body["version"] == 1
    assert body["created_at"].endswith("Z")
    assert body["updated_at"].endswith("Z")
    now = dt.datetime.now(dt.UTC)
    assert abs(now - dt.datetime.fromisoformat(body["created_at"])) < dt.timedelta(minutes=1)
    assert await count_rows("project") == 1
    fetched = await client.get(response.headers["location"], headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_create_with_every_field(client, alice):
    body = {"name": "Work", "description": "d" * 10_000, "color": "#A1b2C3", "archived": True}
    response = await client.post(URL, json=body, headers=alice.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in body} == body


VALID_NAMES = [
    "x",
    "n" * 200,
    "  spaced  ",
    "émoji 🚀",
]


async def test_create_accepts_valid_names(client, alice):
    for name in VALID_NAMES:
        response = await client.post(URL, json={"name": name}, headers=alice.headers)
        assert response.status_code == 201, response.text
        assert response.json()["name"] == name


VALID_COLORS = [
    None,
    "#000000",
    "#ffffff",
    "#ABCDEF",
]


async def test_create_accepts_valid_colors(client, alice):
    for color in VALID_COLORS:
        response = await client.post(URL, json={"name": "c", "color": color}, headers=alice.headers)
        assert response.status_code == 201, response.text
        assert response.json()["color"] == color


BAD_CREATE_BODIES = [
    ({}, "name"),  # missing-name
    ({"name": ""}, "name"),  # name-empty
    ({"name": "n" * 201}, "name"),  # name-201
    ({"name": None}, "name"),  # name-null
    ({"name": 7}, "name"),  # name-number
    ({"name": "p", "description": "d" * 10_001}, "description"),  # description-10001
    ({"name": "p", "description": None}, "description"),  # description-null
    ({"name": "p", "color": "red"}, "color"),  # color-word
    ({"name": "p", "color": "#12345"}, "color"),  # color-5-digits
    ({"name": "p", "color": "#1234567"}, "color"),  # color-7-digits
    ({"name": "p", "color": "123456"}, "color"),  # color-no-hash
    ({"name": "p", "color": "#GGGGGG"}, "color"),  # color-not-hex
    ({"name": "p", "color": "#fff"}, "color"),  # color-short-form
    ({"name": "p", "archived": "yes"}, "archived"),  # archived-string
    ({"name": "p", "archived": None}, "archived"),  # archived-null
    ({"name": "p", "owner": 1}, "owner"),  # owner
    ({"name": "p", "id": 5}, "id"),  # id
    ({"name": "p", "version": 3}, "version"),  # version
    ({"name": "p", "created_at": "2020-01-01T00:00:00Z"}, "created_at"),  # created_at
    ({"name": "p", "updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),  # updated_at
    ({"name": "p", "colour": "#000000"}, "colour"),  # unknown-field
]


async def test_create_rejects_bad_bodies(client, alice):
    for body, field in BAD_CREATE_BODIES:
        response = await client.post(URL, json=body, headers=alice.headers)
        assert_problem(response, 400, field, case=body)
        assert await count_rows("project") == 0


async def test_create_names_every_bad_field(client, alice):
    body = {"name": "", "description": 5, "color": "blue", "archived": "no", "extra": 1}
    response = await client.post(URL, json=body, headers=alice.headers)
    assert_problem(response, 400, "name", "description", "color", "archived", "extra")
    assert await count_rows("project") == 0


# --------------------------------------------------------------------------------------------
# Get / delete


async def test_get_missing_is_404(client, alice):
    response = await client.get(f"{URL}/4242", headers=alice.headers)
    body = assert_problem(response, 404)
    assert "4242" in body["detail"]


async def test_delete_answers_204_then_404(client, alice):
    project = await _create(client, alice)
    response = await client.delete(f"{URL}/{project['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert await count_rows("project") == 0
    assert_problem(await client.get(f"{URL}/{project['id']}", headers=alice.headers), 404)
    assert_problem(await client.delete(f"{URL}/{project['id']}", headers=alice.headers), 404)
    assert_problem(await client.patch(f"{URL}/{project['id']}", json={"name": "x"}, headers=alice.headers), 404)


async def test_delete_missing_is_404_and_deletes_nothing(client, alice):
    await _create(client, alice)
    assert_problem(await client.delete(f"{URL}/999", headers=alice.headers), 404)
    assert await count_rows("project") == 1


async def test_delete_cascades_to_its_tasks_only(client, alice):
    doomed = await _create(client, alice, name="Doomed")
    kept = await _create(client, alice, name="Kept")
    tasks = {}
    for key, project_id in [("a", doomed["id"]), ("b", doomed["id"]), ("kept", kept["id"]), ("inbox", None)]:
        response = await client.post(
            "/api/v1/tasks", json={"title": key, "project_id": project_id}, headers=alice.headers
        )
        assert response.status_code == 201, response.text
        tasks[key] = response.json()
    sub = await client.post(
        "/api/v1/tasks", json={"title": "sub", "parent_id": tasks["a"]["id"]}, headers=alice.headers
    )
    assert sub.status_code == 201
    comment = await client.post(
        f"/api/v1/tasks/{tasks['a']['id']}/comments", json={"body": "hello"}, headers=alice.headers
    )
    assert comment.status_code == 201
    assert await count_rows("task") == 5

    assert (await client.delete(f"{URL}/{doomed['id']}", headers=alice.headers)).status_code == 204

    for key in ("a", "b"):
        assert_problem(await client.get(f"/api/v1/tasks/{tasks[key]['id']}", headers=alice.headers), 404)
    # The subtask of a deleted task goes too, and so do the comments.
    assert_problem(await client.get(f"/api/v1/tasks/{sub.json()['id']}", headers=alice.headers), 404)
    assert await count_rows("comment") == 0
    for key in ("kept", "inbox"):
        assert (await client.get(f"/api/v1/tasks/{tasks[key]['id']}", headers=alice.headers)).status_code == 200
    assert await count_rows("task") == 2
    assert (await client.get(f"{URL}/{kept['id']}", headers=alice.headers)).status_code == 200


# --------------------------------------------------------------------------------------------
# Patch


async def test_patch_is_partial(client, alice):
    project = await _create(client, alice, name="Old", description="keep me", color="#112233")
    response = await client.patch(f"{URL}/{project['id']}", json={"name": "New"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert FIELDS <= set(body) == await documented_fields(client, f"{URL}/{{project_id}}")
    assert body["name"] == "New"
    assert body["description"] == "keep me"
    assert body["color"] == "#112233"
    assert body["archived"] is False
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert body["created_at"] == project["created_at"]
    assert dt.datetime.fromisoformat(body["updated_at"]) >= dt.datetime.fromisoformat(project["updated_at"])
    fetched = await client.get(f"{URL}/{project['id']}", headers=alice.headers)
    assert fetched.json() == body


async def test_patch_every_field(client, alice):
    project = await _create(client, alice)
    changes = {"name": "n" * 200, "description": "d" * 10_000, "color": "#abcdef", "archived": True}
    response = await client.patch(f"{URL}/{project['id']}", json=changes, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in changes} == changes


async def test_patch_null_clears_a_nullable_field(client, alice):
    project = await _create(client, alice, color="#123456")
    response = await client.patch(f"{URL}/{project['id']}", json={"color": None}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["color"] is None
    assert response.json()["name"] == project["name"]
    assert (await client.get(f"{URL}/{project['id']}", headers=alice.headers)).json()["color"] is None


BAD_PATCH_BODIES = [
    ({"name": None}, "name"),  # name-null
    ({"description": None}, "description"),  # description-null
    ({"archived": None}, "archived"),  # archived-null
    ({"name": ""}, "name"),  # name-empty
    ({"name": "n" * 201}, "name"),  # name-201
    ({"description": "d" * 10_001}, "description"),  # description-10001
    ({"color": "#12345g"}, "color"),  # color-bad
    ({"archived": 1}, "archived"),  # archived-int
    ({"id": 99}, "id"),  # id
    ({"version": 7}, "version"),  # version
    ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),  # created_at
    ({"updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),  # updated_at
    ({"owner": 2}, "owner"),  # owner
    ({"nickname": "x"}, "nickname"),  # unknown
    ({"name": "ok", "nickname": "x"}, "nickname"),  # valid-plus-unknown
]


async def test_patch_rejects_bad_bodies_and_changes_nothing(client, alice):
    project = await _create(client, alice, name="Same", color="#010203")
    for body, field in BAD_PATCH_BODIES:
        response = await client.patch(f"{URL}/{project['id']}", json=body, headers=alice.headers)
        assert_problem(response, 400, field, case=body)
        after = await client.get(f"{URL}/{project['id']}", headers=alice.headers)
        assert after.json() == project


async def test_patch_missing_is_404(client, alice):
    response = await client.patch(f"{URL}/31337", json={"name": "x"}, headers=alice.headers)
    assert_problem(response, 404)
    assert await count_rows("project") == 0


# --------------------------------------------------------------------------------------------
# Lists


async def test_list_envelope_and_defaults(client, alice):
    empty = await client.get(URL, headers=alice.headers)
    assert empty.status_code == 200
    assert empty.json() == {"items": [], "total": 0, "limit": 20, "offset": 0}
    for i in range(25):
        await _create(client, alice, name=f"p{i:02}")
    page = (await client.get(URL, headers=alice.headers)).json()
    assert set(page) == {"items", "total", "limit", "offset"}
    assert page["total"] == 25
    assert page["limit"] == 20
    assert page["offset"] == 0
    assert len(page["items"]) == 20
    assert FIELDS <= set(page["items"][0]) == await documented_fields(client, f"{URL}/{{project_id}}")


async def test_list_limit_and_offset_bounds(client, alice):
    for i in range(3):
        await _create(client, alice, name=f"p{i}")
    one = (await client.get(URL, params={"limit": 1}, headers=alice.headers)).json()
    assert len(one["items"]) == 1
    assert one["limit"] == 1
    hundred = (await client.get(URL, params={"limit": 100}, headers=alice.headers)).json()
    assert len(hundred["items"]) == 3
    assert hundred["limit"] == 100
    past_end = (await client.get(URL, params={"offset": 10}, headers=alice.headers)).json()
    assert past_end == {"items": [], "total": 3, "limit": 20, "offset": 10}


BAD_LIST_PARAMETERS = [
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"offset": -1}, "offset"),
    ({"offset": "x"}, "offset"),
    ({"archived": "maybe"}, "archived"),
    ({"sort": "color"}, "sort"),
    ({"sort": "name,colour"}, "sort"),
    ({"archived": "null"}, "archived"),
]


async def test_list_rejects_bad_parameters(client, alice):
    for params, field in BAD_LIST_PARAMETERS:
        response = await client.get(URL, params=params, headers=alice.headers)
        body = assert_problem(response, 400, field, case=params)
        assert field in body["detail"]


async def test_default_order_is_newest_first_with_ties_by_id(client, alice):
    ids = [(await _create(client, alice, name=f"p{i}"))["id"] for i in range(4)]
    # Newest first by created_at.
    await run_sql("UPDATE project SET created_at = now() - (id * interval '1 minute')")
    listed = (await client.get(URL, headers=alice.headers)).json()["items"]
    assert [p["id"] for p in listed] == ids
    # Equal created_at: the tie is broken by id (in the direction of the first key).
    await run_sql("UPDATE project SET created_at = '2024-01-01T00:00:00Z'")
    listed = (await client.get(URL, headers=alice.headers)).json()["items"]
    assert [p["id"] for p in listed] == sorted(ids, reverse=True)
    # And paging walks that same order without gaps or repeats.
    walked = []
    for offset in range(0, 4, 3):
        page = await client.get(URL, params={"limit": 3, "offset": offset}, headers=alice.headers)
        walked += [p["id"] for p in page.json()["items"]]
    assert walked == sorted(ids, reverse=True)


async def test_sort_by_name_with_ties_by_id(client, alice):
    b1 = (await _create(client, alice, name="b"))["id"]
    a1 = (await _create(client, alice, name="a"))["id"]
    b2 = (await _create(client, alice, name="b"))["id"]
    c1 = (await _create(client, alice, name="c"))["id"]
    ascending = (await client.get(URL, params={"sort": "name"}, headers=alice.headers)).json()["items"]
    assert [p["id"] for p in ascending] == [a1, b1, b2, c1]
    descending = (await client.get(URL, params={"sort": "-name"}, headers=alice.headers)).json()["items"]
    assert [p["id"] for p in descending] == [c1, b2, b1, a1]
    by_id = (await client.get(URL, params={"sort": "id"}, headers=alice.headers)).json()["items"]
    assert [p["id"] for p in by_id] == sorted([a1, b1, b2, c1])


async def test_sort_by_updated_at(client, alice):
    first = await _create(client, alice, name="first")
    second = await _create(client, alice, name="second")
    await run_sql("UPDATE project SET updated_at = '2024-01-01T00:00:00Z'")
    await client.patch(f"{URL}/{first['id']}", json={"description": "touched"}, headers=alice.headers)
    listed = (await client.get(URL, params={"sort": "-updated_at"}, headers=alice.headers)).json()["items"]
    assert [p["id"] for p in listed] == [first["id"], second["id"]]


async def test_archived_filter(client, alice):
    active = await _create(client, alice, name="active")
    archived = await _create(client, alice, name="archived", archived=True)
    later = await _create(client, alice, name="later")
    await client.patch(f"{URL}/{later['id']}", json={"archived": True}, headers=alice.headers)

    only_archived = (await client.get(URL, params={"archived": "true"}, headers=alice.headers)).json()
    assert {p["id"] for p in only_archived["items"]} == {archived["id"], later["id"]}
    assert only_archived["total"] == 2
    not_archived = (await client.get(URL, params={"archived": "false"}, headers=alice.headers)).json()
    assert [p["id"] for p in not_archived["items"]] == [active["id"]]
    assert not_archived["total"] == 1
    everything = (await client.get(URL, headers=alice.headers)).json()
    assert everything["total"] == 3
