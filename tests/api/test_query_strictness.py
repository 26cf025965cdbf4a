"""Query values are read strictly, by the type each handler declares (app.controllers.params,
STRICT_QUERY_SPELLINGS): integers are plain decimal integers, datetimes RFC 3339 with a zone, booleans
true or false; a parameter that takes one value may be given once.

Litestar alone converts leniently: ``offset=1e3``, ``project_id=1.0`` and ``due_before=1e10``
(an epoch) were accepted, and ``due_before=253402300800`` overflowed into a 500.
"""

from __future__ import annotations

import pytest

from tests.api.problems import assert_problem

NOT_INTEGERS = ["1e3", "1.0", "1.5", "0x10", "1_000", " 1", "+1", "\u0661", "", "true"]  # \u0661: Arabic-Indic one
NOT_DATETIMES = [
    "1e10",
    "253402300800",
    "1700000000",
    "-1",
    "2030-01-01",  # a date is not an instant
    "2030-01-01T00:00:00",  # no zone
    "2030-01-01T00:00Z",  # no seconds
    "20300101T000000Z",  # basic format is not RFC 3339
    "",
]
GOOD_DATETIMES = ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.123456+02:00", "2030-01-01t00:00:00z"]


async def _task_id(client, user) -> int:
    response = await client.post("/api/v1/tasks", json={"title": "t"}, headers=user.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _list_paths(client, user) -> list[str]:
    task_id = await _task_id(client, user)
    return ["/api/v1/tasks", "/api/v1/projects", "/api/v1/labels", f"/api/v1/tasks/{task_id}/comments"]


async def test_integer_query_values_must_be_plain_decimal_integers(client, alice):
    for path in await _list_paths(client, alice):
        for name in ("limit", "offset"):
            for value in NOT_INTEGERS:
                response = await client.get(path, params={name: value}, headers=alice.headers)
                assert_problem(response, 400, name, case=(path, name, value))
        ok = await client.get(path, params={"limit": "7", "offset": "0"}, headers=alice.headers)
        assert ok.status_code == 200, (path, ok.text)


@pytest.mark.parametrize("name", ["project_id", "parent_id", "priority", "label_id"])
async def test_task_filter_ids_must_be_plain_decimal_integers(client, alice, name):
    for value in NOT_INTEGERS:
        response = await client.get("/api/v1/tasks", params={name: value}, headers=alice.headers)
        assert_problem(response, 400, name, case=(name, value))
    if name in {"priority", "label_id"}:
        # Repeatable parameters: every value is checked, not only the first.
        response = await client.get("/api/v1/tasks", params=[(name, "1"), (name, "2.0")], headers=alice.headers)
        assert_problem(response, 400, name)
        ok = await client.get("/api/v1/tasks", params=[(name, "1"), (name, "2")], headers=alice.headers)
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("name", ["due_before", "due_after"])
async def test_datetime_query_values_must_be_rfc3339_with_a_zone(client, alice, name):
    for value in NOT_DATETIMES:
        response = await client.get("/api/v1/tasks", params={name: value}, headers=alice.headers)
        assert_problem(response, 400, name, case=(name, value))
    for value in GOOD_DATETIMES:
        response = await client.get("/api/v1/tasks", params={name: value}, headers=alice.headers)
        assert response.status_code == 200, (value, response.text)


async def test_the_epoch_that_overflowed_is_a_400_not_a_500(client, alice):
    response = await client.get("/api/v1/tasks", params={"due_before": "253402300800"}, headers=alice.headers)
    assert_problem(response, 400, "due_before")


async def test_every_offending_parameter_is_named(client, alice):
    # Misspelled values and, in the same 400, values out of range (limit) or unknown (status).
    params = {"offset": "1e3", "project_id": "1.0", "due_before": "1e10", "limit": "0", "status": "x", "sort": "id"}
    body = assert_problem(await client.get("/api/v1/tasks", params=params, headers=alice.headers), 400)
    assert {e["field"] for e in body["errors"]} == {"offset", "project_id", "due_before", "limit", "status"}
    assert all(e["source"] == "query" for e in body["errors"])


async def test_filters_with_strict_values_still_filter(client, alice):
    """The check only refuses spellings: well-spelled values reach the filters unchanged."""
    project = await client.post("/api/v1/projects", json={"name": "p"}, headers=alice.headers)
    project_id = project.json()["id"]
    body = {"title": "due", "project_id": project_id, "priority": 3, "due_at": "2030-01-01T12:00:00Z"}
    created = await client.post("/api/v1/tasks", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    await _task_id(client, alice)  # another task, matching none of the filters
    params = {
        "project_id": str(project_id),
        "priority": "3",
        "due_before": "2030-01-01T13:00:00+01:00",  # 12:00Z exactly: a strict bound, so excluded
        "due_after": "2030-01-01T11:59:59Z",
    }
    response = await client.get("/api/v1/tasks", params=params, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []
    params["due_before"] = "2030-01-01T12:00:01Z"
    response = await client.get("/api/v1/tasks", params=params, headers=alice.headers)
    assert [t["id"] for t in response.json()["items"]] == [created.json()["id"]]


@pytest.mark.parametrize(
    ("path", "name"), [("/api/v1/projects", "archived"), ("/api/v1/tasks", "inbox"), ("/api/v1/tasks", "overdue")]
)
async def test_boolean_query_values_are_true_or_false(client, alice, path, name):
    for value in ["null", "1", "0", "yes", "True", ""]:
        response = await client.get(path, params={name: value}, headers=alice.headers)
        assert_problem(response, 400, name, case=(path, name, value))
    for value in ["true", "false"]:
        ok = await client.get(path, params={name: value}, headers=alice.headers)
        assert ok.status_code == 200, (path, name, value, ok.text)


async def test_a_one_value_parameter_given_twice_is_400_naming_it(client, alice):
    cases = [
        ("/api/v1/projects", [("archived", "true"), ("archived", "true")], "archived"),
        ("/api/v1/tasks", [("limit", "5"), ("limit", "6")], "limit"),
        ("/api/v1/tasks", [("q", "a"), ("q", "b")], "q"),
        ("/api/v1/labels", [("sort", "name"), ("sort", "id")], "sort"),
    ]
    for path, params, name in cases:
        response = await client.get(path, params=params, headers=alice.headers)
        assert_problem(response, 400, name, case=(path, params))
    # Repeatable filters stay repeatable.
    ok = await client.get("/api/v1/tasks", params=[("status", "todo"), ("status", "done")], headers=alice.headers)
    assert ok.status_code == 200, ok.text
