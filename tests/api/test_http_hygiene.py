"""HTTP details every answer shares (issue 9): nosniff, a true Allow on OPTIONS for every
route, HEAD wherever GET is, CORS off by default and configurable, and token answers that no
cache keeps."""

from __future__ import annotations

import re
from dataclasses import replace

import httpx
import pytest
from litestar.routes import HTTPRoute

from app.settings import get_settings
from tests.api.problems import assert_problem

TOKEN = "/api/v1/auth/token"
PASSWORD = "correct-horse-battery"
ORIGIN = "https://app.example.com"
# Headers that legitimately differ between two answers to the same request.
VOLATILE = {"date", "etag", "last-modified", "ratelimit"}  # ratelimit: one request fewer left


@pytest.fixture
async def objects(client, alice):
    """One of each object, so every path parameter names something that exists."""
    h = alice.headers
    project = (await client.post("/api/v1/projects", json={"name": "p"}, headers=h)).json()["id"]
    label = (await client.post("/api/v1/labels", json={"name": "l"}, headers=h)).json()["id"]
    task = (await client.post("/api/v1/tasks", json={"title": "t"}, headers=h)).json()["id"]
    comment = (await client.post(f"/api/v1/tasks/{task}/comments", json={"body": "c"}, headers=h)).json()["id"]
    invitation = await client.post(
        f"/api/v1/projects/{project}/invitations", json={"email": "bob@example.com", "role": "viewer"}, headers=h
    )
    return {
        "project_id": project,
        "label_id": label,
        "task_id": task,
        "comment_id": comment,
        "user_id": alice.id,
        "invitation_id": invitation.json()["id"],
        # No webhook exists: its routes answer 404, to GET and HEAD alike.
        "webhook_id": 1,
        "delivery_id": 1,
        "file_path": "swagger-ui.css",
        "path": "swagger",
    }


def _concrete(route: HTTPRoute, objects: dict[str, object]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in objects, f"no test value for path parameter {name!r} of {route.path}"
        return str(objects[name])

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, route.path)


def _http_routes(app) -> list[HTTPRoute]:
    routes = [route for route in app.routes if isinstance(route, HTTPRoute)]
    assert len(routes) >= 15
    return routes


def _expected_allow(route: HTTPRoute) -> set[str]:
    methods = set(route.methods) | {"OPTIONS"}
    if "GET" in methods:
        methods.add("HEAD")
    return methods


async def test_options_names_every_method_of_every_route(client, app, objects):
    for route in _http_routes(app):
        path = _concrete(route, objects)
        response = await client.options(path)
        assert response.status_code == 204, (path, response.text)
        allow = {method.strip() for method in response.headers["allow"].split(",")}
        assert allow == _expected_allow(route), path
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_options_on_the_task_list_lists_get_head_post_options(client):
    response = await client.options("/api/v1/tasks")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, HEAD, OPTIONS, POST"


async def test_head_answers_like_get_without_a_body_on_every_get_route(client, app, alice, objects):
    checked = 0
    for route in _http_routes(app):
        if "GET" not in route.methods:
            continue
        path = _concrete(route, objects)
        if path.endswith("/stream"):
            # An endless body, which the in-process transport would wait for: HEAD alone must end,
            # with the stream's status and type (tests/test_event_stream.py reads the GET).
            head = await client.head(path, headers=alice.headers)
            assert (head.status_code, head.content) == (200, b""), path
            assert head.headers["content-type"].startswith("text/event-stream"), path
            checked += 1
            continue
        get = await client.get(path, headers=alice.headers)
        head = await client.head(path, headers=alice.headers)
        assert head.status_code == get.status_code, path
        assert get.status_code < 500, path
        assert head.content == b"", path
        same = {k: v for k, v in head.headers.items() if k not in VOLATILE}
        assert same == {k: v for k, v in get.headers.items() if k not in VOLATILE}, path
        assert int(head.headers.get("content-length", len(get.content))) == len(get.content), path
        checked += 1
    assert checked >= 10


async def test_head_health_is_200_and_head_without_a_token_is_401(client):
    health = await client.head("/health")
    assert health.status_code == 200
    assert health.content == b""
    me = await client.head("/api/v1/users/me")
    assert me.status_code == 401
    assert me.headers["www-authenticate"] == "Bearer"
    assert me.content == b""


async def test_head_where_there_is_no_get_is_405_naming_the_methods(client):
    response = await client.head(TOKEN)
    assert response.status_code == 405
    assert response.headers["allow"] == "OPTIONS, POST"
    assert response.content == b""


async def test_a_405_lists_head_beside_get(client):
    response = await client.put("/health")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_nosniff_on_every_kind_of_answer(client, alice):
    answers = [
        await client.get("/health"),
        await client.get("/api/v1/users/me", headers=alice.headers),
        await client.get("/api/v1/users/me"),  # 401
        await client.get("/api/v1/nothing-here"),  # 404 from the router
        await client.post("/api/v1/projects", json={"name": ""}, headers=alice.headers),  # 400
        await client.get("/schema/openapi.json"),
        await client.get("/schema"),
        await client.get("/schema/assets/swagger-ui.css"),
        await client.options("/api/v1/tasks"),
    ]
    for response in answers:
        assert response.headers.get("x-content-type-options") == "nosniff", (response.request.url, response.status_code)


# --- CORS ---------------------------------------------------------------------------------------


async def test_cors_is_off_by_default(client, alice):
    simple = await client.get("/api/v1/users/me", headers={**alice.headers, "Origin": ORIGIN})
    preflight = await client.options(
        "/api/v1/tasks",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "if-match",
        },
    )
    assert simple.status_code == 200
    for response in (simple, preflight):
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]


@pytest.fixture
async def cors_client():
    from app.asgi import create_app

    app = create_app(replace(get_settings(), cors_origins=(ORIGIN, "https://other.example.org")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


def _names(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


async def test_cors_preflight_for_a_configured_origin(cors_client):
    response = await cors_client.options(
        "/api/v1/tasks/1",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, if-match, idempotency-key, content-type",
        },
    )
    assert response.status_code in {200, 204}, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert {"authorization", "if-match", "idempotency-key", "content-type"} <= _names(
        response.headers["access-control-allow-headers"]
    )
    assert "PATCH" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers


async def test_cors_answers_expose_the_api_headers(cors_client, register):
    response = await cors_client.post(
        "/api/v1/auth/register",
        json={"email": "cors@example.com", "password": PASSWORD},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = _names(response.headers["access-control-expose-headers"])
    assert {"etag", "location", "idempotent-replayed", "retry-after", "ratelimit", "ratelimit-policy"} <= exposed


async def test_cors_ignores_an_origin_not_configured(cors_client):
    response = await cors_client.get("/health", headers={"Origin": "https://evil.example.net"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = await cors_client.options(
        "/api/v1/tasks", headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_origins_come_from_the_environment(monkeypatch):
    from app.settings import load_settings

    monkeypatch.setenv("TASKAPI_CORS_ORIGINS", f" {ORIGIN} ,https://b.example.org,")
    assert load_settings().cors_origins == (ORIGIN, "https://b.example.org")
    monkeypatch.delenv("TASKAPI_CORS_ORIGINS")
    assert load_settings().cors_origins == ()


# --- The token endpoint -------------------------------------------------------------------------


async def test_token_answers_are_not_cached(client, alice):
    for response in (
        await client.post(TOKEN, json={"email": alice.email, "password": alice.password}),
        await client.post(TOKEN, data={"username": alice.email, "password": alice.password}),
    ):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"


async def test_a_huge_form_password_is_refused_before_hashing(client, alice, monkeypatch):
    import app.services.users as users_service

    hashed: list[str] = []
    original = users_service.verify_password

    async def counting_verify(password_hash, password):
        hashed.append(password)
        return await original(password_hash, password)

    monkeypatch.setattr(users_service, "verify_password", counting_verify)
    huge = "p" * 100_000
    form = await client.post(TOKEN, data={"username": alice.email, "password": huge})
    body = assert_problem(form, 400, "password")
    assert huge not in form.text
    assert "128" in str(body["errors"])
    as_json = await client.post(TOKEN, json={"email": alice.email, "password": huge})
    assert_problem(as_json, 400, "password")
    assert hashed == []
    # The bound is the register bound: 128 is accepted (then just a wrong password), 129 is not.
    assert (await client.post(TOKEN, data={"username": alice.email, "password": "p" * 128})).status_code == 401
    assert_problem(await client.post(TOKEN, data={"username": alice.email, "password": "p" * 129}), 400, "password")
    assert_problem(await client.post(TOKEN, data={"username": "u" * 400 + "@x.io", "password": "x"}), 400, "username")
