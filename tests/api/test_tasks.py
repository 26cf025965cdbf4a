"""Task CRUD over HTTP, as SPEC.md "Tasks" and "Conventions" describe it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.conftest import count_rows
from tests.helpers import documented_fields

TASKS = "/api/v1/tasks"
# SPEC "Tasks": the fields every task carries (a field added since is checked against the docs).
TASK_KEYS = {
    "id",
    "project_id",
    "parent_id",
    "title",
    "description",
    "status",
    "priority",
    "due_at",
    "completed_at",
    "position",
    "labels",
    "version",
    "created_at",
    "updated_at",
}


async def _create(client, user, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "A task")
    response = await client.post(TASKS, json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _label(client, user, name: str, color: str | None = None) -> dict[str, Any]:
    response = await client.post("/api/v1/labels", json={"name": name, "color": color}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _project(client, user, name: str = "Home") -> dict[str, Any]:
    response = await client.post("/api/v1/projects", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


def _fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def _parse_utc(value: str) -> dt.datetime:
    assert value.endswith("Z"), value
    return dt.datetime.fromisoformat(value)


# --------------------------------------------------------------------------------------------
# Create


async def test_create_with_only_a_title_gets_every_default(client, alice):
    response = await client.post(TASKS, json={"title": "Buy milk"}, headers=alice.headers)
    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"{TASKS}/{task['id']}"
    assert response.headers["content-type"].startswith("application/json")
    assert TASK_KEYS <= set(task) == await documented_fields(client, f"{TASKS}/{{task_id}}")
    assert "owner" not in task
    assert task["title"] == "Buy milk"
    assert task["description"] == ""
    assert task["status"] == "todo"
    assert task["priority"] == 0
    assert task["due_at"] is None
    assert task["completed_at"] is None
    assert task["position"] == 0
    assert task["project_id"] is None
    assert task["parent_id"] is None
    assert task["labels"] == []
    assert task["version"] == 1
    created = _parse_utc(task["created_at"])
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 60
    assert _parse_utc(task["updated_at"]) >= created
    # The Location answers the same object.
    fetched = await client.get(response.headers["location"], headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json() == task
    assert fetched.headers["etag"] == '"1"'


async def test_create_with_every_writable_field(client, alice):
    project = await _project(client, alice)
    parent = await _create(client, alice, title="Parent", project_id=project["id"])
    label = await _label(client, alice, "work", "#aabbcc")
    task = await _create(
        client,
        alice,
        title="Full",
        description="Details",
        status="in_progress",
        priority=4,
        due_at="2030-01-02T03:04:05+02:00",
        position=-7,
        project_id=project["id"],
        parent_id=parent["id"],
        label_ids=[label["id"]],
    )
    assert task["description"] == "Details"
    assert task["status"] == "in_progress"
    assert task["priority"] == 4
    assert task["due_at"] == "2030-01-02T01:04:05Z"
    assert task["position"] == -7
    assert task["project_id"] == project["id"]
    assert task["parent_id"] == parent["id"]
    assert task["labels"] == [{"id": label["id"], "name": "work", "color": "#aabbcc"}]


@pytest.mark.parametrize("length", [1, 500])
async def test_title_length_bounds_accepted(client, alice, length):
    task = await _create(client, alice, title="t" * length)
    assert len(task["title"]) == length


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "t" * 501},
        {"title": None},
        {"title": 5},
        {"title": "ok", "description": "d" * 20_001},
        {"title": "ok", "description": None},
        {"title": "ok", "status": "blocked"},
        {"title": "ok", "status": "DONE"},
        {"title": "ok", "priority": 5},
        {"title": "ok", "priority": -1},
        {"title": "ok", "priority": "1"},
        {"title": "ok", "priority": 1.5},
        {"title": "ok", "due_at": "2030-01-02T03:04:05"},
        {"title": "ok", "due_at": "tomorrow"},
        {"title": "ok", "position": "first"},
        {"title": "ok", "position": 2**31},
        {"title": "ok", "position": -(2**31) - 1},
        {"title": "ok", "project_id": 2**31},
        {"title": "ok", "parent_id": 0},
        {"title": "ok", "project_id": "1"},
        {"title": "ok", "label_ids": [2**31]},
        {"title": "ok", "label_ids": "1"},
        {"title": "ok", "label_ids": [0]},
    ],
    ids=lambda body: ",".join(f"{k}={str(v)[:12]}" for k, v in body.items()) or "empty",
)
async def test_invalid_create_body_is_400_naming_the_field(client, alice, body):
    response = await client.post(TASKS, json=body, headers=alice.headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400
    assert problem["title"]
    assert problem["detail"]
    named = [k for k in body if k != "title"] or ["title"]
    assert _fields(response) == set(named)
    assert await count_rows("task") == 0


async def test_description_at_its_limit_is_accepted(client, alice):
    task = await _create(client, alice, description="d" * 20_000)
    assert len(task["description"]) == 20_000


@pytest.mark.parametrize("field", ["id", "owner", "version", "created_at", "updated_at", "completed_at", "labels"])
async def test_read_only_fields_on_create_are_400(client, alice, field):
    values = {
        "id": 99,
        "owner": 1,
        "version": 7,
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
        "completed_at": "2020-01-01T00:00:00Z",
        "labels": [],
    }
    response = await client.post(TASKS, json={"title": "x", field: values[field]}, headers=alice.headers)
    assert response.status_code == 400
    assert field in _fields(response)
    assert await count_rows("task") == 0


async def test_unknown_field_on_create_is_400(client, alice):
    response = await client.post(TASKS, json={"title": "x", "colour": "red"}, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == {"colour"}
    assert await count_rows("task") == 0


async def test_several_bad_fields_are_all_named(client, alice):
    body = {"title": "", "priority": 9, "status": "nope", "due_at": "2030-01-01T00:00:00", "extra": 1}
    response = await client.post(TASKS, json=body, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == {"title", "priority", "status", "due_at", "extra"}


async def test_due_at_is_answered_in_utc_with_z(client, alice):
    task = await _create(client, alice, due_at="2030-06-01T12:00:00-05:30")
    assert task["due_at"] == "2030-06-01T17:30:00Z"
    task = await _create(client, alice, due_at="2030-06-01T12:00:00.250Z")
    assert _parse_utc(task["due_at"]) == dt.datetime(2030, 6, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)


async def test_create_as_done_sets_completed_at(client, alice):
    task = await _create(client, alice, status="done")
    completed = _parse_utc(task["completed_at"])
    assert abs((dt.datetime.now(dt.UTC) - completed).total_seconds()) < 60


async def test_malformed_json_and_non_object_are_400(client, alice):
    response = await client.post(
        TASKS, content=b'{"title": ', headers={**alice.headers, "content-type": "application/json"}
    )
    assert response.status_code == 400
    response = await client.post(TASKS, json=["title"], headers=alice.headers)
    assert response.status_code == 400
    assert await count_rows("task") == 0


async def test_wrong_content_type_is_415(client, alice):
    response = await client.post(
        TASKS, content=b"title=x", headers={**alice.headers, "content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    assert await count_rows("task") == 0


async def test_no_token_is_401(client, alice):
    response = await client.post(TASKS, json={"title": "x"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await client.get(TASKS)).status_code == 401
    assert await count_rows("task") == 0


# --------------------------------------------------------------------------------------------
# Read, 404 and ownership


async def test_get_missing_and_foreign_task_are_the_same_404(client, alice, bob):
    task = await _create(client, alice)
    missing = await client.get(f"{TASKS}/{task['id'] + 1000}", headers=alice.headers)
    foreign = await client.get(f"{TASKS}/{task['id']}", headers=bob.headers)
    assert missing.status_code == foreign.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert foreign.json()["title"] == missing.json()["title"]
    for method in ("patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"title": "mine"}} if method == "patch" else {}
        response = await getattr(client, method)(f"{TASKS}/{task['id']}", headers=bob.headers, **kwargs)
        assert response.status_code == 404
    unchanged = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert unchanged.json() == task


@pytest.mark.parametrize(
    ("path", "status"),
    # Out-of-range integers are a 400 naming the id; a non-integer matches no route at all.
    [("/0", 400), ("/-1", 400), ("/99999999999", 400), ("/abc", 404)],
)
async def test_bad_task_ids(client, alice, path, status):
    response = await client.get(TASKS + path, headers=alice.headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    if status == 400:
        assert _fields(response) == {"task_id"}


async def test_foreign_project_parent_and_label_are_422_naming_the_field(client, alice, bob):
    project = await _project(client, bob)
    parent = await _create(client, bob)
    label = await _label(client, bob, "theirs")
    for field, value in (("project_id", project["id"]), ("parent_id", parent["id"]), ("label_ids", [label["id"]])):
        response = await client.post(TASKS, json={"title": "x", field: value}, headers=alice.headers)
        assert response.status_code == 422, (field, response.text)
        assert _fields(response) == {field}
    assert await count_rows("task") == 1  # bob's parent only
    assert await count_rows("task_label") == 0


async def test_missing_project_parent_and_label_are_422(client, alice):
    for field, value in (("project_id", 4242), ("parent_id", 4242), ("label_ids", [4242])):
        response = await client.post(TASKS, json={"title": "x", field: value}, headers=alice.headers)
        assert response.status_code == 422, (field, response.text)
        assert _fields(response) == {field}
    assert await count_rows("task") == 0


# --------------------------------------------------------------------------------------------
# PATCH


async def test_patch_changes_only_given_fields(client, alice):
    task = await _create(client, alice, title="Old", description="keep me", priority=2, position=5)
    response = await client.patch(f"{TASKS}/{task['id']}", json={"title": "New"}, headers=alice.headers)
    assert response.status_code == 200
    patched = response.json()
    assert patched["title"] == "New"
    assert patched["description"] == "keep me"
    assert patched["priority"] == 2
    assert patched["position"] == 5
    assert patched["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert _parse_utc(patched["updated_at"]) >= _parse_utc(task["updated_at"])
    assert patched["created_at"] == task["created_at"]


async def test_empty_patch_is_accepted_and_changes_nothing_but_version(client, alice):
    task = await _create(client, alice, title="Same")
    response = await client.patch(f"{TASKS}/{task['id']}", json={}, headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["title"] == "Same"


@pytest.mark.parametrize("field", ["title", "description", "status", "priority", "position"])
async def test_explicit_null_on_non_nullable_field_is_400(client, alice, field):
    task = await _create(client, alice, title="Keep")
    response = await client.patch(f"{TASKS}/{task['id']}", json={field: None}, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == {field}
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task


async def test_explicit_null_on_nullable_fields_clears_them(client, alice):
    project = await _project(client, alice)
    parent = await _create(client, alice, title="Parent", project_id=project["id"])
    task = await _create(client, alice, project_id=project["id"], parent_id=parent["id"], due_at="2030-01-01T00:00:00Z")
    response = await client.patch(
        f"{TASKS}/{task['id']}", json={"project_id": None, "parent_id": None, "due_at": None}, headers=alice.headers
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["project_id"], body["parent_id"], body["due_at"]) == (None, None, None)


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "t" * 501},
        {"description": "d" * 20_001},
        {"status": "archived"},
        {"priority": 5},
        {"due_at": "2030-01-01T00:00:00"},
        {"completed_at": "2030-01-01T00:00:00Z"},
        {"version": 9},
        {"id": 1},
        {"owner": 1},
        {"labels": []},
        {"created_at": "2030-01-01T00:00:00Z"},
        {"nope": True},
    ],
    ids=lambda body: next(iter(body)),
)
async def test_invalid_patch_is_400_and_writes_nothing(client, alice, body):
    task = await _create(client, alice, title="Keep")
    response = await client.patch(f"{TASKS}/{task['id']}", json=body, headers=alice.headers)
    assert response.status_code == 400, response.text
    assert _fields(response) == set(body)
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task


async def test_patch_title_at_its_limits(client, alice):
    task = await _create(client, alice)
    for title in ("x", "y" * 500):
        response = await client.patch(f"{TASKS}/{task['id']}", json={"title": title}, headers=alice.headers)
        assert response.status_code == 200
        assert response.json()["title"] == title


# --------------------------------------------------------------------------------------------
# Status and completed_at


async def test_completed_at_follows_status(client, alice):
    task = await _create(client, alice)
    url = f"{TASKS}/{task['id']}"
    done = (await client.patch(url, json={"status": "done"}, headers=alice.headers)).json()
    assert done["status"] == "done"
    completed_at = done["completed_at"]
    assert abs((dt.datetime.now(dt.UTC) - _parse_utc(completed_at)).total_seconds()) < 60

    # Kept while the task stays done: other edits and a repeated "done" do not move it.
    again = (await client.patch(url, json={"status": "done", "title": "Edited"}, headers=alice.headers)).json()
    assert again["completed_at"] == completed_at
    other = (await client.patch(url, json={"priority": 3}, headers=alice.headers)).json()
    assert other["completed_at"] == completed_at

    # Leaving done clears it; coming back sets a new one.
    reopened = (await client.patch(url, json={"status": "in_progress"}, headers=alice.headers)).json()
    assert reopened["completed_at"] is None
    redone = (await client.patch(url, json={"status": "done"}, headers=alice.headers)).json()
    assert redone["completed_at"] is not None
    assert _parse_utc(redone["completed_at"]) >= _parse_utc(completed_at)
    todo = (await client.patch(url, json={"status": "todo"}, headers=alice.headers)).json()
    assert todo["completed_at"] is None


async def test_non_done_status_changes_leave_completed_at_null(client, alice):
    task = await _create(client, alice, status="in_progress")
    assert task["completed_at"] is None
    response = await client.patch(f"{TASKS}/{task['id']}", json={"status": "todo"}, headers=alice.headers)
    assert response.json()["completed_at"] is None


async def test_completed_at_cannot_be_written(client, alice):
    task = await _create(client, alice)
    response = await client.patch(
        f"{TASKS}/{task['id']}", json={"completed_at": "2020-01-01T00:00:00Z"}, headers=alice.headers
    )
    assert response.status_code == 400
    assert _fields(response) == {"completed_at"}


# --------------------------------------------------------------------------------------------
# Projects and the inbox


async def test_project_and_inbox(client, alice):
    project = await _project(client, alice)
    inbox_task = await _create(client, alice, title="Inbox")
    project_task = await _create(client, alice, title="In project", project_id=project["id"])
    assert inbox_task["project_id"] is None
    assert project_task["project_id"] == project["id"]
    moved = await client.patch(f"{TASKS}/{inbox_task['id']}", json={"project_id": project["id"]}, headers=alice.headers)
    assert moved.status_code == 200
    assert moved.json()["project_id"] == project["id"]


async def test_patch_to_foreign_or_missing_project_is_422(client, alice, bob):
    project = await _project(client, bob)
    task = await _create(client, alice)
    for project_id in (project["id"], 4242):
        response = await client.patch(f"{TASKS}/{task['id']}", json={"project_id": project_id}, headers=alice.headers)
        assert response.status_code == 422
        assert _fields(response) == {"project_id"}
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task


async def test_deleting_a_project_deletes_its_tasks(client, alice):
    project = await _project(client, alice)
    other = await _project(client, alice, "Other")
    parent = await _create(client, alice, title="In project", project_id=project["id"])
    await _create(client, alice, title="Sub, inbox", parent_id=parent["id"])
    keep = await _create(client, alice, title="Other project", project_id=other["id"])
    inbox = await _create(client, alice, title="Inbox")
    response = await client.delete(f"/api/v1/projects/{project['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert (await client.get(f"{TASKS}/{parent['id']}", headers=alice.headers)).status_code == 404
    remaining = (await client.get(TASKS, headers=alice.headers)).json()
    # The subtask went with its parent, even though it sat in the inbox.
    assert {t["id"] for t in remaining["items"]} == {keep["id"], inbox["id"]}


# --------------------------------------------------------------------------------------------
# Labels


async def test_labels_are_sorted_by_name_and_duplicates_tolerated(client, alice):
    zeta = await _label(client, alice, "zeta", "#000000")
    alpha = await _label(client, alice, "Alpha")
    mid = await _label(client, alice, "mid", "#ffffff")
    task = await _create(client, alice, label_ids=[zeta["id"], alpha["id"], mid["id"], zeta["id"]])
    assert task["labels"] == [
        {"id": alpha["id"], "name": "Alpha", "color": None},
        {"id": mid["id"], "name": "mid", "color": "#ffffff"},
        {"id": zeta["id"], "name": "zeta", "color": "#000000"},
    ]
    assert await count_rows("task_label") == 3
    fetched = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert fetched.json()["labels"] == task["labels"]


async def test_patch_label_ids_replaces_the_whole_set(client, alice):
    a, b, c = [await _label(client, alice, name) for name in ("a", "b", "c")]
    task = await _create(client, alice, label_ids=[a["id"], b["id"]])
    url = f"{TASKS}/{task['id']}"

    replaced = await client.patch(url, json={"label_ids": [c["id"], b["id"], c["id"]]}, headers=alice.headers)
    assert replaced.status_code == 200
    assert [lbl["name"] for lbl in replaced.json()["labels"]] == ["b", "c"]

    untouched = await client.patch(url, json={"title": "other"}, headers=alice.headers)
    assert [lbl["name"] for lbl in untouched.json()["labels"]] == ["b", "c"]

    cleared = await client.patch(url, json={"label_ids": []}, headers=alice.headers)
    assert cleared.status_code == 200
    assert cleared.json()["labels"] == []
    assert await count_rows("task_label") == 0


async def test_label_ids_null_is_400(client, alice):
    label = await _label(client, alice, "a")
    task = await _create(client, alice, label_ids=[label["id"]])
    response = await client.patch(f"{TASKS}/{task['id']}", json={"label_ids": None}, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == {"label_ids"}
    assert await count_rows("task_label") == 1


async def test_patch_with_a_foreign_label_changes_nothing(client, alice, bob):
    mine = await _label(client, alice, "mine")
    theirs = await _label(client, bob, "theirs")
    task = await _create(client, alice, title="Keep", label_ids=[mine["id"]])
    response = await client.patch(
        f"{TASKS}/{task['id']}", json={"title": "Changed", "label_ids": [theirs["id"]]}, headers=alice.headers
    )
    assert response.status_code == 422
    assert _fields(response) == {"label_ids"}
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task


async def test_label_rename_and_delete_show_on_tasks(client, alice):
    label = await _label(client, alice, "old")
    task = await _create(client, alice, label_ids=[label["id"]])
    renamed = await client.patch(f"/api/v1/labels/{label['id']}", json={"name": "new"}, headers=alice.headers)
    assert renamed.status_code == 200
    fetched = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert fetched.json()["labels"][0]["name"] == "new"
    assert (await client.delete(f"/api/v1/labels/{label['id']}", headers=alice.headers)).status_code == 204
    fetched = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json()["labels"] == []


# --------------------------------------------------------------------------------------------
# Subtasks and cycles


async def test_subtask_via_parent_id(client, alice):
    parent = await _create(client, alice, title="Parent")
    child = await _create(client, alice, title="Child", parent_id=parent["id"])
    assert child["parent_id"] == parent["id"]
    listed = await client.get(TASKS, params={"parent_id": parent["id"]}, headers=alice.headers)
    assert [t["id"] for t in listed.json()["items"]] == [child["id"]]


async def test_task_cannot_be_its_own_parent(client, alice):
    task = await _create(client, alice)
    response = await client.patch(f"{TASKS}/{task['id']}", json={"parent_id": task["id"]}, headers=alice.headers)
    assert response.status_code == 422
    assert _fields(response) == {"parent_id"}
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task


async def test_task_cannot_become_its_own_ancestor_directly(client, alice):
    parent = await _create(client, alice, title="Parent")
    child = await _create(client, alice, title="Child", parent_id=parent["id"])
    response = await client.patch(f"{TASKS}/{parent['id']}", json={"parent_id": child["id"]}, headers=alice.headers)
    assert response.status_code == 422
    assert _fields(response) == {"parent_id"}
    assert (await client.get(f"{TASKS}/{parent['id']}", headers=alice.headers)).json()["parent_id"] is None


async def test_task_cannot_become_its_own_ancestor_deep(client, alice):
    chain = [await _create(client, alice, title="t0")]
    for depth in range(1, 6):
        chain.append(await _create(client, alice, title=f"t{depth}", parent_id=chain[-1]["id"]))
    root, leaf = chain[0], chain[-1]
    response = await client.patch(
        f"{TASKS}/{root['id']}", json={"parent_id": leaf["id"], "title": "moved"}, headers=alice.headers
    )
    assert response.status_code == 422
    assert _fields(response) == {"parent_id"}
    assert (await client.get(f"{TASKS}/{root['id']}", headers=alice.headers)).json() == root
    # A middle node cannot hang under its own descendant either, but can move to a sibling tree.
    middle = chain[2]
    response = await client.patch(f"{TASKS}/{middle['id']}", json={"parent_id": chain[4]["id"]}, headers=alice.headers)
    assert response.status_code == 422
    other = await _create(client, alice, title="other root")
    response = await client.patch(f"{TASKS}/{middle['id']}", json={"parent_id": other["id"]}, headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["parent_id"] == other["id"]


async def test_reparenting_to_foreign_or_missing_parent_is_422(client, alice, bob):
    theirs = await _create(client, bob)
    task = await _create(client, alice)
    for parent_id in (theirs["id"], 4242):
        response = await client.patch(f"{TASKS}/{task['id']}", json={"parent_id": parent_id}, headers=alice.headers)
        assert response.status_code == 422
        assert _fields(response) == {"parent_id"}
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task


async def test_deleting_a_task_deletes_subtasks_and_comments(client, alice):
    root = await _create(client, alice, title="root")
    child = await _create(client, alice, title="child", parent_id=root["id"])
    grandchild = await _create(client, alice, title="grandchild", parent_id=child["id"])
    keep = await _create(client, alice, title="keep")
    for task in (root, grandchild, keep):
        response = await client.post(f"{TASKS}/{task['id']}/comments", json={"body": "hi"}, headers=alice.headers)
        assert response.status_code == 201
    label = await _label(client, alice, "l")
    await client.patch(f"{TASKS}/{child['id']}", json={"label_ids": [label["id"]]}, headers=alice.headers)

    response = await client.delete(f"{TASKS}/{root['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    for task in (root, child, grandchild):
        assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).status_code == 404
    assert await count_rows("task") == 1
    assert await count_rows("comment") == 1
    assert await count_rows("task_label") == 0
    assert await count_rows("label") == 1
    again = await client.delete(f"{TASKS}/{root['id']}", headers=alice.headers)
    assert again.status_code == 404


async def test_delete_foreign_task_is_404_and_keeps_it(client, alice, bob):
    task = await _create(client, alice)
    response = await client.delete(f"{TASKS}/{task['id']}", headers=bob.headers)
    assert response.status_code == 404
    assert await count_rows("task") == 1
