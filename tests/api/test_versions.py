"""Versions, ETags and If-Match on projects, labels, tasks and comments (SPEC "Safe writes").

Choices where SPEC is silent (pinned here so a change is deliberate):
- DELETE answers 204 without an ETag: there is no current representation left to tag.
- ``If-Match: *`` means "any current version": the write goes through like one without If-Match.
- A malformed If-Match (not ``"<digits>"`` or ``*``) is a 400 naming the header; nothing is written.
- If-Match never reveals another user's object: it answers 404 as if the object did not exist,
  whatever version it names (a 412 would confirm the id exists and leak its version).
- Of ten concurrent DELETEs with the same (current) If-Match, one answers 204 and the other nine
  404: once the object is gone, the request would be a 404 without its precondition, and
  RFC 9110 section 13.2.1 says preconditions are then not evaluated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.problems import assert_problem
from tests.conftest import count_rows

API = "/api/v1"
KINDS = ["project", "label", "task", "comment"]


@dataclass
class Made:
    """One created object: where it lives, its first answer, the field a PATCH changes."""

    kind: str
    path: str
    response: httpx.Response
    field: str

    @property
    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = self.response.json()
        return data


FIELDS = {"project": "name", "label": "name", "task": "title", "comment": "body"}
TABLES = {"project": "project", "label": "label", "task": "task", "comment": "comment"}


async def _make(client: httpx.AsyncClient, user: Any, kind: str, value: str = "first") -> Made:
    field = FIELDS[kind]
    if kind == "comment":
        task = await client.post(f"{API}/tasks", json={"title": "host"}, headers=user.headers)
        assert task.status_code == 201, task.text
        url = f"{API}/tasks/{task.json()['id']}/comments"
    else:
        url = f"{API}/{kind}s"
    response = await client.post(url, json={field: value}, headers=user.headers)
    assert response.status_code == 201, response.text
    path = f"{API}/{kind}s/{response.json()['id']}"
    return Made(kind, path, response, field)


async def _current(client: httpx.AsyncClient, user: Any, made: Made) -> dict[str, Any]:
    response = await client.get(made.path, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_version_starts_at_one_and_create_and_get_answer_etag(client, alice, kind):
    made = await _make(client, alice, kind)
    assert made.body["version"] == 1
    assert made.response.headers["etag"] == '"1"'
    got = await client.get(made.path, headers=alice.headers)
    assert got.status_code == 200
    assert got.json()["version"] == 1
    assert got.headers["etag"] == '"1"'


async def test_each_patch_bumps_version_and_answers_its_etag(client, alice, kind):
    made = await _make(client, alice, kind)
    for expected in (2, 3, 4):
        patched = await client.patch(made.path, json={made.field: f"v{expected}"}, headers=alice.headers)
        assert patched.status_code == 200, patched.text
        assert patched.json()["version"] == expected
        assert patched.headers["etag"] == f'"{expected}"'
    current = await _current(client, alice, made)
    assert current["version"] == 4
    assert current[made.field] == "v4"


async def test_version_is_read_only_on_create(client, alice, kind):
    made = await _make(client, alice, kind)  # also creates the comment's host task
    before = await count_rows(TABLES[kind])
    url = made.path.rsplit("/", 1)[0] if kind != "comment" else f"{API}/tasks/{made.body['task_id']}/comments"
    response = await client.post(url, json={made.field: "x", "version": 7}, headers=alice.headers)
    body = assert_problem(response, 400)
    assert "version" in {e["field"] for e in body.get("errors", [])}
    assert await count_rows(TABLES[kind]) == before


async def test_version_is_read_only_on_patch(client, alice, kind):
    made = await _make(client, alice, kind)
    response = await client.patch(made.path, json={made.field: "changed", "version": 9}, headers=alice.headers)
    body = assert_problem(response, 400)
    assert "version" in {e["field"] for e in body.get("errors", [])}
    current = await _current(client, alice, made)
    assert current["version"] == 1
    assert current[made.field] == "first"


async def test_stale_if_match_on_patch_is_412_with_current_etag_and_writes_nothing(client, alice, kind):
    made = await _make(client, alice, kind)
    assert (await client.patch(made.path, json={made.field: "second"}, headers=alice.headers)).status_code == 200
    stale = await client.patch(made.path, json={made.field: "lost"}, headers={**alice.headers, "If-Match": '"1"'})
    assert_problem(stale, 412)
    assert stale.headers["etag"] == '"2"'
    current = await _current(client, alice, made)
    assert current["version"] == 2
    assert current[made.field] == "second"


async def test_stale_if_match_on_delete_is_412_with_current_etag_and_deletes_nothing(client, alice, kind):
    made = await _make(client, alice, kind)
    assert (await client.patch(made.path, json={made.field: "second"}, headers=alice.headers)).status_code == 200
    stale = await client.delete(made.path, headers={**alice.headers, "If-Match": '"1"'})
    assert_problem(stale, 412)
    assert stale.headers["etag"] == '"2"'
    assert (await _current(client, alice, made))["version"] == 2
    assert await count_rows(TABLES[kind]) == 1


async def test_a_future_version_is_stale_too(client, alice, kind):
    made = await _make(client, alice, kind)
    response = await client.patch(made.path, json={made.field: "x"}, headers={**alice.headers, "If-Match": '"2"'})
    assert_problem(response, 412)
    assert response.headers["etag"] == '"1"'
    assert (await _current(client, alice, made))[made.field] == "first"


async def test_current_if_match_lets_patch_and_delete_through(client, alice, kind):
    made = await _make(client, alice, kind)
    patched = await client.patch(made.path, json={made.field: "second"}, headers={**alice.headers, "If-Match": '"1"'})
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 2
    assert patched.json()[made.field] == "second"
    assert patched.headers["etag"] == '"2"'
    deleted = await client.delete(made.path, headers={**alice.headers, "If-Match": '"2"'})
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    assert (await client.get(made.path, headers=alice.headers)).status_code == 404
    assert await count_rows(TABLES[kind]) == 0


async def test_without_if_match_the_last_write_wins(client, alice, kind):
    made = await _make(client, alice, kind)
    first = await client.patch(made.path, json={made.field: "one"}, headers=alice.headers)
    second = await client.patch(made.path, json={made.field: "two"}, headers=alice.headers)
    assert (first.status_code, second.status_code) == (200, 200)
    current = await _current(client, alice, made)
    assert current[made.field] == "two"
    assert current["version"] == 3
    deleted = await client.delete(made.path, headers=alice.headers)
    assert deleted.status_code == 204
    assert await count_rows(TABLES[kind]) == 0


@pytest.mark.parametrize("value", ["1", '"abc"', '""', '"1', "W/", '"-1"', '"12345678901"', '"1", "2"'])
async def test_malformed_if_match_is_400_and_writes_nothing(client, alice, value):
    made = await _make(client, alice, "task")
    patched = await client.patch(made.path, json={"title": "x"}, headers={**alice.headers, "If-Match": value})
    body = assert_problem(patched, 400)
    assert "If-Match" in {e["field"] for e in body.get("errors", [])}
    deleted = await client.delete(made.path, headers={**alice.headers, "If-Match": value})
    assert_problem(deleted, 400)
    current = await _current(client, alice, made)
    assert current["version"] == 1
    assert current["title"] == "first"


async def test_an_if_match_over_100_chars_is_400_naming_the_header(client, alice):
    made = await _make(client, alice, "task")
    response = await client.patch(made.path, json={"title": "x"}, headers={**alice.headers, "If-Match": "x" * 101})
    body = assert_problem(response, 400)
    assert {e["field"] for e in body["errors"]} == {"If-Match"}
    assert (await _current(client, alice, made))["version"] == 1


@pytest.mark.parametrize("value", ['"2147483648"', '"9999999999"', 'W/"1"'])
async def test_a_well_formed_version_beyond_any_real_one_or_weak_is_stale(client, alice, value):
    # A weak tag never matches: If-Match uses the strong comparison (RFC 9110 13.1.1).
    made = await _make(client, alice, "task")
    patched = await client.patch(made.path, json={"title": "x"}, headers={**alice.headers, "If-Match": value})
    assert_problem(patched, 412)
    assert patched.headers["etag"] == '"1"'
    deleted = await client.delete(made.path, headers={**alice.headers, "If-Match": value})
    assert_problem(deleted, 412)
    assert deleted.headers["etag"] == '"1"'
    assert (await _current(client, alice, made))["title"] == "first"


async def test_if_match_star_accepts_any_current_version(client, alice, kind):
    made = await _make(client, alice, kind)
    assert (await client.patch(made.path, json={made.field: "second"}, headers=alice.headers)).status_code == 200
    patched = await client.patch(made.path, json={made.field: "third"}, headers={**alice.headers, "If-Match": "*"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == 3
    assert patched.headers["etag"] == '"3"'
    deleted = await client.delete(made.path, headers={**alice.headers, "If-Match": "*"})
    assert deleted.status_code == 204
    assert await count_rows(TABLES[kind]) == 0


async def test_if_match_on_another_users_object_is_404_never_412(client, alice, bob, kind):
    made = await _make(client, alice, kind)
    for version in ('"1"', '"5"', "*"):
        headers = {**bob.headers, "If-Match": version}
        patched = await client.patch(made.path, json={made.field: "bob was here"}, headers=headers)
        assert_problem(patched, 404)
        assert "etag" not in patched.headers
        deleted = await client.delete(made.path, headers=headers)
        assert_problem(deleted, 404)
        assert "etag" not in deleted.headers
    current = await _current(client, alice, made)
    assert current["version"] == 1
    assert current[made.field] == "first"


async def test_missing_object_with_if_match_is_404(client, alice, kind):
    made = await _make(client, alice, kind)
    missing = made.path.rsplit("/", 1)[0] + "/999999"
    patched = await client.patch(missing, json={made.field: "x"}, headers={**alice.headers, "If-Match": '"1"'})
    assert_problem(patched, 404)
    assert_problem(await client.delete(missing, headers={**alice.headers, "If-Match": '"1"'}), 404)


async def test_list_items_carry_their_version(client, alice):
    project = await _make(client, alice, "project")
    assert (await client.patch(project.path, json={"name": "again"}, headers=alice.headers)).status_code == 200
    listed = await client.get(f"{API}/projects", headers=alice.headers)
    assert listed.status_code == 200
    assert [item["version"] for item in listed.json()["items"]] == [2]


# --------------------------------------------------------------------------------------------
# Races: the version check and the write are one statement, so exactly one writer wins.


async def test_concurrent_patches_with_the_same_if_match_see_exactly_one_success(client, alice, kind):
    made = await _make(client, alice, kind)
    headers = {**alice.headers, "If-Match": '"1"'}
    responses = await asyncio.gather(
        *(client.patch(made.path, json={made.field: f"writer {n}"}, headers=headers) for n in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 9, [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200)
    assert winner.json()["version"] == 2
    for loser in (r for r in responses if r.status_code == 412):
        assert loser.headers["etag"] == '"2"'
    current = await _current(client, alice, made)
    assert current["version"] == 2
    assert current[made.field] == winner.json()[made.field]


async def test_concurrent_task_patches_that_replace_labels_see_exactly_one_success(client, alice):
    made = await _make(client, alice, "task")
    label_ids = []
    for n in range(10):
        label = await client.post(f"{API}/labels", json={"name": f"l{n}"}, headers=alice.headers)
        assert label.status_code == 201
        label_ids.append(label.json()["id"])
    headers = {**alice.headers, "If-Match": '"1"'}
    responses = await asyncio.gather(
        *(client.patch(made.path, json={"label_ids": [label_id]}, headers=headers) for label_id in label_ids)
    )
    assert sorted(r.status_code for r in responses) == [200] + [412] * 9, [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200)
    current = await _current(client, alice, made)
    assert current["version"] == 2
    assert current["labels"] == winner.json()["labels"]
    assert len(current["labels"]) == 1
    assert await count_rows("task_label") == 1


async def test_concurrent_deletes_with_the_same_if_match_see_exactly_one_success(client, alice, kind):
    made = await _make(client, alice, kind)
    headers = {**alice.headers, "If-Match": '"1"'}
    responses = await asyncio.gather(*(client.delete(made.path, headers=headers) for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    # The losers find the object gone: 404, as without a precondition (RFC 9110 section 13.2.1).
    assert statuses == [204] + [404] * 9, [r.text for r in responses]
    assert (await client.get(made.path, headers=alice.headers)).status_code == 404
    assert await count_rows(TABLES[kind]) == 0


async def test_renaming_a_label_shows_on_its_tasks_without_making_their_if_match_stale(client, alice):
    label = await client.post(f"{API}/labels", json={"name": "old"}, headers=alice.headers)
    assert label.status_code == 201
    task = await client.post(
        f"{API}/tasks", json={"title": "t", "label_ids": [label.json()["id"]]}, headers=alice.headers
    )
    assert task.status_code == 201
    renamed = await client.patch(
        f"{API}/labels/{label.json()['id']}", json={"name": "new"}, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.headers["etag"] == '"2"'
    seen = await client.get(f"{API}/tasks/{task.json()['id']}", headers=alice.headers)
    assert [item["name"] for item in seen.json()["labels"]] == ["new"]
    assert seen.headers["etag"] == '"1"'
    edited = await client.patch(
        f"{API}/tasks/{task.json()['id']}", json={"title": "u"}, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert edited.status_code == 200, edited.text
