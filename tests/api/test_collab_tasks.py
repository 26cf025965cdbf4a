"""Shared projects (SPEC "Collaboration") for tasks, comments, labels on tasks and bulk writes.

The role x action matrix is generated from ``ProjectRole`` and one table, ``LEAST`` (each
action's least role, as SPEC states it): every role tries every action on fresh objects and
gets exactly the success status or a 403 naming the role, and a 403 writes nothing; an outsider
gets what a missing id gets. Then: outsiders and removed members cannot tell an existing id
from a missing one, removal and lowered roles take effect at the next request (cursors too), and
writes racing with role changes never leave a write by someone without the role.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.tables import ProjectRole
from tests.api.collab import (
    TASKS,
    Team,
    add_member,
    app,
    assert_forbidden,
    below,
    create,
    db_state,
    make_team,
    may,
    remove_member,
    set_role,
    team,
    walk,
)
from tests.api.problems import assert_problem, run_sql
from tests.conftest import ApiUser

__all__ = ["app", "team"]  # fixtures

VIEWER, COMMENTER, EDITOR, ADMIN = ProjectRole.viewer, ProjectRole.commenter, ProjectRole.editor, ProjectRole.admin

# SPEC "Collaboration": the least role each action on a project's tasks needs.
LEAST: dict[str, ProjectRole] = {
    "get a task": VIEWER,
    "list a task's comments": VIEWER,
    "get a comment": VIEWER,
    "comment on a task": COMMENTER,
    "create a task": EDITOR,
    "create a task with an Idempotency-Key": EDITOR,
    "create a subtask": EDITOR,
    "change a task": EDITOR,
    "change a task with If-Match": EDITOR,
    "delete a task": EDITOR,
    "delete a task with If-Match": EDITOR,
    "attach a label": EDITOR,
    "assign a task": EDITOR,
    "move a task into the project": EDITOR,
    "move a task to the inbox": EDITOR,
    "create tasks in bulk": EDITOR,
    "change tasks in bulk": EDITOR,
    "delete anyone's comment": ADMIN,
}

Target = dict[str, Any]


@dataclass(frozen=True)
class Action:
    """How to try one action: ``prepare`` makes fresh objects (as their owners), ``act`` tries it.

    ``outsider`` is what a non-member gets: the status (and the field named) a missing id gets.
    """

    prepare: Callable[[httpx.AsyncClient, Team, ApiUser], Awaitable[Target]]
    act: Callable[[httpx.AsyncClient, Team, ApiUser, Target], Awaitable[httpx.Response]]
    ok: int
    writes: bool = True
    outsider: int = 404
    outsider_field: str | None = None


async def _task(client: httpx.AsyncClient, team: Team, _: ApiUser) -> Target:
    return await create(client, team.owner, TASKS, {"title": "shared", "project_id": team.project})


async def _own_inbox_task(client: httpx.AsyncClient, team: Team, actor: ApiUser) -> Target:
    return await create(client, actor, TASKS, {"title": "mine"})


async def _nothing(client: httpx.AsyncClient, team: Team, actor: ApiUser) -> Target:
    return {}


async def _commented(client: httpx.AsyncClient, team: Team, actor: ApiUser) -> Target:
    task = await _task(client, team, actor)
    comment = await create(client, team.scribe, f"{TASKS}/{task['id']}/comments", {"body": "by the scribe"})
    return {**task, "comment": comment["id"]}


async def _with_own_task(client: httpx.AsyncClient, team: Team, actor: ApiUser) -> Target:
    task = await _task(client, team, actor)
    own = await _own_inbox_task(client, team, actor)
    return {**task, "own": own["id"]}


def _do(
    method: str, path: str, body: Callable[[Team, ApiUser, Target], Any] | None = None, **headers: str
) -> Callable[[httpx.AsyncClient, Team, ApiUser, Target], Awaitable[httpx.Response]]:
    """A request whose path and body are formatted from the target (and the acting user)."""

    async def act(client: httpx.AsyncClient, team: Team, actor: ApiUser, target: Target) -> httpx.Response:
        fields = {**target, "project": team.project, "unique": uuid.uuid4().hex}
        wanted = {k: v.format(**fields) for k, v in headers.items()}
        content = None if body is None else json.dumps(body(team, actor, target))
        return await client.request(
            method,
            path.format(**fields),
            content=content,
            headers={**actor.headers, **wanted, **({"Content-Type": "application/json"} if content else {})},
        )

    return act


ACTIONS: dict[str, Action] = {
    "get a task": Action(_task, _do("GET", TASKS + "/{id}"), 200, writes=False),
    "list a task's comments": Action(_commented, _do("GET", TASKS + "/{id}/comments"), 200, writes=False),
    "get a comment": Action(_commented, _do("GET", "/api/v1/comments/{comment}"), 200, writes=False),
    "comment on a task": Action(_task, _do("POST", TASKS + "/{id}/comments", lambda t, a, x: {"body": "hi"}), 201),
    "create a task": Action(
        _nothing,
        _do("POST", TASKS, lambda t, a, x: {"title": "new", "project_id": t.project}),
        201,
        outsider=422,
        outsider_field="project_id",
    ),
    "create a task with an Idempotency-Key": Action(
        _nothing,
        _do(
            "POST", TASKS, lambda t, a, x: {"title": "new", "project_id": t.project}, **{"Idempotency-Key": "{unique}"}
        ),
        201,
        outsider=422,
        outsider_field="project_id",
    ),
    "create a subtask": Action(
        _task,
        _do("POST", TASKS, lambda t, a, x: {"title": "sub", "parent_id": x["id"]}),
        201,
        outsider=422,
        outsider_field="parent_id",
    ),
    "change a task": Action(_task, _do("PATCH", TASKS + "/{id}", lambda t, a, x: {"title": "changed"}), 200),
    "change a task with If-Match": Action(
        _task, _do("PATCH", TASKS + "/{id}", lambda t, a, x: {"priority": 4}, **{"If-Match": '"{version}"'}), 200
    ),
    "delete a task": Action(_task, _do("DELETE", TASKS + "/{id}"), 204),
    "delete a task with If-Match": Action(_task, _do("DELETE", TASKS + "/{id}", **{"If-Match": '"{version}"'}), 204),
    "attach a label": Action(
        _task, _do("PATCH", TASKS + "/{id}", lambda t, a, x: {"label_ids": [t.labels[a.id]]}), 200
    ),
    "assign a task": Action(_task, _do("PATCH", TASKS + "/{id}", lambda t, a, x: {"assignee_ids": [a.id]}), 200),
    "move a task into the project": Action(
        _own_inbox_task,
        _do("PATCH", TASKS + "/{id}", lambda t, a, x: {"project_id": t.project}),
        200,
        outsider=422,
        outsider_field="project_id",
    ),
    "move a task to the inbox": Action(_task, _do("PATCH", TASKS + "/{id}", lambda t, a, x: {"project_id": None}), 200),
    # Each bulk write also holds an item the actor may always write: the role is checked per item.
    "create tasks in bulk": Action(
        _nothing,
        _do(
            "POST",
            TASKS + "/bulk",
            lambda t, a, x: {"tasks": [{"title": "inbox"}, {"title": "p", "project_id": t.project}]},
        ),
        201,
        outsider=422,
        outsider_field="tasks[1].project_id",
    ),
    "change tasks in bulk": Action(
        _with_own_task,
        _do("PATCH", TASKS + "/bulk", lambda t, a, x: {"ids": [x["own"], x["id"]], "changes": {"priority": 3}}),
        200,
    ),
    "delete anyone's comment": Action(_commented, _do("DELETE", "/api/v1/comments/{comment}"), 204),
}


def test_every_action_has_a_least_role_and_a_way_to_try_it():
    assert set(ACTIONS) == set(LEAST)


def _expected(action: Action, least: ProjectRole, role: ProjectRole | None) -> int:
    if role is None:
        return action.outsider
    return action.ok if may(role, least) else 403


async def test_role_matrix(client, team):
    """Every role (and an outsider) tries every action on fresh objects: exactly the success
    status, or a 403 naming the least role and nothing written, or what a missing id gets.
    (One test, so the whole matrix costs one database reset; failures are listed together.)"""
    failures: list[str] = []
    for name, least in LEAST.items():
        action = ACTIONS[name]
        for role, actor in team.actors():
            target = await action.prepare(client, team, actor)
            before = await db_state()
            response = await action.act(client, team, actor, target)
            after = await db_state()
            case = f"{name!r} as {role or 'outsider'}"
            expected = _expected(action, least, role)
            try:
                assert response.status_code == expected, f"{case}: {response.status_code} {response.text[:300]}"
                if expected == 403:
                    assert_forbidden(response, least, case)
                elif expected >= 400:
                    body = assert_problem(response, expected, *filter(None, [action.outsider_field]), case=case)
                    assert "etag" not in response.headers, case
                    assert "required_role" not in body, case
                if expected >= 400:
                    assert after == before, f"{case}: a refused write changed the database"
                else:
                    assert (after != before) == action.writes, f"{case}: wrote {after != before}"
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)


async def test_every_operation_that_answers_403_documents_it(client, team):
    """A member below an action's least role gets a 403 problem: the OpenAPI document of that
    operation lists 403 (as the project, member and invitation operations do)."""
    doc = (await client.get("/schema/openapi.json")).json()
    templates = [(re.compile(re.sub(r"\\{[^}]+\\}", r"\\d+", re.escape(path)) + "$"), path) for path in doc["paths"]]
    undocumented = set()
    for name, least in LEAST.items():
        lower = below(least)
        if lower is None:
            continue
        action = ACTIONS[name]
        actor = team.members[lower]
        response = await action.act(client, team, actor, await action.prepare(client, team, actor))
        assert response.status_code == 403, name
        method, url = response.request.method.lower(), response.request.url.path
        path = next(path for pattern, path in templates if pattern.match(url))
        if "403" not in doc["paths"][path][method]["responses"]:
            undocumented.add(f"{method.upper()} {path}")
    assert not undocumented, sorted(undocumented)


async def test_a_bulk_change_names_the_first_task_the_caller_may_not_change(client, team):
    viewer = team.members[VIEWER]
    own = await create(client, viewer, TASKS, {"title": "mine"})
    shared = await create(client, team.owner, TASKS, {"title": "read only", "project_id": team.project})
    unseen = await create(client, team.outsider, TASKS, {"title": "not yours"})
    before = await db_state()
    response = await client.patch(
        f"{TASKS}/bulk", json={"ids": [own["id"], unseen["id"]], "changes": {"priority": 1}}, headers=viewer.headers
    )
    assert re.search(rf"\b{unseen['id']}\b", assert_problem(response, 404)["detail"])
    response = await client.patch(
        f"{TASKS}/bulk", json={"ids": [own["id"], shared["id"]], "changes": {"priority": 1}}, headers=viewer.headers
    )
    assert_forbidden(response, EDITOR)
    assert await db_state() == before


# --------------------------------------------------------------------------------------------
# Outsiders and removed members cannot tell an existing id from a missing one

MISSING = 100_000  # added to an existing id: an id nobody has
IGNORED_HEADERS = {"ratelimit", "content-length"}  # a per-user counter; the id's digits


def _probes(team: Team, ids: dict[str, int], own_task: int) -> list[tuple[str, str, Any, dict[str, str]]]:
    """Requests that name an object by id (path or body), with ``ids`` filled in."""
    task, sub, comment, project, label = ids["task"], ids["sub"], ids["comment"], ids["project"], ids["label"]
    stale = {"If-Match": '"99"'}
    return [
        ("GET", f"{TASKS}/{task}", None, {}),
        ("PATCH", f"{TASKS}/{task}", {"title": "x"}, {}),
        ("PATCH", f"{TASKS}/{task}", {"title": "x"}, stale),
        ("PATCH", f"{TASKS}/{task}", {}, {}),
        # Re-parenting under its own subtask: the unseen tree's shape must not show.
        ("PATCH", f"{TASKS}/{task}", {"parent_id": sub}, {}),
        ("PATCH", f"{TASKS}/bulk", {"ids": [task], "changes": {"parent_id": sub}}, {}),
        ("DELETE", f"{TASKS}/{task}", None, {}),
        ("DELETE", f"{TASKS}/{task}", None, stale),
        ("GET", f"{TASKS}/{task}/comments", None, {}),
        ("GET", f"{TASKS}/{task}/activity", None, {}),
        # Lists filtered by an unseen object are as empty as for a missing one.
        ("GET", f"{TASKS}?project_id={project}", None, {}),
        ("GET", f"{TASKS}?parent_id={task}", None, {}),
        ("GET", f"{TASKS}?label_id={label}&paginate=cursor", None, {}),
        ("POST", f"{TASKS}/{task}/comments", {"body": "x"}, {}),
        ("GET", f"/api/v1/comments/{comment}", None, {}),
        ("PATCH", f"/api/v1/comments/{comment}", {"body": "x"}, {}),
        ("DELETE", f"/api/v1/comments/{comment}", None, {}),
        ("DELETE", f"/api/v1/comments/{comment}", None, stale),
        ("PATCH", f"{TASKS}/bulk", {"ids": [own_task, task], "changes": {"title": "x"}}, {}),
        ("PATCH", f"{TASKS}/bulk", {"ids": [task], "changes": {}}, {}),
        ("POST", TASKS, {"title": "x", "project_id": project}, {}),
        ("POST", TASKS, {"title": "x", "parent_id": task}, {}),
        ("POST", TASKS, {"title": "x", "label_ids": [label]}, {}),
        ("POST", f"{TASKS}/bulk", {"tasks": [{"title": "x"}, {"title": "y", "project_id": project}]}, {}),
        ("PATCH", f"{TASKS}/{own_task}", {"project_id": project}, {}),
        ("PATCH", f"{TASKS}/{own_task}", {"parent_id": task}, {}),
        ("PATCH", f"{TASKS}/{own_task}", {"label_ids": [label]}, {}),
    ]


def _comparable(response: httpx.Response, replace: dict[int, int]) -> tuple[int, dict[str, str], Any]:
    """Status, headers and body, with the missing ids written as the existing ones."""
    assert int(response.headers["content-length"]) == len(response.content)
    text = response.text
    for missing, existing in replace.items():
        text = re.sub(rf"\b{missing}\b", str(existing), text)
    headers = {k: v for k, v in response.headers.items() if k not in IGNORED_HEADERS}
    return response.status_code, headers, json.loads(text)


@pytest.mark.parametrize("who", ["outsider", "removed member"])
async def test_unseen_objects_answer_exactly_like_missing_ones(client, team, who):
    if who == "removed member":
        stranger = team.members[EDITOR]
        await remove_member(client, team.owner, team.project, stranger)
    else:
        stranger = team.outsider
    task = await create(client, team.owner, TASKS, {"title": "t", "project_id": team.project})
    comment = await create(client, team.scribe, f"{TASKS}/{task['id']}/comments", {"body": "c"})
    sub = await create(client, team.owner, TASKS, {"title": "s", "parent_id": task["id"]})
    own = await create(client, stranger, TASKS, {"title": "mine"})
    existing = {
        "task": task["id"],
        "sub": sub["id"],
        "comment": comment["id"],
        "project": team.project,
        "label": team.labels[team.owner.id],
    }
    missing = {k: v + MISSING for k, v in existing.items()}
    replace = {missing[k]: existing[k] for k in existing}
    before = await db_state()
    for seen, unseen in zip(_probes(team, existing, own["id"]), _probes(team, missing, own["id"]), strict=True):
        method, path, body, headers = seen
        answers = []
        for m, p, b, h in (seen, unseen):
            response = await client.request(
                m,
                p,
                content=None if b is None else json.dumps(b),
                headers={**stranger.headers, **h, "Content-Type": "application/json"},
            )
            expected = {200} if p.startswith(f"{TASKS}?") else {404, 422}
            assert response.status_code in expected, (m, p, b, response.status_code, response.text)
            assert "etag" not in response.headers, (m, p)
            answers.append(_comparable(response, replace))
        assert answers[0] == answers[1], (method, path, body, headers)
    assert await db_state() == before


# --------------------------------------------------------------------------------------------
# Removal and lowered roles take effect at the next request


@pytest.mark.parametrize("how", ["removed by the owner", "leaves"])
async def test_a_removed_member_loses_everything_at_the_next_request(client, team, how):
    member = team.members[EDITOR]
    owner = team.owner
    # Interleaved by id: project task, member's inbox task, project task, ...
    project_tasks, inbox_tasks = [], []
    for n in range(3):
        project_tasks.append(await create(client, owner, TASKS, {"title": f"p{n}", "project_id": team.project}))
        inbox_tasks.append(await create(client, member, TASKS, {"title": f"i{n}"}))
    task = project_tasks[0]
    comment = await create(client, member, f"{TASKS}/{task['id']}/comments", {"body": "mine"})
    assigned = await client.patch(f"{TASKS}/{task['id']}", json={"assignee_ids": [member.id]}, headers=owner.headers)
    assert assigned.json()["assignee_ids"] == [member.id]
    # A cursor walk started while a member: the first page holds the project's first task.
    first = await client.get(TASKS, params={"sort": "id", "limit": 2, "paginate": "cursor"}, headers=member.headers)
    assert [t["id"] for t in first.json()["items"]] == [project_tasks[0]["id"], inbox_tasks[0]["id"]]
    assert (await client.get(f"{TASKS}/{task['id']}", headers=member.headers)).status_code == 200

    if how == "leaves":
        await remove_member(client, member, team.project, member)
    else:
        await remove_member(client, owner, team.project, member)

    before = await db_state()
    for method, path, body in [
        ("GET", f"{TASKS}/{task['id']}", None),
        ("PATCH", f"{TASKS}/{task['id']}", {"title": "x"}),
        ("DELETE", f"{TASKS}/{task['id']}", None),
        ("GET", f"{TASKS}/{task['id']}/comments", None),
        ("GET", f"{TASKS}/{task['id']}/activity", None),
        ("POST", f"{TASKS}/{task['id']}/comments", {"body": "x"}),
        ("GET", f"/api/v1/comments/{comment['id']}", None),
        ("PATCH", f"/api/v1/comments/{comment['id']}", {"body": "x"}),
        ("DELETE", f"/api/v1/comments/{comment['id']}", None),
        ("PATCH", f"{TASKS}/bulk", {"ids": [task["id"]], "changes": {}}),
    ]:
        response = await client.request(method, path, json=body, headers=member.headers)
        assert_problem(response, 404, case=(method, path))
    assert await db_state() == before
    # Their cursor goes on with their inbox only; lists show nothing of the project.
    rest = await client.get(
        TASKS, params={"sort": "id", "limit": 10, "cursor": first.json()["next_cursor"]}, headers=member.headers
    )
    assert rest.status_code == 200
    assert [t["id"] for t in rest.json()["items"]] == [t["id"] for t in inbox_tasks[1:]]
    assert sorted(await walk(client, member)) == sorted(t["id"] for t in inbox_tasks)
    listed = await client.get(TASKS, params={"project_id": team.project}, headers=member.headers)
    assert listed.json()["items"] == [] and listed.json()["total"] == 0
    # The member is no longer anyone's assignee in the project.
    assert (await client.get(f"{TASKS}/{task['id']}", headers=owner.headers)).json()["assignee_ids"] == []


WRITES = [name for name, least in LEAST.items() if ACTIONS[name].writes]


async def test_a_role_lowered_or_removed_before_a_write_starts_refuses_it(client):
    """For each write: a member at exactly the least role may do it; once a committed change
    lowers them below it, their next try is a 403 naming the role; once they are removed, it is
    what an outsider gets. Nothing refused is written."""
    for name in WRITES:
        action, least = ACTIONS[name], LEAST[name]
        if least is ProjectRole.owner:
            continue  # the owner's role changes only by a transfer
        team = await make_team(client)  # a project of its own for each action
        member = team.members[least]
        target = await action.prepare(client, team, member)
        assert (await action.act(client, team, member, target)).status_code == action.ok, name
        lower = below(least)
        if lower is not None:
            await set_role(client, team.owner, team.project, member, lower)
            target = await action.prepare(client, team, member)
            before = await db_state()
            assert_forbidden(await action.act(client, team, member, target), least, name)
            assert await db_state() == before, name
        await remove_member(client, team.owner, team.project, member)
        target = await action.prepare(client, team, member)
        before = await db_state()
        response = await action.act(client, team, member, target)
        assert_problem(response, action.outsider, *filter(None, [action.outsider_field]), case=name)
        assert await db_state() == before, name


# --------------------------------------------------------------------------------------------
# Writes racing with role changes

ROUNDS = 20


async def _race_targets(client: httpx.AsyncClient, team: Team, member: ApiUser, tag: str) -> dict[str, int]:
    """The owner's tasks a round's writes act on, and the member's comment."""
    task = await create(client, team.owner, TASKS, {"title": f"{tag}-target", "project_id": team.project})
    victim = await create(client, team.owner, TASKS, {"title": f"{tag}-victim", "project_id": team.project})
    other = await create(client, team.owner, TASKS, {"title": f"{tag}-other", "project_id": team.project})
    mine = await create(client, member, f"{TASKS}/{task['id']}/comments", {"body": f"{tag}-mine"})
    return {"task": task["id"], "victim": victim["id"], "other": other["id"], "comment": mine["id"]}


async def _racing_writes(
    client: httpx.AsyncClient, team: Team, member: ApiUser, tag: str, targets: dict[str, int]
) -> list[tuple[str, httpx.Response]]:
    """One of each kind of editor write, sent together, marked with ``tag`` for ``_written``."""
    headers, project = member.headers, team.project
    requests = {
        "create": client.post(TASKS, json={"title": f"{tag}-created", "project_id": project}, headers=headers),
        "bulk": client.post(
            f"{TASKS}/bulk", json={"tasks": [{"title": f"{tag}-bulk", "project_id": project}]}, headers=headers
        ),
        "patch": client.patch(f"{TASKS}/{targets['task']}", json={"description": tag}, headers=headers),
        "delete": client.delete(f"{TASKS}/{targets['victim']}", headers=headers),
        "comment": client.post(f"{TASKS}/{targets['task']}/comments", json={"body": tag}, headers=headers),
        "comment_edit": client.patch(
            f"/api/v1/comments/{targets['comment']}", json={"body": f"{tag}-edit"}, headers=headers
        ),
        "bulk_patch": client.patch(
            f"{TASKS}/bulk",
            json={"ids": [targets["other"]], "changes": {"description": f"{tag}-bulk"}},
            headers=headers,
        ),
    }
    return list(zip(requests, await asyncio.gather(*requests.values()), strict=True))


KINDS = ("create", "bulk", "patch", "delete", "comment", "comment_edit", "bulk_patch")


async def _written(tag: str) -> dict[str, bool]:
    """Which of ``_racing_writes``' writes the database holds."""
    rows = await run_sql(
        "SELECT"
        " EXISTS (SELECT 1 FROM task WHERE title = {}) AS create,"
        " EXISTS (SELECT 1 FROM task WHERE title = {}) AS bulk,"
        " EXISTS (SELECT 1 FROM task WHERE description = {}) AS patch,"
        " NOT EXISTS (SELECT 1 FROM task WHERE title = {}) AS delete,"
        " EXISTS (SELECT 1 FROM comment WHERE body = {}) AS comment,"
        " EXISTS (SELECT 1 FROM task WHERE description = {}) AS bulk_patch,"
        " EXISTS (SELECT 1 FROM comment WHERE body = {}) AS comment_edit",
        f"{tag}-created",
        f"{tag}-bulk",
        tag,
        f"{tag}-victim",
        tag,
        f"{tag}-bulk",
        f"{tag}-edit",
    )
    return dict(rows[0])


@pytest.mark.parametrize("change", ["lowered to viewer", "removed"])
async def test_writes_racing_with_a_role_change_never_outlive_it(client, team, change):
    """Each round: an editor's writes run concurrently with a change that takes the role away,
    and more writes start once that change has committed. Concurrent writes may land either
    side of it, but the database holds exactly those that answered 2xx; every write started
    after the commit is refused and left nothing."""
    owner = team.owner
    member = team.members[EDITOR]
    # A removed member names a project they cannot see in a create (422), an unseen id elsewhere.
    refused = {kind: 403 for kind in KINDS} if change == "lowered to viewer" else {kind: 404 for kind in KINDS}
    if change == "removed":
        refused.update(create=422, bulk=422)
    outcomes: dict[str, int] = {}
    run = uuid.uuid4().hex[:8]  # tags no earlier test's rows can carry
    for n in range(ROUNDS):
        committed = asyncio.Event()
        tag, late_tag = f"{run}-r{n}", f"{run}-late{n}"
        targets = await _race_targets(client, team, member, tag)
        late_targets = await _race_targets(client, team, member, late_tag)

        async def take_role_away(delay: float) -> None:
            await asyncio.sleep(delay)
            if change == "removed":
                await remove_member(client, owner, team.project, member)
            else:
                await set_role(client, owner, team.project, member, VIEWER)
            committed.set()

        async def after_commit(tag: str, targets: dict[str, int]) -> list[tuple[str, httpx.Response]]:
            await committed.wait()
            return await _racing_writes(client, team, member, tag, targets)

        # Vary where the change lands among the writes.
        racing, _, late = await asyncio.gather(
            _racing_writes(client, team, member, tag, targets),
            take_role_away(0.002 * (n % 6)),
            after_commit(late_tag, late_targets),
        )
        written = await _written(tag)
        for kind, response in racing:
            assert response.status_code in {200, 201, 204, refused[kind]}, (n, kind, response.text)
            succeeded = response.status_code < 300
            key = f"{kind} {'written' if succeeded else 'refused'}"
            outcomes[key] = outcomes.get(key, 0) + 1
            assert written[kind] == succeeded, (n, kind, response.status_code, response.text, written)
        late_written = await _written(late_tag)
        for kind, response in late:
            assert response.status_code == refused[kind], (n, kind, response.text)
            assert not late_written[kind], (n, kind)
        if change == "removed":
            await add_member(client, owner, team.project, member, EDITOR)
        else:
            await set_role(client, owner, team.project, member, EDITOR)
    # Every task of the member's in the project is one a create answered 2xx for.
    rows = await run_sql("SELECT count(*) AS n FROM task WHERE created_by = {}", member.id)
    assert rows[0]["n"] == outcomes.get("create written", 0) + outcomes.get("bulk written", 0), outcomes


# --------------------------------------------------------------------------------------------
# Creators and assignees


async def _get(client: httpx.AsyncClient, user: ApiUser, task_id: int) -> dict[str, Any]:
    response = await client.get(f"{TASKS}/{task_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_tasks_carry_their_creator_whoever_changes_them(client, team):
    editor, owner = team.members[EDITOR], team.owner
    task = await create(client, editor, TASKS, {"title": "t", "project_id": team.project})
    assert task["created_by"] == editor.id
    assert task["assignee_ids"] == []
    response = await client.patch(f"{TASKS}/{task['id']}", json={"title": "u"}, headers=owner.headers)
    assert response.json()["created_by"] == editor.id
    # Read-only: a body naming it is refused and changes nothing.
    refused = await client.patch(f"{TASKS}/{task['id']}", json={"created_by": owner.id}, headers=owner.headers)
    assert_problem(refused, 400, "created_by")
    assert (await _get(client, team.members[VIEWER], task["id"]))["created_by"] == editor.id


async def test_assignees_are_members_of_the_tasks_project(client, team):
    editor, viewer, outsider = team.members[EDITOR], team.members[VIEWER], team.outsider
    task = await create(
        client, editor, TASKS, {"title": "t", "project_id": team.project, "assignee_ids": [viewer.id, editor.id]}
    )
    assert task["assignee_ids"] == sorted([viewer.id, editor.id])
    assert (await _get(client, viewer, task["id"]))["assignee_ids"] == sorted([viewer.id, editor.id])
    before = await db_state()
    for body in (
        {"title": "t", "project_id": team.project, "assignee_ids": [outsider.id]},
        {"title": "t", "project_id": team.project, "assignee_ids": [editor.id, 2_000_000]},
    ):
        assert_problem(await client.post(TASKS, json=body, headers=editor.headers), 422, "assignee_ids", case=body)
    bad_patch = await client.patch(
        f"{TASKS}/{task['id']}", json={"assignee_ids": [outsider.id]}, headers=editor.headers
    )
    assert_problem(bad_patch, 422, "assignee_ids")
    bulk = {"tasks": [{"title": "a", "project_id": team.project}, {"title": "b", "assignee_ids": [viewer.id]}]}
    assert_problem(await client.post(f"{TASKS}/bulk", json=bulk, headers=editor.headers), 422, "tasks[1].assignee_ids")
    bulk_patch = {"ids": [task["id"]], "changes": {"assignee_ids": [outsider.id]}}
    response = await client.patch(f"{TASKS}/bulk", json=bulk_patch, headers=editor.headers)
    assert_problem(response, 422, "changes.assignee_ids")
    assert await db_state() == before
    # PATCH replaces the set; [] clears it.
    response = await client.patch(
        f"{TASKS}/{task['id']}", json={"assignee_ids": [team.owner.id]}, headers=editor.headers
    )
    assert response.status_code == 200
    assert response.json()["assignee_ids"] == [team.owner.id]
    response = await client.patch(f"{TASKS}/{task['id']}", json={"assignee_ids": []}, headers=editor.headers)
    assert response.json()["assignee_ids"] == []


async def test_an_inbox_task_is_assigned_only_to_its_owner(client, team):
    editor, viewer = team.members[EDITOR], team.members[VIEWER]
    own = await create(client, editor, TASKS, {"title": "mine", "assignee_ids": [editor.id]})
    assert own["assignee_ids"] == [editor.id]
    body = {"title": "mine", "assignee_ids": [viewer.id]}
    assert_problem(await client.post(TASKS, json=body, headers=editor.headers), 422, "assignee_ids")
    response = await client.patch(f"{TASKS}/{own['id']}", json={"assignee_ids": [viewer.id]}, headers=editor.headers)
    assert_problem(response, 422, "assignee_ids")
    assert (await _get(client, editor, own["id"]))["assignee_ids"] == [editor.id]


async def test_assignee_filters(client, team):
    owner, editor, viewer = team.owner, team.members[EDITOR], team.members[VIEWER]
    p = team.project
    specs = {"nobody": [], "editor": [editor.id], "viewer": [viewer.id], "both": [editor.id, viewer.id]}
    tasks = {
        name: await create(client, owner, TASKS, {"title": name, "project_id": p, "assignee_ids": ids})
        for name, ids in specs.items()
    }
    mine = await create(client, viewer, TASKS, {"title": "viewer's inbox", "assignee_ids": [viewer.id]})
    unassigned_own = await create(client, viewer, TASKS, {"title": "viewer's other"})

    def ids(*names: str) -> list[int]:
        return sorted(tasks[n]["id"] for n in names)

    cases: list[tuple[list[tuple[str, str]], list[int]]] = [
        ([("assignee_id", str(editor.id))], ids("editor", "both")),
        ([("assignee_id", str(viewer.id))], sorted([*ids("viewer", "both"), mine["id"]])),
        (
            [("assignee_id", str(editor.id)), ("assignee_id", str(viewer.id))],
            sorted([*ids("editor", "viewer", "both"), mine["id"]]),
        ),
        ([("unassigned", "true")], sorted([*ids("nobody"), unassigned_own["id"]])),
        ([("unassigned", "false")], sorted([*ids("editor", "viewer", "both"), mine["id"]])),
        ([("unassigned", "true"), ("project_id", str(p))], ids("nobody")),
        ([("assignee_id", str(viewer.id)), ("project_id", str(p))], ids("viewer", "both")),
        ([("assignee_id", str(owner.id))], []),
    ]
    for params, expected in cases:
        assert sorted(await walk(client, viewer, params)) == expected, params
        page = await client.get(TASKS, params=[*params, ("limit", "100")], headers=viewer.headers)
        assert page.json()["total"] == len(expected), params
    # The owner sees none of the viewer's inbox.
    assert sorted(await walk(client, owner, [("assignee_id", str(viewer.id))])) == ids("viewer", "both")


# --------------------------------------------------------------------------------------------
# Subtasks and moves


async def _second_project(client: httpx.AsyncClient, team: Team, *roles: tuple[ApiUser, ProjectRole]) -> int:
    """Another project of the team's owner, with the given members."""
    project = await create(client, team.owner, "/api/v1/projects", {"name": "Other"})
    for user, role in roles:
        await add_member(client, team.owner, project["id"], user, role)
    return int(project["id"])


async def _tree(client: httpx.AsyncClient, user: ApiUser, project: int | None) -> list[dict[str, Any]]:
    """A root, its child and grandchild, in ``project``."""
    root = await create(client, user, TASKS, {"title": "root", "project_id": project})
    child = await create(client, user, TASKS, {"title": "child", "parent_id": root["id"]})
    grandchild = await create(client, user, TASKS, {"title": "grandchild", "parent_id": child["id"]})
    return [root, child, grandchild]


async def test_a_subtask_lives_in_its_parents_project(client, team):
    editor = team.members[EDITOR]
    other = await _second_project(client, team, (editor, EDITOR))
    root, child, grandchild = await _tree(client, editor, team.project)
    # Created without project_id, a subtask goes to its parent's project.
    assert child["project_id"] == grandchild["project_id"] == team.project
    inbox_parent = await create(client, editor, TASKS, {"title": "inbox parent"})
    before = await db_state()
    for body in (
        {"title": "s", "parent_id": root["id"], "project_id": other},
        {"title": "s", "parent_id": inbox_parent["id"], "project_id": team.project},
        # The owner's inbox task is nobody else's: as missing.
        {"title": "s", "parent_id": (await create(client, team.owner, TASKS, {"title": "o"}))["id"]},
    ):
        response = await client.post(TASKS, json=body, headers=editor.headers)
        assert_problem(response, 422, "parent_id", case=body)
        before = await db_state() if body.get("project_id") is None else before
    # Re-parenting under a task of another project.
    elsewhere = await create(client, editor, TASKS, {"title": "elsewhere", "project_id": other})
    before = await db_state()
    response = await client.patch(f"{TASKS}/{root['id']}", json={"parent_id": elsewhere["id"]}, headers=editor.headers)
    assert_problem(response, 422, "parent_id")
    # A subtask cannot leave its parent's project alone.
    response = await client.patch(f"{TASKS}/{child['id']}", json={"project_id": other}, headers=editor.headers)
    assert_problem(response, 422, "parent_id")
    assert await db_state() == before
    # With a parent in the same project, it can.
    response = await client.patch(
        f"{TASKS}/{child['id']}", json={"project_id": other, "parent_id": elsewhere["id"]}, headers=editor.headers
    )
    assert response.status_code == 200, response.text
    assert (await _get(client, editor, grandchild["id"]))["project_id"] == other


@pytest.mark.parametrize("how", ["PATCH", "bulk PATCH"])
async def test_moving_a_task_moves_its_subtasks(client, team, how):
    editor, viewer = team.members[EDITOR], team.members[VIEWER]
    other = await _second_project(client, team, (editor, EDITOR))
    tree = await _tree(client, team.owner, team.project)
    await client.patch(f"{TASKS}/{tree[1]['id']}", json={"assignee_ids": [viewer.id]}, headers=team.owner.headers)
    if how == "PATCH":
        response = await client.patch(f"{TASKS}/{tree[0]['id']}", json={"project_id": other}, headers=editor.headers)
    else:
        body = {"ids": [tree[0]["id"]], "changes": {"project_id": other}}
        response = await client.patch(f"{TASKS}/bulk", json=body, headers=editor.headers)
    assert response.status_code == 200, response.text
    for task in tree:
        moved = await _get(client, editor, task["id"])
        assert moved["project_id"] == other
        assert moved["parent_id"] == task["parent_id"]
        # The viewer is no member there: no longer assigned, and the tasks are gone for them.
        assert moved["assignee_ids"] == []
        assert_problem(await client.get(f"{TASKS}/{task['id']}", headers=viewer.headers), 404)
    assert not set(await walk(client, viewer)) & {t["id"] for t in tree}


async def test_a_move_needs_editor_in_both_projects(client, team):
    editor = team.members[EDITOR]
    viewing = await _second_project(client, team, (editor, VIEWER))
    unseen = await _second_project(client, team)
    tree = await _tree(client, team.owner, team.project)
    before = await db_state()
    response = await client.patch(f"{TASKS}/{tree[0]['id']}", json={"project_id": viewing}, headers=editor.headers)
    assert_forbidden(response, EDITOR)
    response = await client.patch(f"{TASKS}/{tree[0]['id']}", json={"project_id": unseen}, headers=editor.headers)
    assert_problem(response, 422, "project_id")
    body = {"ids": [tree[0]["id"]], "changes": {"project_id": viewing}}
    assert_forbidden(await client.patch(f"{TASKS}/bulk", json=body, headers=editor.headers), EDITOR)
    # Editor in the target but viewer in the source.
    response = await client.patch(
        f"{TASKS}/{tree[0]['id']}", json={"project_id": team.project}, headers=team.members[VIEWER].headers
    )
    assert_forbidden(response, EDITOR)
    mine = await create(client, team.members[VIEWER], TASKS, {"title": "viewer's"})
    before = await db_state()
    response = await client.patch(
        f"{TASKS}/{mine['id']}", json={"project_id": team.project}, headers=team.members[VIEWER].headers
    )
    assert_forbidden(response, EDITOR)
    assert await db_state() == before


async def test_moving_to_the_inbox_puts_the_subtree_in_the_movers_inbox(client, team):
    editor, owner = team.members[EDITOR], team.owner
    tree = await _tree(client, owner, team.project)
    await client.patch(f"{TASKS}/{tree[0]['id']}", json={"assignee_ids": [owner.id, editor.id]}, headers=owner.headers)
    response = await client.patch(f"{TASKS}/{tree[0]['id']}", json={"project_id": None}, headers=editor.headers)
    assert response.status_code == 200, response.text
    # An inbox task is assigned to its owner only; the answer says so as a GET does.
    assert (await _get(client, editor, tree[0]["id"]))["assignee_ids"] == [editor.id]
    assert response.json()["assignee_ids"] == [editor.id]
    for task in tree:
        moved = await _get(client, editor, task["id"])
        assert moved["project_id"] is None
        assert moved["created_by"] == owner.id
        assert_problem(await client.get(f"{TASKS}/{task['id']}", headers=owner.headers), 404)
    assert {t["id"] for t in tree} <= set(await walk(client, editor, [("inbox", "true")]))
    assert not {t["id"] for t in tree} & set(await walk(client, owner))


# --------------------------------------------------------------------------------------------
# Labels stay personal


async def test_labels_on_shared_tasks(client, team):
    owner, editor, viewer, outsider = team.owner, team.members[EDITOR], team.members[VIEWER], team.outsider
    label = team.labels
    task = await create(
        client, owner, TASKS, {"title": "t", "project_id": team.project, "label_ids": [label[owner.id]]}
    )
    # Everyone who can see the task sees the owner's label on it, and can filter by it.
    for user in (editor, viewer):
        assert [x["id"] for x in (await _get(client, user, task["id"]))["labels"]] == [label[owner.id]]
        assert await walk(client, user, [("label_id", str(label[owner.id]))]) == [task["id"]]
    # An editor keeps the owner's label and adds their own.
    both = sorted([label[owner.id], label[editor.id]])
    response = await client.patch(f"{TASKS}/{task['id']}", json={"label_ids": both}, headers=editor.headers)
    assert response.status_code == 200, response.text
    assert sorted(x["id"] for x in response.json()["labels"]) == both
    # Anyone else's label not on the task, or a missing one, is a 422 naming label_ids.
    owners_other = await create(client, owner, "/api/v1/labels", {"name": "owner's other"})
    before = await db_state()
    for ids in ([*both, owners_other["id"]], [label[outsider.id]], [label[viewer.id]], [2_000_000]):
        response = await client.patch(f"{TASKS}/{task['id']}", json={"label_ids": ids}, headers=editor.headers)
        assert_problem(response, 422, "label_ids", case=ids)
        body = {"title": "n", "project_id": team.project, "label_ids": ids}
        assert_problem(await client.post(TASKS, json=body, headers=editor.headers), 422, "label_ids", case=ids)
    assert await db_state() == before
    # PATCH replaces the whole set: leaving the owner's label out detaches it.
    response = await client.patch(
        f"{TASKS}/{task['id']}", json={"label_ids": [label[editor.id]]}, headers=editor.headers
    )
    assert [x["id"] for x in response.json()["labels"]] == [label[editor.id]]
    # The owner's label is no longer on it, so the editor cannot put it back; the owner can.
    response = await client.patch(f"{TASKS}/{task['id']}", json={"label_ids": both}, headers=editor.headers)
    assert_problem(response, 422, "label_ids")
    response = await client.patch(f"{TASKS}/{task['id']}", json={"label_ids": both}, headers=owner.headers)
    assert sorted(x["id"] for x in response.json()["labels"]) == both
    # Deleting a label detaches it for everyone.
    assert (await client.delete(f"/api/v1/labels/{label[owner.id]}", headers=owner.headers)).status_code == 204
    assert [x["id"] for x in (await _get(client, viewer, task["id"]))["labels"]] == [label[editor.id]]


async def test_bulk_label_changes_check_every_task(client, team):
    owner, editor = team.owner, team.members[EDITOR]
    labelled = await create(
        client, owner, TASKS, {"title": "a", "project_id": team.project, "label_ids": [team.labels[owner.id]]}
    )
    plain = await create(client, owner, TASKS, {"title": "b", "project_id": team.project})
    before = await db_state()
    # The owner's label is on the first task only: the editor may not put it on the second.
    body = {"ids": [labelled["id"], plain["id"]], "changes": {"label_ids": [team.labels[owner.id]]}}
    assert_problem(await client.patch(f"{TASKS}/bulk", json=body, headers=editor.headers), 422, "changes.label_ids")
    assert await db_state() == before
    body = {"ids": [labelled["id"], plain["id"]], "changes": {"label_ids": [team.labels[editor.id]]}}
    response = await client.patch(f"{TASKS}/bulk", json=body, headers=editor.headers)
    assert response.status_code == 200, response.text
    assert [[x["id"] for x in t["labels"]] for t in response.json()["items"]] == [[team.labels[editor.id]]] * 2


# --------------------------------------------------------------------------------------------
# Safe writes on shared tasks


async def test_two_members_racing_with_the_same_if_match_see_one_success(client, team):
    owner, editor = team.owner, team.members[EDITOR]
    for n in range(5):
        task = await create(client, owner, TASKS, {"title": f"t{n}", "project_id": team.project})
        match = {"If-Match": f'"{task["version"]}"'}
        answers = await asyncio.gather(
            client.patch(f"{TASKS}/{task['id']}", json={"title": "owner"}, headers={**owner.headers, **match}),
            client.patch(f"{TASKS}/{task['id']}", json={"title": "editor"}, headers={**editor.headers, **match}),
        )
        assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
        winner = next(a for a in answers if a.status_code == 200).json()
        assert (await _get(client, owner, task["id"]))["title"] == winner["title"]
        assert next(a for a in answers if a.status_code == 412).headers["etag"] == f'"{task["version"] + 1}"'


async def test_idempotency_keys_are_per_user_in_a_shared_project(client, team):
    owner, editor = team.owner, team.members[EDITOR]
    body = {"title": "same", "project_id": team.project}
    key = {"Idempotency-Key": "shared-key"}
    first = await client.post(TASKS, json=body, headers={**owner.headers, **key})
    second = await client.post(TASKS, json=body, headers={**editor.headers, **key})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    replay = await client.post(TASKS, json=body, headers={**editor.headers, **key})
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == second.json()


@pytest.mark.parametrize("bulk", [False, True], ids=["one", "bulk"])
async def test_a_removed_member_cannot_replay_a_create_into_the_project(client, team, bulk):
    """SPEC: a removed member's next request for anything in the project is a 404 (a create
    naming it, a 422). A retry of their earlier create must not hand back the project's task."""
    editor = team.members[EDITOR]
    one = {"title": "made while a member", "project_id": team.project}
    path, body, field = (
        (f"{TASKS}/bulk", {"tasks": [{"title": "x"}, one]}, "tasks[1].project_id")
        if bulk
        else (TASKS, one, "project_id")
    )
    key = {**editor.headers, "Idempotency-Key": "before-removal"}
    first = await client.post(path, json=body, headers=key)
    assert first.status_code == 201
    replay = await client.post(path, json=body, headers=key)
    assert (replay.status_code, replay.json()) == (201, first.json())
    await remove_member(client, team.owner, team.project, editor)
    before = await db_state()
    retry = await client.post(path, json=body, headers=key)
    assert await db_state() == before
    assert_problem(retry, 422, field)
    assert "idempotent-replayed" not in retry.headers


async def test_subtasks_moved_with_their_parent_are_changed_objects(client, team):
    """SPEC "Safe writes": every change adds 1 to the version. A subtask that moved with its
    parent changed (its project_id), so a writer holding its old version gets a 412."""
    editor = team.members[EDITOR]
    other = await _second_project(client, team, (editor, EDITOR))
    root, child, grandchild = await _tree(client, editor, team.project)
    response = await client.patch(f"{TASKS}/{root['id']}", json={"project_id": other}, headers=editor.headers)
    assert response.status_code == 200, response.text
    for old in (child, grandchild):
        moved = await _get(client, editor, old["id"])
        assert moved["project_id"] == other
        assert moved["version"] == old["version"] + 1, moved
        assert moved["updated_at"] > old["updated_at"]
        stale = await client.patch(
            f"{TASKS}/{old['id']}", json={"title": "x"}, headers={**editor.headers, "If-Match": f'"{old["version"]}"'}
        )
        assert_problem(stale, 412)


async def test_a_change_racing_with_a_promotion_lands_whole_or_not_at_all(client, team):
    """A viewer's change (one task, and bulk) races with their promotion to editor: it lands
    whole (200, every task changed) or not at all (403, or 409 when the promotion committed
    between the write and its explanation; nothing changed), never in part, never a 200 that
    changed nothing, never a 412 for a request without If-Match."""
    owner, member = team.owner, team.members[VIEWER]
    outcomes: dict[int, int] = {}
    for n in range(ROUNDS):
        ids = [
            (await create(client, owner, TASKS, {"title": f"b{n}-{k}", "project_id": team.project}))["id"]
            for k in range(4)
        ]

        async def promote(delay: float) -> None:
            await asyncio.sleep(delay)
            await set_role(client, owner, team.project, member, EDITOR)

        async def later(delay: float, request: Awaitable[httpx.Response]) -> httpx.Response:
            await asyncio.sleep(delay)
            return await request

        # The writes start up to 9 ms after the promotion: either may come first.
        bulk = {"ids": ids[:3], "changes": {"description": f"bulk{n}"}}
        delay = 0.001 * (n % 10)
        *answers, _ = await asyncio.gather(
            later(delay, client.patch(f"{TASKS}/bulk", json=bulk, headers=member.headers)),
            later(delay, client.patch(f"{TASKS}/{ids[3]}", json={"description": f"one{n}"}, headers=member.headers)),
            promote(0),
        )
        for response, tag, count in zip(answers, (f"bulk{n}", f"one{n}"), (3, 1), strict=True):
            rows = await run_sql("SELECT count(*) AS n FROM task WHERE description = {}", tag)
            outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
            if response.status_code == 200:
                assert rows[0]["n"] == count, (n, tag, response.json())
                continue
            if response.status_code == 409:
                assert_problem(response, 409)
            else:
                assert_forbidden(response, EDITOR, (n, tag))
            assert rows[0]["n"] == 0, (n, tag)
        await set_role(client, owner, team.project, member, VIEWER)
    assert set(outcomes) <= {200, 403, 409}, outcomes


async def test_an_assignment_racing_with_the_assignees_removal_never_outlives_it(client, team):
    """SPEC: assignees are members; a removed member is unassigned. An assignment and the
    assignee's removal sent together leave no assignment of a non-member, whichever wins."""
    owner, member = team.owner, team.members[VIEWER]
    for n in range(ROUNDS):
        task = await create(client, owner, TASKS, {"title": f"a{n}", "project_id": team.project})

        async def later(delay: float, request: Awaitable[httpx.Response]) -> httpx.Response:
            await asyncio.sleep(delay)
            return await request

        delay = 0.001 * (n % 6)
        assigned, removed = await asyncio.gather(
            later(
                delay, client.patch(f"{TASKS}/{task['id']}", json={"assignee_ids": [member.id]}, headers=owner.headers)
            ),
            client.delete(f"/api/v1/projects/{team.project}/members/{member.id}", headers=owner.headers),
        )
        assert removed.status_code == 204, removed.text
        assert assigned.status_code in {200, 422}, assigned.text
        rows = await run_sql(
            "SELECT count(*) AS n FROM task_assignee a JOIN task t ON t.id = a.task WHERE NOT EXISTS"
            " (SELECT 1 FROM project_member m WHERE m.project = t.project AND m.member = a.assignee)"
        )
        assert rows[0]["n"] == 0, (n, assigned.status_code)
        assert (await _get(client, owner, task["id"]))["assignee_ids"] == []
        await add_member(client, owner, team.project, member, VIEWER)


async def test_a_move_racing_with_the_assignees_removal_there_leaves_no_outsider_assigned(client, team):
    """A task assigned to a member of two projects moves to the second while the assignee is
    removed from it: whichever wins, no task is left assigned to a non-member."""
    owner, member = team.owner, team.members[VIEWER]
    other = await _second_project(client, team)
    for n in range(ROUNDS):
        await add_member(client, owner, other, member, VIEWER)
        task = await create(
            client, owner, TASKS, {"title": f"m{n}", "project_id": team.project, "assignee_ids": [member.id]}
        )

        async def later(delay: float, request: Awaitable[httpx.Response]) -> httpx.Response:
            await asyncio.sleep(delay)
            return await request

        delay = 0.001 * (n % 6)
        moved, removed = await asyncio.gather(
            later(delay, client.patch(f"{TASKS}/{task['id']}", json={"project_id": other}, headers=owner.headers)),
            client.delete(f"/api/v1/projects/{other}/members/{member.id}", headers=owner.headers),
        )
        assert (moved.status_code, removed.status_code) == (200, 204), (moved.text, removed.text)
        rows = await run_sql(
            "SELECT count(*) AS n FROM task_assignee a JOIN task t ON t.id = a.task WHERE NOT EXISTS"
            " (SELECT 1 FROM project_member m WHERE m.project = t.project AND m.member = a.assignee)"
        )
        assert rows[0]["n"] == 0, n
        assert (await _get(client, owner, task["id"]))["assignee_ids"] == []
