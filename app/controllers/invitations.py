"""Invitations: sent by a project's admins, answered by the account they are addressed to."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, post
from litestar.params import JSONBody

from app.controllers.members import membership
from app.controllers.params import (
    IdempotencyKeyHeader,
    Limit,
    ObjectId,
    Offset,
    UserRequest,
    idempotency,
    mark_replayed,
)
from app.dto import InvitationCreate, InvitationCreateDTO, InvitationReadDTO, Membership, Page
from app.openapi import problem_responses
from app.services import invitations
from app.tables import Invitation


class InvitationController(Controller):
    path = "/api/v1"
    tags = ["invitations"]
    return_dto = InvitationReadDTO

    @post("/projects/{project_id:int}/invitations", dto=InvitationCreateDTO, responses=problem_responses(403, 409, 422))
    async def create_invitation(
        self,
        request: UserRequest,
        project_id: ObjectId,
        data: JSONBody[InvitationCreate],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Invitation]:
        """Invite an email to the project with a role below owner (admin or owner). The answer is
        the same whether or not an account has that email; it expires after 7 days."""
        invitation, replayed = await invitations.create_invitation(
            request.user.id,
            project_id,
            data.email,
            data.role,
            idempotency=await idempotency(request, idempotency_key),
        )
        mark_replayed(request, replayed)
        location = f"{self.path}/invitations/{invitation.id}"  # type: ignore[attr-defined]  # the default primary key
        return Response(invitation, status_code=201, headers={"Location": location})

    @get("/projects/{project_id:int}/invitations", responses=problem_responses(403))
    async def list_project_invitations(
        self, request: UserRequest, project_id: ObjectId, limit: Limit = 20, offset: Offset = 0
    ) -> Page[Invitation]:
        """The project's invitations in every status, newest first (admin or owner)."""
        items, total = await invitations.list_project_invitations(
            request.user.id, project_id, limit=limit, offset=offset
        )
        return Page(items=items, total=total, limit=limit, offset=offset)

    @get("/invitations")
    async def list_my_invitations(
        self, request: UserRequest, limit: Limit = 20, offset: Offset = 0
    ) -> Page[Invitation]:
        """The pending, unexpired invitations addressed to the caller's email, newest first."""
        items, total = await invitations.list_my_invitations(request.user.id, limit=limit, offset=offset)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @delete("/invitations/{invitation_id:int}", responses=problem_responses(403, 409))
    async def withdraw_invitation(self, request: UserRequest, invitation_id: ObjectId) -> None:
        """Withdraw a pending invitation (admin or owner of its project)."""
        await invitations.withdraw_invitation(request.user.id, invitation_id)

    @post(
        "/invitations/{invitation_id:int}/accept",
        status_code=200,
        return_dto=None,
        responses=problem_responses(409, 410),
    )
    async def accept_invitation(self, request: UserRequest, invitation_id: ObjectId) -> Membership:
        """Accept an invitation addressed to you: you become a member with its role. Expired or
        withdrawn: 410; already answered: 409; anyone else's: 404."""
        return membership(await invitations.accept_invitation(request.user.id, invitation_id))

    @post("/invitations/{invitation_id:int}/decline", status_code=204, responses=problem_responses(409, 410))
    async def decline_invitation(self, request: UserRequest, invitation_id: ObjectId) -> None:
        """Decline an invitation addressed to you."""
        await invitations.decline_invitation(request.user.id, invitation_id)
