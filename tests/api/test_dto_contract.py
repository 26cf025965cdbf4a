"""Pins every behaviour app/dto.py fixes over Litestar's PiccoloDTO (see its module docstring).

One test per numbered fix, so a Litestar or Piccolo upgrade that changes one fails loudly, plus
"only Litestar's public API" and "read DTOs never carry owner or password material".
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app import dto
from app.tables import ALL_TABLES, HEX_COLOR, IdempotencyKey, Project, Task, User
from tests.conftest import count_rows

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"password", "password_hash", "token_generation"}


def _fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


async def _project(client, user, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Home")
    response = await client.post("/api/v1/projects", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _task(client, user, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "Task")
    response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


# --------------------------------------------------------------------------------------------
# 1. Omitted columns that have a default get that default (not NULL).


async def test_1_omitted_columns_get_their_defaults(client, alice):
    project = await _project(client, alice, name="Only a name")
    assert (project["description"], project["color"], project["archived"], project["version"]) == ("", None, False, 1)
    label = (await client.post("/api/v1/labels", json={"name": "l"}, headers=alice.headers)).json()
    assert label["color"] is None
    task = await _task(client, alice, title="Only a title")
    assert (task["description"], task["status"], task["priority"], task["position"]) == ("", "todo", 0, 0)
    assert (task["due_at"], task["project_id"], task["parent_id"], task["labels"]) == (None, None, None, [])
    # The database holds the defaults too, not NULLs the response papered over.
    row = await Task.select(Task.description, Task.status, Task.priority, Task.position).first()
    assert row == {"description": "", "status": "todo", "priority": 0, "position": 0}
    row = await Project.select(Project.description, Project.archived).first()
    assert row == {"description": "", "archived": False}
    # The write DTOs state those defaults themselves.
    defaults = {
        f.name: f.default_factory() if f.default is msgspec.NODEFAULT else f.default
        for f in msgspec.structs.fields(dto.TaskCreateBody)
        if not f.required
    }
    assert "title" not in defaults
    assert defaults["description"] == ""
    assert defaults["status"] == "todo"
    assert defaults["priority"] == 0
    assert defaults["position"] == 0
    assert defaults["label_ids"] == []
    # Bulk items are the very structs the single-object handlers decode into.
    assert dto.TaskCreateBody is dto.TaskCreateDTO.body_struct()
    assert dto.TaskPatchBody is dto.TaskPatchDTO.body_struct()


# --------------------------------------------------------------------------------------------
# 2. Nullability follows the column's ``null`` (not ``required``).


async def test_2_nullability_follows_null_not_required(client, alice):
    # Not required but null=False: an explicit null is a 400 on create and on PATCH.
    for body in ({"name": "p", "description": None}, {"name": "p", "archived": None}):
        response = await client.post("/api/v1/projects", json=body, headers=alice.headers)
        assert response.status_code == 400, body
        assert _fields(response) == {next(k for k in body if k != "name")}
    response = await client.post("/api/v1/tasks", json={"title": "t", "status": None}, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == {"status"}
    assert await count_rows("project") == await count_rows("task") == 0

    # Nullable columns take an explicit null on create and PATCH.
    project = await _project(client, alice, color=None)
    assert project["color"] is None
    task = await _task(client, alice, due_at=None, project_id=None, parent_id=None)
    assert task["due_at"] is None
    colored = await client.patch(f"/api/v1/projects/{project['id']}", json={"color": "#123abc"}, headers=alice.headers)
    assert colored.json()["color"] == "#123abc"
    cleared = await client.patch(f"/api/v1/projects/{project['id']}", json={"color": None}, headers=alice.headers)
    assert cleared.status_code == 200
    assert cleared.json()["color"] is None

    # Required and null=False: omitted is "Field required", null is a 400 too.
    for body in ({}, {"name": None}):
        response = await client.post("/api/v1/projects", json=body, headers=alice.headers)
        assert response.status_code == 400
        assert _fields(response) == {"name"}
    response = await client.patch(f"/api/v1/projects/{project['id']}", json={"name": None}, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == {"name"}

    # The annotations themselves: None is part of the type exactly when the column is nullable.
    for table in ALL_TABLES:
        for column in table._meta.columns:
            if column._meta.secret:
                continue
            annotation = dto.column_annotation(column)
            if annotation is Any:
                continue  # JSON columns: any JSON value (see the last test)
            accepts_none = _accepts(annotation, None)
            assert accepts_none == column._meta.null, (table.__name__, column._meta.name)


def _accepts(annotation: Any, value: Any) -> bool:
    try:
        msgspec.convert(value, annotation, strict=True)
    except msgspec.ValidationError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# 3a. Varchar lengths enforced, min_length=1 for required text, on create and partial PATCH.


async def test_3a_varchar_lengths_enforced_on_create_and_partial_patch(client, alice):
    project = await _project(client, alice)
    task = await _task(client, alice)
    comment = await client.post(f"/api/v1/tasks/{task['id']}/comments", json={"body": "hi"}, headers=alice.headers)
    assert comment.status_code == 201
    label = await client.post("/api/v1/labels", json={"name": "l"}, headers=alice.headers)
    assert label.status_code == 201
    cases = [
        # (create URL, PATCH URL, field, limit, extra create fields)
        ("/api/v1/projects", f"/api/v1/projects/{project['id']}", "name", 200, {}),
        ("/api/v1/projects", f"/api/v1/projects/{project['id']}", "description", 10_000, {"name": "p"}),
        ("/api/v1/labels", f"/api/v1/labels/{label.json()['id']}", "name", 100, {}),
        ("/api/v1/tasks", f"/api/v1/tasks/{task['id']}", "title", 500, {}),
        ("/api/v1/tasks", f"/api/v1/tasks/{task['id']}", "description", 20_000, {"title": "t"}),
        (f"/api/v1/tasks/{task['id']}/comments", f"/api/v1/comments/{comment.json()['id']}", "body", 10_000, {}),
    ]
    before = {t: await count_rows(t) for t in ("project", "label", "task", "comment")}
    for create_url, patch_url, field, limit, extra in cases:
        original = (await client.get(patch_url, headers=alice.headers)).json()
        too_long = "x" * (limit + 1)
        response = await client.post(create_url, json={**extra, field: too_long}, headers=alice.headers)
        assert response.status_code == 400, (create_url, field)
        assert _fields(response) == {field}
        # PATCH is partial, but the field it does carry is checked in full.
        response = await client.patch(patch_url, json={field: too_long}, headers=alice.headers)
        assert response.status_code == 400, (patch_url, field)
        assert _fields(response) == {field}
        assert (await client.get(patch_url, headers=alice.headers)).json() == original
        # Exactly at the limit is fine.
        response = await client.patch(patch_url, json={field: "y" * limit}, headers=alice.headers)
        assert response.status_code == 200, (patch_url, field)
        assert response.json()[field] == "y" * limit
    for create_url, patch_url, field in [(c, p, f) for c, p, f, _, extra in cases if not extra]:
        # Required text is at least one character, on create and on PATCH.
        response = await client.post(create_url, json={field: ""}, headers=alice.headers)
        assert response.status_code == 400, (create_url, field)
        assert _fields(response) == {field}
        response = await client.patch(patch_url, json={field: ""}, headers=alice.headers)
        assert response.status_code == 400, (patch_url, field)
        assert _fields(response) == {field}
    assert {t: await count_rows(t) for t in before} == before


async def test_3a_patterns_enforced_on_create_and_patch(client, alice):
    project = await _project(client, alice, color="#A1b2C3")
    for color in ("red", "#12345", "#1234567", "123456", "#ggggggg"):
        response = await client.post("/api/v1/projects", json={"name": "p", "color": color}, headers=alice.headers)
        assert response.status_code == 400, color
        assert _fields(response) == {"color"}
        response = await client.patch(f"/api/v1/projects/{project['id']}", json={"color": color}, headers=alice.headers)
        assert response.status_code == 400, color
    assert await count_rows("project") == 1
    unchanged = await client.get(f"/api/v1/projects/{project['id']}", headers=alice.headers)
    assert unchanged.json()["color"] == "#A1b2C3"


# --------------------------------------------------------------------------------------------
# 3b. ``choices`` become a closed enum.


async def test_3b_choices_are_a_closed_enum(client, alice):
    task = await _task(client, alice)
    url = f"/api/v1/tasks/{task['id']}"
    for field, value in (("status", "archived"), ("status", "Todo"), ("status", 1), ("priority", 5), ("priority", -1)):
        response = await client.post("/api/v1/tasks", json={"title": "t", field: value}, headers=alice.headers)
        assert response.status_code == 400, (field, value)
        assert _fields(response) == {field}
        response = await client.patch(url, json={field: value}, headers=alice.headers)
        assert response.status_code == 400, (field, value)
        assert _fields(response) == {field}
        response = await client.post(
            "/api/v1/tasks/bulk", json={"tasks": [{"title": "t", field: value}]}, headers=alice.headers
        )
        assert response.status_code == 422, (field, value)
        assert _fields(response) == {f"tasks[0].{field}"}
    assert await count_rows("task") == 1
    assert (await client.get(url, headers=alice.headers)).json() == task
    # Every member is accepted.
    for status in ("todo", "in_progress", "done"):
        assert (await client.patch(url, json={"status": status}, headers=alice.headers)).status_code == 200
    for priority in range(5):
        assert (await client.patch(url, json={"priority": priority}, headers=alice.headers)).status_code == 200
    annotation = dto.column_annotation(Task.status)
    assert not _accepts(annotation, "blocked")
    assert all(_accepts(annotation, member) for member in ("todo", "in_progress", "done"))


# --------------------------------------------------------------------------------------------
# 3c. Timestamps must carry a zone.


async def test_3c_timestamps_must_carry_a_zone(client, alice):
    task = await _task(client, alice, due_at="2030-01-01T10:00:00+01:00")
    url = f"/api/v1/tasks/{task['id']}"
    for value in ("2030-01-01T10:00:00", "2030-01-01", "2030-01-01 10:00", 1_900_000_000):
        response = await client.post("/api/v1/tasks", json={"title": "t", "due_at": value}, headers=alice.headers)
        assert response.status_code == 400, value
        assert _fields(response) == {"due_at"}
        response = await client.patch(url, json={"due_at": value}, headers=alice.headers)
        assert response.status_code == 400, value
        assert _fields(response) == {"due_at"}
    assert await count_rows("task") == 1
    assert (await client.get(url, headers=alice.headers)).json()["due_at"] == "2030-01-01T09:00:00Z"


# --------------------------------------------------------------------------------------------
# 4. A body that breaks several rules gets every offending field named.


async def test_4_every_offending_field_is_named(client, alice):
    body = {"name": "", "description": "d" * 10_001, "color": "blue", "archived": "yes", "owner": 2, "extra": 1}
    response = await client.post("/api/v1/projects", json=body, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == set(body)
    assert all(e["message"] for e in response.json()["errors"])
    assert await count_rows("project") == 0

    task = await _task(client, alice)
    body = {"title": "t" * 501, "status": "nope", "priority": "high", "due_at": "soon", "id": 3, "labels": []}
    response = await client.patch(f"/api/v1/tasks/{task['id']}", json=body, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == set(body)
    detail = response.json()["detail"]
    assert all(name in detail for name in body)

    # A missing required field is named alongside the invalid ones.
    response = await client.post("/api/v1/tasks", json={"priority": 9}, headers=alice.headers)
    assert _fields(response) == {"title", "priority"}

    # Strict: a number in a string, or a float for an integer, is not an integer.
    body = {"priority": "1", "position": 1.0, "project_id": "1"}
    response = await client.patch(f"/api/v1/tasks/{task['id']}", json=body, headers=alice.headers)
    assert response.status_code == 400
    assert _fields(response) == set(body)
    assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).json() == task


# --------------------------------------------------------------------------------------------
# 5. OpenAPI shows enums, lengths, nullability and required fields as they are enforced.


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _body_schema(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return _resolve(doc, doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"])


def _response_schema(doc: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    return _resolve(doc, doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"])


def _types(prop: dict[str, Any]) -> set[str]:
    variants = prop.get("oneOf") or prop.get("anyOf") or [prop]
    found: set[str] = set()
    for variant in variants:
        kind = variant.get("type")
        found |= set(kind) if isinstance(kind, list) else {kind}
    return found


def _first(prop: dict[str, Any], key: str) -> Any:
    """A keyword on the property or on its single non-null variant."""
    if key in prop:
        return prop[key]
    for variant in prop.get("oneOf") or prop.get("anyOf") or []:
        if key in variant:
            return variant[key]
    return None


@pytest.fixture
async def openapi(client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_5_openapi_matches_what_is_enforced(openapi):
    create = _body_schema(openapi, "/api/v1/tasks", "post")
    patch = _body_schema(openapi, "/api/v1/tasks/{task_id}", "patch")
    read = _response_schema(openapi, "/api/v1/tasks/{task_id}", "get", "200")

    # Bodies are documented under the media type actually sent (not under "").
    for path, method, status in (
        ("/api/v1/tasks", "post", "201"),
        ("/api/v1/tasks/{task_id}", "patch", "200"),
        ("/api/v1/projects/{project_id}", "get", "200"),
        ("/api/v1/comments/{comment_id}", "get", "200"),
    ):
        assert list(openapi["paths"][path][method]["responses"][status]["content"]) == ["application/json"]
    created = _response_schema(openapi, "/api/v1/tasks", "post", "201")
    assert {k: v for k, v in created.items() if k != "title"} == {k: v for k, v in read.items() if k != "title"}

    for schema in (create, patch, read):
        props = schema["properties"]
        assert _first(props["status"], "enum") == ["todo", "in_progress", "done"]
        assert _first(props["priority"], "enum") == [0, 1, 2, 3, 4]
        assert _first(props["title"], "maxLength") == 500
        assert _first(props["title"], "minLength") == 1
        assert _first(props["description"], "maxLength") == 20_000
        # Nullable exactly where the column is.
        assert "null" in _types(props["due_at"])
        assert "null" in _types(props["project_id"])
        assert "null" in _types(props["parent_id"])
        for name in ("title", "description", "status", "priority", "position"):
            assert "null" not in _types(props[name]), name

    # Required: create needs the title only, PATCH nothing, a read always has every field.
    assert set(create.get("required", [])) == {"title"}
    assert patch.get("required", []) == []
    assert set(read["required"]) == set(read["properties"])
    assert create["properties"]["status"].get("default") == "todo"
    assert create["properties"]["description"].get("default") == ""

    # Write bodies offer exactly what the DTO decodes: SPEC's writable fields, never a server-set one.
    writable = {"project_id", "parent_id", "title", "description", "status", "priority", "due_at", "position"}
    for body, dto_class in ((create, dto.TaskCreateDTO), (patch, dto.TaskPatchDTO)):
        assert set(body["properties"]) == {f.encode_name for f in msgspec.structs.fields(dto_class.body_struct())}
        assert writable | {"label_ids"} <= set(body["properties"])
        assert not set(body["properties"]) & (dto.TASK_SERVER_SET | {"owner", "labels"})
    assert "labels" in read["properties"]
    assert "completed_at" in read["properties"]

    project = _body_schema(openapi, "/api/v1/projects", "post")["properties"]
    assert (_first(project["name"], "maxLength"), _first(project["name"], "minLength")) == (200, 1)
    assert _first(project["color"], "pattern") == HEX_COLOR
    assert "null" in _types(project["color"])
    assert project["archived"].get("default") is False
    label = _body_schema(openapi, "/api/v1/labels", "post")["properties"]
    assert (_first(label["name"], "maxLength"), _first(label["name"], "minLength")) == (100, 1)
    comment = _body_schema(openapi, "/api/v1/tasks/{task_id}/comments", "post")
    assert _first(comment["properties"]["body"], "maxLength") == 10_000
    assert comment["required"] == ["body"]
    project_patch = _body_schema(openapi, "/api/v1/projects/{project_id}", "patch")
    assert _first(project_patch["properties"]["name"], "maxLength") == 200
    assert project_patch.get("required", []) == []


# --------------------------------------------------------------------------------------------
# 6. ``secret=True`` columns are never part of any DTO.


def _all_dtos() -> list[type[dto.PiccoloDTO[Any]]]:
    found = []
    for value in vars(dto).values():
        if isinstance(value, type) and issubclass(value, dto.PiccoloDTO) and value is not dto.PiccoloDTO:
            found.append(value)
    assert len(found) >= 10
    return found


def _model(dto_class: type[dto.PiccoloDTO[Any]]) -> Any:
    return dto_class.model_type


def _struct(dto_class: type[dto.PiccoloDTO[Any]]) -> type[msgspec.Struct]:
    """The struct a DTO serves: an answer for a read DTO, a request body for the others."""
    return dto_class.answer_struct() if "Read" in dto_class.__name__ else dto_class.body_struct()


def _names(struct: type[msgspec.Struct]) -> set[str]:
    """Attribute and wire names of a struct's fields."""
    return {name for f in msgspec.structs.fields(struct) for name in (f.name, f.encode_name)}


async def test_6_secret_columns_are_never_in_a_dto(client, alice, openapi):
    assert User.password_hash._meta.secret
    for dto_class in _all_dtos():
        names = {field.name for field in dto_class.fields()} | _names(_struct(dto_class))
        secret = {c._meta.name for c in _model(dto_class)._meta.columns if c._meta.secret}
        assert not names & secret, dto_class.__name__
    me = await client.get("/api/v1/users/me", headers=alice.headers)
    assert me.status_code == 200
    assert set(me.json()) == {"id", "email", "display_name", "created_at"}
    assert alice.password not in me.text
    assert "password_hash" not in str(openapi)
    assert "argon2" not in me.text


# --------------------------------------------------------------------------------------------
# 7. Nothing is imported from the deprecated module, so ``-W error`` stays quiet.


def test_7_importing_app_dto_is_silent_under_w_error():
    code = (
        "import sys, app.dto, app.asgi; "
        "bad = [m for m in sys.modules if m.startswith(('litestar.contrib.piccolo', 'litestar_piccolo'))]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Warning" not in result.stderr


# --------------------------------------------------------------------------------------------
# 8. Only Litestar's public API: no ``litestar._*`` / ``litestar.dto._*`` module, no private attribute.


def test_8_app_dto_uses_only_public_litestar_api():
    tree = ast.parse((ROOT / "app" / "dto.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    litestar = {m for m in modules if m.split(".")[0] == "litestar"}
    assert "litestar.dto" in litestar
    assert not {m for m in litestar if any(part.startswith("_") for part in m.split("."))}
    private = {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_") and n.attr[1] != "_"
    }
    assert private == {"_meta"}  # Piccolo's table and column metadata, its documented API


# --------------------------------------------------------------------------------------------
# Read DTOs never carry ``owner`` or password material.


def _properties(doc: dict[str, Any], schema: dict[str, Any], seen: set[str] | None = None) -> set[str]:
    """Every property name reachable from a schema."""
    seen = seen if seen is not None else set()
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return set()
        seen.add(name)
        return _properties(doc, doc["components"]["schemas"][name], seen)
    names = set(schema.get("properties", {}))
    children = [*schema.get("properties", {}).values(), *schema.get("oneOf", []), *schema.get("anyOf", [])]
    if isinstance(schema.get("items"), dict):
        children.append(schema["items"])
    for child in children:
        names |= _properties(doc, child, seen)
    return names


async def test_read_dtos_never_carry_owner_or_password_material(client, alice, openapi):
    for dto_class in _all_dtos():
        if "Read" in dto_class.__name__:
            assert not _names(_struct(dto_class)) & ({"owner"} | SECRETS), dto_class.__name__

    response_properties: set[str] = set()
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation.get("responses", {}).items():
                for content in answer.get("content", {}).values():
                    response_properties |= _properties(openapi, content.get("schema", {}))
    assert "title" in response_properties  # the walk does reach the task schemas
    assert not response_properties & ({"owner"} | SECRETS)

    # And the real answers agree.
    project = await _project(client, alice)
    task = await _task(client, alice, project_id=project["id"])
    comment = await client.post(f"/api/v1/tasks/{task['id']}/comments", json={"body": "b"}, headers=alice.headers)
    label = await client.post("/api/v1/labels", json={"name": "l"}, headers=alice.headers)
    answers = [project, task, comment.json(), label.json()]
    for url in ("/api/v1/projects", "/api/v1/tasks", "/api/v1/labels", f"/api/v1/tasks/{task['id']}/comments"):
        answers += (await client.get(url, headers=alice.headers)).json()["items"]
    answers.append((await client.get("/api/v1/users/me", headers=alice.headers)).json())
    for answer in answers:
        assert not set(answer) & ({"owner"} | SECRETS), answer


def test_jsonb_columns_are_typed_as_json_not_string():
    annotation = dto.column_annotation(IdempotencyKey.snapshot)
    assert _accepts(annotation, {"a": [1, 2]})
    assert _accepts(annotation, [1, "x"])
