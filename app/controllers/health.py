"""Liveness and readiness; no token needed."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec

from app.errors import RETRY_AFTER_SECONDS
from app.services import health


class HealthController(Controller):
    tags = ["operations"]

    @get("/health", opt={"exclude_from_auth": True})
    async def health(self) -> dict[str, str]:
        """200 while the process runs."""
        return {"status": "ok"}

    @get(
        "/ready",
        opt={"exclude_from_auth": True},
        responses={
            503: ResponseSpec(dict[str, str], description="The database is not answering", generate_examples=False)
        },
    )
    async def ready(self) -> Response[dict[str, str]]:
        """200 when the database answers within 2 s (READY_TIMEOUT_SECONDS), 503 (with Retry-After) otherwise."""
        if await health.database_answers():
            return Response({"status": "ready"})
        return Response({"status": "unavailable"}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})
