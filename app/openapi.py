"""OpenAPI documentation of the problem responses (RFC 9457) operations give.

Litestar documents a handler's success status and, for handlers with parameters, a 400 in its
own shape (not ours). Every error this API answers is ``application/problem+json``, built in
app/errors.py, and most error statuses follow from how an operation is built: a path id can be
missing (404), a token can be bad (401), a body can be too large (413) or not JSON (415), an
If-Match can be stale (412), an Idempotency-Key can be in flight (409) or reused with another
body (422), and the database can be away (503). ``document_problems`` adds exactly those to each
``/api`` handler once the app is built. Statuses that come from a domain rule (a duplicate name,
a reference to another user's object) are declared on the handler itself with
``responses=problem_responses(...)``, which takes precedence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import BodyKwarg, HeaderParameter, PathParameter, QueryParameter

from app.errors import PROBLEM_MEDIA_TYPE

if TYPE_CHECKING:
    from litestar import Litestar


class ProblemFieldError(msgspec.Struct, kw_only=True):
    """One offending field, query parameter or header."""

    field: str
    message: str
    source: str | None = None


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemFieldError] | None = None


PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed or out-of-range input; `errors` names each offending field or parameter",
    401: "Missing, malformed, expired or revoked credentials (`WWW-Authenticate: Bearer`)",
    404: "No such object among the caller's own",
    409: "Conflicts with an existing object, or a request with this Idempotency-Key is still running",
    412: "If-Match names a version that is no longer current (the current one is in `ETag`)",
    413: "Body larger than 1 MiB",
    415: "Body is not JSON",
    422: "A well-formed body that breaks a rule (see `errors`), or an Idempotency-Key reused with another body",
    503: "The database is not answering; retry after `Retry-After` seconds",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """``responses=`` for a handler: the problem document under each status."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=PROBLEM_DESCRIPTIONS[status],
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in statuses
    }


def _statuses(path: str, handler: HTTPRouteHandler) -> set[int]:
    kinds: set[type[Any]] = set()
    headers: set[str] = set()
    for parameter in handler.parsed_fn_signature.parameters.values():
        definition = parameter.kwarg_definition
        for kind in (QueryParameter, HeaderParameter, PathParameter, BodyKwarg):
            if isinstance(definition, kind):
                kinds.add(kind)
        if isinstance(definition, HeaderParameter) and definition.name:
            headers.add(definition.name.lower())
    has_body = BodyKwarg in kinds or "data" in handler.parsed_fn_signature.parameters
    statuses = {503}
    if kinds or has_body or "{" in path:
        statuses.add(400)
    if not handler.opt.get("exclude_from_auth"):
        statuses.add(401)
    if "{" in path:
        statuses.add(404)
    if has_body:
        statuses |= {413, 415}
    if "if-match" in headers:
        statuses.add(412)
    if "idempotency-key" in headers:
        statuses |= {409, 422}
    return statuses


def document_problems(app: Litestar) -> None:
    """Add the problem responses each ``/api`` operation can give (before the schema is built)."""
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler) or not handler.include_in_schema:
                continue
            declared = dict(handler.responses or {})
            defaults = problem_responses(*sorted(_statuses(route.path, handler) - set(declared)))
            handler.responses = {**defaults, **declared}
