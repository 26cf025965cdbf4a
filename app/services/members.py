"""A project's members: who they are, their roles, and leaving or being removed.

Every statement carries its access check (app/services/access.py): members see the members, an
admin or the owner changes roles below owner and removes members, anyone but the owner may
leave. The owner's own membership changes only by a transfer (app/services/projects.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NoReturn

from app.errors import ConflictError, ForbiddenError, InvalidFieldError, NotFoundError
from app.services import access
from app.services.query import Param, Statement, transaction
from app.tables import ProjectMember, ProjectRole, Task, TaskAssignee

NEEDS = access.PROJECT_ACTIONS
OWNER = ProjectRole.owner.value
OWNER_STAYS = "The owner cannot leave or be removed, and their role changes only by a transfer of the project"

_U = ProjectMember.member
COLUMNS = (
    _U.id.as_alias("user_id"),
    _U.email.as_alias("email"),
    _U.display_name.as_alias("display_name"),
    ProjectMember.role,
    ProjectMember.joined_at,
)
_IN_PROJECT = ProjectMember.project == Param("project")
LIST = Statement(
    ProjectMember.select(*COLUMNS)
    .where(_IN_PROJECT & ProjectMember.project.is_in(access.projects(NEEDS["list members"])))
    .order_by(ProjectMember.joined_at, ProjectMember.member)
)
# One membership, for the answer of a write that was allowed (the write made the check).
ONE = Statement(ProjectMember.select(*COLUMNS).where(_IN_PROJECT & (ProjectMember.member == Param("member"))))

_TARGET = _IN_PROJECT & (ProjectMember.member == Param("member")) & (ProjectMember.role != OWNER)
SET_ROLE = Statement(
    ProjectMember.update({ProjectMember.role: Param("role")})
    .where(_TARGET & ProjectMember.project.is_in(access.projects(NEEDS["change a member's role"])))
    .returning(ProjectMember.member)
)
REMOVE = Statement(
    ProjectMember.delete()
    .where(
        _TARGET
        & (
            (ProjectMember.member == access.USER)
            | ProjectMember.project.is_in(access.projects(NEEDS["remove a member"]))
        )
        & access.acting()  # names the actor for the event log, also when leaving (no role is read)
    )
    .returning(ProjectMember.member)
)
# A removed member is no longer anyone's assignee in the project.
UNASSIGN = Statement(
    TaskAssignee.delete().where(
        (TaskAssignee.assignee == Param("member"))
        & TaskAssignee.task.is_in(Task.select(Task.id).where(Task.project == Param("project")))
    )
)


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a project (the API shows it as ``{user: {id, email, display_name}, role, joined_at}``)."""

    user_id: int
    email: str
    display_name: str
    role: str
    joined_at: dt.datetime


def membership(row: Any) -> Member:
    return Member(row["user_id"], row["email"], row["display_name"], row["role"], row["joined_at"])


async def list_members(user_id: int, project_id: int) -> list[Member]:
    """Every member of a project the user is a member of, by joined_at then user id."""
    rows = await LIST.fetch(project=project_id, user=user_id)
    if not rows:  # a project always has its owner: the user is no member (or there is no project)
        raise NotFoundError("Project", project_id)
    return [membership(row) for row in rows]


async def get_membership(project_id: int, member_id: int) -> Member:
    row = await ONE.fetch_one(project=project_id, member=member_id)
    if row is None:
        raise NotFoundError("Member", member_id)
    return membership(row)


async def _explain(user_id: int, project_id: int, member_id: int, action: str) -> NoReturn:
    """Why a change to a membership matched nothing, raised as its error."""
    role = await access.role_in(user_id, project_id)
    if role is None:
        raise NotFoundError("Project", project_id)
    if member_id == user_id and role == OWNER:
        raise ConflictError(OWNER_STAYS)
    needed = NEEDS[action]
    leaving = member_id == user_id and action == "remove a member"
    if not leaving and not access.may(role, needed):
        raise ForbiddenError("Project", project_id, needed.value, role)
    target = await access.role_in(member_id, project_id)
    if target is None:
        raise NotFoundError("Member", member_id)
    if target == OWNER:
        raise ConflictError(OWNER_STAYS)
    raise ConflictError(f"Member {member_id} changed while this request ran; retry")


async def change_role(user_id: int, project_id: int, member_id: int, role: str) -> Member:
    """Give a member another role below owner (admin+).

    Raises:
        NotFoundError: the caller is not a member, or ``member_id`` is not one.
        ForbiddenError: the caller is below admin.
        InvalidFieldError: ``role`` is owner (ownership moves by transfer).
        ConflictError: the member is the owner.
    """
    if role == OWNER:
        await _explain_access(user_id, project_id, "change a member's role")
        raise InvalidFieldError("role", "ownership moves only by POST /api/v1/projects/{id}/transfer")
    async with transaction():
        if not await SET_ROLE.fetch(project=project_id, member=member_id, role=role, user=user_id):
            await _explain(user_id, project_id, member_id, "change a member's role")
        member = await get_membership(project_id, member_id)
    return member


async def _explain_access(user_id: int, project_id: int, action: str) -> None:
    """404 / 403 for a caller who may not do ``action`` in the project (before a 422 on the body)."""
    role = await access.role_in(user_id, project_id)
    if role is None:
        raise NotFoundError("Project", project_id)
    needed = NEEDS[action]
    if not access.may(role, needed):
        raise ForbiddenError("Project", project_id, needed.value, role)


async def remove_member(user_id: int, project_id: int, member_id: int) -> None:
    """Remove a member (admin+), or leave (any member but the owner); their assignments in the
    project go in the same transaction. The next request they make for the project is a 404."""
    async with transaction():
        if not await REMOVE.fetch(project=project_id, member=member_id, user=user_id):
            await _explain(user_id, project_id, member_id, "remove a member")
        await UNASSIGN.fetch(project=project_id, member=member_id)
