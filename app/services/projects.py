"""Projects: owner-scoped CRUD with versioned writes."""

from __future__ import annotations

from typing import Any

from app.services.common import delete_owned, from_row, get_owned, update_owned
from app.services.idempotency import Idempotency, run_once
from app.services.listing import apply_order, parse_sort
from app.tables import Project, sortable

SORTABLE = sortable(Project)


async def list_projects(
    user_id: int, *, archived: bool | None, sort: str | None, limit: int, offset: int
) -> tuple[list[Project], int]:
    """A page of the user's projects (default order: -created_at, then id) and the total matching."""
    condition: Any = Project.owner == user_id
    if archived is not None:
        condition = condition & (Project.archived == archived)
    rows = (
        await apply_order(
            Project.select(*Project._meta.columns).where(condition), Project, parse_sort(sort, SORTABLE, "-created_at")
        )
        .limit(limit)
        .offset(offset)
    )
    total = await Project.count().where(condition)
    return [from_row(Project, row) for row in rows], total


async def get_project(user_id: int, project_id: int) -> Project:
    return await get_owned(Project, "Project", owner_id=user_id, obj_id=project_id)


async def create_project(
    user_id: int, data: dict[str, Any], *, idempotency: Idempotency | None = None
) -> tuple[Project, bool]:
    """Create a project. Returns (project, replayed) where replayed is True for an idempotent retry."""

    async def create() -> list[dict[str, Any]]:
        return await Project.insert(Project(owner=user_id, **data)).returning(*Project._meta.columns)

    rows, replayed = await run_once(user_id, idempotency, create)
    return from_row(Project, rows[0]), replayed


async def update_project(
    user_id: int, project_id: int, changes: dict[str, Any], *, expected_version: int | None
) -> Project:
    return await update_owned(
        Project,
        "Project",
        owner_id=user_id,
        obj_id=project_id,
        values={Project._meta.get_column_by_name(k): v for k, v in changes.items()},
        expected_version=expected_version,
    )


async def delete_project(user_id: int, project_id: int, *, expected_version: int | None) -> None:
    """Delete a project; its tasks go with it (ON DELETE CASCADE)."""
    await delete_owned(Project, "Project", owner_id=user_id, obj_id=project_id, expected_version=expected_version)
