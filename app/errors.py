"""Domain errors raised by services, and their one mapping to RFC 9457 problem responses.

Services raise the exceptions defined here and never import Litestar. ``exception_handlers``
turns them, Litestar's HTTP exceptions, database constraint violations and database outages
into ``application/problem+json`` responses; nothing reaches a client as a traceback.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.db import UNAVAILABLE_ERRORS

logger = logging.getLogger("taskapi")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class DomainError(Exception):
    """Base of the errors services raise. ``status`` is the HTTP status it maps to."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class NotFoundError(DomainError):
    status = 404
    title = "Not Found"

    def __init__(self, resource: str, resource_id: int | str) -> None:
        super().__init__(f"{resource} {resource_id} does not exist")


class ForbiddenError(DomainError):
    """A member of the object's project whose role is below the one the action needs.

    Only members get it: anyone else gets the NotFoundError a missing object gets.
    """

    status = 403
    title = "Forbidden"

    def __init__(self, resource: str, obj_id: int, required: str, actual: str) -> None:
        super().__init__(f"This needs the {required} role in {resource.lower()} {obj_id}; you are {actual}")
        self.required_role = required


class NotAuthorError(DomainError):
    """Someone who can see a comment but did not write it, editing it (only its author may)."""

    status = 403
    title = "Forbidden"

    def __init__(self, comment_id: int) -> None:
        super().__init__(f"Only the author of comment {comment_id} may edit it")


class ConflictError(DomainError):
    status = 409
    title = "Conflict"


class GoneError(DomainError):
    """Something that existed and can no longer be used (an expired or withdrawn invitation)."""

    status = 410
    title = "Gone"


class InvalidFieldError(DomainError):
    """A syntactically valid body that breaks a domain rule (unknown reference, cycle...)."""

    status = 422
    title = "Unprocessable Content"

    def __init__(self, field: str, message: str, **extra: Any) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message, **extra}])


class InvalidBodyError(DomainError):
    """A body that fails validation, with every offending field in ``errors``."""

    status = 400
    title = "Bad Request"


class InvalidItemsError(DomainError):
    """Bulk items that fail validation; ``errors`` name each item's index and field."""

    status = 422
    title = "Unprocessable Content"


class BadParameterError(DomainError):
    """A query parameter or header that is malformed or out of range."""

    status = 400
    title = "Bad Request"

    def __init__(self, field: str, message: str, source: str = "query") -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "source": source, "message": message}])


class PreconditionFailedError(DomainError):
    """If-Match named a version that is no longer current."""

    status = 412
    title = "Precondition Failed"

    def __init__(self, resource: str, current_version: int) -> None:
        super().__init__(f"{resource} has changed: its current version is {current_version}")
        self.current_version = current_version


class IdempotencyMismatchError(DomainError):
    status = 422
    title = "Unprocessable Content"


class IdempotencyInFlightError(DomainError):
    status = 409
    title = "Conflict"


class AuthenticationError(DomainError):
    status = 401
    title = "Unauthorized"


class ServiceUnavailableError(DomainError):
    status = 503
    title = "Service Unavailable"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    """Build one problem+json response; ``extensions`` are extra members (RFC 9457 section 3.2)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    if extensions:
        body.update(extensions)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


RETRY_AFTER_SECONDS = "2"


def _domain_handler(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    headers: dict[str, str] = {}
    if isinstance(exc, PreconditionFailedError):
        headers["ETag"] = f'"{exc.current_version}"'
    elif isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, ServiceUnavailableError):
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    extensions = {"required_role": exc.required_role} if isinstance(exc, ForbiddenError) else None
    return problem(exc.status, exc.title, exc.detail, errors=exc.errors, headers=headers, extensions=extensions)


_BODY_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `([^`]+)`")


def _validation_errors(extra: Any) -> list[dict[str, Any]] | None:
    if not isinstance(extra, list):
        return None
    errors = []
    for item in extra:
        if isinstance(item, dict):
            entry = {"field": item.get("key") or item.get("field") or "body", "message": item.get("message", "")}
            if item.get("source") == "body" and entry["field"] == "data":
                # Litestar names the whole body after the handler's ``data`` argument: name the
                # field its message is about, or the body itself (absent or not an object).
                match = _BODY_FIELD.match(entry["message"])
                entry["field"] = match.group(1) if match else "body"
                if entry["message"] == "'data'":
                    entry["message"] = "A JSON body is required"
            if item.get("source") == "header":
                # Litestar reports a header by its parameter name (idempotency_key): name it as sent.
                entry["field"] = "-".join(part.capitalize() for part in entry["field"].split("_"))
            if item.get("source"):
                entry["source"] = item["source"]
            errors.append(entry)
    return errors or None


def _http_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    errors = _validation_errors(exc.extra)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
        # Never echo token material or decoder internals.
        detail = "Missing, malformed, expired or revoked credentials"
    elif isinstance(exc, ValidationException):
        fields = ", ".join(sorted({e["field"] for e in errors or []}))
        detail = f"Invalid input: {fields}" if fields else (exc.detail or "Invalid input")
    else:
        detail = exc.detail
    title = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Content Too Large",
        415: "Unsupported Media Type",
        429: "Too Many Requests",
        503: "Service Unavailable",
    }.get(status, "Error")
    return problem(status, title, detail, errors=errors, headers=headers)


def _integrity_handler(
    request: Request[Any, Any, Any], exc: asyncpg.IntegrityConstraintViolationError
) -> Response[Any]:
    # Services translate the violations they expect; this is the safety net for the rest.
    constraint = getattr(exc, "constraint_name", None) or "constraint"
    if isinstance(exc, asyncpg.UniqueViolationError):
        return problem(409, "Conflict", f"Conflicts with an existing object ({constraint})")
    return problem(422, "Unprocessable Content", f"Violates a data rule ({constraint})")


def _data_error_handler(request: Request[Any, Any, Any], exc: asyncpg.DataError) -> Response[Any]:
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError):
        return problem(400, "Bad Request", "Text must not contain NUL (\\u0000) characters")
    return problem(400, "Bad Request", "A value is out of range for its field")


def _recursion_handler(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # msgspec raises RecursionError (not DecodeError) for JSON nested too deeply, and Litestar
    # only converts DecodeError: without this a body like "[[[[..." is a 500.
    if "deserializing" in str(exc):
        return problem(
            400,
            "Bad Request",
            "Invalid input: body",
            errors=[{"field": "body", "message": "Malformed JSON: nested too deeply"}],
        )
    return _internal_handler(request, exc)


def _unavailable_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.warning("database unavailable: %s", type(exc).__name__)
    return problem(
        503,
        "Service Unavailable",
        "The database is not answering; retry shortly",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _internal_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return _unavailable_handler(request, exc)
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error", "An unexpected error occurred")


exception_handlers: dict[Any, Any] = {
    DomainError: _domain_handler,
    HTTPException: _http_handler,
    asyncpg.IntegrityConstraintViolationError: _integrity_handler,
    asyncpg.DataError: _data_error_handler,
    RecursionError: _recursion_handler,
    **dict.fromkeys(UNAVAILABLE_ERRORS, _unavailable_handler),
    Exception: _internal_handler,
}
