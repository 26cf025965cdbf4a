"""Projects."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.dto import DTOData
from litestar.params import JSONBody, QueryParameter

from app.controllers.params import (
    IdempotencyKeyHeader,
    IfMatch,
    Limit,
    ObjectId,
    Offset,
    ProjectSort,
    UserRequest,
    created,
    expected_version,
    idempotency,
    with_etag,
)
from app.dto import Page, ProjectCreateDTO, ProjectPatchDTO, ProjectReadDTO
from app.services import projects
from app.tables import Project


class ProjectController(Controller):
    path = "/api/v1/projects"
    tags = ["projects"]
    return_dto = ProjectReadDTO

    @get("/")
    async def list_projects(
        self,
        request: UserRequest,
        archived: Annotated[bool | None, QueryParameter(description="Only archived / not archived")] = None,
        sort: ProjectSort = None,
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> Page[Project]:
        """The caller's projects. Sort by created_at, updated_at, name, id (default -created_at)."""
        items, total = await projects.list_projects(
            request.user.id, archived=archived, sort=sort, limit=limit, offset=offset
        )
        return Page(items=items, total=total, limit=limit, offset=offset)

    @post("/", dto=ProjectCreateDTO)
    async def create_project(
        self,
        request: UserRequest,
        data: JSONBody[DTOData[Project]],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Project]:
        """Create a project."""
        project, replayed = await projects.create_project(
            request.user.id, data.as_builtins(), idempotency=await idempotency(request, idempotency_key)
        )
        return created(request, project, f"{self.path}/{project.id}", project.version, replayed)

    @get("/{project_id:int}")
    async def get_project(self, request: UserRequest, project_id: ObjectId) -> Response[Project]:
        """One project."""
        project = await projects.get_project(request.user.id, project_id)
        return with_etag(project, project.version)

    @patch("/{project_id:int}", dto=ProjectPatchDTO)
    async def update_project(
        self,
        request: UserRequest,
        project_id: ObjectId,
        data: JSONBody[DTOData[Project]],
        if_match: IfMatch = None,
    ) -> Response[Project]:
        """Change some fields; honours If-Match."""
        project = await projects.update_project(
            request.user.id, project_id, data.as_builtins(), expected_version=expected_version(if_match)
        )
        return with_etag(project, project.version)

    @delete("/{project_id:int}")
    async def delete_project(self, request: UserRequest, project_id: ObjectId, if_match: IfMatch = None) -> None:
        """Delete a project and its tasks; honours If-Match."""
        await projects.delete_project(request.user.id, project_id, expected_version=expected_version(if_match))
