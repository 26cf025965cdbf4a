"""What the OpenAPI document says beyond what Litestar infers from the handlers.

Litestar documents a handler's success status and, for handlers with parameters, a 400 in its
own shape (not ours). Every error this API answers is ``application/problem+json``, built in
app/errors.py, and most error statuses follow from how an operation is built: a path id can be
missing (404), a token can be bad (401), a body can be too large (413) or not JSON (415), an
If-Match can be stale (412), an Idempotency-Key can be in flight (409) or reused with another
body (422), any ``/api`` request can be rate limited (429), and the database can be away (503).
``document_api`` adds exactly those to each ``/api`` handler once the app is built. Statuses
that come from a domain rule (a duplicate name, a reference to another user's object) are
declared on the handler itself with ``responses=problem_responses(...)``, which takes precedence.

It then finishes the built document with what Litestar cannot express on a handler (each
step says why): the response headers, ``security: []`` on public operations.
``ClosedStructSchemaPlugin`` documents request bodies that refuse unknown fields as
``additionalProperties: false``.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Response
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIHeader, OpenAPIType, Operation, Parameter, Reference, Schema
from litestar.params import BodyKwarg, HeaderParameter, PathParameter, QueryParameter
from litestar.plugins import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition
from piccolo.table import Table

from app.dto import OPENAPI_TYPE, Role
from app.errors import PROBLEM_MEDIA_TYPE

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar._openapi.schema_generation import SchemaCreator


class ProblemFieldError(msgspec.Struct, kw_only=True):
    """One offending field, query parameter or header."""

    field: str
    message: str
    source: Literal["body", "query", "path", "header", "cookie"] | msgspec.UnsetType = msgspec.UNSET
    index: Annotated[int, msgspec.Meta(ge=0, description="The bulk item's position")] | msgspec.UnsetType = (
        msgspec.UNSET
    )


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document, as app.errors.problem() builds it."""

    type: str
    title: str
    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    detail: str
    errors: list[ProblemFieldError] | msgspec.UnsetType = msgspec.UNSET
    # 403 only: the least project role the action needs (app.errors.ForbiddenError).
    required_role: Role | msgspec.UnsetType = msgspec.UNSET


PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed or out-of-range input; `errors` names each offending field or parameter",
    401: "Missing, malformed, expired or revoked credentials (`WWW-Authenticate: Bearer`)",
    403: "A member of the project whose role is below the one this needs (`required_role`)",
    404: "No such object among those the caller can see (another user's is missing to them)",
    409: "Conflicts with an existing object, or a request with this Idempotency-Key is still running",
    412: "If-Match names a version that is no longer current (the current one is in `ETag`)",
    413: "Body larger than 1 MiB",
    410: "No longer available: an expired or withdrawn invitation",
    415: "Body is not JSON",
    422: "A well-formed body that breaks a rule (see `errors`), or an Idempotency-Key reused with another body",
    429: "Too many requests; retry after `Retry-After` seconds (`RateLimit-Policy` and `RateLimit` say the quota)",
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


def _header_names(handler: HTTPRouteHandler) -> set[str]:
    return {
        parameter.kwarg_definition.name.lower()
        for parameter in handler.parsed_fn_signature.parameters.values()
        if isinstance(parameter.kwarg_definition, HeaderParameter) and parameter.kwarg_definition.name
    }


def _statuses(path: str, handler: HTTPRouteHandler) -> set[int]:
    kinds: set[type[Any]] = set()
    for parameter in handler.parsed_fn_signature.parameters.values():
        definition = parameter.kwarg_definition
        for kind in (QueryParameter, HeaderParameter, PathParameter, BodyKwarg):
            if isinstance(definition, kind):
                kinds.add(kind)
    headers = _header_names(handler)
    has_body = BodyKwarg in kinds or "data" in handler.parsed_fn_signature.parameters
    statuses = {429, 503}
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


def operation_id(handler: HTTPRouteHandler, method: str, path_components: list[Any]) -> str:
    """The handler's name (unique in the app, STYLE.md), so generated clients get ``list_tasks``
    rather than ``api_v1_tasks_list_tasks``; a handler serving several methods adds the method."""
    if len(handler.http_methods) > 1:
        return f"{handler.handler_name}_{method.lower()}"
    return handler.handler_name


# --------------------------------------------------------------------------------------------
# Response headers


def _header(description: str, schema: Schema, *, required: bool) -> OpenAPIHeader:
    return OpenAPIHeader(description=description, schema=schema, required=required)


ETAG = _header(
    'The object\'s version as a strong entity tag (`"3"`), for `If-Match`',
    Schema(type=OpenAPIType.STRING, pattern=r'^"[0-9]+"$'),
    required=True,
)
LOCATION = _header(
    "Path of the created object",
    Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.URI_REFERENCE),
    required=True,
)
REPLAYED = _header(
    "`true` when this answer replays the first one sent with the same Idempotency-Key",
    Schema(type=OpenAPIType.STRING, enum=["true"]),
    required=False,
)
RETRY_AFTER = _header(
    "Seconds to wait before retrying", Schema(type=OpenAPIType.STRING, pattern=r"^[0-9]+$"), required=True
)
WWW_AUTHENTICATE = _header("`Bearer`", Schema(type=OpenAPIType.STRING), required=True)


def _rate_limit_headers(*, required: bool) -> dict[str, OpenAPIHeader]:
    return {
        "RateLimit-Policy": _header(
            'The quota policy (IETF draft-ietf-httpapi-ratelimit-headers), e.g. `"user";q=1200;w=60`',
            Schema(type=OpenAPIType.STRING),
            required=required,
        ),
        "RateLimit": _header(
            'What is left of the quota and when it resets, e.g. `"user";r=1198;t=42`',
            Schema(type=OpenAPIType.STRING),
            required=required,
        ),
    }


def _single_object(handler: HTTPRouteHandler) -> type[Table] | None:
    """The table of the one object a handler answers with (``Task`` or ``Response[Task]``), if any."""
    returned = handler.parsed_fn_signature.return_type
    if returned.is_subclass_of(Response) and returned.inner_types:
        returned = returned.inner_types[0]
    return returned.annotation if returned.is_subclass_of(Table) else None


def _success_headers(path: str, handler: HTTPRouteHandler, status: int) -> dict[str, OpenAPIHeader]:
    headers: dict[str, OpenAPIHeader] = {}
    table = _single_object(handler)
    if table is not None and any(column._meta.name == "version" for column in table._meta.columns):
        headers["ETag"] = ETAG  # app.controllers.params.with_etag / created: every versioned object
    if table is not None and status == 201:
        headers["Location"] = LOCATION
    if "idempotency-key" in _header_names(handler):
        headers["Idempotent-Replayed"] = REPLAYED
    if path.startswith("/api/"):
        # Sent on answers the rate limiter counted; absent when limits are off.
        headers.update(_rate_limit_headers(required=False))
    return headers


ERROR_HEADERS: dict[int, dict[str, OpenAPIHeader]] = {
    401: {"WWW-Authenticate": WWW_AUTHENTICATE},
    412: {"ETag": ETAG},
    429: {"Retry-After": RETRY_AFTER, **_rate_limit_headers(required=True)},
    503: {"Retry-After": RETRY_AFTER},
}


def _not_null(schema: Schema | Reference) -> Schema | Reference:
    """A parameter's schema without ``null``: Litestar documents ``X | None = None`` as nullable,
    but a query parameter or header is absent or a string, never JSON null."""
    if not isinstance(schema, Schema):
        return schema
    if schema.one_of:
        branches = [b for b in schema.one_of if not (isinstance(b, Schema) and b.type == OpenAPIType.NULL)]
        if len(branches) == 1 and isinstance(branches[0], Schema):
            merged = replace(branches[0])
            for field in fields(Schema):
                if field.name != "one_of" and getattr(merged, field.name) is None:
                    setattr(merged, field.name, getattr(schema, field.name))
            return merged
        schema.one_of = branches
    if isinstance(schema.type, list):
        kinds = [kind for kind in schema.type if kind != OpenAPIType.NULL]
        schema.type = kinds[0] if len(kinds) == 1 else kinds
    if schema.enum:
        schema.enum = [value for value in schema.enum if value is not None]
    return schema


def _finish_operation(path: str, handler: HTTPRouteHandler, operation: Operation) -> None:
    for parameter in operation.parameters or []:
        if isinstance(parameter, Parameter) and parameter.schema is not None:
            parameter.schema = _not_null(parameter.schema)
    if handler.opt.get("exclude_from_auth"):
        # Litestar adds security requirements up the layers and drops an empty list, so a
        # handler cannot say "no token" itself; `security: []` overrides the global requirement.
        operation.security = []
    for code, response in (operation.responses or {}).items():
        status = int(code)
        # ResponseSpec (problem responses) takes no headers, and Litestar documents only
        # declared response_headers, the same for every status: headers are added here.
        headers = _success_headers(path, handler, status) if status < 300 else ERROR_HEADERS.get(status, {})
        if headers and not isinstance(response, dict) and hasattr(response, "headers"):
            response.headers = {**(response.headers or {}), **headers}


def document_api(app: Litestar) -> None:
    """Document problems and headers; call once the app is built (the document is built here)."""
    document_problems(app)
    openapi = app.openapi_schema
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or openapi.paths is None:
            continue
        item = openapi.paths.get(route.path_format or "/")
        if item is None:
            continue
        for handler in route.route_handlers:
            if not handler.include_in_schema:
                continue
            for method in handler.http_methods:
                if (operation := getattr(item, method.lower(), None)) is not None:
                    _finish_operation(route.path, handler, operation)


# --------------------------------------------------------------------------------------------
# Request bodies


class ClosedStructSchemaPlugin(OpenAPISchemaPlugin):
    """Structs that refuse unknown fields (every request body) say ``additionalProperties: false``.

    Litestar's own msgspec plugin ignores ``forbid_unknown_fields``; this one lets it build the
    schema and closes it.
    """

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return (
            not field_definition.is_union
            and field_definition.is_subclass_of(msgspec.Struct)
            and field_definition.annotation.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        builtin = next(
            plugin
            for plugin in schema_creator.plugins
            if plugin is not self and schema_creator.plugin_supports_field(plugin, field_definition)
        )
        schema: Schema = builtin.to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


# msgspec.Meta keyword -> the Schema attribute it becomes (lengths depend on the schema's type).
_META_TO_SCHEMA = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusive_minimum",
    "lt": "exclusive_maximum",
    "multiple_of": "multiple_of",
    "pattern": "pattern",
    "description": "description",
    "title": "title",
}


class MsgspecMetaSchemaPlugin(OpenAPISchemaPlugin):
    """``msgspec.Meta`` constraints wherever they sit: list items (``label_ids``), union branches.

    Litestar reads them only from a struct's own fields, so the document lost the item bounds
    the server enforces. A Meta may also name the type a value is documented as with
    ``extra={"openapi_type": ...}``, for values decoded leniently and validated afterwards
    (the bulk items; app.dto.OPENAPI_TYPE).
    """

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return any(isinstance(meta, msgspec.Meta) for meta in field_definition.metadata)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        metas = [meta for meta in field_definition.metadata if isinstance(meta, msgspec.Meta)]
        documented = next(
            (meta.extra[OPENAPI_TYPE] for meta in metas if meta.extra and OPENAPI_TYPE in meta.extra),
            field_definition.annotation,
        )
        schema = schema_creator.for_field_definition(FieldDefinition.from_annotation(documented))
        if not isinstance(schema, Schema):
            return schema  # type: ignore[return-value]  # a component's $ref: its own schema says it all
        is_array = schema.type == OpenAPIType.ARRAY
        for meta in metas:
            for key, attribute in _META_TO_SCHEMA.items():
                if (value := getattr(meta, key)) is not None:
                    setattr(schema, attribute, value)
            if meta.min_length is not None:
                setattr(schema, "min_items" if is_array else "min_length", meta.min_length)
            if meta.max_length is not None:
                setattr(schema, "max_items" if is_array else "max_length", meta.max_length)
        return schema


SCHEMA_PLUGINS = (ClosedStructSchemaPlugin(), MsgspecMetaSchemaPlugin())
