"""Helpers for the shared-project tests (SPEC "Collaboration"): a team with a member at every
role, memberships made through the API, and a snapshot of every row a task write can touch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest

from app.tables import ProjectRole
from tests.api.problems import assert_problem, run_sql
from tests.conftest import ApiUser

TASKS = "/api/v1/tasks"
PROJECTS = "/api/v1/projects"
RANK = {role: rank for rank, role in enumerate(ProjectRole)}
OWNER = ProjectRole.owner
# The roles a member can be given (the owner is the project's creator).
GIVEN_ROLES = [role for role in ProjectRole if role is not OWNER]
# Every row a task, comment, label-link, membership or idempotent write touches.
STATE_TABLES = ("task", "task_label", "task_assignee", "comment", "project_member", "idempotency_key")


@pytest.fixture(scope="module")
def app() -> Any:
    """The app with rate limits no test here reaches (the matrix and races send thousands)."""
    from app.asgi import create_app
    from app.settings import Limit, get_settings

    big = Limit(1_000_000, 60)
    return create_app(replace(get_settings(), rate_limit_user=big, rate_limit_public=big))


def may(role: ProjectRole | None, least: ProjectRole) -> bool:
    return role is not None and RANK[role] >= RANK[least]


def below(role: ProjectRole) -> ProjectRole | None:
    """The role just below ``role`` (None below viewer)."""
    rank = RANK[role]
    return list(ProjectRole)[rank - 1] if rank > 0 else None


async def create(client: httpx.AsyncClient, user: ApiUser, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=user.headers)
    assert response.status_code == 201, (path, body, response.text)
    result: dict[str, Any] = response.json()
    return result


async def add_member(
    client: httpx.AsyncClient, owner: ApiUser, project_id: int, user: ApiUser, role: ProjectRole | str
) -> None:
    """``user`` joins the project with ``role``, by invitation and acceptance (the API's only way)."""
    invitation = await create(
        client, owner, f"{PROJECTS}/{project_id}/invitations", {"email": user.email, "role": str(role)}
    )
    accepted = await client.post(f"/api/v1/invitations/{invitation['id']}/accept", headers=user.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["role"] == str(role)


async def set_role(
    client: httpx.AsyncClient, admin: ApiUser, project_id: int, user: ApiUser, role: ProjectRole | str
) -> None:
    response = await client.patch(
        f"{PROJECTS}/{project_id}/members/{user.id}", json={"role": str(role)}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


async def remove_member(client: httpx.AsyncClient, admin: ApiUser, project_id: int, user: ApiUser) -> None:
    response = await client.delete(f"{PROJECTS}/{project_id}/members/{user.id}", headers=admin.headers)
    assert response.status_code == 204, response.text


_emails = itertools.count(1)


async def quick_user(display_name: str = "") -> ApiUser:
    """A user made without the API's password hashing (tens of ms each), with a token the app
    accepts: these tests are about what users may do, not about accounts."""
    from app.auth import issue_token
    from app.settings import get_settings

    email = f"member{next(_emails)}@example.com"
    rows = await run_sql(
        "INSERT INTO app_user (email, display_name, password_hash) VALUES ({}, {}, 'unusable') RETURNING id",
        email,
        display_name,
    )
    user_id = rows[0]["id"]
    token = issue_token(get_settings(), user_id, 0)
    return ApiUser(user_id, email, "", token, {"Authorization": f"Bearer {token}"})


@dataclass
class Team:
    """A project with its owner, one member at each given role, a commenter who writes the
    comments others act on (``scribe``), and an outsider; each user has a label of their own."""

    project: int
    owner: ApiUser
    members: dict[ProjectRole, ApiUser]
    scribe: ApiUser
    outsider: ApiUser
    labels: dict[int, int] = field(default_factory=dict)  # user id -> their label id

    def actors(self) -> Iterator[tuple[ProjectRole | None, ApiUser]]:
        """Every role (the owner for ``owner``), then the outsider (role None)."""
        for role in ProjectRole:
            yield role, self.members[role]
        yield None, self.outsider


@pytest.fixture
async def team(client: httpx.AsyncClient) -> Team:
    return await make_team(client)


async def make_team(client: httpx.AsyncClient) -> Team:
    """A new project with its people (see Team)."""
    owner = await quick_user("Owner")
    project = await create(client, owner, PROJECTS, {"name": "Shared"})
    members = {OWNER: owner}
    for role in GIVEN_ROLES:
        members[role] = await quick_user(role.value.title())
        await add_member(client, owner, project["id"], members[role], role)
    scribe = await quick_user("Scribe")
    await add_member(client, owner, project["id"], scribe, ProjectRole.commenter)
    outsider = await quick_user("Outsider")
    result = Team(project["id"], owner, members, scribe, outsider)
    for user in [*members.values(), scribe, outsider]:
        label = await create(client, user, "/api/v1/labels", {"name": f"mine-{user.id}"})
        result.labels[user.id] = label["id"]
    return result


async def db_state() -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables a task, comment or membership write touches."""
    return {table: await run_sql(f"SELECT * FROM {table} ORDER BY id") for table in STATE_TABLES}


def assert_forbidden(response: httpx.Response, least: ProjectRole | str, case: Any = None) -> None:
    """A 403 problem naming the least role the action needs."""
    body = assert_problem(response, 403, case=case)
    assert body.get("required_role") == str(least), (case, body)


async def walk(client: httpx.AsyncClient, user: ApiUser, params: list[tuple[str, str]] | None = None) -> list[int]:
    """The ids ``GET /tasks`` gives ``user``, walked to the end by cursor (3 a page)."""
    seen: list[int] = []
    extra: list[tuple[str, str]] = [("paginate", "cursor")]
    for _ in range(1000):
        response = await client.get(TASKS, params=[*(params or []), ("limit", "3"), *extra], headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return seen
        extra = [("cursor", page["next_cursor"])]
    raise AssertionError("the cursor walk did not end")
