"""The OpenAPI document tells the truth: what a client generator reads is what the server does.

Public operations need no token (``security: []``); response headers are documented where they
are sent; request bodies refuse unknown fields and out-of-range items as the server does;
``If-Match`` and ``sort`` carry the patterns the server enforces; bulk bodies are typed; every
/api operation can answer 429; and the problem schema validates real problem bodies.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs
import msgspec
import pytest

from tests.api.problems import PROBLEM_TYPE

PUBLIC = {("post", "/api/v1/auth/register"), ("post", "/api/v1/auth/token"), ("get", "/health"), ("get", "/ready")}
METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}


@pytest.fixture
async def doc(client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return json.loads(response.content)


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")]
    return schema


def _validator(doc: dict[str, Any], name: str) -> Any:
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": {"schemas": doc["components"]["schemas"]}}
    )


def _parameter(doc: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    return next(p for p in doc["paths"][path][method]["parameters"] if p["name"] == name)


# --------------------------------------------------------------------------------------------
# Security


async def test_public_operations_say_security_empty_and_the_rest_inherit_the_bearer_scheme(doc):
    assert doc["security"] == [{"BearerToken": []}]
    for method, path, operation in _operations(doc):
        if (method, path) in PUBLIC:
            assert operation["security"] == [], (method, path)
        else:
            assert "security" not in operation, (method, path)  # the global requirement


# --------------------------------------------------------------------------------------------
# Responses: problems, 429 and headers


async def test_every_api_operation_documents_429_with_retry_after_and_the_ratelimit_fields(doc):
    api = [(m, p, o) for m, p, o in _operations(doc) if p.startswith("/api/")]
    assert len(api) >= 25
    for method, path, operation in api:
        too_many = operation["responses"]["429"]
        assert set(too_many["content"]) == {PROBLEM_TYPE}, (method, path)
        headers = too_many["headers"]
        for name in ("Retry-After", "RateLimit-Policy", "RateLimit"):
            assert headers[name]["required"] is True, (method, path, name)
        success = next(r for status, r in operation["responses"].items() if status.startswith("2"))
        assert {"RateLimit-Policy", "RateLimit"} <= set(success.get("headers", {})), (method, path)


async def test_every_error_response_is_a_problem_and_503_says_retry_after(doc):
    for method, path, operation in _operations(doc):
        for status, response in operation["responses"].items():
            if int(status) >= 400 and path.startswith("/api/"):
                assert set(response["content"]) == {PROBLEM_TYPE}, (method, path, status)
                assert response["content"][PROBLEM_TYPE]["schema"] == {"$ref": "#/components/schemas/Problem"}
            if status == "503":
                assert response["headers"]["Retry-After"]["required"] is True, (method, path)
            if status == "412":
                assert response["headers"]["ETag"]["required"] is True, (method, path)
            if status == "401":
                assert response["headers"]["WWW-Authenticate"]["required"] is True, (method, path)


VERSIONED = {"Task", "Project", "Label", "Comment", "Webhook", "WebhookWithSecret"}


async def test_etag_location_and_idempotent_replayed_are_documented_where_they_are_sent(doc):
    etags, locations, replays = set(), set(), set()
    for method, path, operation in _operations(doc):
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                continue
            headers = response.get("headers", {})
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            returns = schema.get("$ref", "").removeprefix("#/components/schemas/")
            # ETag: one versioned object answered (GET of one, create, patch); lists and bulk have none.
            assert ("ETag" in headers) == (returns in VERSIONED), (method, path)
            if "ETag" in headers:
                etags.add((method, path))
                assert headers["ETag"]["required"] is True
                assert re.fullmatch(headers["ETag"]["schema"]["pattern"], '"12"')
            if "Location" in headers:
                locations.add((method, path))
            if "Idempotent-Replayed" in headers:
                replays.add((method, path))
                assert headers["Idempotent-Replayed"]["required"] is False
    assert {
        ("get", "/api/v1/tasks/{task_id}"),
        ("patch", "/api/v1/tasks/{task_id}"),
        ("post", "/api/v1/tasks"),
        ("get", "/api/v1/projects/{project_id}"),
        ("patch", "/api/v1/labels/{label_id}"),
        ("get", "/api/v1/comments/{comment_id}"),
    } <= etags
    creates = {
        ("post", "/api/v1/projects"),
        ("post", "/api/v1/labels"),
        ("post", "/api/v1/tasks"),
        ("post", "/api/v1/tasks/{task_id}/comments"),
        ("post", "/api/v1/projects/{project_id}/invitations"),
        ("post", "/api/v1/webhooks"),
        ("post", "/api/v1/webhooks/{webhook_id}/ping"),
        ("post", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
    }
    assert locations == creates | {("post", "/api/v1/auth/register")}
    assert replays == creates | {("post", "/api/v1/tasks/bulk")}


async def test_documented_headers_are_sent(client, alice):
    created = await client.post("/api/v1/tasks", json={"title": "t"}, headers=alice.headers)
    assert created.status_code == 201
    assert created.headers["Location"] == f"/api/v1/tasks/{created.json()['id']}"
    assert created.headers["ETag"] == '"1"'
    replay = await client.post(
        "/api/v1/projects", json={"name": "p"}, headers={**alice.headers, "Idempotency-Key": "k-1"}
    )
    again = await client.post(
        "/api/v1/projects", json={"name": "p"}, headers={**alice.headers, "Idempotency-Key": "k-1"}
    )
    assert (replay.status_code, again.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in replay.headers
    assert again.headers["Idempotent-Replayed"] == "true"


# --------------------------------------------------------------------------------------------
# Request bodies


async def test_every_json_request_body_refuses_unknown_fields(doc):
    bodies = 0
    for method, path, operation in _operations(doc):
        if "requestBody" not in operation:
            continue
        assert set(operation["requestBody"]["content"]) == {"application/json"}, (method, path)
        schema = _resolve(doc, operation["requestBody"]["content"]["application/json"]["schema"])
        assert schema["additionalProperties"] is False, (method, path)
        bodies += 1
    assert bodies >= 12
    for nested in ("TaskCreate", "TaskPatch"):  # also as bulk items
        assert doc["components"]["schemas"][nested]["additionalProperties"] is False


async def test_unknown_fields_are_refused_by_the_server_as_documented(client, alice):
    response = await client.post("/api/v1/tasks", json={"title": "t", "colour": "red"}, headers=alice.headers)
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"colour"}


async def test_bulk_bodies_are_typed_with_the_bounds_the_server_enforces(doc):
    from app.dto import LabelIds, TaskBulkCreate, TaskBulkPatch

    schemas = doc["components"]["schemas"]
    create_body = doc["paths"]["/api/v1/tasks/bulk"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    patch_body = doc["paths"]["/api/v1/tasks/bulk"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    bulk_create, bulk_patch = _resolve(doc, create_body), _resolve(doc, patch_body)
    tasks = bulk_create["properties"]["tasks"]
    assert tasks["items"] == {"$ref": "#/components/schemas/TaskCreate"}
    assert bulk_patch["properties"]["changes"] == {"$ref": "#/components/schemas/TaskPatch"}
    # The same component as the single create body: one TaskCreate class in a generated client.
    single = doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert single == {"$ref": "#/components/schemas/TaskCreate"}

    def bounds(struct: Any, name: str) -> tuple[int, int]:
        field = next(f for f in msgspec.inspect.type_info(struct).fields if f.name == name)
        kind = field.type.type if isinstance(field.type, msgspec.inspect.Metadata) else field.type
        return kind.min_length, kind.max_length

    assert (tasks["minItems"], tasks["maxItems"]) == bounds(TaskBulkCreate, "tasks") == (1, 100)
    ids = bulk_patch["properties"]["ids"]
    assert (ids["minItems"], ids["maxItems"]) == bounds(TaskBulkPatch, "ids")
    assert (ids["items"]["minimum"], ids["items"]["maximum"]) == (1, 2**31 - 1)
    label_ids = schemas["TaskCreate"]["properties"]["label_ids"]
    max_labels = msgspec.inspect.type_info(LabelIds).max_length
    assert label_ids["maxItems"] == max_labels
    assert (label_ids["items"]["minimum"], label_ids["items"]["maximum"]) == (1, 2**31 - 1)
    patch_label_ids = next(b for b in schemas["TaskPatch"]["properties"]["label_ids"]["oneOf"] if b["type"] == "array")
    assert (patch_label_ids["items"]["minimum"], patch_label_ids["maxItems"]) == (1, max_labels)


@pytest.mark.parametrize("label_id", [0, 2**31])
async def test_out_of_range_items_are_refused_as_documented(client, alice, label_id):
    response = await client.post("/api/v1/tasks", json={"title": "t", "label_ids": [label_id]}, headers=alice.headers)
    assert response.status_code == 400
    response = await client.patch("/api/v1/tasks/bulk", json={"ids": [label_id], "changes": {}}, headers=alice.headers)
    assert response.status_code == 400


async def test_defaulted_request_fields_are_optional_and_answer_fields_are_required(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["TaskCreate"]["required"] == ["title"]
    assert schemas["ProjectCreate"]["required"] == ["name"]
    for name in ("TaskCreate", "ProjectCreate", "LabelCreate", "CommentCreate", "RegisterBody"):
        for prop, schema in schemas[name]["properties"].items():
            if "default" in schema:
                assert prop not in schemas[name].get("required", []), (name, prop)
    for name in ("Task", "Project", "Label", "Comment", "User", "LabelBrief", "TokenResponse"):
        assert set(schemas[name]["required"]) == set(schemas[name]["properties"]), name


async def test_component_names_are_class_names(doc):
    for name in doc["components"]["schemas"]:
        assert re.fullmatch(r"[A-Z][A-Za-z]+", name), name


# --------------------------------------------------------------------------------------------
# Parameters: If-Match and sort patterns agree with the server


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ('"3"', True),
        (' "3" ', True),
        ('W/"3"', True),
        ("*", True),
        (" * ", True),
        ('"12345678901"', False),
        ("3", False),
        ('"3", "4"', False),
        ('"abc"', False),
        ("**", False),
    ],
)
async def test_if_match_pattern_is_what_the_server_accepts(client, alice, doc, value, valid):
    pattern = _parameter(doc, "patch", "/api/v1/tasks/{task_id}", "If-Match")["schema"]["pattern"]
    assert bool(re.search(pattern, value)) is valid
    for method, path, operation in _operations(doc):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "If-Match":
                assert parameter["schema"]["pattern"] == pattern, (method, path)
    task = (await client.post("/api/v1/tasks", json={"title": "t"}, headers=alice.headers)).json()
    response = await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"position": 1}, headers={**alice.headers, "If-Match": value}
    )
    # A well-formed tag that is not the current version is 412 (weak tags never match).
    assert response.status_code in ({200, 412} if valid else {400}), response.text


@pytest.mark.parametrize(
    ("path", "value", "valid"),
    [
        ("/api/v1/tasks", "", True),
        ("/api/v1/tasks", "due_at", True),
        ("/api/v1/tasks", " -priority , title ", True),
        ("/api/v1/tasks", "-created_at,position,id", True),
        ("/api/v1/tasks", "name", False),
        ("/api/v1/tasks", "title,", False),
        ("/api/v1/tasks", "--title", False),
        ("/api/v1/tasks", "- title", False),
        ("/api/v1/projects", "name,-updated_at", True),
        ("/api/v1/projects", "title", False),
        ("/api/v1/labels", "-name", True),
        ("/api/v1/labels", "due_at", False),
    ],
)
async def test_sort_pattern_is_what_the_server_accepts(client, alice, doc, path, value, valid):
    pattern = _parameter(doc, "get", path, "sort")["schema"]["pattern"]
    assert bool(re.search(pattern, value)) is valid
    response = await client.get(path, params={"sort": value}, headers=alice.headers)
    assert response.status_code == (200 if valid else 400), response.text


async def test_sort_patterns_are_derived_from_the_services_sortable_fields(doc):
    from app.services import labels, projects, tasks

    for path, service in (("/api/v1/tasks", tasks), ("/api/v1/projects", projects), ("/api/v1/labels", labels)):
        pattern = _parameter(doc, "get", path, "sort")["schema"]["pattern"]
        for field in service.SORTABLE:
            assert re.search(pattern, field), (path, field)
            assert re.search(pattern, f"-{field}"), (path, field)
        assert not re.search(pattern, "version"), path


# --------------------------------------------------------------------------------------------
# The problem schema is what is sent


async def _problems(client: Any, alice: Any) -> dict[str, Any]:
    """Real problem bodies from many error paths, by name."""
    h = alice.headers
    task = (await client.post("/api/v1/tasks", json={"title": "t"}, headers=h)).json()
    await client.post("/api/v1/labels", json={"name": "dup"}, headers=h)
    responses = {
        "body fields": await client.post("/api/v1/tasks", json={"title": "", "priority": 9, "x": 1}, headers=h),
        "malformed json": await client.post(
            "/api/v1/tasks", content=b"{", headers={**h, "content-type": "application/json"}
        ),
        "query": await client.get("/api/v1/tasks", params={"limit": 0, "status": "nope"}, headers=h),
        "if-match header": await client.patch(
            f"/api/v1/tasks/{task['id']}", json={}, headers={**h, "If-Match": "nope"}
        ),
        "idempotency header": await client.post(
            "/api/v1/tasks", json={"title": "t"}, headers={**h, "Idempotency-Key": ""}
        ),
        "path": await client.get("/api/v1/tasks/0", headers=h),
        "no token": await client.get("/api/v1/tasks"),
        "not found": await client.get("/api/v1/tasks/999999", headers=h),
        "stale": await client.patch(f"/api/v1/tasks/{task['id']}", json={}, headers={**h, "If-Match": '"9"'}),
        "duplicate": await client.post("/api/v1/labels", json={"name": "DUP"}, headers=h),
        "foreign reference": await client.post("/api/v1/tasks", json={"title": "t", "project_id": 424242}, headers=h),
        "bulk items": await client.post(
            "/api/v1/tasks/bulk", json={"tasks": [{"title": "ok"}, {"title": ""}, {"nope": 1}]}, headers=h
        ),
        "bulk foreign id": await client.patch(
            "/api/v1/tasks/bulk", json={"ids": [task["id"], 424242], "changes": {"status": "done"}}, headers=h
        ),
        "bulk changes": await client.patch(
            "/api/v1/tasks/bulk", json={"ids": [task["id"]], "changes": {"status": "x"}}, headers=h
        ),
        "media type": await client.post(
            "/api/v1/tasks", content=b"title=t", headers={**h, "content-type": "text/plain"}
        ),
        "too large": await client.post(
            "/api/v1/tasks",
            content=b'{"title": "' + b"x" * (1024 * 1024 + 1) + b'"}',
            headers={**h, "content-type": "application/json"},
        ),
        "bad login": await client.post("/api/v1/auth/token", json={"email": "a@b.c", "password": "wrong-password"}),
    }
    bodies = {}
    for name, response in responses.items():
        assert response.status_code >= 400, (name, response.status_code)
        assert response.headers["content-type"].split(";")[0] == PROBLEM_TYPE, name
        bodies[name] = response.json()
    return bodies


async def test_real_problem_bodies_validate_against_the_documented_problem_schema(client, alice, doc):
    validator = _validator(doc, "Problem")
    problem = doc["components"]["schemas"]["Problem"]
    field_error = doc["components"]["schemas"]["ProblemFieldError"]
    bodies = await _problems(client, alice)
    seen_keys: set[str] = set()
    for name, body in bodies.items():
        errors = [str(e) for e in validator.iter_errors(body)]
        assert errors == [], (name, body, errors)
        # Nothing undocumented either: every key sent is a documented property.
        assert set(body) <= set(problem["properties"]), (name, body)
        for error in body.get("errors", []):
            assert set(error) <= set(field_error["properties"]), (name, error)
            seen_keys |= set(error)
    # The optional members are exercised: a bulk item's index and a parameter's source.
    assert {"field", "message", "source", "index"} <= seen_keys
    assert {e["index"] for e in bodies["bulk items"]["errors"]} == {1, 2}
    assert {e["source"] for e in bodies["query"]["errors"]} == {"query"}
    assert {e["source"] for e in bodies["if-match header"]["errors"]} == {"header"}


async def test_the_problem_schema_refuses_what_is_never_sent(doc):
    validator = _validator(doc, "Problem")
    good = {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": "x"}
    assert validator.is_valid(good)
    assert validator.is_valid({**good, "errors": [{"field": "tasks[0].title", "message": "m", "index": 0}]})
    assert not validator.is_valid({**good, "errors": None})  # absent, never null
    assert not validator.is_valid({**good, "errors": [{"field": "f", "message": "m", "index": -1}]})
    assert not validator.is_valid({**good, "errors": [{"field": "f", "message": "m", "source": "cookie jar"}]})
    assert not validator.is_valid({k: v for k, v in good.items() if k != "detail"})
