"""Cursors that survive deploys: the fingerprint covers only the filters given, and the payload
carries a format version (a cursor of another version is a 400 saying to start again)."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import msgspec
import pytest

from app.services import listing
from app.services import tasks as task_service
from app.services.listing import CURSOR_VERSION, parse_sort, scope_fingerprint
from tests.api.problems import assert_problem

TASKS = "/api/v1/tasks"


@dataclasses.dataclass(frozen=True)
class TaskFiltersOfNextRelease(task_service.TaskFilters):
    """TaskFilters as a later deploy might have it: one more filter, defaulted."""

    estimate_max: int | None = None
    tags: tuple[str, ...] = ()


def _signed(payload: list[Any]) -> str:
    """A cursor body signed with the server's secret, in any shape (as another version would)."""
    body = msgspec.json.encode(payload)
    return base64.urlsafe_b64encode(listing._signature(body) + body).decode().rstrip("=")


async def _bulk(client, user, count: int) -> None:
    response = await client.post(
        f"{TASKS}/bulk", json={"tasks": [{"title": f"t{i}"} for i in range(count)]}, headers=user.headers
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "given",
    [{}, {"status": ("todo",)}, {"project_id": 7, "priority": (1, 3)}, {"q": "milk"}, {"inbox": False}],
)
def test_a_new_defaulted_filter_field_keeps_every_fingerprint(given):
    now = task_service.TaskFilters(**given)
    later = TaskFiltersOfNextRelease(**given)
    assert scope_fingerprint(1, later) == scope_fingerprint(1, now)


def test_fingerprint_still_tells_given_filters_and_users_apart():
    prints = {
        scope_fingerprint(1, task_service.TaskFilters()),
        scope_fingerprint(2, task_service.TaskFilters()),
        scope_fingerprint(1, task_service.TaskFilters(status=("todo",))),
        scope_fingerprint(1, task_service.TaskFilters(status=("done",))),
        scope_fingerprint(1, task_service.TaskFilters(inbox=False)),  # False is given, not the default
        scope_fingerprint(1, task_service.TaskFilters(inbox=True)),
        scope_fingerprint(1, TaskFiltersOfNextRelease(estimate_max=30)),  # the new filter, given
    }
    assert len(prints) == 7


async def test_cursor_issued_before_a_deploy_that_adds_a_filter_still_works(client, alice, monkeypatch):
    await _bulk(client, alice, 5)
    first = await client.get(TASKS, params={"status": "todo", "limit": 2, "paginate": "cursor"}, headers=alice.headers)
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    assert cursor
    # The "deploy": the controller now builds the filters with one more, defaulted, field.
    monkeypatch.setattr(task_service, "TaskFilters", TaskFiltersOfNextRelease)
    rest = await client.get(TASKS, params={"status": "todo", "limit": 10, "cursor": cursor}, headers=alice.headers)
    assert rest.status_code == 200, rest.text
    titles = [t["title"] for t in first.json()["items"] + rest.json()["items"]]
    assert sorted(titles) == [f"t{i}" for i in range(5)]
    assert len(set(titles)) == 5
    # Other given filters still refuse it.
    other = await client.get(TASKS, params={"status": "done", "cursor": cursor}, headers=alice.headers)
    assert_problem(other, 400, "cursor")


def _payload_for(user_id: int, version: Any) -> list[Any]:
    keys = parse_sort(None, task_service.SORTABLE, task_service.DEFAULT_SORT)
    scope = scope_fingerprint(user_id, task_service.TaskFilters())
    return [version, listing.sort_text(keys), scope, ["2030-01-01T00:00:00+00:00", 1]]


async def test_cursor_payload_carries_the_version(client, alice):
    await _bulk(client, alice, 3)
    page = await client.get(TASKS, params={"limit": 1, "paginate": "cursor"}, headers=alice.headers)
    cursor = page.json()["next_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert msgspec.json.decode(raw[16:])[0] == CURSOR_VERSION


async def test_signed_cursor_of_the_current_version_is_accepted(client, alice):
    """The forging helper below makes cursors the server accepts, so the refusals are about the version."""
    cursor = _signed(_payload_for(alice.id, CURSOR_VERSION))
    response = await client.get(TASKS, params={"cursor": cursor}, headers=alice.headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("version", "says"), [(CURSOR_VERSION - 1, "older"), (CURSOR_VERSION + 1, "newer")])
async def test_cursor_of_another_version_is_400_start_again(client, alice, version, says):
    cursor = _signed(_payload_for(alice.id, version))
    body = assert_problem(await client.get(TASKS, params={"cursor": cursor}, headers=alice.headers), 400, "cursor")
    (error,) = [e for e in body["errors"] if e["field"] == "cursor"]
    assert error["message"] == f"cursor from {'an' if says == 'older' else 'a'} {says} version; start again"


async def test_cursor_from_before_versions_is_400_start_again(client, alice):
    """The unversioned payload [sort, scope, values] that earlier releases issued."""
    cursor = _signed(_payload_for(alice.id, CURSOR_VERSION)[1:])
    body = assert_problem(await client.get(TASKS, params={"cursor": cursor}, headers=alice.headers), 400, "cursor")
    (error,) = [e for e in body["errors"] if e["field"] == "cursor"]
    assert error["message"] == "cursor from an older version; start again"
