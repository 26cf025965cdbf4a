"""The DTO layer: a project-owned PiccoloDTO and the per-resource DTOs built on it.

Design: every DTO keeps Litestar's public shape, an ``AbstractDTO`` subclass per resource with a
``DTOConfig`` (``exclude``, ``rename_fields``, ``partial``, ``forbid_unknown_fields``), but builds its
msgspec structs itself, once, from the table's columns and its declared ``extra_fields``, and
implements the three per-request hooks on them; Litestar's own backends live in private modules,
lose the column facts below, and cost more per encoded row (UPSTREAM.md "Litestar DTO").

Litestar's PiccoloDTO (``litestar.contrib.piccolo``, deprecated) and ``litestar-piccolo`` 0.1.0 have
measured gaps (STYLE.md section 7). ``PiccoloDTO`` here fixes each one; every fix is pinned by a
test in ``tests/api/test_dto_contract.py`` so a library upgrade that changes it fails loudly:

1. Omitted columns that have a default get that default (not NULL).
2. Nullability follows the column's ``null`` (not ``required``).
3. Varchar lengths are enforced (``min_length=1`` for required text), also on partial PATCH DTOs,
   and ``choices`` become a closed enum; timestamps must carry a zone.
4. A body that breaks several rules gets every offending field named, not only the first; values
   are decoded strictly ("1" is not an integer).
5. OpenAPI shows enums, lengths, nullability and required fields as they are enforced.
6. ``secret=True`` columns are never part of any DTO.
7. Nothing is imported from the deprecated module, so ``-W error`` stays quiet.

What is not a column (a task's labels, ``label_ids``) is declared per DTO in ``extra_fields``.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, make_dataclass
from dataclasses import fields as dataclass_fields
from functools import cache
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    NamedTuple,
    Protocol,
    TypeVar,
    Union,
    get_type_hints,
)

import msgspec
from litestar import Response
from litestar.dto import AbstractDTO, DTOConfig, DTOData
from litestar.exceptions import ValidationException
from litestar.typing import FieldDefinition
from piccolo.columns import Column, column_types
from piccolo.table import Table

from app.services import users
from app.tables import (
    LABEL_BRIEF,
    Comment,
    Invitation,
    Label,
    Project,
    ProjectMember,
    Task,
    User,
    int_range,
    rules,
)

if TYPE_CHECKING:
    from collections.abc import Generator

    from litestar.dto import DTOFieldDefinition
    from litestar.openapi.spec import Reference, Schema

T = TypeVar("T")

# Every key is a Serial (int4) id.
MAX_ID = 2**31 - 1
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]


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
        if pattern := rules(column).pattern:
            meta["pattern"] = pattern
    elif isinstance(column, column_types.Timestamptz):
        base = dt.datetime
        meta["tz"] = True
    elif isinstance(column, column_types.Array):
        base = list[column_annotation(column.base_column)]  # type: ignore[misc]  # items typed as their column
    elif isinstance(column, (column_types.JSON, column_types.JSONB)):
        base = Any
    elif isinstance(column, column_types.ForeignKey):
        base = int
        meta["ge"], meta["le"] = 1, MAX_ID
    elif isinstance(column, column_types.Integer):
        # The column's own range: a bigger number is a 400 naming the field, not a DataError.
        base = int
        meta["ge"], meta["le"] = int_range(column)
    else:
        base = column.value_type
    annotation = Annotated[base, msgspec.Meta(**meta)] if meta else base
    return annotation | None if column._meta.null else annotation


def column_default(column: Column) -> Any:
    """The value an omitted column gets on create, or NODEFAULT when the field is required."""
    if column._meta.required:
        return msgspec.NODEFAULT
    if column._meta.null and column.default is None:
        return None
    default = column.get_default_value()
    if callable(default) or isinstance(default, (dt.datetime, dt.date)):
        return msgspec.NODEFAULT  # server-set (timestamps); never a client field on create
    return default.value if hasattr(default, "value") else default


@dataclass(frozen=True)
class ExtraField:
    """A DTO field that is not a column (e.g. a task's ``labels`` / ``label_ids``)."""

    annotation: Any
    default: Any = msgspec.NODEFAULT
    read_only: bool = False
    # The value arrives as JSON text built by PostgreSQL (``annotation`` is its shape) and is
    # sent as it is: decoding and encoding it again per row would cost more than the row.
    json_text: bool = False


class Field(NamedTuple):
    """One field a DTO may carry: a column or an extra field, under its attribute name."""

    name: str
    annotation: Any
    default: Any
    read_only: bool


def table_fields(table: type[Table], extra_fields: dict[str, ExtraField]) -> list[Field]:
    """The columns (secret ones never: not in, not out) then the extra fields, in declaration order."""
    fields = [
        Field(c._meta.name, column_annotation(c), column_default(c), bool(c._meta.primary_key))
        for c in table._meta.columns
        if not c._meta.secret
    ]
    return fields + [Field(name, e.annotation, e.default, e.read_only) for name, e in extra_fields.items()]


def build_struct(name: str, fields: list[Field], config: DTOConfig, *, body: bool) -> type[msgspec.Struct]:
    """The struct a request body decodes into (``body``) or an answer encodes from, per ``config``."""
    renames = config.rename_fields or {}
    spec: list[tuple[str, Any, Any]] = []
    for field in fields:
        if field.name in config.exclude or (body and field.read_only):
            continue
        annotation: Any = field.annotation
        default: Any = msgspec.NODEFAULT  # an answer always has every field
        if body and config.partial:
            annotation, default = Union[annotation, msgspec.UnsetType], msgspec.UNSET  # noqa: UP007
        elif body:
            default = field.default
        spec.append((field.name, annotation, msgspec.field(default=default, name=renames.get(field.name))))
    struct = msgspec.defstruct(
        name,
        spec,
        # Answers are built positionally (the cheapest construction); bodies mix defaults and required.
        kw_only=body,
        frozen=True,
        # An answer holds JSON values only and lives until it is encoded: no cycles to track.
        gc=body,
        forbid_unknown_fields=config.forbid_unknown_fields,
        module=__name__,
    )
    struct.__schema_name__ = name  # type: ignore[attr-defined]
    return struct


# --------------------------------------------------------------------------------------------
# Decoding: strict, and a bad body names every offending field

INVALID_BODY = "The request body is not valid"

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


def decode_body(raw: bytes, struct: type[msgspec.Struct], decoder: msgspec.json.Decoder[Any]) -> Any:
    """A body decoded strictly into ``struct``; a 400 naming every offending field otherwise."""
    if any(suspect in raw for suspect in SUSPECT_BYTES) and (errors := body_errors(raw, struct)):
        raise ValidationException(detail=INVALID_BODY, extra=errors)
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError as exc:
        errors = body_errors(raw, struct) or [{"key": "body", "message": str(exc)}]
        raise ValidationException(detail=INVALID_BODY, extra=errors) from exc


def body_errors(raw: bytes, struct: type[msgspec.Struct]) -> list[dict[str, str]]:
    """Validate a body field by field, so one response names every offending field."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return [{"key": "body", "message": f"Malformed JSON: {exc}"}]
    return _field_errors(body, struct)


def _field_errors(body: Any, struct: type[msgspec.Struct]) -> list[dict[str, str]]:
    if not isinstance(body, dict):
        return [{"key": "body", "message": "Expected a JSON object"}]
    errors: list[dict[str, str]] = []
    known = {f.encode_name: f for f in msgspec.structs.fields(struct)}
    if struct.__struct_config__.forbid_unknown_fields:
        errors += [{"key": key, "message": "Unknown or read-only field"} for key in body if key not in known]
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


def item_errors(struct: type[msgspec.Struct], items: list[Any], prefix: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Validate each item of a bulk body; return (converted items, errors naming index and field)."""
    converted: list[Any] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if found := _field_errors(item, struct):
            errors += [
                {"field": f"{prefix}[{index}].{e['key']}", "index": index, "message": e["message"]} for e in found
            ]
        else:
            converted.append(msgspec.convert(item, struct, strict=True))
    return converted, errors


def struct_changes(value: msgspec.Struct) -> dict[str, Any]:
    """The fields a (partial) body set, by attribute name: UNSET ones are left out."""
    return {name: getattr(value, name) for name in value.__struct_fields__ if getattr(value, name) is not msgspec.UNSET}


class BodyData(DTOData[T]):
    """A decoded body as Litestar's ``DTOData``: ``as_builtins()`` is what the services take."""

    __slots__ = ()

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(None, values)  # type: ignore[arg-type]  # no Litestar backend: see create_instance

    def create_instance(self, **kwargs: Any) -> T:
        raise NotImplementedError("services build rows themselves from as_builtins()")


# --------------------------------------------------------------------------------------------
# The DTO classes


class SchemaCreator(Protocol):
    """What ``create_openapi_schema`` uses of the schema creator Litestar hands it."""

    def for_field_definition(self, field_definition: FieldDefinition) -> Schema | Reference: ...


class StrictDTO(AbstractDTO[T], Generic[T]):
    """Decodes request bodies strictly into ``body_struct()``, naming every offending field.

    Its structs are built once per DTO class, whatever the handler, so the OpenAPI document has one
    component per shape under the DTO's own name (``TaskCreate``), not one per handler.
    """

    body: ClassVar[type[msgspec.Struct]]
    decoder: ClassVar[msgspec.json.Decoder[Any]]

    @classmethod
    def make_body(cls) -> type[msgspec.Struct]:
        return cls.model_type  # type: ignore[return-value]  # a msgspec Struct body

    @classmethod
    def body_struct(cls) -> type[msgspec.Struct]:
        if "body" not in cls.__dict__:
            cls.body = cls.make_body()
            cls.decoder = msgspec.json.Decoder(cls.body)
        return cls.body

    @classmethod
    def answer_struct(cls) -> type[msgspec.Struct]:
        raise TypeError(f"{cls.__name__} only decodes request bodies")

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        # Called once per handler at start-up: the structs are per DTO class, so build them once.
        cls.body_struct() if field_definition.name == "data" else cls.answer_struct()

    def decode_bytes(self, value: bytes) -> Any:
        return self.received(decode_body(value, self.body, self.decoder))

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        return self.decode_bytes(msgspec.json.encode(value))

    @classmethod
    def received(cls, body: Any) -> Any:
        """What the handler's ``data`` gets for a decoded body."""
        return body

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        documented = cls.body_struct() if field_definition.name == "data" else cls.documented(field_definition)
        return schema_creator.for_field_definition(
            FieldDefinition.from_annotation(documented, kwarg_definition=field_definition.kwarg_definition)
        )

    @classmethod
    def documented(cls, field_definition: FieldDefinition) -> Any:
        """The type an answer is documented as: ``Response[Task]`` is a ``Task``, ``Page[Task]`` a ``TaskPage``."""
        if field_definition.is_subclass_of(Response):
            return cls.documented(field_definition.inner_types[0])
        answer = cls.answer_struct()
        if field_definition.origin in WRAPPER_SUFFIXES:
            return _named_wrapper(field_definition.origin, answer)
        if field_definition.is_non_string_collection:
            return list[answer]  # type: ignore[valid-type]
        return answer

    # AbstractDTO's hooks for Litestar's own backends, which these DTOs do not use.
    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition, None, None]:
        raise NotImplementedError("the structs are built by body_struct() / answer_struct()")

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False


def answer_values(names: tuple[str, ...], extra_fields: dict[str, ExtraField]) -> Callable[[Any], Any]:
    """An answer's values in field order from a row (a mapping); JSON text fields as ``msgspec.Raw``.

    Not a plain function: stored on the DTO class, that would bind as a method."""
    get = operator.itemgetter(*names)
    raw = tuple(i for i, name in enumerate(names) if name in extra_fields and extra_fields[name].json_text)
    return functools.partial(_with_raw_json, get, raw) if raw else get


def _with_raw_json(get: operator.itemgetter[Any], raw: tuple[int, ...], row: Any) -> list[Any]:
    found = list(get(row))
    for i in raw:
        found[i] = msgspec.Raw(found[i])
    return found


class PiccoloDTO(StrictDTO[T], Generic[T]):
    """Project-owned DTO for Piccolo tables. See the module docstring for what it fixes."""

    config: ClassVar[DTOConfig] = DTOConfig()
    extra_fields: ClassVar[dict[str, ExtraField]] = {}
    answer: ClassVar[type[msgspec.Struct]]
    # An answer's values in field order, from a row's __dict__ (a Piccolo column is a descriptor)
    # or a statement's row: answer_values().
    answer_values: ClassVar[Any]

    @classmethod
    def fields(cls) -> list[Field]:
        return table_fields(cls.model_type, cls.extra_fields)  # type: ignore[arg-type]

    @classmethod
    def make_body(cls) -> type[msgspec.Struct]:
        return build_struct(cls.__schema_name__ or f"{cls.__name__}Body", cls.fields(), cls.config, body=True)

    @classmethod
    def answer_struct(cls) -> type[msgspec.Struct]:
        if "answer" not in cls.__dict__:
            cls.answer = build_struct(cls.__schema_name__ or cls.__name__, cls.fields(), cls.config, body=False)
            cls.answer_values = answer_values(cls.answer.__struct_fields__, cls.extra_fields)
        return cls.answer

    @classmethod
    def received(cls, body: Any) -> BodyData[T]:
        return BodyData(struct_changes(body))

    def data_to_encodable_type(self, data: Any) -> Any:
        """A row, a list of rows, or a Response / page / items wrapper holding them, as answer structs.

        A row is a table instance, or a statement's row keyed by column (an asyncpg Record)."""
        answer, values = self.answer, self.answer_values
        if isinstance(data, Table):
            return answer(*values(data.__dict__))
        if isinstance(data, Response):
            data.content = self.data_to_encodable_type(data.content)
            return data
        rows = data if isinstance(data, list) else data.items  # Page, FlexPage, Items
        encodable = [answer(*values(row.__dict__ if isinstance(row, Table) else row)) for row in rows]
        if isinstance(data, list):
            return encodable
        data.items = encodable
        return data


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
    """A concrete, named copy of ``origin[item]`` (documentation only; answers encode the same).

    Litestar would name ``Page[Task]`` after its module path (``Page_app.dto.Task_``), which a
    client generator turns into a class name.
    """
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


# A label as embedded in a task, from the one declaration of that shape.
LabelBrief: Any = msgspec.defstruct(
    "LabelBrief", [(c._meta.name, column_annotation(c)) for c in LABEL_BRIEF], frozen=True, module=__name__
)

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


class RegisterDTO(StrictDTO[RegisterBody]):
    """Decodes RegisterBody strictly, so a bad body names every offending field."""

    __schema_name__ = "RegisterBody"


class UserReadDTO(PiccoloDTO[User]):
    __schema_name__ = "User"
    config = DTOConfig(exclude={"token_generation"})


# --------------------------------------------------------------------------------------------
# Projects


# A member's role, as stored and checked (ProjectRole).
Role: Any = column_annotation(ProjectMember.role)


class ProjectReadDTO(PiccoloDTO[Project]):
    __schema_name__ = "Project"
    config = DTOConfig(exclude={"owner"})
    # The caller's role in the project (app/services/projects.py reads it with the project).
    extra_fields: ClassVar[dict[str, ExtraField]] = {"role": ExtraField(Role, read_only=True)}


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

LabelIds = Annotated[list[Id], msgspec.Meta(max_length=100)]
UserIds = Annotated[list[Id], msgspec.Meta(max_length=100)]
TASK_SERVER_SET = SERVER_SET | {"completed_at", "created_by"}
TASK_RENAMES = {"project": "project_id", "parent": "parent_id"}


class TaskReadDTO(PiccoloDTO[Task]):
    __schema_name__ = "Task"
    config = DTOConfig(exclude={"owner"}, rename_fields=TASK_RENAMES)
    extra_fields: ClassVar[dict[str, ExtraField]] = {
        "labels": ExtraField(list[LabelBrief], read_only=True, json_text=True),
        "assignee_ids": ExtraField(list[int], read_only=True),
    }


class TaskCreateDTO(PiccoloDTO[Task]):
    __schema_name__ = "TaskCreate"
    config = DTOConfig(exclude=TASK_SERVER_SET, rename_fields=TASK_RENAMES, forbid_unknown_fields=True)
    extra_fields: ClassVar[dict[str, ExtraField]] = {
        "label_ids": ExtraField(LabelIds, default=[]),
        "assignee_ids": ExtraField(UserIds, default=[]),
    }


class TaskPatchDTO(PiccoloDTO[Task]):
    __schema_name__ = "TaskPatch"
    config = DTOConfig(exclude=TASK_SERVER_SET, rename_fields=TASK_RENAMES, partial=True, forbid_unknown_fields=True)
    extra_fields: ClassVar[dict[str, ExtraField]] = {
        "label_ids": ExtraField(LabelIds),
        "assignee_ids": ExtraField(UserIds),
    }


# The write bodies, also as bulk items (one OpenAPI component each, whole body or item).
TaskCreateBody = TaskCreateDTO.body_struct()
TaskPatchBody = TaskPatchDTO.body_struct()

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

    ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=100)]
    changes: Annotated[dict[str, Any], msgspec.Meta(extra={OPENAPI_TYPE: TaskPatchBody})]


# --------------------------------------------------------------------------------------------
# Comments


class Author(msgspec.Struct, frozen=True):
    """Who wrote a comment."""

    id: int
    display_name: str


class CommentReadDTO(PiccoloDTO[Comment]):
    __schema_name__ = "Comment"
    config = DTOConfig(exclude={"owner"}, rename_fields={"task": "task_id"})
    extra_fields: ClassVar[dict[str, ExtraField]] = {"author": ExtraField(Author, read_only=True)}


class CommentCreateDTO(PiccoloDTO[Comment]):
    __schema_name__ = "CommentCreate"
    config = DTOConfig(exclude=SERVER_SET | {"task"}, forbid_unknown_fields=True)


class CommentPatchDTO(PiccoloDTO[Comment]):
    __schema_name__ = "CommentPatch"
    config = DTOConfig(exclude=SERVER_SET | {"task"}, partial=True, forbid_unknown_fields=True)


# --------------------------------------------------------------------------------------------
# Members and invitations (SPEC "Collaboration")


class MemberUser(msgspec.Struct, frozen=True):
    """A member as other members see them."""

    id: int
    email: str
    display_name: str


class Membership(msgspec.Struct, frozen=True):
    """One member of a project: ``{user, role, joined_at}``."""

    user: MemberUser
    role: Role
    joined_at: Annotated[dt.datetime, msgspec.Meta(tz=True)]


class MemberPatch(msgspec.Struct, forbid_unknown_fields=True):
    """A member's new role (below owner: ownership moves by transfer)."""

    role: Role


class MemberPatchDTO(StrictDTO[MemberPatch]):
    __schema_name__ = "MemberPatch"


class ProjectTransfer(msgspec.Struct, forbid_unknown_fields=True):
    """The member who becomes the project's owner."""

    user_id: Id


class ProjectTransferDTO(StrictDTO[ProjectTransfer]):
    __schema_name__ = "ProjectTransfer"


class InvitationCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Who is invited (an email, with or without an account) and with which role (below owner)."""

    email: EMAIL
    role: Role


class InvitationCreateDTO(StrictDTO[InvitationCreate]):
    __schema_name__ = "InvitationCreate"


class InvitationReadDTO(PiccoloDTO[Invitation]):
    __schema_name__ = "Invitation"
    config = DTOConfig(rename_fields={"project": "project_id", "inviter": "inviter_id"})
