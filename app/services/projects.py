"""Projects as their members see them: each with the caller's role, changed as that role allows.

What each action needs is ``access.PROJECT_ACTIONS``; the role check is part of the statement
that reads or writes (app/services/access.py). When a write matches nothing, one read of the
caller's membership says why: not a member (404, exactly like a missing project), a role below
the one needed (403 naming it), or a stale If-Match (412).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import asyncpg

from app.errors import ConflictError, ForbiddenError, InvalidFieldError, NotFoundError, PreconditionFailedError
from app.services import access, sql
from app.services.common import from_row, utcnow
from app.services.idempotency import Idempotency, run_once
from app.services.listing import Sort, parse_sort
from app.services.query import Param, Statement, querystring, transaction
from app.tables import Project, ProjectMember, ProjectRole, sortable

SORTABLE = sortable(Project)
DEFAULT_SORT = "-created_at"
NEEDS = access.PROJECT_ACTIONS
OWNER = ProjectRole.owner.value

# A project as one of its members sees it: read through the member's own membership row, so the
# role comes with the project and the membership is the access check (one index probe).
_P = ProjectMember.project
AS_SEEN = (*(getattr(_P, c._meta.name).as_alias(c._meta.name) for c in Project._meta.columns), ProjectMember.role)
MINE = ProjectMember.member == access.USER

GET = Statement(ProjectMember.select(*AS_SEEN).where(MINE & (_P.id == Param("id"))))
# The caller's role in a project they are a member of, returned by the writes' RETURNING.
ROLE = sql.role_in_project('"project"."id"')


def _listed(archived: bool) -> Any:
    return MINE & (_P.archived == Param("archived")) if archived else MINE


@lru_cache(maxsize=64)
def _list_statement(archived: bool, keys: tuple[Sort, ...]) -> Statement:
    query = ProjectMember.select(*AS_SEEN).where(_listed(archived))
    for key in keys:  # every sortable project column is NOT NULL: no NULLs-last terms
        query = query.order_by(getattr(_P, key.field), ascending=not key.descending)
    return Statement(sql.limited(querystring(query), offset=True))


COUNT = {archived: Statement(ProjectMember.count().where(_listed(archived))) for archived in (False, True)}


async def list_projects(
    user_id: int, *, archived: bool | None, sort: str | None, limit: int, offset: int
) -> tuple[list[Project], int]:
    """A page of the projects the user is a member of (default order: -created_at, then id), each
    with the user's ``role``, and the total matching."""
    keys = parse_sort(sort, SORTABLE, DEFAULT_SORT)
    values = {"user": user_id, "archived": archived}
    rows = await _list_statement(archived is not None, tuple(keys)).fetch(**values, limit=limit, offset=offset)
    if len(rows) < limit and (rows or offset == 0):
        total = offset + len(rows)  # this page ends the list: nothing left to count
    else:
        total = (await COUNT[archived is not None].fetch(**values))[0]["count"]
    return [from_row(Project, dict(row)) for row in rows], total


async def get_project(user_id: int, project_id: int) -> Project:
    """One project the user is a member of, with their role; anyone else gets a 404."""
    row = await GET.fetch_one(id=project_id, user=user_id)
    if row is None:
        raise NotFoundError("Project", project_id)
    return from_row(Project, dict(row))


async def explain(user_id: int, project_id: int, action: str, expected_version: int | None = None) -> Project:
    """Why a write on a project would match nothing, raised as its error; the project otherwise.

    404 when the user is not a member, 403 naming the role ``action`` needs when theirs is
    below it, 412 when ``expected_version`` is stale.
    """
    project = await get_project(user_id, project_id)
    needed = NEEDS[action]
    if not access.may(project.role, needed):  # type: ignore[attr-defined]
        raise ForbiddenError("Project", project_id, needed.value, project.role)  # type: ignore[attr-defined]
    if expected_version is not None and project.version != expected_version:
        raise PreconditionFailedError("Project", project.version)
    return project


async def create_project(
    user_id: int, data: dict[str, Any], *, idempotency: Idempotency | None = None
) -> tuple[Project, bool]:
    """Create a project with the user as its owner. Returns (project, replayed)."""

    async def create() -> list[dict[str, Any]]:
        async with transaction():  # the owner is its first member (the database checks at commit)
            rows: list[dict[str, Any]] = await Project.insert(Project(owner=user_id, **data)).returning(
                *Project._meta.columns
            )
            await ProjectMember.insert(ProjectMember(project=rows[0]["id"], member=user_id, role=ProjectRole.owner))
        return [{**rows[0], "role": OWNER}]

    rows, replayed = await run_once(user_id, idempotency, create)
    return from_row(Project, rows[0]), replayed


@lru_cache(maxsize=128)
def _update_statement(fields: tuple[str, ...], check_version: bool) -> Statement:
    values: dict[Any, Any] = {Project._meta.get_column_by_name(name): Param(name) for name in fields}
    values[Project.version] = Project.version + 1
    values[Project.updated_at] = Param("now")
    where = (Project.id == Param("id")) & access.member_of(Project.id, NEEDS["change the project"])
    if check_version:
        where = where & (Project.version == Param("version"))
    update = Project.update(values, use_auto_update=False).where(where).returning(*Project._meta.columns)
    return Statement(sql.returning_also(querystring(update), ROLE))


async def update_project(
    user_id: int, project_id: int, changes: dict[str, Any], *, expected_version: int | None
) -> Project:
    """Change some fields (admin+). The role and version checks are part of the one UPDATE.

    An empty change writes nothing and keeps the version, but answers 404 / 403 / 412 as a
    write would.
    """
    if not changes:
        return await explain(user_id, project_id, "change the project", expected_version)
    statement = _update_statement(tuple(changes), expected_version is not None)
    rows = await statement.fetch(**changes, id=project_id, user=user_id, version=expected_version, now=utcnow())
    if not rows:
        await explain(user_id, project_id, "change the project", expected_version)
        raise ConflictError(f"Project {project_id} changed while this request ran; retry")
    return from_row(Project, dict(rows[0]))


_DELETABLE = (Project.id == Param("id")) & access.member_of(Project.id, NEEDS["delete the project"])
DELETE = {
    False: Statement(Project.delete().where(_DELETABLE).returning(Project.id)),
    True: Statement(Project.delete().where(_DELETABLE & (Project.version == Param("version"))).returning(Project.id)),
}


async def delete_project(user_id: int, project_id: int, *, expected_version: int | None) -> None:
    """Delete a project (owner only); its tasks, members and invitations go with it (CASCADE)."""
    checked = expected_version is not None
    if not await DELETE[checked].fetch(id=project_id, user=user_id, version=expected_version):
        await explain(user_id, project_id, "delete the project", expected_version)
        raise ConflictError(f"Project {project_id} changed while this request ran; retry")


# A transfer, in one transaction (the one-owner trigger checks at commit). First the caller's own
# membership goes from owner to admin: that UPDATE is the access check, on the row it locks, so
# of two transfers at once the second re-reads the row after the first commits and matches
# nothing (a check in a subquery would be re-read from the old snapshot). Then the project names
# its new owner, who must be a member, and that member becomes owner (after the demotion, so the
# partial unique index on owners never sees two).
_ME = (ProjectMember.project == Param("id")) & (ProjectMember.member == access.USER)
STEP_DOWN = Statement(
    ProjectMember.update({ProjectMember.role: ProjectRole.admin.value})
    .where(_ME & ProjectMember.role.is_in(access.roles_from(NEEDS["transfer the project"])) & access.acting())
    .returning(ProjectMember.member)
)
_IS_MEMBER = Project.id.is_in(ProjectMember.select(ProjectMember.project).where(ProjectMember.member == Param("to")))
HAND_OVER = Statement(
    Project.update(
        {Project.owner: Param("to"), Project.version: Project.version + 1, Project.updated_at: Param("now")},
        use_auto_update=False,
    )
    .where((Project.id == Param("id")) & _IS_MEMBER)
    .returning(*Project._meta.columns)
)
STEP_UP = Statement(
    ProjectMember.update({ProjectMember.role: OWNER})
    .where((ProjectMember.project == Param("id")) & (ProjectMember.member == Param("to")))
    .returning(ProjectMember.member)
)


async def transfer_project(user_id: int, project_id: int, to_user_id: int) -> Project:
    """Make another member the owner (owner only); the caller stays on as admin.

    Raises:
        NotFoundError: the caller is not a member.
        ForbiddenError: the caller is not the owner.
        InvalidFieldError: ``user_id`` is the caller or not a member of the project (422).
    """
    if to_user_id == user_id:
        await explain(user_id, project_id, "transfer the project")
        raise InvalidFieldError("user_id", "you already own this project")
    not_a_member = InvalidFieldError("user_id", f"user {to_user_id} is not a member of project {project_id}")
    try:
        async with transaction():
            if not await STEP_DOWN.fetch(id=project_id, user=user_id):
                await explain(user_id, project_id, "transfer the project")
                raise ConflictError(f"Project {project_id} changed while this request ran; retry")
            rows = await HAND_OVER.fetch(id=project_id, to=to_user_id, now=utcnow())
            # Not a member, or removed before the last step: nothing is written.
            if not rows or not await STEP_UP.fetch(id=project_id, to=to_user_id):
                raise not_a_member
    except asyncpg.IntegrityConstraintViolationError:
        # Another change committed in between; the database kept one owner.
        raise ConflictError(f"Project {project_id} changed while this request ran; retry") from None
    return from_row(Project, {**rows[0], "role": ProjectRole.admin.value})
