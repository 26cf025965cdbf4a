"""A first end-to-end pass: register, token, create, list."""

from __future__ import annotations

from tests.conftest import count_rows


async def test_register_token_create_list(client, alice):
    created = await client.post("/api/v1/projects", json={"name": "Home"}, headers=alice.headers)
    assert created.status_code == 201
    assert created.headers["location"] == f"/api/v1/projects/{created.json()['id']}"
    listed = await client.get("/api/v1/projects", headers=alice.headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    assert await count_rows("project") == 1
