"""Operations: health, readiness, the OpenAPI document and the offline docs page."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import urljoin

import pytest

ENDPOINTS_WITHOUT_TOKEN = {("post", "/api/v1/auth/register"), ("post", "/api/v1/auth/token")}


# --------------------------------------------------------------------------------------------
# Health and readiness


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer garbage"}])
async def test_health_needs_no_token(client, headers):
    response = await client.get("/health", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer garbage"}])
async def test_ready_needs_no_token_and_answers_200_with_a_database(client, headers):
    response = await client.get("/ready", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


# --------------------------------------------------------------------------------------------
# The OpenAPI document


@pytest.fixture
async def openapi(client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "json" in response.headers["content-type"]
    return json.loads(response.content)


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


def _body_schema(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    content = doc["paths"][path][method]["requestBody"]["content"]
    assert set(content) == {"application/json"}
    return _resolve(doc, content["application/json"]["schema"])


def _types(schema: dict[str, Any]) -> set[str]:
    """Every JSON type a property schema admits (``type`` or ``oneOf``/``anyOf`` branches)."""
    found: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found.update(kind)
    for key in ("oneOf", "anyOf"):
        for branch in schema.get(key, []):
            found |= _types(branch)
    return found


def _enum(schema: dict[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        if "enum" in branch:
            return list(branch["enum"])
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


async def test_openapi_is_a_valid_openapi_31_document(openapi):
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    assert openapi["openapi"].startswith("3.1")
    # OAS 3.1 lets URLs be relative references, resolved against the document's URL (Swagger UI
    # does so); the JSON schema's `format: uri` does not, so validate the resolved document.
    resolved = copy.deepcopy(openapi)
    for scheme in resolved["components"]["securitySchemes"].values():
        for flow in scheme.get("flows", {}).values():
            flow["tokenUrl"] = urljoin("http://testserver/schema/openapi.json", flow["tokenUrl"])
    errors = [f"{list(e.instance_path)}: {e}" for e in OPENAPI_31_VALIDATOR.iter_errors(resolved)]
    assert errors == []
    operations = {(method, path) for path, item in openapi["paths"].items() for method in item}
    for expected in [
        ("post", "/api/v1/auth/register"),
        ("post", "/api/v1/auth/token"),
        ("get", "/api/v1/users/me"),
        ("get", "/api/v1/projects"),
        ("patch", "/api/v1/projects/{project_id}"),
        ("delete", "/api/v1/labels/{label_id}"),
        ("post", "/api/v1/tasks"),
        ("patch", "/api/v1/tasks/bulk"),
        ("get", "/api/v1/tasks/{task_id}/comments"),
        ("patch", "/api/v1/comments/{comment_id}"),
        ("get", "/health"),
        ("get", "/ready"),
    ]:
        assert expected in operations


async def test_openapi_declares_the_bearer_security_scheme(openapi):
    schemes = openapi["components"]["securitySchemes"]
    assert schemes
    for name, scheme in schemes.items():
        is_bearer = scheme["type"] == "http" and scheme["scheme"].lower() == "bearer"
        is_password_flow = (
            scheme["type"] == "oauth2" and scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
        )
        assert is_bearer or is_password_flow, (name, scheme)
    # Every protected operation requires a declared scheme (globally or on the operation).
    global_security = openapi.get("security", [])
    for path, item in openapi["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            if (method, path) in ENDPOINTS_WITHOUT_TOKEN:
                continue
            requirements = operation.get("security", global_security)
            assert requirements, (method, path)
            for requirement in requirements:
                assert requirement, (method, path)
                assert set(requirement) <= set(schemes), (method, path)


async def test_public_operations_need_no_token_in_the_docs(openapi):
    scheme = openapi["components"]["securitySchemes"]["BearerToken"]
    assert scheme["flows"]["password"] == {"tokenUrl": "/api/v1/auth/token", "scopes": {}}
    for method, path in [
        ("post", "/api/v1/auth/register"),
        ("post", "/api/v1/auth/token"),
        ("get", "/health"),
        ("get", "/ready"),
    ]:
        assert openapi["paths"][path][method]["security"] == [], (method, path)
    assert "security" not in openapi["paths"]["/api/v1/tasks"]["get"]  # inherits the global requirement
    assert openapi["security"] == [{"BearerToken": []}]


async def test_token_request_body_is_documented_as_json_and_mentions_the_oauth2_form(openapi):
    body = openapi["paths"]["/api/v1/auth/token"]["post"]["requestBody"]
    assert body["required"] is True
    # One media type: openapi-python-client's module for a two-media-type body does not import.
    assert set(body["content"]) == {"application/json"}
    schema = body["content"]["application/json"]["schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["email", "password"]
    assert schema["properties"]["email"]["type"] == "string"
    assert schema["properties"]["password"]["maxLength"] == 128
    assert "`username`, `password`" in body["description"]


async def test_openapi_never_mentions_password_hashes_or_owners(openapi):
    text = json.dumps(openapi)
    assert "password_hash" not in text
    assert "token_generation" not in text
    for name, schema in openapi["components"]["schemas"].items():
        assert "owner" not in schema.get("properties", {}), name


async def test_project_create_body_is_documented_as_enforced(openapi):
    schema = _body_schema(openapi, "post", "/api/v1/projects")
    props = schema["properties"]
    assert set(props) == {"name", "description", "color", "archived"}
    assert schema["required"] == ["name"]
    assert _types(props["name"]) == {"string"}
    assert props["name"]["maxLength"] == 200
    assert props["name"]["minLength"] == 1
    assert _types(props["description"]) == {"string"}
    assert props["description"]["maxLength"] == 10_000
    assert props["description"]["default"] == ""
    assert _types(props["color"]) == {"string", "null"}
    assert props["color"]["pattern"] == "^#[0-9a-fA-F]{6}$"
    assert _types(props["archived"]) == {"boolean"}
    assert props["archived"]["default"] is False


async def test_project_patch_body_is_partial_and_nullable_only_where_allowed(openapi):
    schema = _body_schema(openapi, "patch", "/api/v1/projects/{project_id}")
    props = schema["properties"]
    assert not schema.get("required")
    assert _types(props["name"]) == {"string"}
    assert props["name"]["maxLength"] == 200
    assert _types(props["description"]) == {"string"}
    assert _types(props["archived"]) == {"boolean"}
    assert _types(props["color"]) == {"string", "null"}
    assert not {"id", "version", "created_at", "updated_at"} & set(props)


async def test_label_create_body_is_documented_as_enforced(openapi):
    schema = _body_schema(openapi, "post", "/api/v1/labels")
    props = schema["properties"]
    assert set(props) == {"name", "color"}
    assert schema["required"] == ["name"]
    assert props["name"]["maxLength"] == 100
    assert props["name"]["minLength"] == 1
    assert _types(props["color"]) == {"string", "null"}


def _task_schema(doc: dict[str, Any]) -> dict[str, Any]:
    content = doc["paths"]["/api/v1/tasks/{task_id}"]["get"]["responses"]["200"]["content"]
    return _resolve(doc, next(iter(content.values()))["schema"])


async def test_task_create_body_is_documented_as_enforced(openapi):
    schema = _body_schema(openapi, "post", "/api/v1/tasks")
    props = schema["properties"]
    assert schema["required"] == ["title"]
    # SPEC "Tasks" names these; a field added since is one a task shows, and never a server-set one.
    spec = {"project_id", "parent_id", "title", "description", "status", "priority", "due_at", "position", "label_ids"}
    server_set = {"id", "version", "created_at", "updated_at", "completed_at", "labels"}
    assert spec <= set(props)
    assert set(props) - {"label_ids"} <= set(_task_schema(openapi)["properties"]) - server_set
    assert _types(props["title"]) == {"string"}
    assert props["title"]["maxLength"] == 500
    assert props["title"]["minLength"] == 1
    assert props["description"]["maxLength"] == 20_000
    assert _enum(props["status"]) == ["todo", "in_progress", "done"]
    assert props["status"]["default"] == "todo"
    assert _types(props["status"]) == {"string"}
    assert _enum(props["priority"]) == [0, 1, 2, 3, 4]
    assert props["priority"]["default"] == 0
    assert _types(props["due_at"]) == {"string", "null"}
    assert any(branch.get("format") == "date-time" for branch in props["due_at"]["oneOf"])
    assert _types(props["project_id"]) == {"integer", "null"}
    assert _types(props["parent_id"]) == {"integer", "null"}
    assert _types(props["position"]) == {"integer"}
    assert _types(props["label_ids"]) == {"array"}
    assert props["label_ids"]["items"]["type"] == "integer"


async def test_task_response_documents_read_only_fields(openapi):
    schema = _task_schema(openapi)
    props = schema["properties"]
    assert {"completed_at", "labels", "version", "created_at", "updated_at"} <= set(props)
    assert set(schema["required"]) == set(props)
    assert _types(props["completed_at"]) == {"string", "null"}
    assert _enum(props["status"]) == ["todo", "in_progress", "done"]
    label = _resolve(openapi, props["labels"]["items"])
    assert set(label["properties"]) == {"id", "name", "color"}


async def test_comment_and_register_bodies_are_documented_as_enforced(openapi):
    comment = _body_schema(openapi, "post", "/api/v1/tasks/{task_id}/comments")
    assert comment["required"] == ["body"]
    assert set(comment["properties"]) == {"body"}
    assert comment["properties"]["body"]["maxLength"] == 10_000
    assert comment["properties"]["body"]["minLength"] == 1
    register = _body_schema(openapi, "post", "/api/v1/auth/register")
    assert sorted(register["required"]) == ["email", "password"]
    assert register["properties"]["password"]["minLength"] == 8
    assert register["properties"]["password"]["maxLength"] == 128


async def test_list_parameters_are_documented_with_their_ranges(openapi):
    for path in ("/api/v1/projects", "/api/v1/labels", "/api/v1/tasks", "/api/v1/tasks/{task_id}/comments"):
        parameters = {p["name"]: p for p in openapi["paths"][path]["get"]["parameters"]}
        assert parameters["limit"]["schema"]["minimum"] == 1, path
        assert parameters["limit"]["schema"]["maximum"] == 100, path
        assert parameters["offset"]["schema"]["minimum"] == 0, path
    tasks = {p["name"]: p for p in openapi["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    status_items = tasks["status"]["schema"]["items"]  # absent or an array: a parameter is never null
    assert status_items["enum"] == ["todo", "in_progress", "done"]


# --------------------------------------------------------------------------------------------
# The docs page works offline


async def test_docs_page_renders_without_any_external_url(client):
    response = await client.get("/schema")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "SwaggerUIBundle" in html
    assert re.findall(r"https?://", html) == []
    assert "//cdn" not in html
    assert "unpkg" not in html
    assert "jsdelivr" not in html


async def test_docs_assets_are_served_locally_without_a_token(client):
    html = (await client.get("/schema")).text
    assets = set(re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html))
    assert assets
    for asset in assets:
        assert asset.startswith("/schema/assets/"), asset
    assert {
        "/schema/assets/swagger-ui-bundle.js",
        "/schema/assets/swagger-ui-standalone-preset.js",
        "/schema/assets/swagger-ui.css",
    } <= assets
    expected_types = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for asset in sorted(assets):
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset
        suffix = asset[asset.rindex(".") :]
        assert expected_types[suffix] in response.headers["content-type"], (asset, response.headers)


async def test_docs_serve_a_swagger_ui_that_reads_the_documents_openapi_version(client, openapi):
    # Swagger UI 4 shows "Unable to render this definition" for OpenAPI 3.1; 5.0 reads it.
    # tests/test_docs_browser.py checks the rendering itself in Chromium.
    assert openapi["openapi"].startswith("3.1.")
    bundle = (await client.get("/schema/assets/swagger-ui-bundle.js")).text
    versions = re.findall(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)
    assert versions, "no PACKAGE_VERSION in the served swagger-ui-bundle.js: did its build format change?"
    assert all(int(major) >= 5 for major in versions), versions


async def test_docs_embed_the_same_document_as_openapi_json(client, openapi):
    html = (await client.get("/schema")).text
    assert '"title":"taskapi"' in html
    for path in openapi["paths"]:
        assert json.dumps(path) in html
    # Nothing in the document points the docs at another host either.
    assert [s for s in _strings(openapi) if re.match(r"(?:https?:)?//", s)] == []


async def test_missing_docs_asset_is_404(client):
    response = await client.get("/schema/assets/not-there.js")
    assert response.status_code == 404
