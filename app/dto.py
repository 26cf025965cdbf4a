"""The DTO layer: a project-owned PiccoloDTO and the per-resource DTOs built on it.

Litestar's PiccoloDTO (``litestar.contrib.piccolo``, deprecated) and ``litestar-piccolo`` 0.1.0 have
measured gaps (STYLE.md section 7). ``PiccoloDTO`` here fixes each one; every fix is pinned by a
test in ``tests/api/test_dto_contract.py`` so a library upgrade that changes it fails loudly:

1. Omitted columns that have a default get that default (not NULL).
2. Nullability follows the column's ``null`` (not ``required``).
3. Varchar lengths are enforced (``min_length=1`` for required text), also on partial PATCH DTOs,
   and ``choices`` become a closed enum; timestamps must carry a zone.
4. A body that breaks several rules gets every offending field named, not only the first.
5. OpenAPI shows enums, lengths, nullability and required fields as they are enforced.
6. ``secret=True`` columns are never part of any DTO.
7. Nothing is imported from the deprecated module, so ``-W error`` stays quiet.

M2M-like data (task labels) are not columns: a DTO declares them explicitly in ``extra_fields``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from dataclasses import dataclass, make_dataclass, replace
from dataclasses import fields as dataclass_fields
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, TypeVar, Union, get_type_hints
from weakref import WeakKeyDictionary

import msgspec
from litestar.dto import AbstractDTO, DTOConfig, DTOField, Mark, MsgspecDTO
from litestar.dto._codegen_backend import DTOCodegenBackend
from litestar.dto.data_structures import DTOFieldDefinition
from litestar.exceptions import ValidationException
from litestar.serialization import decode_json
from litestar.types import Empty
from litestar.typing import FieldDefinition
from piccolo.columns import Column, column_types
from piccolo.table import Table

from app.services import users
from app.tables import Comment, Label, Project, Task, User

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.connection import ASGIConnection
    from litestar.dto._backend import TransferDTOFieldDefinition  # type: ignore[attr-defined]
    from litestar.openapi.spec import Reference, Schema

T = TypeVar("T", bound=Table)

HEX_COLOR = r"^#[0-9a-fA-F]{6}$"

# Rules a Piccolo column cannot state; enforced in the database by CHECK constraints as well.
COLUMN_PATTERNS: dict[tuple[str, str], str] = {
    ("project", "color"): HEX_COLOR,
    ("label", "color"): HEX_COLOR,
}

UTCDateTime = Annotated[dt.datetime, msgspec.Meta(tz=True)]


def column_annotation(column: Column) -> Any:
    """The msgspec type that validates and documents one column, including nullability."""
    meta: dict[str, Any] = {}
    if column._meta.help_text:
        meta["description"] = column._meta.help_text
    choices = column._meta.choices
    base: Any
    if choices is not None:
        base = Literal[tuple(member.value for member in choices)]  # type: ignore[valid-type]
    elif isinstance(column, column_types.Varchar):
        base = str
        meta["max_length"] = column.length
        if column._meta.required:
            meta["min_length"] = 1
        pattern = COLUMN_PATTERNS.get((column._meta.table._meta.tablename, column._meta.name))
        if pattern:
            meta["pattern"] = pattern
    elif isinstance(column, column_types.Timestamptz):
        base = dt.datetime
        meta["tz"] = True
    elif isinstance(column, (column_types.JSON, column_types.JSONB)):
        base = Any
    elif isinstance(column, column_types.ForeignKey):
        base = int
        meta["ge"], meta["le"] = 1, 2**31 - 1  # every key is a Serial (int4) id
    elif isinstance(column, column_types.Integer):
        # The column's own range: a bigger number is a 400 naming the field, not a DataError.
        bits = 32
        if isinstance(column, column_types.SmallInt):
            bits = 16
        elif isinstance(column, column_types.BigInt):
            bits = 64
        base = int
        meta["ge"], meta["le"] = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        base = column.value_type
    annotation = Annotated[base, msgspec.Meta(**meta)] if meta else base
    return annotation | None if column._meta.null else annotation


def column_default(column: Column) -> Any:
    """The value an omitted column gets on create, or Empty when the field is required."""
    if column._meta.required:
        return Empty
    if column._meta.null and column.default is None:
        return None
    default = column.get_default_value()
    if callable(default) or isinstance(default, (dt.datetime, dt.date)):
        return Empty  # server-set (timestamps); never a client field on create
    return default.value if hasattr(default, "value") else default


@dataclass(frozen=True)
class ExtraField:
    """A DTO field that is not a column (e.g. a task's ``labels`` / ``label_ids``)."""

    annotation: Any
    default: Any = Empty
    read_only: bool = False


def _values(data: Any) -> Any:
    """A row's column values as a mapping (the DTO reads mappings by key), or a list of them."""
    if isinstance(data, Table):
        return data.__dict__
    if isinstance(data, list):
        return [row.__dict__ if isinstance(row, Table) else row for row in data]
    return data


# The transfer struct of each (DTO, is a request body): built once, by write_struct or a backend.
_TRANSFER_STRUCTS: dict[tuple[Any, bool], type[msgspec.Struct]] = {}


class _Backend(DTOCodegenBackend):
    """Builds transfer structs from our own annotations instead of Litestar's lossy ones."""

    def create_transfer_model_type(
        self, model_name: str, field_definitions: tuple[TransferDTOFieldDefinition, ...]
    ) -> type[msgspec.Struct]:
        factory: type[PiccoloDTO[Any]] = self.dto_factory  # type: ignore[assignment]
        # One struct per DTO, whatever the handler, so the OpenAPI document has one component per
        # shape under the DTO's own name ("Task", "TaskCreate") instead of one per handler.
        key = (factory, self.is_data_field)
        is_root = model_name == self.model_type.__name__
        if is_root and (cached := _TRANSFER_STRUCTS.get(key)) is not None:
            return cached
        struct_name = factory.__schema_name__ or self._create_transfer_model_name(model_name)
        fields: list[tuple[str, Any, Any]] = []
        default: Any
        for definition in field_definitions:
            if definition.is_excluded:
                continue
            annotation = factory.annotation_for(self.model_type, definition.name)
            if definition.is_partial:
                annotation, default = Union[annotation, msgspec.UnsetType], msgspec.UNSET  # noqa: UP007
            elif self.is_data_field and definition.default is not Empty:
                default = definition.default
            else:
                # Output structs: every field is always present, so OpenAPI marks it required.
                default = msgspec.NODEFAULT
            fields.append(
                (definition.name, annotation, msgspec.field(default=default, name=definition.serialization_name))
            )
        struct = msgspec.defstruct(
            struct_name,
            fields,
            frozen=True,
            kw_only=True,
            forbid_unknown_fields=factory.config.forbid_unknown_fields,
            module=__name__,
        )
        struct.__schema_name__ = struct_name  # type: ignore[attr-defined]
        if is_root:
            _TRANSFER_STRUCTS[key] = struct
        return struct

    def encode_data(self, data: Any) -> Any:
        # Read rows through their __dict__: every Piccolo column is a descriptor, a call per field.
        if self.wrapper_attribute_name:
            setattr(data, self.wrapper_attribute_name, _values(getattr(data, self.wrapper_attribute_name)))
            return super().encode_data(data)
        return super().encode_data(_values(data))

    def parse_raw(self, raw: bytes, asgi_connection: ASGIConnection) -> Any:
        if any(suspect in raw for suspect in SUSPECT_BYTES) and (errors := _body_errors(raw, self.transfer_model_type)):
            raise ValidationException(detail="The request body is not valid", extra=errors)
        try:
            # Strict, unlike Litestar's default: "1" is not an integer, "true" not a boolean.
            return decode_json(
                raw,
                target_type=self.annotation,
                type_decoders=asgi_connection.route_handler.resolve_type_decoders(),
                strict=True,
            )
        except Exception as exc:
            raise ValidationException(
                detail="The request body is not valid",
                extra=_body_errors(raw, self.transfer_model_type) or [{"message": str(exc), "key": "body"}],
            ) from exc


# Values msgspec accepts but PostgreSQL refuses: text holding NUL, which JSON can only write as
# \u0000, and datetimes that leave Python's range when converted to UTC, which only years 0001
# and 9999 can. A body holding neither byte pattern skips the field-by-field check.
SUSPECT_BYTES = (b"\\u0000", b'"0001-', b'"9999-')


NUL_REFUSED = "Text must not contain NUL (\\u0000) characters"


def in_utc_range(value: dt.datetime) -> bool:
    """Whether an aware datetime can be converted to UTC (and so be stored or compared)."""
    try:
        value.astimezone(dt.UTC)
    except OverflowError:
        return False
    return True


def _storable(value: Any) -> str | None:
    """Why PostgreSQL would refuse a decoded value, or None."""
    if isinstance(value, str) and "\x00" in value:
        return NUL_REFUSED
    if isinstance(value, dt.datetime) and not in_utc_range(value):
        return "Datetime out of range"
    return None


def _body_errors(raw: bytes, struct: type[msgspec.Struct]) -> list[dict[str, str]]:
    """Validate a body field by field, so one response names every offending field."""
    try:
        body = decode_json(raw)
    except Exception as exc:
        return [{"key": "body", "message": f"Malformed JSON: {exc}"}]
    if not isinstance(body, dict):
        return [{"key": "body", "message": "Expected a JSON object"}]
    errors: list[dict[str, str]] = []
    info = msgspec.structs.fields(struct)
    known = {f.encode_name: f for f in info}
    for key in body:
        if key not in known and struct.__struct_config__.forbid_unknown_fields:
            errors.append({"key": key, "message": "Unknown or read-only field"})
    for name, field in known.items():
        if name not in body:
            if field.required:
                errors.append({"key": name, "message": "Field required"})
            continue
        try:
            value = msgspec.convert(body[name], field.type, strict=True)
        except msgspec.ValidationError as exc:
            errors.append({"key": name, "message": str(exc).split(" - at ")[0]})
            continue
        if refused := _storable(value):
            errors.append({"key": name, "message": refused})
    return errors


# Litestar finds a handler's DTO backends by ``handler_id``, a string it formats anew on every
# request from the handler's qualified name and its layers' ids. A handler's layers are fixed
# once the app is built, so its id is kept here.
_HANDLER_IDS: WeakKeyDictionary[Any, str] = WeakKeyDictionary()


def _handler_id(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    handler = connection.route_handler
    try:
        return _HANDLER_IDS[handler]
    except KeyError:
        handler_id: str = handler.handler_id
        _HANDLER_IDS[handler] = handler_id
        return handler_id


class PiccoloDTO(AbstractDTO[T], Generic[T]):
    """Project-owned DTO for Piccolo tables. See the module docstring for what it fixes."""

    extra_fields: ClassVar[dict[str, ExtraField]] = {}

    # AbstractDTO's three per-request methods, with the handler's id looked up once.
    def decode_builtins(self, value: dict[str, Any]) -> Any:
        backend = self._dto_backends[_handler_id(self.asgi_connection)]["data_backend"]
        return backend.populate_data_from_builtins(value, self.asgi_connection)

    def decode_bytes(self, value: bytes) -> Any:
        backend = self._dto_backends[_handler_id(self.asgi_connection)]["data_backend"]
        return backend.populate_data_from_raw(value, self.asgi_connection)

    def data_to_encodable_type(self, data: Any) -> Any:
        backend = self._dto_backends[_handler_id(self.asgi_connection)]["return_backend"]
        return backend.encode_data(data)

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        super().create_for_field_definition(field_definition, handler_id, backend_cls or _Backend)

    @classmethod
    def annotation_for(cls, model_type: type[Table], name: str) -> Any:
        if name in cls.extra_fields:
            return cls.extra_fields[name].annotation
        column = model_type._meta.get_column_by_name(name)
        return column_annotation(column)

    @classmethod
    def generate_field_definitions(cls, model_type: type[Table]) -> Generator[DTOFieldDefinition, None, None]:
        for column in model_type._meta.columns:
            if column._meta.secret:
                continue  # never transferred, in or out
            mark = Mark.READ_ONLY if column._meta.primary_key else None
            yield cls._definition(
                model_type, column._meta.name, column_annotation(column), column_default(column), mark
            )
        for name, extra in cls.extra_fields.items():
            yield cls._definition(
                model_type, name, extra.annotation, extra.default, Mark.READ_ONLY if extra.read_only else None
            )

    @classmethod
    def _definition(
        cls, model_type: type[Table], name: str, annotation: Any, default: Any, mark: Mark | None
    ) -> DTOFieldDefinition:
        return replace(
            DTOFieldDefinition.from_field_definition(
                field_definition=FieldDefinition.from_annotation(annotation, name=name),
                dto_field=DTOField(mark=mark),
                model_name=model_type.__name__,
                default_factory=None,
            ),
            default=default,
            name=name,
        )

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return field_definition.is_subclass_of(Table)

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        backend = cls._dto_backends[handler_id]["data_backend" if field_definition.name == "data" else "return_backend"]
        if backend.wrapper_attribute_name and field_definition.origin in WRAPPER_SUFFIXES:
            # Litestar names Page[Task] after its module path ("Page_app.dto.Task_"); a client
            # generator turns that into a class name, so document a concrete "TaskPage" instead.
            named = _named_wrapper(field_definition.origin, backend.transfer_model_type)
            return schema_creator.for_field_definition(
                FieldDefinition.from_annotation(named, kwarg_definition=field_definition.kwarg_definition)
            )
        return super().create_openapi_schema(field_definition, handler_id, schema_creator)


def write_struct(dto: type[PiccoloDTO[Any]], table: type[Table]) -> type[msgspec.Struct]:
    """The body struct a write DTO decodes into, for bodies that embed it (bulk endpoints).

    The DTO's handlers decode into the same struct, so the OpenAPI document has one component
    for it (``TaskCreate``), whether it is a whole body or a bulk item.
    """
    config = dto.config
    renames = config.rename_fields or {}
    fields: list[tuple[str, Any, Any]] = []
    default: Any
    for definition in dto.generate_field_definitions(table):
        if definition.name in config.exclude or definition.dto_field.mark == Mark.READ_ONLY:
            continue
        annotation = dto.annotation_for(table, definition.name)
        if config.partial:
            annotation, default = Union[annotation, msgspec.UnsetType], msgspec.UNSET  # noqa: UP007
        else:
            default = msgspec.NODEFAULT if definition.default is Empty else definition.default
        fields.append((definition.name, annotation, msgspec.field(default=default, name=renames.get(definition.name))))
    name = dto.__schema_name__ or f"{table.__name__}Body"
    struct = msgspec.defstruct(
        name, fields, kw_only=True, frozen=True, forbid_unknown_fields=config.forbid_unknown_fields, module=__name__
    )
    struct.__schema_name__ = name  # type: ignore[attr-defined]
    _TRANSFER_STRUCTS[(dto, True)] = struct
    return struct


def item_errors(struct: type[msgspec.Struct], items: list[Any], prefix: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Validate each item of a bulk body; return (converted items, errors naming index and field)."""
    converted: list[Any] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        raw = msgspec.json.encode(item)
        found = _body_errors(raw, struct)
        if found:
            errors += [
                {"field": f"{prefix}[{index}].{e['key']}", "index": index, "message": e["message"]} for e in found
            ]
        else:
            converted.append(msgspec.json.decode(raw, type=struct))
    return converted, errors


def struct_changes(value: msgspec.Struct) -> dict[str, Any]:
    """The fields a (partial) body set, by attribute name: UNSET ones are left out."""
    return {name: getattr(value, name) for name in value.__struct_fields__ if getattr(value, name) is not msgspec.UNSET}


# --------------------------------------------------------------------------------------------
# Shapes shared by several resources


@dataclass
class Page(Generic[T]):
    """An offset page: ``{"items", "total", "limit", "offset"}``."""

    items: list[T]
    total: int
    limit: int
    offset: int


class FlexPage(msgspec.Struct, Generic[T]):
    """An offset page ``{"items", "total", "limit", "offset"}`` or, for keyset pagination,
    ``{"items", "next_cursor", "limit"}``; fields left UNSET are omitted from the JSON."""

    items: list[T]
    limit: int
    # null when more than app.services.tasks.EXACT_TOTAL_MAX items match (offset pages).
    total: int | msgspec.UnsetType | None = msgspec.UNSET
    offset: int | msgspec.UnsetType = msgspec.UNSET
    next_cursor: str | msgspec.UnsetType | None = msgspec.UNSET


@dataclass
class Items(Generic[T]):
    """A list answer without paging (bulk endpoints): ``{"items": [...]}``."""

    items: list[T]


# The OpenAPI name of a wrapper around a DTO's struct: Page[Task] is documented as "TaskPage".
WRAPPER_SUFFIXES: dict[Any, str] = {Page: "Page", FlexPage: "Page", Items: "Items"}


@cache
def _named_wrapper(origin: Any, item: type[msgspec.Struct]) -> Any:
    """A concrete, named copy of ``origin[item]`` (documentation only; answers encode the same)."""
    name = f"{item.__name__}{WRAPPER_SUFFIXES[origin]}"
    hints = get_type_hints(origin, include_extras=True)
    if isinstance(origin, type) and issubclass(origin, msgspec.Struct):
        fields = [
            (f.name, _specialise(hints[f.name], item), msgspec.field(default=f.default))
            for f in msgspec.structs.fields(origin)
        ]
        return msgspec.defstruct(name, fields, kw_only=True, module=__name__)
    named = make_dataclass(name, [(f.name, _specialise(hints[f.name], item)) for f in dataclass_fields(origin)])
    named.__module__ = __name__
    return named


def _specialise(hint: Any, item: Any) -> Any:
    return hint[item] if getattr(hint, "__parameters__", ()) else hint


class LabelBrief(msgspec.Struct, frozen=True):
    """A label as embedded in a task."""

    id: int
    name: str
    color: str | None


# Server-set columns no client may write.
SERVER_SET = {"id", "owner", "version", "created_at", "updated_at"}


# --------------------------------------------------------------------------------------------
# Users

# Bounds from the users service; it also normalises the email (NFKC) and refuses invisible characters.
EMAIL = Annotated[str, msgspec.Meta(min_length=3, max_length=users.EMAIL_MAX_LENGTH, pattern=users.EMAIL_PATTERN)]
PASSWORD = Annotated[str, msgspec.Meta(min_length=users.PASSWORD_MIN_LENGTH, max_length=users.PASSWORD_MAX_LENGTH)]


class RegisterBody(msgspec.Struct, forbid_unknown_fields=True):
    email: EMAIL
    password: PASSWORD
    display_name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class RegisterDTO(MsgspecDTO[RegisterBody]):
    """Decodes RegisterBody with the app's DTO backend, so a bad body names every offending field."""

    config = DTOConfig(forbid_unknown_fields=True)
    __schema_name__ = "RegisterBody"

    @classmethod
    def create_for_field_definition(cls, field_definition: Any, handler_id: str, backend_cls: Any = None) -> None:
        super().create_for_field_definition(field_definition, handler_id, backend_cls or _Backend)

    @classmethod
    def annotation_for(cls, model_type: type[RegisterBody], name: str) -> Any:
        return get_type_hints(model_type, include_extras=True)[name]


class UserReadDTO(PiccoloDTO[User]):
    __schema_name__ = "User"
    config = DTOConfig(exclude={"token_generation"})


# --------------------------------------------------------------------------------------------
# Projects


class ProjectReadDTO(PiccoloDTO[Project]):
    __schema_name__ = "Project"
    config = DTOConfig(exclude={"owner"})


class ProjectCreateDTO(PiccoloDTO[Project]):
    __schema_name__ = "ProjectCreate"
    config = DTOConfig(exclude=SERVER_SET, forbid_unknown_fields=True)


class ProjectPatchDTO(PiccoloDTO[Project]):
    __schema_name__ = "ProjectPatch"
    config = DTOConfig(exclude=SERVER_SET, partial=True, forbid_unknown_fields=True)


# --------------------------------------------------------------------------------------------
# Labels


class LabelReadDTO(PiccoloDTO[Label]):
    __schema_name__ = "Label"
    config = DTOConfig(exclude={"owner"})


class LabelCreateDTO(PiccoloDTO[Label]):
    __schema_name__ = "LabelCreate"
    config = DTOConfig(exclude=SERVER_SET, forbid_unknown_fields=True)


class LabelPatchDTO(PiccoloDTO[Label]):
    __schema_name__ = "LabelPatch"
    config = DTOConfig(exclude=SERVER_SET, partial=True, forbid_unknown_fields=True)


# --------------------------------------------------------------------------------------------
# Tasks

LabelIds = Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]], msgspec.Meta(max_length=100)]
TASK_SERVER_SET = SERVER_SET | {"completed_at"}


class TaskReadDTO(PiccoloDTO[Task]):
    __schema_name__ = "Task"
    config = DTOConfig(exclude={"owner"}, rename_fields={"project": "project_id", "parent": "parent_id"})
    extra_fields: ClassVar[dict[str, ExtraField]] = {"labels": ExtraField(list[LabelBrief], read_only=True)}


class TaskCreateDTO(PiccoloDTO[Task]):
    __schema_name__ = "TaskCreate"
    config = DTOConfig(
        exclude=TASK_SERVER_SET,
        rename_fields={"project": "project_id", "parent": "parent_id"},
        forbid_unknown_fields=True,
    )
    extra_fields: ClassVar[dict[str, ExtraField]] = {"label_ids": ExtraField(LabelIds, default=[])}


class TaskPatchDTO(PiccoloDTO[Task]):
    __schema_name__ = "TaskPatch"
    config = DTOConfig(
        exclude=TASK_SERVER_SET,
        rename_fields={"project": "project_id", "parent": "parent_id"},
        partial=True,
        forbid_unknown_fields=True,
    )
    extra_fields: ClassVar[dict[str, ExtraField]] = {"label_ids": ExtraField(LabelIds)}


# --------------------------------------------------------------------------------------------
# Comments


class CommentReadDTO(PiccoloDTO[Comment]):
    __schema_name__ = "Comment"
    config = DTOConfig(exclude={"owner"}, rename_fields={"task": "task_id"})


class CommentCreateDTO(PiccoloDTO[Comment]):
    __schema_name__ = "CommentCreate"
    config = DTOConfig(exclude=SERVER_SET | {"task"}, forbid_unknown_fields=True)


class CommentPatchDTO(PiccoloDTO[Comment]):
    __schema_name__ = "CommentPatch"
    config = DTOConfig(exclude=SERVER_SET | {"task"}, partial=True, forbid_unknown_fields=True)


__all__ = [
    "CommentCreateDTO",
    "CommentPatchDTO",
    "CommentReadDTO",
    "FlexPage",
    "Items",
    "LabelBrief",
    "LabelCreateDTO",
    "LabelPatchDTO",
    "LabelReadDTO",
    "Page",
    "ProjectCreateDTO",
    "ProjectPatchDTO",
    "ProjectReadDTO",
    "TaskCreateDTO",
    "TaskPatchDTO",
    "TaskReadDTO",
    "UTCDateTime",
    "UserReadDTO",
]


TaskCreateBody = write_struct(TaskCreateDTO, Task)
TaskPatchBody = write_struct(TaskPatchDTO, Task)

# Bulk items are decoded as plain objects and then validated one by one, so that every invalid
# item is named with its index (422); OPENAPI_TYPE tells the document what each one must be.
OPENAPI_TYPE = "openapi_type"


class TaskBulkCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Up to 100 task create bodies (each as for POST /api/v1/tasks)."""

    tasks: Annotated[
        list[dict[str, Any]],
        msgspec.Meta(min_length=1, max_length=100, extra={OPENAPI_TYPE: list[TaskCreateBody]}),  # type: ignore[valid-type]
    ]


class TaskBulkPatch(msgspec.Struct, forbid_unknown_fields=True):
    """The same partial change (as for PATCH /api/v1/tasks/{id}) applied to up to 100 tasks."""

    ids: Annotated[
        list[Annotated[int, msgspec.Meta(ge=1, le=2_147_483_647)]], msgspec.Meta(min_length=1, max_length=100)
    ]
    changes: Annotated[dict[str, Any], msgspec.Meta(extra={OPENAPI_TYPE: TaskPatchBody})]
