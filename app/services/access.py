"""Who may see and change what: the one place access is decided (SPEC "Collaboration").

A project's members see it and its tasks and comments; what they may change depends on their
role (``ProjectRole``, least to most). An inbox task (no project) is its owner's alone. Each
function gives a Piccolo condition for the user bound as ``user``, used inside every statement
that reads or writes, so the check and the work are one statement: a membership removed in a
committed transaction is seen by the next statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from piccolo.columns import Column
from piccolo.columns.combination import WhereRaw
from piccolo.custom_types import Combinable

from app.services.query import Param, Statement, column_sql, querystring
from app.tables import Invitation, ProjectMember, ProjectRole, Task, User

USER = Param("user")
RANK = {role: rank for rank, role in enumerate(ProjectRole)}

# The least role each action needs in a project (an inbox task's owner may do them all).
READ = ProjectRole.viewer
COMMENT = ProjectRole.commenter
EDIT = ProjectRole.editor
ADMIN = ProjectRole.admin
OWN = ProjectRole.owner


def roles_from(least: ProjectRole) -> list[str]:
    """The roles at least ``least``."""
    return [role.value for role in ProjectRole if RANK[role] >= RANK[least]]


def may(role: str | None, least: ProjectRole) -> bool:
    return role is not None and RANK[ProjectRole(role)] >= RANK[least]


def acting() -> WhereRaw:
    """Always true; names ``user`` as the transaction's actor for the event log's triggers (the
    migration "event log"), with no statement of its own. Part of every write's condition below,
    so it runs in the write; transaction-local, so a pooled connection keeps nothing."""
    return WhereRaw("set_config('taskapi.actor', {}::integer::text, true) IS NOT NULL", USER)


def member_of(project: Column, least: ProjectRole = READ) -> Combinable:
    """``user`` is a member of the project in column ``project`` with at least role ``least``:
    one probe of the (project, member) unique index."""
    members = ProjectMember.select(ProjectMember._meta.primary_key).where(
        WhereRaw(f"{column_sql(ProjectMember.project)} = {column_sql(project)}") & (ProjectMember.member == USER)
    )
    if least is READ:
        return WhereRaw("EXISTS ({})", querystring(members))
    members = members.where(ProjectMember.role.is_in(roles_from(least)))
    return WhereRaw("EXISTS ({})", querystring(members)) & acting()


# The least role each action on a project and its people needs: services check these inside
# their statements, README "Sharing a project" shows them, tests generate their matrix from them.
PROJECT_ACTIONS: dict[str, ProjectRole] = {
    "read the project": READ,
    "list members": READ,
    "change the project": ADMIN,
    "list invitations": ADMIN,
    "invite": ADMIN,
    "withdraw an invitation": ADMIN,
    "change a member's role": ADMIN,
    "remove a member": ADMIN,
    "delete the project": OWN,
    "transfer the project": OWN,
}


def projects(least: ProjectRole = READ) -> Any:
    """The ids of the projects where ``user`` has at least role ``least`` (a subquery for IN,
    for statements on project_member itself, where ``member_of`` would correlate with itself)."""
    found = ProjectMember.select(ProjectMember.project).where(ProjectMember.member == USER)
    if least is not READ:
        found = found.where(ProjectMember.role.is_in(roles_from(least)) & acting())
    return found


def has_role(project: Param, least: ProjectRole = READ) -> Any:
    """A one-value query (``SELECT EXISTS ...``): ``user`` has at least role ``least`` in the
    project bound as ``project``; for statements that have no project row to correlate with."""
    return ProjectMember.exists().where(
        (ProjectMember.project == project)
        & (ProjectMember.member == USER)
        & ProjectMember.role.is_in(roles_from(least))
    )


def invitations_to_user() -> Combinable:
    """The invitations addressed to ``user``'s account email (both stored normalised)."""
    return Invitation.email.is_in(User.select(User.email).where(User.id == USER))


def _own_inbox() -> Combinable:
    return Task.project.is_null() & (Task.owner == USER)


def tasks(least: ProjectRole = READ) -> Combinable:
    """The tasks ``user`` may act on with role ``least``, for statements on one task or a few."""
    if least is READ:
        return _own_inbox() | member_of(Task.project, least)
    return (_own_inbox() | member_of(Task.project, least)) & acting()


# Inside a list's per-project branch, the project of the membership row it runs for.
MEMBERSHIP_PROJECT = "m.project"


@dataclass(frozen=True)
class Scope:
    """One part of the tasks a list shows, scanned on its own in the list's order.

    ``per_project``: the condition is run once for each of ``user``'s projects (the row of
    ``project_member`` aliased ``m``), so each project's index range is read in order.
    """

    condition: Combinable
    per_project: bool = False


def list_scopes(project_given: bool, inbox: bool | None) -> tuple[Scope, ...]:
    """The parts a list of the tasks ``user`` can see is merged from.

    With a ``project_id`` filter, that project if ``user`` is a member (one probe). Otherwise
    their inbox and each of their projects, each read in order from its own index range, so a
    page costs about ``limit`` rows per part, not the whole list (an OR of the two would be
    sorted whole).
    """
    if project_given:
        return (Scope(member_of(Task.project)),)
    scopes = []
    if inbox is not False:
        scopes.append(Scope(_own_inbox()))
    if inbox is not True:
        scopes.append(Scope(WhereRaw(f"{column_sql(Task.project)} = {MEMBERSHIP_PROJECT}"), per_project=True))
    return tuple(scopes)


def counted_parts() -> tuple[Combinable, Combinable]:
    """The tasks ``user`` can see, for a list's count: their inbox (its partial index on owner
    and status) and their projects (as one array, an InitPlan, on the indexes on ``project``),
    so that a count can read each part from an index alone."""
    projects = ProjectMember.select(ProjectMember.project).where(ProjectMember.member == USER)
    return _own_inbox(), WhereRaw(f"{column_sql(Task.project)} = ANY(ARRAY({{}}))", querystring(projects))


# ``user``'s role in ``project`` (no row: not a member).
ROLE = Statement(
    ProjectMember.select(ProjectMember.role).where(
        (ProjectMember.project == Param("project")) & (ProjectMember.member == USER)
    )
)


async def role_in(user_id: int, project_id: int) -> str | None:
    row = await ROLE.fetch_one(project=project_id, user=user_id)
    return None if row is None else str(row["role"])
