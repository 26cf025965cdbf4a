"""The ASGI application: ``create_app()`` wires plugins, lifespan, errors and routes.

``uvicorn app.asgi:app`` serves it directly; ``taskapi serve`` does the same after migrating.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Litestar, Request
from litestar.enums import MediaType
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.logging import LoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme
from litestar.static_files import create_static_files_router

from app.auth import TOKEN_URL, auth_middleware
from app.controllers.auth import AuthController, UserController
from app.controllers.comments import CommentController
from app.controllers.events import EventController
from app.controllers.health import HealthController
from app.controllers.invitations import InvitationController
from app.controllers.labels import LabelController
from app.controllers.members import MemberController
from app.controllers.params import check_query_spelling
from app.controllers.projects import ProjectController
from app.controllers.tasks import TaskController
from app.controllers.webhooks import WebhookController
from app.db import RequestDeadline, close_pool, read_routing, start_pool
from app.errors import exception_handlers
from app.events import EventHub, EventPoke
from app.http_hygiene import TaskapiLitestar, cors_config
from app.openapi import SCHEMA_PLUGINS, document_api, operation_id
from app.ratelimit import Limiter, rate_limit_middleware
from app.services.idempotency import purge_expired_keys
from app.settings import Settings, get_settings
from app.webhooks_worker import start_webhook_worker

logger = logging.getLogger("taskapi")

MAX_BODY_BYTES = 1024 * 1024
JSON_TYPES = ("application/json",)


def _swagger_ui_assets() -> Path:
    """Swagger UI 5 (it reads OpenAPI 3.1) as shipped in swagger-ui-py's ``static`` folder."""
    # Located without importing swagger_ui: its import pulls in jinja2 and yaml for nothing.
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package (the docs' assets) is not installed")
    return Path(spec.submodule_search_locations[0]) / "static"


DOCS_ASSETS = _swagger_ui_assets()


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """415 for a body that is not JSON (the token endpoint also takes the OAuth2 form)."""
    if request.method not in {"POST", "PATCH", "PUT"}:
        return
    has_body = request.headers.get("content-length", "0") not in {"0", ""} or "transfer-encoding" in request.headers
    if not has_body:
        return
    media_type = request.content_type[0]
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        return
    if request.route_handler.opt.get("accept_form") and media_type == "application/x-www-form-urlencoded":
        return
    raise HTTPException(status_code=415, detail=f"Content-Type must be application/json, not {media_type!r}")


async def check_request(request: Request[Any, Any, Any]) -> None:
    """What every request must pass before its handler's arguments are parsed."""
    check_query_spelling(request)
    await require_json_body(request)


async def _purge_idempotency_keys() -> None:
    while True:
        await asyncio.sleep(600)
        with contextlib.suppress(Exception):
            await purge_expired_keys()


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the application. Settings are validated here, so unsafe production config fails fast."""
    settings = settings or get_settings()
    settings.validate()
    limiter = Limiter(settings)
    # Live events: one LISTEN connection per process feeds every stream it serves (app/events.py).
    event_hub = EventHub(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await start_pool(settings)
        purger = asyncio.create_task(_purge_idempotency_keys())
        await event_hub.start()
        # Webhook deliveries: one worker per process, on its own connections (app/webhooks_worker.py).
        webhook_worker = await start_webhook_worker(settings)
        try:
            yield
        finally:
            purger.cancel()
            await event_hub.stop()
            if webhook_worker is not None:
                await webhook_worker.stop()
            await close_pool()

    docs_assets = create_static_files_router(
        path="/schema/assets", directories=[DOCS_ASSETS], opt={"exclude_from_auth": True}, include_in_schema=False
    )
    openapi = OpenAPIConfig(
        title="taskapi",
        version="1.0.0",
        description="Multi-user task management REST API. Authorize with a bearer token from /api/v1/auth/token.",
        path="/schema",
        # The docs' Authorize button logs in with the OAuth2 password form of /api/v1/auth/token.
        # Every operation needs the token; app.openapi gives the public ones security: [].
        security=[{"BearerToken": []}],
        operation_id_creator=operation_id,
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(
                    type="oauth2",
                    description="Bearer token from POST /api/v1/auth/token (JSON or the OAuth2 password form)",
                    flows=OAuthFlows(password=OAuthFlow(token_url=TOKEN_URL, scopes={})),
                )
            }
        ),
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url="/schema/assets/swagger-ui-bundle.js",
                css_url="/schema/assets/swagger-ui.css",
                standalone_preset_js_url="/schema/assets/swagger-ui-standalone-preset.js",
                favicon="<link rel='icon' type='image/png' href='/schema/assets/favicon-32x32.png'>",
            )
        ],
    )

    app = TaskapiLitestar(
        route_handlers=[
            HealthController,
            AuthController,
            UserController,
            ProjectController,
            MemberController,
            InvitationController,
            LabelController,
            TaskController,
            CommentController,
            EventController,
            WebhookController,
            docs_assets,
        ],
        # The deadline is outermost, so it also bounds the token check's database work.
        middleware=[
            DefineMiddleware(RequestDeadline, seconds=settings.db_request_timeout),
            # After a write's answer (its commit done), streams here and elsewhere look at once.
            DefineMiddleware(EventPoke, hub=event_hub),
            auth_middleware(settings),
            # Inside authentication: it counts per user, and a refused token costs no count.
            rate_limit_middleware(limiter),
            # Replica reads (DATABASE_REPLICA_URLS): needs the user, and leaves the limiter on the primary.
            *read_routing(settings),
        ],
        cors_config=cors_config(settings),
        lifespan=[lifespan, limiter.lifespan],
        exception_handlers=exception_handlers,
        before_request=check_request,
        openapi_config=openapi,
        plugins=[*SCHEMA_PLUGINS],
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=LoggingConfig(
            root={"level": settings.log_level, "handlers": ["queue_listener"]},
            log_exceptions="debug",
        ),
        debug=False,
    )
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            # Litestar leaves media_type empty on handlers that return Response[...] with a return
            # DTO, and the OpenAPI document then lists their bodies under "" instead of JSON.
            if isinstance(handler, HTTPRouteHandler) and not handler.media_type and handler.resolve_return_dto():
                handler.media_type = MediaType.JSON
    document_api(app)
    app.state.settings = settings
    app.state.limiter = limiter
    app.state.event_hub = event_hub
    return app


app = create_app()
