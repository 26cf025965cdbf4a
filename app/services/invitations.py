"""Invitations: how people join a project, by consent, without anyone probing which emails exist.

An admin (or the owner) invites an email with a role below owner; the answer is the same
whether or not an account has that email. The account whose email it is sees it in its own
list and accepts (becoming a member, in the same transaction) or declines; an admin may
withdraw it while it is pending. It expires after ``TTL``. Statuses never go back to pending.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, NoReturn

import asyncpg

from app.errors import (
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidBodyError,
    InvalidFieldError,
    NotFoundError,
)
from app.services import access, sql, users
from app.services.common import from_row, utcnow
from app.services.idempotency import Idempotency, run_once
from app.services.members import Member, get_membership
from app.services.query import Param, Statement, querystring, transaction
from app.tables import Invitation, InvitationStatus, ProjectMember, ProjectRole

TTL = dt.timedelta(days=7)
NEEDS = access.PROJECT_ACTIONS
PENDING = InvitationStatus.pending.value
NOW = Param("now")
_pk = Invitation._meta.primary_key  # the default ``id`` column


_OPEN = (Invitation.status == PENDING) & (Invitation.expires_at > NOW)
# Written only when the inviter may invite there, the email is no member's yet and has no other
# open invitation to the project (an advisory lock on the pair serialises two at once).
_MAY_INVITE = access.has_role(Param("project"), NEEDS["invite"])
_IS_MEMBER = ProjectMember.exists().where(
    (ProjectMember.project == Param("project")) & (ProjectMember.member.email == Param("email"))
)
_IS_INVITED = Invitation.exists().where(
    (Invitation.project == Param("project")) & (Invitation.email == Param("email")) & _OPEN
)
INSERTED = (
    Invitation.project,
    Invitation.email,
    Invitation.role,
    Invitation.inviter,
    Invitation.created_at,
    Invitation.expires_at,
)
CREATE = Statement(
    sql.insert_where(
        Invitation,
        INSERTED,
        holds=[querystring(_MAY_INVITE)],
        fails=[querystring(_IS_MEMBER), querystring(_IS_INVITED)],
    )
)
IS_MEMBER = Statement(_IS_MEMBER)

COLUMNS = Invitation._meta.columns
NEWEST_FIRST = ((Invitation.created_at, False), (_pk, False))


def _newest_first(query: Any) -> Any:
    for column, ascending in NEWEST_FIRST:
        query = query.order_by(column, ascending=ascending)
    return query


_OF_PROJECT = (Invitation.project == Param("project")) & Invitation.project.is_in(
    access.projects(NEEDS["list invitations"])
)
LIST_OF_PROJECT = Statement(
    sql.limited(querystring(_newest_first(Invitation.select(*COLUMNS).where(_OF_PROJECT))), offset=True)
)
COUNT_OF_PROJECT = Statement(Invitation.count().where(_OF_PROJECT))
_MINE = access.invitations_to_user() & _OPEN
LIST_MINE = Statement(sql.limited(querystring(_newest_first(Invitation.select(*COLUMNS).where(_MINE))), offset=True))
COUNT_MINE = Statement(Invitation.count().where(_MINE))

_ID = _pk == Param("id")
WITHDRAW = Statement(
    Invitation.update({Invitation.status: InvitationStatus.withdrawn.value})
    .where(
        _ID
        & (Invitation.status == PENDING)
        & Invitation.project.is_in(access.projects(NEEDS["withdraw an invitation"]))
    )
    .returning(_pk)
)
ANSWER = Statement(
    Invitation.update({Invitation.status: Param("status")})
    .where(_ID & access.invitations_to_user() & _OPEN & access.acting())
    .returning(Invitation.project, Invitation.role)
)
JOIN = Statement(
    ProjectMember.insert(
        ProjectMember(project=Param("project"), member=Param("user"), role=Param("role"), joined_at=NOW)
    ).returning(ProjectMember.member)
)
# Reads that only explain why a write matched nothing.
ADDRESSED = Statement(Invitation.select(*COLUMNS).where(_ID & access.invitations_to_user()))
BY_ID = Statement(Invitation.select(Invitation.project, Invitation.status).where(_ID))


def _email(raw: str) -> str:
    """The invited email as accounts store theirs (users.normalize_email), still an email."""
    email = users.normalize_email(raw)
    if len(email) > users.EMAIL_MAX_LENGTH or not re.match(users.EMAIL_PATTERN, email):
        message = f"must be an email address of at most {users.EMAIL_MAX_LENGTH} characters once normalised"
        raise InvalidBodyError(
            "Invalid input: email", errors=[{"field": "email", "source": "body", "message": message}]
        )
    return email


async def _require(user_id: int, project_id: int, action: str) -> None:
    """404 for a non-member, 403 naming the role ``action`` needs for a member below it."""
    role = await access.role_in(user_id, project_id)
    if role is None:
        raise NotFoundError("Project", project_id)
    needed = NEEDS[action]
    if not access.may(role, needed):
        raise ForbiddenError("Project", project_id, needed.value, role)


async def create_invitation(
    user_id: int, project_id: int, email: str, role: str, *, idempotency: Idempotency | None = None
) -> tuple[Invitation, bool]:
    """Invite ``email`` to a project with ``role`` (admin+; below owner). Returns (invitation, replayed).

    Raises:
        NotFoundError / ForbiddenError: the caller may not invite there.
        InvalidFieldError: ``role`` is owner.
        ConflictError: the email is a member's, or has an open invitation to the project.
    """
    email = _email(email)
    if role == ProjectRole.owner.value:
        await _require(user_id, project_id, "invite")
        raise InvalidFieldError("role", "an invitation's role is below owner; ownership moves by transfer")

    async def create() -> list[dict[str, Any]]:
        now = utcnow()
        async with transaction():
            await sql.LOCK.fetch(key=f"invite:{project_id}:{email}", space=0)
            rows = await CREATE.fetch(
                project=project_id,
                email=email,
                role=role,
                inviter=user_id,
                created_at=now,
                expires_at=now + TTL,
                user=user_id,
                now=now,
            )
            if not rows:
                await _require(user_id, project_id, "invite")
                if (await IS_MEMBER.fetch(project=project_id, email=email))[0]["exists"]:
                    raise ConflictError(f"{email} is already a member of project {project_id}")
                raise ConflictError(
                    f"{email} already has a pending invitation to project {project_id}; withdraw it to invite again"
                )
        return [dict(rows[0])]

    rows, replayed = await run_once(user_id, idempotency, create)
    return from_row(Invitation, rows[0]), replayed


async def list_project_invitations(
    user_id: int, project_id: int, *, limit: int, offset: int
) -> tuple[list[Invitation], int]:
    """A project's invitations in every status, newest first (admin+), and their total."""
    values = {"project": project_id, "user": user_id}
    rows = await LIST_OF_PROJECT.fetch(**values, limit=limit, offset=offset)
    total = (await COUNT_OF_PROJECT.fetch(**values))[0]["count"] if rows or offset else 0
    if total == 0:  # none, or none the user may see: say which
        await _require(user_id, project_id, "list invitations")
    return [from_row(Invitation, dict(r)) for r in rows], total


async def list_my_invitations(user_id: int, *, limit: int, offset: int) -> tuple[list[Invitation], int]:
    """The pending, unexpired invitations addressed to the user's email, newest first, and their total."""
    values = {"user": user_id, "now": utcnow()}
    rows = await LIST_MINE.fetch(**values, limit=limit, offset=offset)
    if len(rows) < limit and (rows or offset == 0):
        total = offset + len(rows)
    else:
        total = (await COUNT_MINE.fetch(**values))[0]["count"]
    return [from_row(Invitation, dict(r)) for r in rows], total


async def withdraw_invitation(user_id: int, invitation_id: int) -> None:
    """Withdraw a pending invitation (admin+ of its project).

    Raises:
        NotFoundError: no such invitation, or the caller is not a member of its project.
        ForbiddenError: the caller is below admin there.
        ConflictError: it is no longer pending.
    """
    if await WITHDRAW.fetch(id=invitation_id, user=user_id):
        return
    row = await BY_ID.fetch_one(id=invitation_id)
    if row is None or await access.role_in(user_id, row["project"]) is None:
        raise NotFoundError("Invitation", invitation_id)
    await _require(user_id, row["project"], "withdraw an invitation")
    raise ConflictError(f"Invitation {invitation_id} is {row['status']}; only a pending invitation can be withdrawn")


async def _explain_answer(user_id: int, invitation_id: int) -> NoReturn:
    """Why accepting or declining matched nothing: 404 (not the caller's), 410, or 409."""
    row = await ADDRESSED.fetch_one(id=invitation_id, user=user_id)
    if row is None:
        raise NotFoundError("Invitation", invitation_id)
    if row["status"] == InvitationStatus.withdrawn.value:
        raise GoneError(f"Invitation {invitation_id} was withdrawn")
    if row["status"] != PENDING:
        raise ConflictError(f"Invitation {invitation_id} was already {row['status']}")
    if row["expires_at"] <= utcnow():
        expired = row["expires_at"].isoformat().replace("+00:00", "Z")
        raise GoneError(f"Invitation {invitation_id} expired at {expired}; ask for a new one")
    raise ConflictError(f"Invitation {invitation_id} changed while this request ran; retry")


async def accept_invitation(user_id: int, invitation_id: int) -> Member:
    """Accept an invitation addressed to the user: it becomes accepted and the user a member with
    its role, in one transaction (a concurrent second accept finds it no longer pending)."""
    try:
        async with transaction():
            rows = await ANSWER.fetch(
                id=invitation_id, user=user_id, now=utcnow(), status=InvitationStatus.accepted.value
            )
            if not rows:
                await _explain_answer(user_id, invitation_id)
            project_id, role = rows[0]["project"], rows[0]["role"]
            await JOIN.fetch(project=project_id, user=user_id, role=role, now=utcnow())
            member = await get_membership(project_id, user_id)
    except asyncpg.UniqueViolationError:
        raise ConflictError(f"You are already a member of the project of invitation {invitation_id}") from None
    return member


async def decline_invitation(user_id: int, invitation_id: int) -> None:
    """Decline an invitation addressed to the user."""
    if not await ANSWER.fetch(id=invitation_id, user=user_id, now=utcnow(), status=InvitationStatus.declined.value):
        await _explain_answer(user_id, invitation_id)
