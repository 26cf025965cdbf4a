"""A project's members: list, change a role, remove (or leave)."""

from __future__ import annotations

from litestar import Controller, delete, get, patch
from litestar.params import JSONBody

from app.controllers.params import ObjectId, UserRequest
from app.dto import MemberPatch, MemberPatchDTO, Membership, MemberUser
from app.openapi import problem_responses
from app.services import members
from app.services.members import Member


def membership(member: Member) -> Membership:
    """A member as the API shows it: ``{user: {id, email, display_name}, role, joined_at}``."""
    return Membership(
        user=MemberUser(id=member.user_id, email=member.email, display_name=member.display_name),
        role=member.role,
        joined_at=member.joined_at,
    )


class MemberController(Controller):
    path = "/api/v1/projects/{project_id:int}/members"
    tags = ["members"]

    @get("/")
    async def list_members(self, request: UserRequest, project_id: ObjectId) -> list[Membership]:
        """Every member of the project, by joined_at then user id (any member)."""
        return [membership(m) for m in await members.list_members(request.user.id, project_id)]

    @patch("/{user_id:int}", dto=MemberPatchDTO, return_dto=None, responses=problem_responses(403, 409, 422))
    async def update_member(
        self, request: UserRequest, project_id: ObjectId, user_id: ObjectId, data: JSONBody[MemberPatch]
    ) -> Membership:
        """Change a member's role (admin or owner). Roles below owner only: the owner's role
        changes by a transfer (409), and ``owner`` is not a role to give (422)."""
        return membership(await members.change_role(request.user.id, project_id, user_id, data.role))

    @delete("/{user_id:int}", responses=problem_responses(403, 409))
    async def remove_member(self, request: UserRequest, project_id: ObjectId, user_id: ObjectId) -> None:
        """Remove a member (admin or owner), or leave the project (your own user id). The owner
        cannot leave (409): transfer the project first."""
        await members.remove_member(request.user.id, project_id, user_id)
