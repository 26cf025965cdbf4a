"""Who may do what in a shared project: the role x action matrix, generated.

The matrix comes from two declarations: ``ProjectRole`` (least to most) and the least role each
action needs (``app.services.access.PROJECT_ACTIONS``). For every action, every role and an
outsider try it: a role at or above the one needed succeeds, a member below it gets a 403 naming
that role and nothing changes, an outsider gets exactly the 404 a missing id gets.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema_rs
import pytest

from app.services.access import PROJECT_ACTIONS, may
from app.tables import ProjectRole
from tests.api.problems import assert_problem
from tests.api.sharing import PROJECTS, Team, invite, join, make_team

INVITATIONS = "/api/v1/invitations"


@dataclass
class Request:
    """One try of an action: ``{id}`` in ``path`` is the object an outsider must not learn about."""

    method: str
    path: str
    object_id: int
    success: int
    json: dict[str, Any] | None = None

    def url(self, object_id: int | None = None) -> str:
        return self.path.format(id=self.object_id if object_id is None else object_id)


class Setup:
    """Builds each try of an action; ``n`` numbers the tries, so each gets fresh objects."""

    def __init__(self, client: Any, register: Any, team: Team) -> None:
        self.client, self.register, self.team, self.n = client, register, team, 0

    async def spare_member(self) -> Any:
        """A fresh viewer, for actions on another member."""
        user = await self.register()
        await join(self.client, self.team.owner, self.team.id, user, ProjectRole.viewer.value)
        return user


P = f"{PROJECTS}/{{id}}"
# How to try each action (one entry per PROJECT_ACTIONS key; a new action without one fails).
TRIES: dict[str, Callable[[Setup], Awaitable[Request]]] = {}


def tries(action: str) -> Callable[[Callable[[Setup], Awaitable[Request]]], Any]:
    def register(build: Callable[[Setup], Awaitable[Request]]) -> Any:
        TRIES[action] = build
        return build

    return register


@tries("read the project")
async def _read(s: Setup) -> Request:
    return Request("GET", P, s.team.id, 200)


@tries("list members")
async def _members(s: Setup) -> Request:
    return Request("GET", f"{P}/members", s.team.id, 200)


@tries("change the project")
async def _change(s: Setup) -> Request:
    return Request("PATCH", P, s.team.id, 200, {"description": f"changed {s.n}"})


@tries("list invitations")
async def _invitations(s: Setup) -> Request:
    return Request("GET", f"{P}/invitations", s.team.id, 200)


@tries("invite")
async def _invite(s: Setup) -> Request:
    return Request("POST", f"{P}/invitations", s.team.id, 201, {"email": f"guest{s.n}@example.com", "role": "viewer"})


@tries("withdraw an invitation")
async def _withdraw(s: Setup) -> Request:
    invitation = await invite(s.client, s.team.owner, s.team.id, f"withdrawn{s.n}@example.com", "editor")
    return Request("DELETE", f"{INVITATIONS}/{{id}}", invitation["id"], 204)


@tries("change a member's role")
async def _role(s: Setup) -> Request:
    target = await s.spare_member()
    return Request("PATCH", f"{P}/members/{target.id}", s.team.id, 200, {"role": "commenter"})


@tries("remove a member")
async def _remove(s: Setup) -> Request:
    target = await s.spare_member()
    return Request("DELETE", f"{P}/members/{target.id}", s.team.id, 204)


@tries("delete the project")
async def _delete(s: Setup) -> Request:
    return Request("DELETE", P, s.team.id, 204)


@tries("transfer the project")
async def _transfer(s: Setup) -> Request:
    target = await s.spare_member()
    return Request("POST", f"{P}/transfer", s.team.id, 200, {"user_id": target.id})


async def _send(client: Any, user: Any, request: Request, object_id: int | None = None) -> Any:
    return await client.request(request.method, request.url(object_id), json=request.json, headers=user.headers)


async def _state(client: Any, team: Team) -> list[Any]:
    """What the owner sees of the project, its members and its invitations."""
    urls = [team.url, f"{team.url}/members", f"{team.url}/invitations?limit=100"]
    return [(await client.get(url, headers=team.owner.headers)).json() for url in urls]


def test_every_action_has_a_try():
    assert set(TRIES) == set(PROJECT_ACTIONS)


# Outsider first, then the roles least to most: a try that succeeds (and may consume its object,
# as a delete does) comes after every try that must fail.
ACTORS: list[ProjectRole | None] = [None, *ProjectRole]


@pytest.mark.parametrize("action", list(PROJECT_ACTIONS))
async def test_role_matrix(client, register, action):
    team = await make_team(client, register)
    setup = Setup(client, register, team)
    needed = PROJECT_ACTIONS[action]
    for actor in ACTORS:
        setup.n += 1
        user = team.outsider if actor is None else team.members[actor]
        request = await TRIES[action](setup)
        before = await _state(client, team)
        response = await _send(client, user, request)
        case = (action, actor)
        if actor is None:
            assert_problem(response, 404, case=case)
        elif may(actor.value, needed):
            assert response.status_code == request.success, (case, response.text)
            continue
        else:
            body = assert_problem(response, 403, case=case)
            assert body["required_role"] == needed.value, case
            assert f"needs the {needed.value} role" in body["detail"], body
            assert f"you are {actor.value}" in body["detail"], body
        assert await _state(client, team) == before, case


@pytest.mark.parametrize("action", list(PROJECT_ACTIONS))
async def test_an_outsider_gets_exactly_what_a_missing_id_gets(client, register, action):
    team = await make_team(client, register)
    setup = Setup(client, register, team)
    request = await TRIES[action](setup)
    missing = int("9" * len(str(request.object_id)))  # as wide, so the bodies are as long
    assert missing != request.object_id
    before = await _state(client, team)
    seen = await _send(client, team.outsider, request)
    absent = await _send(client, team.outsider, request, missing)
    assert_problem(seen, 404)
    assert_problem(absent, 404)
    assert seen.text.replace(str(request.object_id), str(missing)) == absent.text

    def headers(response: Any) -> dict[str, str]:
        return {k: v for k, v in response.headers.items() if k not in {"ratelimit", "date"}}

    assert headers(seen) == headers(absent)
    assert await _state(client, team) == before


async def test_a_member_at_any_role_sees_the_project_with_their_role(client, register):
    team = await make_team(client, register)
    for role, user in team.members.items():
        listed = (await client.get(PROJECTS, headers=user.headers)).json()
        assert [(p["id"], p["role"]) for p in listed["items"]] == [(team.id, role.value)]
        assert listed["total"] == 1
        one = await client.get(team.url, headers=user.headers)
        assert one.status_code == 200
        assert one.json()["role"] == role.value
        assert one.headers["etag"] == f'"{one.json()["version"]}"'
        assert {k: v for k, v in one.json().items() if k != "role"} == {
            k: v for k, v in team.project.items() if k != "role"
        }
    assert (await client.get(PROJECTS, headers=team.outsider.headers)).json()["total"] == 0


async def test_the_list_holds_own_and_shared_projects_with_filters_and_sort(client, register):
    team = await make_team(client, register)
    editor = team.members[ProjectRole.editor]
    own = (await client.post(PROJECTS, json={"name": "Own", "archived": True}, headers=editor.headers)).json()
    other = await client.post(PROJECTS, json={"name": "Not mine"}, headers=team.outsider.headers)
    assert other.status_code == 201
    listed = (await client.get(PROJECTS, params={"sort": "name"}, headers=editor.headers)).json()
    assert [(p["name"], p["role"]) for p in listed["items"]] == [("Own", "owner"), ("Shared", "editor")]
    archived = (await client.get(PROJECTS, params={"archived": "true"}, headers=editor.headers)).json()
    assert [p["id"] for p in archived["items"]] == [own["id"]]
    assert archived["total"] == 1
    paged = (await client.get(PROJECTS, params={"limit": 1, "sort": "-name"}, headers=editor.headers)).json()
    assert (paged["total"], [p["name"] for p in paged["items"]]) == (2, ["Shared"])


async def test_role_is_read_only(client, register):
    team = await make_team(client, register)
    response = await client.patch(team.url, json={"role": "viewer"}, headers=team.owner.headers)
    assert_problem(response, 400, "role")
    created = await client.post(PROJECTS, json={"name": "x", "role": "viewer"}, headers=team.owner.headers)
    assert_problem(created, 400, "role")
    assert (await client.get(team.url, headers=team.owner.headers)).json()["role"] == "owner"


async def test_if_match_on_a_shared_project(client, register):
    team = await make_team(client, register)
    admin = team.members[ProjectRole.admin]
    changed = await client.patch(
        team.url, json={"name": "Renamed"}, headers={**admin.headers, "If-Match": f'"{team.project["version"]}"'}
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == f'"{team.project["version"] + 1}"'
    # The owner's copy is stale now: 412 with the current ETag, nothing written.
    stale = await client.patch(
        team.url, json={"name": "Mine"}, headers={**team.owner.headers, "If-Match": f'"{team.project["version"]}"'}
    )
    assert_problem(stale, 412)
    assert stale.headers["etag"] == changed.headers["etag"]
    # A member below admin gets 403 whatever its If-Match says: the role is checked first.
    editor = team.members[ProjectRole.editor]
    forbidden = await client.patch(team.url, json={"name": "x"}, headers={**editor.headers, "If-Match": '"1"'})
    assert_problem(forbidden, 403)
    # An empty change is checked like a write: 403 for a viewer, 412 for a stale admin.
    viewer = team.members[ProjectRole.viewer]
    assert_problem(await client.patch(team.url, json={}, headers=viewer.headers), 403)
    assert_problem(await client.patch(team.url, json={}, headers={**admin.headers, "If-Match": '"1"'}), 412)
    deleted = await client.delete(team.url, headers={**team.owner.headers, "If-Match": '"1"'})
    assert_problem(deleted, 412)
    assert (await client.get(team.url, headers=team.owner.headers)).json()["name"] == "Renamed"


async def test_a_write_after_the_role_was_taken_away_fails(client, register):
    team = await make_team(client, register)
    admin = team.members[ProjectRole.admin]
    demoted = await client.patch(f"{team.url}/members/{admin.id}", json={"role": "viewer"}, headers=team.owner.headers)
    assert demoted.status_code == 200, demoted.text
    body = assert_problem(await client.patch(team.url, json={"name": "x"}, headers=admin.headers), 403)
    assert body["required_role"] == "admin"
    assert_problem(
        await client.post(
            f"{team.url}/invitations", json={"email": "z@example.com", "role": "viewer"}, headers=admin.headers
        ),
        403,
    )
    assert (await client.get(team.url, headers=team.owner.headers)).json()["name"] == "Shared"
    invitations = (await client.get(f"{team.url}/invitations", headers=team.owner.headers)).json()
    assert "z@example.com" not in {i["email"] for i in invitations["items"]}


async def test_the_403_problem_is_documented(client, register):
    team = await make_team(client, register)
    body = assert_problem(await client.delete(team.url, headers=team.members[ProjectRole.admin].headers), 403)
    doc = (await client.get("/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    validator = jsonschema_rs.Draft202012Validator(
        {"$ref": "#/components/schemas/Problem", "components": doc["components"]}
    )
    assert [str(e) for e in validator.iter_errors(body)] == []
    assert set(body) <= set(schemas["Problem"]["properties"])
    assert set(doc["paths"]["/api/v1/projects/{project_id}"]["delete"]["responses"]) >= {"403", "404", "412"}


def test_the_readme_role_table_says_what_the_code_does():
    """README "Sharing a project" has one row per action: a mark under each role that may do it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Sharing a project", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["Action", *(role.value for role in ProjectRole)]
    table = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0]] = {role for role, cell in zip(header[1:], cells[1:], strict=True) if cell}
    for action, needed in PROJECT_ACTIONS.items():
        assert table[action] == {role.value for role in ProjectRole if may(role.value, needed)}, action


async def test_a_role_change_counts_from_its_commit(client, register):
    """A demotion or removal still uncommitted does not stop a write; once committed, the very
    next request sees it (the role is read by the statement that writes, never cached)."""
    team = await make_team(client, register)
    admin, editor = team.members[ProjectRole.admin], team.members[ProjectRole.editor]
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(
            "UPDATE project_member SET role = 'viewer' WHERE project = $1 AND member = $2", team.id, admin.id
        )
        await connection.execute("DELETE FROM project_member WHERE project = $1 AND member = $2", team.id, editor.id)
        before = await client.patch(team.url, json={"name": "Before"}, headers=admin.headers)
        assert before.status_code == 200, before.text
        assert (await client.get(team.url, headers=editor.headers)).status_code == 200
        await transaction.commit()
    finally:
        await connection.close()
    body = assert_problem(await client.patch(team.url, json={"name": "After"}, headers=admin.headers), 403)
    assert "you are viewer" in body["detail"]
    assert_problem(await client.get(team.url, headers=editor.headers), 404)
    assert (await client.get(team.url, headers=team.owner.headers)).json()["name"] == "Before"
