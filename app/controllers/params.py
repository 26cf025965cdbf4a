"""Parameter types and response helpers shared by the controllers."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import msgspec
from litestar import Request, Response
from litestar.params import HeaderParameter, PathParameter, QueryParameter

from app.auth import Principal
from app.dto import NUL_REFUSED, in_utc_range
from app.errors import BadParameterError
from app.http_hygiene import REPLAYED_STATE_KEY
from app.services import labels, projects, tasks
from app.services.idempotency import Idempotency

T = TypeVar("T")

MAX_ID = 2_147_483_647

# A request whose ``user`` is the authenticated caller (set by app.auth's middleware). Handlers
# read ``request.user.id``: a dependency would cost a noticeable share of a GET (bench/README.md).
UserRequest = Request[Principal, Any, Any]

ObjectId = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="Object id")]
Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Page size, 1..100")]
Offset = Annotated[int, QueryParameter(ge=0, le=MAX_ID, description="Items to skip, >= 0")]


def sort_parameter(sortable: Iterable[str]) -> QueryParameter:
    """``sort`` of a list whose service sorts by ``sortable``; the document gets its pattern."""
    key = rf"\s*-?(?:{'|'.join(map(re.escape, sortable))})\s*"
    return QueryParameter(
        max_length=200,
        description="Comma-separated fields, '-' prefix for descending",
        # Documentation only: app.services.listing.parse_sort refuses the rest with a 400 naming the field.
        schema_extra={"pattern": rf"^(?:{key}(?:,{key})*)?$"},
    )


ProjectSort = Annotated[str | None, sort_parameter(projects.SORTABLE)]
LabelSort = Annotated[str | None, sort_parameter(labels.SORTABLE)]
TaskSort = Annotated[str | None, sort_parameter(tasks.SORTABLE)]

# One entity tag, or * for any current version; the document carries the same pattern.
_IF_MATCH = re.compile(r'^\s*(?:(W/)?"(\d{1,10})"|(\*))\s*$')

IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        max_length=100,
        description='Expected version, as the ETag: "3" (or * for any)',
        # Documentation only: expected_version refuses the rest with a 400 naming the header.
        schema_extra={"pattern": _IF_MATCH.pattern},
    ),
]
IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Makes a creating POST safe to retry for 24 h",
    ),
]


def expected_version(if_match: str | None) -> int | None:
    """The version named by If-Match, None when absent or ``*`` (any current version)."""
    if if_match is None:
        return None
    match = _IF_MATCH.match(if_match)
    if match is None:
        raise BadParameterError("If-Match", 'expected an ETag like "3"', source="header")
    if match.group(3):
        return None
    weak, version = match.group(1), int(match.group(2))
    # If-Match compares strongly (RFC 9110 13.1.1), so a weak tag never matches, and neither does
    # a well-formed tag beyond the column's range: 0 is never a current version (412).
    return 0 if weak or version > MAX_ID else version


async def idempotency(request: UserRequest, key: str | None) -> Idempotency | None:
    """The request's Idempotency-Key with a fingerprint of its method, path and body."""
    if key is None:
        return None
    return Idempotency.for_request(key, request.method, request.url.path, await request.body())


def storable_text(name: str, value: str | None) -> str | None:
    """A query string PostgreSQL can compare with: one without NUL."""
    if value is not None and "\x00" in value:
        raise BadParameterError(name, NUL_REFUSED)
    return value


def storable_time(name: str, value: dt.datetime | None) -> dt.datetime | None:
    """A query datetime PostgreSQL can compare with: one that stays in range in UTC."""
    if value is not None and not in_utc_range(value):
        raise BadParameterError(name, "Datetime out of range")
    return value


# Litestar converts query strings leniently (msgspec, strict=False): "1e3" and "1.0" become
# integers and a bare number becomes an epoch datetime (253402300800 overflowed: a 500). These
# are the only spellings taskapi accepts, by the type a handler declares for the parameter.
STRICT_QUERY_SPELLINGS: dict[type, tuple[re.Pattern[str], str]] = {
    int: (re.compile(r"-?[0-9]+"), "Expected a decimal integer such as 20"),
    dt.datetime: (
        re.compile(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
        ),
        "Expected an RFC 3339 datetime with a zone, such as 2030-01-31T09:00:00Z",
    ),
    # Litestar also reads 1, yes, on and null as booleans: the document says true or false.
    bool: (re.compile(r"true|false"), "Expected true or false"),
}
ONCE = "Given more than once; only repeatable parameters may be"


def _scalar(annotation: Any) -> Any:
    """The type of one value of a parameter: unwraps Optional, list[...] and Annotated."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType, list):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


@functools.cache
def _strict_query_parameters(handler: Any) -> tuple[tuple[str, re.Pattern[str] | None, str, bool], ...]:
    """(query key, pattern, message, repeatable) for each of a handler's query parameters."""
    checks = []
    for name, field in handler.parsed_fn_signature.parameters.items():
        if isinstance(field.kwarg_definition, QueryParameter):
            # Exact type lookup: bool is not int here.
            pattern, message = STRICT_QUERY_SPELLINGS.get(_scalar(field.annotation), (None, ""))
            checks.append((field.kwarg_definition.query or name, pattern, message, _is_list(field.annotation)))
    return tuple(checks)


def check_query_spelling(request: Request[Any, Any, Any]) -> None:
    """400 naming every query parameter spelled otherwise than its declared type requires, or
    given twice where only one value is read."""
    if not request.scope["query_string"]:
        return
    params = request.query_params
    errors = []
    for key, pattern, message, repeatable in _strict_query_parameters(request.route_handler):
        values = params.getall(key, ())
        if len(values) > 1 and not repeatable:
            errors.append({"field": key, "source": "query", "message": ONCE})
        elif pattern is not None and any(pattern.fullmatch(value) is None for value in values):
            errors.append({"field": key, "source": "query", "message": message})
    if errors:
        errors += _other_query_errors(request, {e["field"] for e in errors})
        exc = BadParameterError(errors[0]["field"], errors[0]["message"])
        exc.errors = errors
        exc.detail = "Invalid input: " + ", ".join(e["field"] for e in errors)
        raise exc


def _other_query_errors(request: Request[Any, Any, Any], named: set[str]) -> list[dict[str, Any]]:
    """The errors Litestar would report for the other query parameters, so one 400 names them all.

    Each value is converted as Litestar's signature model converts it (its annotations carry the
    declared ranges), only on this error path.
    """
    handler = request.route_handler
    annotations = handler.signature_model.__annotations__
    errors = []
    for name, field in handler.parsed_fn_signature.parameters.items():
        key = getattr(field.kwarg_definition, "query", None) or name
        if not isinstance(field.kwarg_definition, QueryParameter) or key in named or key not in request.query_params:
            continue
        values = request.query_params.getall(key)
        try:
            msgspec.convert(values if _is_list(field.annotation) else values[0], annotations[name], strict=False)
        except msgspec.ValidationError as exc:
            errors.append({"field": key, "source": "query", "message": str(exc).split(" - ")[0]})
    return errors


def _is_list(annotation: Any) -> bool:
    while get_origin(annotation) in (Annotated, Union, UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return get_origin(annotation) is list


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def mark_replayed(request: Request[Any, Any, Any], replayed: bool) -> None:
    """Flag the answer as an idempotent replay; app.http_hygiene adds ``Idempotent-Replayed: true``."""
    if replayed:
        request.state[REPLAYED_STATE_KEY] = True


def created(request: UserRequest, obj: T, location: str, version: int, replayed: bool) -> Response[T]:
    """201 with Location and ETag; a replay is flagged for the Idempotent-Replayed header."""
    mark_replayed(request, replayed)
    return Response(obj, status_code=201, headers={"Location": location, **etag(version)})


def with_etag(obj: T, version: int) -> Response[T]:
    return Response(obj, headers=etag(version))
