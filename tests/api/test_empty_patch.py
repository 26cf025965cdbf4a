"""An empty PATCH is a no-op: 200 with the object as it is, version unchanged, preconditions still apply."""

from __future__ import annotations

import pytest

CREATE = {
    "projects": {"name": "P"},
    "labels": {"name": "L"},
    "tasks": {"title": "T"},
}


@pytest.mark.parametrize("resource", sorted(CREATE))
async def test_empty_patch_keeps_the_version(client, alice, resource):
    created = (await client.post(f"/api/v1/{resource}", json=CREATE[resource], headers=alice.headers)).json()
    url = f"/api/v1/{resource}/{created['id']}"

    response = await client.patch(url, json={}, headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'

    stale = await client.patch(url, json={}, headers={**alice.headers, "If-Match": '"7"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"1"'

    assert (await client.patch(f"/api/v1/{resource}/999999", json={}, headers=alice.headers)).status_code == 404


async def test_empty_patch_on_a_comment(client, alice):
    task = (await client.post("/api/v1/tasks", json={"title": "T"}, headers=alice.headers)).json()
    comment = (
        await client.post(f"/api/v1/tasks/{task['id']}/comments", json={"body": "hi"}, headers=alice.headers)
    ).json()
    response = await client.patch(f"/api/v1/comments/{comment['id']}", json={}, headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["version"] == 1


async def test_empty_bulk_patch_keeps_versions_and_still_checks_ownership(client, alice, bob):
    ids = [
        (await client.post("/api/v1/tasks", json={"title": f"T{i}"}, headers=alice.headers)).json()["id"]
        for i in range(2)
    ]
    response = await client.patch("/api/v1/tasks/bulk", json={"ids": ids, "changes": {}}, headers=alice.headers)
    assert response.status_code == 200
    assert [t["version"] for t in response.json()["items"]] == [1, 1]
    foreign = await client.patch("/api/v1/tasks/bulk", json={"ids": ids, "changes": {}}, headers=bob.headers)
    assert foreign.status_code == 404
