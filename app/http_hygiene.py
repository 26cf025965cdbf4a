"""HTTP details every answer shares: HEAD wherever GET is, a true ``Allow``, nosniff, CORS,
``Idempotent-Replayed``.

Litestar 2.25 serves HEAD only through separate, body-less ``@head`` handlers, and its automatic
OPTIONS handler reports the methods of a stale route when one path's handlers come from several
registrations (``/api/v1/tasks`` answered ``Allow: OPTIONS, POST``); see UPSTREAM.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.routes import HTTPRoute

if TYPE_CHECKING:
    from litestar.types import Message, Receive, Scope, Send

    from app.settings import Settings

# The scope key marking a HEAD request served by the GET handler.
HEAD_AS_GET = "taskapi.head_as_get"
# The request state key a controller sets on an idempotent replay (controllers/params.py).
REPLAYED_STATE_KEY = "idempotent_replayed"

# Request headers a browser client sends, and response headers it may read (CORS).
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "If-Match", "Idempotency-Key"]
CORS_EXPOSE_HEADERS = ["ETag", "Location", "Idempotent-Replayed", "Retry-After", "RateLimit", "RateLimit-Policy"]
CORS_ALLOW_METHODS: list[Any] = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"]


class TaskapiLitestar(Litestar):
    """Litestar, answering HEAD with the GET handler's status and headers and no body, and
    passing every HTTP answer through ``http_hygiene`` (one send wrapper per request, where
    Litestar's ``before_send`` hooks await a coroutine per hook and message)."""

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            # Routed as GET (a route without GET answers 405 naming its methods); the body is
            # dropped in http_hygiene, so Content-Length still says what a GET would get.
            scope["method"] = "GET"
            scope[HEAD_AS_GET] = True

        async def send_hygienic(message: Message) -> None:
            http_hygiene(message, scope)
            await send(message)

        await super().__call__(scope, receive, send_hygienic)


def _allow(methods: set[str]) -> bytes:
    if "GET" in methods:
        methods = methods | {"HEAD"}
    return ", ".join(sorted(methods)).encode()


def _route_methods(app: Litestar) -> dict[str, set[str]]:
    """Each route's methods by path template, read once from the app's routes."""
    cached: dict[str, set[str]] | None = getattr(app.state, "_route_methods", None)
    if cached is None:
        cached = {route.path_format: set(route.methods) for route in app.routes if isinstance(route, HTTPRoute)}
        app.state._route_methods = cached
    return cached


def http_hygiene(message: Message, scope: Scope) -> None:
    """nosniff everywhere, a true Allow, Idempotent-Replayed on replays, and no body for HEAD."""
    if message["type"] == "http.response.start":
        headers = [(name, value) for name, value in message.get("headers", []) if name.lower() != b"allow"]
        allow = next((value for name, value in message.get("headers", []) if name.lower() == b"allow"), None)
        if allow is not None:
            template = scope.get("path_template")
            methods = _route_methods(scope["litestar_app"]).get(template) if template else None
            if methods is None:  # a 405 from the router: it names the route's methods itself
                methods = {method.strip() for method in allow.decode().split(",") if method.strip()}
            headers.append((b"allow", _allow(methods)))
        headers.append((b"x-content-type-options", b"nosniff"))
        if scope.get("state", {}).get(REPLAYED_STATE_KEY):
            headers.append((b"idempotent-replayed", b"true"))
        message["headers"] = headers
    elif message["type"] == "http.response.body" and scope.get(HEAD_AS_GET):  # type: ignore[misc]
        message["body"] = b""


def cors_config(settings: Settings) -> CORSConfig | None:
    """CORS for TASKAPI_CORS_ORIGINS; None (no Access-Control-* headers at all) when unset."""
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_methods=CORS_ALLOW_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        allow_credentials=False,  # bearer tokens, not cookies
        max_age=600,
    )
