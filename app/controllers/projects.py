"""Projects: those the caller is a member of, each with the caller's role."""

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
from app.dto import Page, ProjectCreateDTO, ProjectPatchDTO, ProjectReadDTO, ProjectTransfer, ProjectTransferDTO
from app.openapi import problem_responses
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
        """The projects the caller is a member of, each with the caller's ``role``.

        Sort by created_at, updated_at, name, id (default -created_at).
        """
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
        """One project the caller is a member of (anyone else: 404, as for a missing one)."""
        project = await projects.get_project(request.user.id, project_id)
        return with_etag(project, project.version)

    @patch("/{project_id:int}", dto=ProjectPatchDTO, responses=problem_responses(403))
    async def update_project(
        self,
        request: UserRequest,
        project_id: ObjectId,
        data: JSONBody[DTOData[Project]],
        if_match: IfMatch = None,
    ) -> Response[Project]:
        """Change some fields (admin or owner); honours If-Match."""
        project = await projects.update_project(
            request.user.id, project_id, data.as_builtins(), expected_version=expected_version(if_match)
        )
        return with_etag(project, project.version)

    @delete("/{project_id:int}", responses=problem_responses(403))
    async def delete_project(self, request: UserRequest, project_id: ObjectId, if_match: IfMatch = None) -> None:
        """Delete a project and its tasks (owner only); honours If-Match."""
        await projects.delete_project(request.user.id, project_id, expected_version=expected_version(if_match))

    @post(
        "/{project_id:int}/transfer",
        dto=ProjectTransferDTO,
        status_code=200,
        responses=problem_responses(403, 409, 422),
    )
    async def transfer_project(
        self, request: UserRequest, project_id: ObjectId, data: JSONBody[ProjectTransfer]
    ) -> Response[Project]:
        """Make another member the owner (owner only); the caller stays on as admin."""
        project = await projects.transfer_project(request.user.id, project_id, data.user_id)
        return with_etag(project, project.version)
