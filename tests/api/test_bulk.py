"""POST and PATCH /api/v1/tasks/bulk: up to 100 tasks, all or nothing (SPEC "Safe writes").

Choices where SPEC is silent (pinned here so a change is deliberate):
- Bulk create answers 201 without a Location header (there is no single created object).
- Every item is validated before anything is written, so a body with several invalid items gets
  every one named (``tasks[i].<field>`` plus ``"index": i``), not only the first.
- Bulk PATCH answers the tasks in the order of ``ids``; a repeated id is changed once and listed
  once.
- A ``changes`` body that would be a 400 on PATCH /api/v1/tasks/{id} is a 400 here too, naming
  ``changes.<field>``; a reference to another user's project or label in ``changes`` is a 422.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.problems import assert_problem
from tests.conftest import count_rows

API = "/api/v1"
BULK = f"{API}/tasks/bulk"


def _fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


async def _post(client: httpx.AsyncClient, user: Any, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(url, json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def _task(client: httpx.AsyncClient, user: Any, **body: Any) -> dict[str, Any]:
    return await _post(client, user, f"{API}/tasks", {"title": "t", **body})


async def _get(client: httpx.AsyncClient, user: Any, task_id: int) -> dict[str, Any]:
    response = await client.get(f"{API}/tasks/{task_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# --------------------------------------------------------------------------------------------
# Bulk create


async def test_bulk_create_answers_every_task_in_input_order_with_labels(client, alice):
    project = await _post(client, alice, f"{API}/projects", {"name": "P"})
    zeta = await _post(client, alice, f"{API}/labels", {"name": "zeta", "color": "#00ff00"})
    alpha = await _post(client, alice, f"{API}/labels", {"name": "alpha"})
    items = [
        {"title": "c", "project_id": project["id"], "label_ids": [zeta["id"], alpha["id"]], "priority": 4},
        {"title": "a", "status": "done"},
        {"title": "b", "description": "second b", "label_ids": [alpha["id"]]},
    ]
    response = await client.post(BULK, json={"tasks": items}, headers=alice.headers)
    assert response.status_code == 201, response.text
    assert "location" not in response.headers
    created = response.json()["items"]
    assert list(response.json()) == ["items"]
    assert [t["title"] for t in created] == ["c", "a", "b"]
    assert created[0]["project_id"] == project["id"]
    assert created[0]["priority"] == 4
    assert created[0]["labels"] == [
        {"id": alpha["id"], "name": "alpha", "color": None},
        {"id": zeta["id"], "name": "zeta", "color": "#00ff00"},
    ]
    assert created[1]["labels"] == []
    assert created[1]["status"] == "done"
    assert created[1]["completed_at"] is not None
    assert created[2]["labels"] == [{"id": alpha["id"], "name": "alpha", "color": None}]
    assert all(t["version"] == 1 for t in created)
    assert len({t["id"] for t in created}) == 3
    for task in created:
        assert await _get(client, alice, task["id"]) == task
    assert await count_rows("task") == 3
    assert await count_rows("task_label") == 3


async def test_bulk_create_takes_one_hundred_tasks(client, alice):
    response = await client.post(BULK, json={"tasks": [{"title": f"t{n}"} for n in range(100)]}, headers=alice.headers)
    assert response.status_code == 201, response.text
    assert [t["title"] for t in response.json()["items"]] == [f"t{n}" for n in range(100)]
    assert await count_rows("task") == 100


@pytest.mark.parametrize("count", [0, 101])
async def test_bulk_create_of_zero_or_more_than_one_hundred_is_400(client, alice, count):
    response = await client.post(BULK, json={"tasks": [{"title": "t"}] * count}, headers=alice.headers)
    body = assert_problem(response, 400)
    assert "tasks" in _fields(body)
    assert await count_rows("task") == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"tasks": "nope"}, {"tasks": [{"title": "a"}], "extra": 1}, {"tasks": [1, 2]}, {"tasks": None}],
    ids=["missing", "not-a-list", "unknown-field", "items-not-objects", "null"],
)
async def test_bulk_create_with_a_malformed_envelope_is_400(client, alice, body):
    assert_problem(await client.post(BULK, json=body, headers=alice.headers), 400)
    assert await count_rows("task") == 0


async def test_bulk_create_with_one_invalid_item_names_its_index_and_creates_nothing(client, alice, bob):
    mine = await _post(client, alice, f"{API}/labels", {"name": "mine"})
    bobs_project = await _post(client, bob, f"{API}/projects", {"name": "bob's"})
    bobs_label = await _post(client, bob, f"{API}/labels", {"name": "bob's"})
    bobs_task = await _task(client, bob)
    bad_items = [
        ("title", {"description": "no title"}),
        ("status", {"title": "t", "status": "finished"}),
        ("priority", {"title": "t", "priority": 5}),
        ("project_id", {"title": "t", "project_id": bobs_project["id"]}),
        ("project_id", {"title": "t", "project_id": 999_999}),
        ("label_ids", {"title": "t", "label_ids": [mine["id"], bobs_label["id"]]}),
        ("parent_id", {"title": "t", "parent_id": bobs_task["id"]}),
        ("parent_id", {"title": "t", "parent_id": 999_999}),
        ("version", {"title": "t", "version": 1}),
    ]
    tasks_before = await count_rows("task")
    for field, bad in bad_items:
        items: list[dict[str, Any]] = [{"title": f"ok {n}", "label_ids": [mine["id"]]} for n in range(5)]
        items[3] = bad
        response = await client.post(BULK, json={"tasks": items}, headers=alice.headers)
        body = assert_problem(response, 422)
        assert body["errors"] == [
            {"field": f"tasks[3].{field}", "index": 3, "message": body["errors"][0]["message"]}
        ], field
        assert await count_rows("task") == tasks_before, field
        assert await count_rows("task_label") == 0, field


async def test_bulk_create_names_every_invalid_item(client, alice):
    items = [{"title": "ok"}, {"title": ""}, {"title": "ok"}, {"title": "t", "status": "nope"}, {}]
    body = assert_problem(await client.post(BULK, json={"tasks": items}, headers=alice.headers), 422)
    assert _fields(body) == {"tasks[1].title", "tasks[3].status", "tasks[4].title"}
    assert {e["index"] for e in body["errors"]} == {1, 3, 4}
    assert await count_rows("task") == 0


async def test_bulk_create_of_subtasks_of_an_existing_task(client, alice):
    parent = await _task(client, alice, title="parent")
    items = [{"title": "one", "parent_id": parent["id"]}, {"title": "two", "parent_id": parent["id"]}]
    response = await client.post(BULK, json={"tasks": items}, headers=alice.headers)
    assert response.status_code == 201, response.text
    assert [t["parent_id"] for t in response.json()["items"]] == [parent["id"], parent["id"]]
    listed = await client.get(f"{API}/tasks", params={"parent_id": parent["id"]}, headers=alice.headers)
    assert listed.json()["total"] == 2


async def test_bulk_create_needs_a_token(client):
    response = await client.post(BULK, json={"tasks": [{"title": "t"}]})
    assert_problem(response, 401)
    assert await count_rows("task") == 0


# --------------------------------------------------------------------------------------------
# Bulk patch


async def test_bulk_patch_changes_every_task_and_bumps_versions(client, alice):
    first, second, untouched = [await _task(client, alice, title=f"t{n}") for n in range(3)]
    response = await client.patch(
        BULK,
        json={"ids": [second["id"], first["id"]], "changes": {"priority": 3, "description": "triaged"}},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert list(response.json()) == ["items"]
    assert [t["id"] for t in items] == [second["id"], first["id"]]
    assert all(t["priority"] == 3 and t["description"] == "triaged" and t["version"] == 2 for t in items)
    assert [t["title"] for t in items] == ["t1", "t0"]
    for task in items:
        assert await _get(client, alice, task["id"]) == task
    assert await _get(client, alice, untouched["id"]) == untouched
    # The bump is a real version change: a writer still holding version 1 is now stale.
    stale = await client.patch(
        f"{API}/tasks/{first['id']}", json={"title": "late"}, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert_problem(stale, 412)
    assert stale.headers["etag"] == '"2"'


async def test_bulk_patch_applies_the_completed_at_rules(client, alice):
    already_done = await _task(client, alice, title="done", status="done")
    todo = await _task(client, alice, title="todo")
    ids = [already_done["id"], todo["id"]]
    done = await client.patch(BULK, json={"ids": ids, "changes": {"status": "done"}}, headers=alice.headers)
    assert done.status_code == 200, done.text
    by_id = {t["id"]: t for t in done.json()["items"]}
    # Staying done keeps the original completion time; becoming done sets one.
    assert by_id[already_done["id"]]["completed_at"] == already_done["completed_at"]
    assert by_id[todo["id"]]["completed_at"] is not None
    assert all(t["status"] == "done" and t["version"] == 2 for t in by_id.values())
    reopened = await client.patch(BULK, json={"ids": ids, "changes": {"status": "in_progress"}}, headers=alice.headers)
    assert reopened.status_code == 200, reopened.text
    assert all(t["completed_at"] is None and t["version"] == 3 for t in reopened.json()["items"])


async def test_bulk_patch_label_ids_replace_the_set_on_every_task(client, alice):
    red = await _post(client, alice, f"{API}/labels", {"name": "red"})
    blue = await _post(client, alice, f"{API}/labels", {"name": "blue"})
    green = await _post(client, alice, f"{API}/labels", {"name": "green"})
    one = await _task(client, alice, label_ids=[red["id"]])
    two = await _task(client, alice, label_ids=[red["id"], blue["id"]])
    other = await _task(client, alice, label_ids=[red["id"]])
    ids = [one["id"], two["id"]]
    response = await client.patch(
        BULK, json={"ids": ids, "changes": {"label_ids": [green["id"], blue["id"]]}}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    expected = [{"id": blue["id"], "name": "blue", "color": None}, {"id": green["id"], "name": "green", "color": None}]
    for task in response.json()["items"]:
        assert task["labels"] == expected
        assert task["version"] == 2
        assert (await _get(client, alice, task["id"]))["labels"] == expected
    assert (await _get(client, alice, other["id"]))["labels"] == [{"id": red["id"], "name": "red", "color": None}]
    cleared = await client.patch(BULK, json={"ids": ids, "changes": {"label_ids": []}}, headers=alice.headers)
    assert cleared.status_code == 200, cleared.text
    assert [t["labels"] for t in cleared.json()["items"]] == [[], []]
    assert await count_rows("task_label") == 1


async def test_bulk_patch_with_another_users_task_is_404_naming_it_and_changes_nothing(client, alice, bob):
    mine = [await _task(client, alice, title=f"mine {n}") for n in range(3)]
    label = await _post(client, alice, f"{API}/labels", {"name": "l"})
    theirs = await _task(client, bob, title="theirs")
    for foreign in (theirs["id"], 999_999):
        ids = [mine[0]["id"], foreign, mine[1]["id"]]
        response = await client.patch(
            BULK, json={"ids": ids, "changes": {"title": "hijacked", "label_ids": [label["id"]]}}, headers=alice.headers
        )
        body = assert_problem(response, 404)
        assert str(foreign) in body["detail"]
    for task in mine:
        assert await _get(client, alice, task["id"]) == task
    assert (await _get(client, bob, theirs["id"]))["title"] == "theirs"
    assert await count_rows("task_label") == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"priority": 9}, "changes.priority"),
        ({"status": "finished"}, "changes.status"),
        ({"title": None}, "changes.title"),
        ({"title": ""}, "changes.title"),
        ({"title": "x" * 501}, "changes.title"),
        ({"due_at": "tomorrow"}, "changes.due_at"),
        ({"owner": 2}, "changes.owner"),
        ({"version": 5}, "changes.version"),
        ({"completed_at": None}, "changes.completed_at"),
        ({"colour": "red"}, "changes.colour"),
        ({"label_ids": "1"}, "changes.label_ids"),
    ],
)
async def test_bulk_patch_with_invalid_changes_is_400_naming_the_field(client, alice, changes, field):
    tasks = [await _task(client, alice, title=f"t{n}") for n in range(2)]
    response = await client.patch(
        BULK, json={"ids": [t["id"] for t in tasks], "changes": {"position": 7, **changes}}, headers=alice.headers
    )
    body = assert_problem(response, 400)
    assert _fields(body) == {field}
    for task in tasks:
        assert await _get(client, alice, task["id"]) == task


async def test_bulk_patch_with_a_foreign_reference_is_422_and_changes_nothing(client, alice, bob):
    mine = await _post(client, alice, f"{API}/labels", {"name": "mine"})
    bobs_label = await _post(client, bob, f"{API}/labels", {"name": "bob's"})
    bobs_project = await _post(client, bob, f"{API}/projects", {"name": "bob's"})
    tasks = [await _task(client, alice, title=f"t{n}", label_ids=[mine["id"]]) for n in range(2)]
    ids = [t["id"] for t in tasks]
    for changes, field in (
        ({"title": "moved", "label_ids": [bobs_label["id"]]}, "changes.label_ids"),
        ({"title": "moved", "project_id": bobs_project["id"]}, "changes.project_id"),
        ({"title": "moved", "parent_id": 999_999}, "changes.parent_id"),
    ):
        response = await client.patch(BULK, json={"ids": ids, "changes": changes}, headers=alice.headers)
        body = assert_problem(response, 422)
        assert _fields(body) == {field}, body
        for task in tasks:
            assert await _get(client, alice, task["id"]) == task
    assert await count_rows("task_label") == 2


async def test_bulk_patch_cannot_make_a_task_its_own_ancestor(client, alice):
    parent = await _task(client, alice, title="parent")
    child = await _task(client, alice, title="child", parent_id=parent["id"])
    response = await client.patch(
        BULK, json={"ids": [parent["id"]], "changes": {"parent_id": child["id"]}}, headers=alice.headers
    )
    assert_problem(response, 422)
    assert await _get(client, alice, parent["id"]) == parent


@pytest.mark.parametrize(
    "body",
    [
        {"ids": [], "changes": {"priority": 1}},
        {"ids": list(range(1, 102)), "changes": {"priority": 1}},
        {"ids": [0], "changes": {"priority": 1}},
        {"ids": ["1"], "changes": {"priority": 1}},
        {"ids": [1.0], "changes": {"priority": 1}},
        {"changes": {"priority": 1}},
        {"ids": [1]},
        {"ids": [1], "changes": [], "more": 1},
    ],
    ids=["empty", "101", "zero-id", "string-id", "float-id", "no-ids", "no-changes", "unknown-field"],
)
async def test_bulk_patch_with_a_malformed_envelope_is_400(client, alice, body):
    task = await _task(client, alice)
    assert_problem(await client.patch(BULK, json=body, headers=alice.headers), 400)
    assert await _get(client, alice, task["id"]) == task


async def test_bulk_patch_changes_a_repeated_id_once(client, alice):
    task = await _task(client, alice)
    response = await client.patch(
        BULK, json={"ids": [task["id"], task["id"]], "changes": {"priority": 2}}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert [(t["id"], t["version"]) for t in response.json()["items"]] == [(task["id"], 2)]


async def test_bulk_patch_of_one_hundred_tasks(client, alice):
    created = await client.post(BULK, json={"tasks": [{"title": f"t{n}"} for n in range(100)]}, headers=alice.headers)
    ids = [t["id"] for t in created.json()["items"]]
    response = await client.patch(BULK, json={"ids": ids, "changes": {"status": "done"}}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert [t["id"] for t in response.json()["items"]] == ids
    done = await client.get(f"{API}/tasks", params={"status": "done"}, headers=alice.headers)
    assert done.json()["total"] == 100
