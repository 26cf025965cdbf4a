"""Bad input never gives a 5xx: each gets a 4xx problem that says what was wrong, and nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.services.tasks import MAX_SEARCH_LENGTH
from app.tables import ALL_TABLES, RateLimit
from tests.api.problems import assert_problem, error_fields
from tests.conftest import ApiUser, count_rows

MIB = 1024 * 1024
# Every table but the rate-limit counts, which every request may lease from.
TABLES = [table._meta.tablename for table in ALL_TABLES if table is not RateLimit]


@pytest.fixture
async def seeded(client: httpx.AsyncClient, alice: ApiUser) -> dict[str, Any]:
    """One object of each kind, so PATCH and nested POST endpoints have a target."""

    async def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(url, json=body, headers=alice.headers)
        assert response.status_code == 201, response.text
        return response.json()

    project = await post("/api/v1/projects", {"name": "p"})
    label = await post("/api/v1/labels", {"name": "l"})
    task = await post("/api/v1/tasks", {"title": "t", "project_id": project["id"], "label_ids": [label["id"]]})
    comment = await post(f"/api/v1/tasks/{task['id']}/comments", {"body": "c"})
    return {"project": project, "label": label, "task": task, "comment": comment}


async def _state(client: httpx.AsyncClient, user: ApiUser, seeded: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {table: await count_rows(table) for table in TABLES}
    for key, url in (
        ("project", f"/api/v1/projects/{seeded['project']['id']}"),
        ("label", f"/api/v1/labels/{seeded['label']['id']}"),
        ("task", f"/api/v1/tasks/{seeded['task']['id']}"),
        ("comment", f"/api/v1/comments/{seeded['comment']['id']}"),
    ):
        state[key] = (await client.get(url, headers=user.headers)).json()
    return state


@pytest.fixture
async def unchanged(client: httpx.AsyncClient, alice: ApiUser, seeded: dict[str, Any]) -> AsyncIterator[None]:
    """Asserts, after the test, that no row and no seeded object changed."""
    before = await _state(client, alice, seeded)
    yield
    assert await _state(client, alice, seeded) == before


def _write_endpoints(seeded: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("POST", "/api/v1/projects"),
        ("PATCH", f"/api/v1/projects/{seeded['project']['id']}"),
        ("POST", "/api/v1/labels"),
        ("PATCH", f"/api/v1/labels/{seeded['label']['id']}"),
        ("POST", "/api/v1/tasks"),
        ("PATCH", f"/api/v1/tasks/{seeded['task']['id']}"),
        ("POST", "/api/v1/tasks/bulk"),
        ("PATCH", "/api/v1/tasks/bulk"),
        ("POST", f"/api/v1/tasks/{seeded['task']['id']}/comments"),
        ("PATCH", f"/api/v1/comments/{seeded['comment']['id']}"),
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/token"),
    ]


# --------------------------------------------------------------------------------------------
# Size, content type, syntax


async def test_body_over_one_mib_is_413_everywhere(client, alice, seeded, unchanged):
    big = b'{"name": "' + b"x" * MIB + b'"}'
    for method, url in _write_endpoints(seeded):
        response = await client.request(
            method, url, content=big, headers={**alice.headers, "Content-Type": "application/json"}
        )
        assert_problem(response, 413)


async def test_chunked_body_over_one_mib_is_413(client, alice, seeded, unchanged):
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 65_536
        yield b'"}'

    response = await client.post(
        "/api/v1/projects", content=chunks(), headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


async def test_a_body_of_exactly_one_mib_is_not_too_large(client, alice, seeded, unchanged):
    prefix, suffix = b'{"name": "n", "description": "', b'"}'
    body = prefix + b"d" * (MIB - len(prefix) - len(suffix)) + suffix
    assert len(body) == MIB
    response = await client.post(
        "/api/v1/projects", content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    # Within the size limit, so it is judged on its content: the description is too long.
    assert_problem(response, 400, "description")


WRONG_CONTENT_TYPES = (
    "text/plain",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
)


async def test_wrong_content_type_is_415(client, alice, seeded, unchanged):
    body = b'{"name": "x", "title": "x", "body": "x", "tasks": [{"title": "x"}]}'
    for content_type in WRONG_CONTENT_TYPES:
        for method, url in _write_endpoints(seeded):
            if url == "/api/v1/auth/token" and content_type == "application/x-www-form-urlencoded":
                continue  # the OAuth2 password form is allowed here (see test_auth.py)
            headers = {**alice.headers, "Content-Type": content_type}
            response = await client.request(method, url, content=body, headers=headers)
            problem = assert_problem(response, 415)
            assert "application/json" in problem["detail"]


async def test_json_with_charset_or_suffix_is_accepted(client, alice):
    for content_type in ("application/json; charset=utf-8", "application/problem+json"):
        response = await client.post(
            "/api/v1/projects", content=b'{"name": "ok"}', headers={**alice.headers, "Content-Type": content_type}
        )
        assert response.status_code == 201, (content_type, response.text)


MALFORMED = (
    b'{"name": ',  # truncated
    b"{'name': 'x'}",  # single quotes
    b'{"name": "x",}',  # trailing comma
    b'{"name": "x"} extra',  # trailing garbage
    b"NaN",
    b"\xff\xfe{}",  # not UTF-8
    b"[" * 50_000,  # nested deeper than any decoder recurses
)


async def _send_raw(client: httpx.AsyncClient, user: ApiUser, method: str, url: str, raw: bytes) -> httpx.Response:
    return await client.request(method, url, content=raw, headers={**user.headers, "Content-Type": "application/json"})


async def test_malformed_json_is_400(client, alice, seeded, unchanged):
    for raw in MALFORMED:
        for method, url in _write_endpoints(seeded):
            assert_problem(await _send_raw(client, alice, method, url, raw), 400)


async def test_a_body_that_is_not_an_object_is_400(client, alice, seeded, unchanged):
    for raw in (b"[]", b'"text"', b"1", b"true"):
        for method, url in _write_endpoints(seeded):
            assert_problem(await _send_raw(client, alice, method, url, raw), 400)


async def test_a_missing_body_is_400_naming_the_body(client, alice, seeded, unchanged):
    for raw in (b"", b"null"):
        for method, url in _write_endpoints(seeded):
            if url.startswith("/api/v1/auth/token"):
                continue  # credentials are checked by hand there; covered in test_auth.py
            response = await _send_raw(client, alice, method, url, raw)
            assert_problem(response, 400, "body")
            assert "'data'" not in response.text


# --------------------------------------------------------------------------------------------
# Wrong values, each named


WRONG_VALUES = (
    ("project", {"name": ["x"]}, "name"),
    ("project", {"name": "x", "archived": "true"}, "archived"),
    ("project", {"name": "x", "archived": 0}, "archived"),
    ("project", {"name": "x", "description": {"a": 1}}, "description"),
    ("label", {"name": 12}, "name"),
    ("label", {"name": "x", "color": ["#000000"]}, "color"),
    ("task", {"title": "x", "priority": "high"}, "priority"),
    ("task", {"title": "x", "priority": 5}, "priority"),
    ("task", {"title": "x", "priority": -1}, "priority"),
    ("task", {"title": "x", "priority": 1.5}, "priority"),
    ("task", {"title": "x", "priority": True}, "priority"),
    ("task", {"title": "x", "priority": 2**70}, "priority"),
    ("task", {"title": "x", "position": "1"}, "position"),
    ("task", {"title": "x", "position": 2**31}, "position"),
    ("task", {"title": "x", "position": 2**63}, "position"),
    ("task", {"title": "x", "status": "blocked"}, "status"),
    ("task", {"title": "x", "status": "DONE"}, "status"),
    ("task", {"title": "x", "status": None}, "status"),
    ("task", {"title": "x", "due_at": "tomorrow"}, "due_at"),
    ("task", {"title": "x", "due_at": "2030-01-01T10:00:00"}, "due_at"),
    ("task", {"title": "x", "due_at": "2030-01-01"}, "due_at"),
    ("task", {"title": "x", "due_at": 1893456000}, "due_at"),
    ("task", {"title": "x", "project_id": "1"}, "project_id"),
    ("task", {"title": "x", "project_id": 2**40}, "project_id"),
    ("task", {"title": "x", "parent_id": 1.0}, "parent_id"),
    ("task", {"title": "x", "label_ids": "1"}, "label_ids"),
    ("task", {"title": "x", "label_ids": [1, "2"]}, "label_ids"),
    ("task", {"title": "x", "label_ids": [2**40]}, "label_ids"),
    ("task", {"title": "x", "label_ids": list(range(1, 102))}, "label_ids"),
    ("task", {"title": "x", "labels": []}, "labels"),
    ("task", {"title": "x", "completed_at": "2030-01-01T10:00:00Z"}, "completed_at"),
    ("task", {"title": "t" * 501}, "title"),
    ("task", {"title": "x", "description": "d" * 20_001}, "description"),
    ("comment", {"body": ["x"]}, "body"),
)


async def test_wrong_types_and_values_are_400_naming_the_field(client, alice, seeded, unchanged):
    create_url = {
        "project": "/api/v1/projects",
        "label": "/api/v1/labels",
        "task": "/api/v1/tasks",
        "comment": f"/api/v1/tasks/{seeded['task']['id']}/comments",
    }
    patch_url = {
        "project": f"/api/v1/projects/{seeded['project']['id']}",
        "label": f"/api/v1/labels/{seeded['label']['id']}",
        "task": f"/api/v1/tasks/{seeded['task']['id']}",
        "comment": f"/api/v1/comments/{seeded['comment']['id']}",
    }
    for target, body, field in WRONG_VALUES:
        assert_problem(await client.post(create_url[target], json=body, headers=alice.headers), 400, field)
        patch_body = {k: v for k, v in body.items() if k == field}
        assert_problem(await client.patch(patch_url[target], json=patch_body, headers=alice.headers), 400, field)


async def test_several_bad_fields_are_all_named(client, alice, seeded, unchanged):
    task_body = {
        "title": "",
        "status": "nope",
        "priority": 9,
        "due_at": "soon",
        "position": "1",
        "label_ids": "1",
        "colour": "red",
    }
    expected = {"title", "status", "priority", "due_at", "position", "label_ids", "colour"}
    created = await client.post("/api/v1/tasks", json=task_body, headers=alice.headers)
    assert_problem(created, 400, *expected)
    patched = await client.patch(f"/api/v1/tasks/{seeded['task']['id']}", json=task_body, headers=alice.headers)
    assert_problem(patched, 400, *expected)
    project = await client.post(
        "/api/v1/projects", json={"name": "", "color": "red", "archived": "no", "id": 3}, headers=alice.headers
    )
    assert_problem(project, 400, "name", "color", "archived", "id")
    label = await client.patch(
        f"/api/v1/labels/{seeded['label']['id']}", json={"name": None, "color": 1, "version": 2}, headers=alice.headers
    )
    assert_problem(label, 400, "name", "color", "version")
    comment = await client.post(
        f"/api/v1/tasks/{seeded['task']['id']}/comments", json={"body": "", "task_id": 1}, headers=alice.headers
    )
    assert_problem(comment, 400, "body", "task_id")
    # Missing required fields are named too.
    missing = await client.post("/api/v1/tasks", json={"priority": "x"}, headers=alice.headers)
    assert_problem(missing, 400, "title", "priority")


async def test_several_bad_query_parameters_are_all_named(client, alice):
    response = await client.get(
        "/api/v1/tasks",
        params={"limit": 0, "offset": -1, "status": "bogus", "priority": 9, "due_before": "later"},
        headers=alice.headers,
    )
    body = assert_problem(response, 400, "limit", "offset", "status", "priority", "due_before")
    for name in ("limit", "offset", "status", "priority", "due_before"):
        assert name in body["detail"]


BAD_TASK_LIST_PARAMETERS = (
    ({"status": "blocked"}, "status"),
    ({"priority": "high"}, "priority"),
    ({"priority": -1}, "priority"),
    ({"label_id": "x"}, "label_id"),
    ({"project_id": 0}, "project_id"),
    ({"project_id": 2**40}, "project_id"),
    ({"parent_id": "me"}, "parent_id"),
    ({"inbox": "2"}, "inbox"),
    ({"overdue": "often"}, "overdue"),
    ({"due_before": "2030-01-01T00:00:00"}, "due_before"),
    ({"due_after": "yesterday"}, "due_after"),
    ({"q": "x" * (MAX_SEARCH_LENGTH + 1)}, "q"),
    ({"sort": "-"}, "sort"),
    ({"sort": "owner"}, "sort"),
    ({"sort": "id," * 100}, "sort"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"paginate": "pages"}, "paginate"),
    ({"limit": 2**40}, "limit"),
    ({"offset": 2**40}, "offset"),
)


async def test_bad_task_list_parameters_are_400_naming_them(client, alice):
    for params, field in BAD_TASK_LIST_PARAMETERS:
        response = await client.get("/api/v1/tasks", params=params, headers=alice.headers)
        assert_problem(response, 400, field)


async def test_out_of_range_path_ids_are_400(client, alice):
    for object_id in ("0", "-1", str(2**31), str(2**63)):
        for url, name in (
            (f"/api/v1/projects/{object_id}", "project_id"),
            (f"/api/v1/labels/{object_id}", "label_id"),
            (f"/api/v1/tasks/{object_id}", "task_id"),
            (f"/api/v1/tasks/{object_id}/comments", "task_id"),
            (f"/api/v1/comments/{object_id}", "comment_id"),
        ):
            assert_problem(await client.get(url, headers=alice.headers), 400, name)


async def test_nul_characters_are_400_naming_the_field_and_not_stored(client, alice, seeded, unchanged):
    task_id = seeded["task"]["id"]
    for method, url, body, status, field in (
        ("POST", "/api/v1/projects", {"name": "a\u0000b"}, 400, "name"),
        ("PATCH", f"/api/v1/projects/{seeded['project']['id']}", {"description": "\u0000"}, 400, "description"),
        ("POST", "/api/v1/labels", {"name": "\u0000"}, 400, "name"),
        ("POST", "/api/v1/tasks", {"title": "nul\u0000"}, 400, "title"),
        ("PATCH", f"/api/v1/tasks/{task_id}", {"title": "ok", "description": "x\u0000"}, 400, "description"),
        ("POST", f"/api/v1/tasks/{task_id}/comments", {"body": "\u0000"}, 400, "body"),
        # Bulk items are 422 naming the item (SPEC); the bulk PATCH's one change set is the body.
        ("POST", "/api/v1/tasks/bulk", {"tasks": [{"title": "ok"}, {"title": "\u0000"}]}, 422, "tasks[1].title"),
        ("PATCH", "/api/v1/tasks/bulk", {"ids": [task_id], "changes": {"title": "\u0000"}}, 400, "changes.title"),
    ):
        response = await client.request(method, url, json=body, headers=alice.headers)
        problem = assert_problem(response, status, field, case=body)
        assert [e["field"] for e in problem["errors"]] == [field], problem
        assert "NUL" in problem["errors"][0]["message"], problem
    search = await client.get("/api/v1/tasks", params={"q": "a\u0000"}, headers=alice.headers)
    problem = assert_problem(search, 400, "q")
    assert "NUL" in problem["errors"][0]["message"], problem


async def test_a_backslash_u0000_in_text_is_stored_as_written(client, alice):
    # Only a real NUL is refused: the six characters \u0000 are ordinary text.
    response = await client.post("/api/v1/tasks", json={"title": "C:\\u0000dir"}, headers=alice.headers)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "C:\\u0000dir"


FAR_DATETIMES = ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00")


async def test_datetimes_beyond_the_database_range_are_400_naming_the_field(client, alice, seeded, unchanged):
    task_id = seeded["task"]["id"]
    for due_at in FAR_DATETIMES:
        for method, url, body, status, field in (
            ("POST", "/api/v1/tasks", {"title": "x", "due_at": due_at}, 400, "due_at"),
            ("PATCH", f"/api/v1/tasks/{task_id}", {"due_at": due_at}, 400, "due_at"),
            ("POST", "/api/v1/tasks/bulk", {"tasks": [{"title": "x", "due_at": due_at}]}, 422, "tasks[0].due_at"),
            ("PATCH", "/api/v1/tasks/bulk", {"ids": [task_id], "changes": {"due_at": due_at}}, 400, "changes.due_at"),
        ):
            response = await client.request(method, url, json=body, headers=alice.headers)
            problem = assert_problem(response, status, field, case=body)
            assert "range" in problem["errors"][0]["message"], problem
        for param in ("due_before", "due_after"):
            response = await client.get("/api/v1/tasks", params={param: due_at}, headers=alice.headers)
            assert_problem(response, 400, param)


async def test_datetimes_near_the_ends_of_the_range_are_stored(client, alice):
    # Years 0001 and 9999 are fine while they stay in range in UTC.
    for due_at, stored in (
        ("9999-12-31T00:00:00+01:00", "9999-12-30T23:00:00Z"),
        ("0001-01-01T12:00:00+00:00", "0001-01-01T12:00:00Z"),
    ):
        response = await client.post("/api/v1/tasks", json={"title": "x", "due_at": due_at}, headers=alice.headers)
        assert response.status_code == 201, response.text
        assert response.json()["due_at"] == stored


async def test_bad_headers_are_400_naming_them(client, alice, seeded, unchanged):
    stale = await client.patch(
        f"/api/v1/projects/{seeded['project']['id']}",
        json={"name": "x"},
        headers={**alice.headers, "If-Match": "yesterday"},
    )
    assert_problem(stale, 400, "If-Match")
    for key in ("", "k" * 256):
        response = await client.post(
            "/api/v1/projects", json={"name": "x"}, headers={**alice.headers, "Idempotency-Key": key}
        )
        assert_problem(response, 400, "Idempotency-Key")


async def test_bulk_bodies_are_checked(client, alice, seeded, unchanged):
    for body, status, field in (
        ({"tasks": []}, 400, "tasks"),
        ({"tasks": [{"title": "x"}] * 101}, 400, "tasks"),
        ({"tasks": [1]}, 400, "tasks[0]"),
        ({"items": [{"title": "x"}]}, 400, "items"),
        # A well-formed envelope with an invalid item: 422 naming the item's index (SPEC).
        ({"tasks": [{"title": "ok"}, {"title": ""}]}, 422, "tasks[1].title"),
    ):
        response = await client.post("/api/v1/tasks/bulk", json=body, headers=alice.headers)
        assert_problem(response, status, field)
    for body, field in (
        ({"ids": [], "changes": {}}, "ids"),
        ({"ids": "1", "changes": {}}, "ids"),
        ({"ids": [seeded["task"]["id"]]}, "changes"),
        ({"ids": [seeded["task"]["id"]], "changes": []}, "changes"),
        ({"ids": [seeded["task"]["id"]], "changes": {"priority": 7}}, "changes.priority"),
    ):
        response = await client.patch("/api/v1/tasks/bulk", json=body, headers=alice.headers)
        assert_problem(response, 400, field)


# --------------------------------------------------------------------------------------------
# Routing errors are problems too


async def test_unknown_routes_and_methods_are_problems(client, alice, seeded):
    assert_problem(await client.get("/api/v1/nothing-here", headers=alice.headers), 404)
    assert_problem(await client.get("/api/v1/tasks/abc", headers=alice.headers), 404)
    assert_problem(await client.put(f"/api/v1/tasks/{seeded['task']['id']}", json={}, headers=alice.headers), 405)
    assert_problem(await client.delete("/api/v1/projects", headers=alice.headers), 405)
    assert_problem(
        await client.post(f"/api/v1/comments/{seeded['comment']['id']}", json={}, headers=alice.headers), 405
    )


async def test_errors_never_echo_tracebacks(client, alice, seeded):
    response = await client.post(
        "/api/v1/tasks", json={"title": "x", "due_at": "9999-12-31T23:59:59-14:00"}, headers=alice.headers
    )
    assert_problem(response, 400)
    for marker in ("Traceback", "asyncpg", 'File "', "piccolo"):
        assert marker not in response.text
    assert set(error_fields(response)) <= {"due_at", "body"}
