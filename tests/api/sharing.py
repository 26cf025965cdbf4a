"""Shared projects for the API tests: a team (owner, one member at each other role, an outsider)
built through the API, by invitation and acceptance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from app.tables import ProjectRole

PROJECTS = "/api/v1/projects"
# Every role a member can be given (the owner is the creator, or a transfer's recipient).
MEMBER_ROLES = [role for role in ProjectRole if role is not ProjectRole.owner]


@dataclass
class Team:
    project: dict[str, Any]
    owner: Any
    members: dict[ProjectRole, Any]  # every role, the owner included
    outsider: Any

    @property
    def id(self) -> int:
        return int(self.project["id"])

    @property
    def url(self) -> str:
        return f"{PROJECTS}/{self.id}"


async def invite(client: httpx.AsyncClient, by: Any, project_id: int, email: str, role: str) -> dict[str, Any]:
    response = await client.post(
        f"{PROJECTS}/{project_id}/invitations", json={"email": email, "role": role}, headers=by.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def join(client: httpx.AsyncClient, by: Any, project_id: int, user: Any, role: str) -> dict[str, Any]:
    """``user`` becomes a member with ``role``: ``by`` invites them, they accept."""
    invitation = await invite(client, by, project_id, user.email, role)
    response = await client.post(f"/api/v1/invitations/{invitation['id']}/accept", headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def make_team(client: httpx.AsyncClient, register: Any, name: str = "Shared") -> Team:
    owner = await register()
    response = await client.post(PROJECTS, json={"name": name}, headers=owner.headers)
    assert response.status_code == 201, response.text
    project = response.json()
    members: dict[ProjectRole, Any] = {ProjectRole.owner: owner}
    for role in MEMBER_ROLES:
        members[role] = await register()
        await join(client, owner, project["id"], members[role], role.value)
    return Team(project=project, owner=owner, members=members, outsider=await register())


async def roles(client: httpx.AsyncClient, team: Team) -> dict[int, str]:
    """Every member's role by user id, as the owner lists them."""
    response = await client.get(f"{team.url}/members", headers=team.owner.headers)
    assert response.status_code == 200, response.text
    return {m["user"]["id"]: m["role"] for m in response.json()}
