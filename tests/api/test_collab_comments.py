"""Comments in shared projects (SPEC "Collaboration"): every member reads them, commenters and up
write them, each carries its author; only the author edits one, the author or an admin+ deletes
it. Who may do what is generated from ``ProjectRole``, as in test_collab_tasks.py.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.tables import ProjectRole
from tests.api.collab import (
    TASKS,
    Team,
    app,
    assert_forbidden,
    create,
    db_state,
    may,
    remove_member,
    set_role,
    team,
)
from tests.api.problems import assert_problem
from tests.conftest import ApiUser

__all__ = ["app", "team"]  # fixtures

COMMENTS = "/api/v1/comments"
VIEWER, COMMENTER, ADMIN = ProjectRole.viewer, ProjectRole.commenter, ProjectRole.admin


async def _comment(client: httpx.AsyncClient, team: Team, author: ApiUser, body: str = "hello") -> dict[str, Any]:
    task = await create(client, team.owner, TASKS, {"title": "t", "project_id": team.project})
    return await create(client, author, f"{TASKS}/{task['id']}/comments", {"body": body})


async def test_comments_carry_their_author_for_every_reader(client, team):
    comment = await _comment(client, team, team.scribe)
    author = {"id": team.scribe.id, "display_name": "Scribe"}
    assert comment["author"] == author
    for role, user in team.actors():
        got = await client.get(f"{COMMENTS}/{comment['id']}", headers=user.headers)
        listed = await client.get(f"{TASKS}/{comment['task_id']}/comments", headers=user.headers)
        if role is None:
            assert_problem(got, 404)
            assert_problem(listed, 404)
            continue
        assert got.status_code == 200, (role, got.text)
        assert got.json()["author"] == author
        assert [c["author"] for c in listed.json()["items"]] == [author]
    # A removed author's comments stay, still theirs.
    await remove_member(client, team.owner, team.project, team.scribe)
    got = await client.get(f"{COMMENTS}/{comment['id']}", headers=team.members[VIEWER].headers)
    assert got.json()["author"] == author


async def test_only_the_author_edits_a_comment(client, team):
    comment = await _comment(client, team, team.scribe)
    before = await db_state()
    for role, user in team.actors():
        response = await client.patch(f"{COMMENTS}/{comment['id']}", json={"body": "edited"}, headers=user.headers)
        assert_problem(response, 404 if role is None else 403, case=role)
    assert await db_state() == before
    response = await client.patch(f"{COMMENTS}/{comment['id']}", json={"body": "edited"}, headers=team.scribe.headers)
    assert response.status_code == 200, response.text
    assert response.json()["body"] == "edited"
    assert response.json()["version"] == comment["version"] + 1


async def test_a_refused_edit_is_a_documented_problem(client, team):
    """OpenAPI documents ``required_role`` as one of the project roles."""
    doc = (await client.get("/schema/openapi.json")).json()
    schema = doc["components"]["schemas"]["Problem"]["properties"]["required_role"]
    roles = {value for option in schema.get("oneOf", [schema]) for value in option.get("enum", [])}
    assert roles == {role.value for role in ProjectRole}
    comment = await _comment(client, team, team.scribe)
    response = await client.patch(f"{COMMENTS}/{comment['id']}", json={"body": "x"}, headers=team.owner.headers)
    body = assert_problem(response, 403)
    assert body.get("required_role", "viewer") in roles, body


async def test_the_author_or_an_admin_deletes_a_comment(client, team):
    for role, user in team.actors():
        comment = await _comment(client, team, team.scribe)
        before = await db_state()
        response = await client.delete(f"{COMMENTS}/{comment['id']}", headers=user.headers)
        if role is None:
            assert_problem(response, 404)
        elif may(role, ADMIN):
            assert response.status_code == 204, (role, response.text)
            continue
        else:
            assert_forbidden(response, ADMIN, role)
        assert await db_state() == before, role
    # The author, at any role that may comment.
    comment = await _comment(client, team, team.scribe)
    assert (await client.delete(f"{COMMENTS}/{comment['id']}", headers=team.scribe.headers)).status_code == 204
    assert_problem(await client.get(f"{COMMENTS}/{comment['id']}", headers=team.owner.headers), 404)


async def test_a_stale_if_match_is_412_only_for_those_who_may_write(client, team):
    comment = await _comment(client, team, team.scribe)
    stale = {"If-Match": '"7"'}
    admin, editor = team.members[ADMIN], team.members[ProjectRole.editor]
    before = await db_state()
    response = await client.delete(f"{COMMENTS}/{comment['id']}", headers={**admin.headers, **stale})
    assert_problem(response, 412)
    assert response.headers["etag"] == f'"{comment["version"]}"'
    response = await client.patch(
        f"{COMMENTS}/{comment['id']}", json={"body": "x"}, headers={**team.scribe.headers, **stale}
    )
    assert_problem(response, 412)
    # Those who may not write learn nothing about the version.
    response = await client.delete(f"{COMMENTS}/{comment['id']}", headers={**editor.headers, **stale})
    assert_forbidden(response, ADMIN)
    assert "etag" not in response.headers
    response = await client.patch(f"{COMMENTS}/{comment['id']}", json={"body": "x"}, headers={**admin.headers, **stale})
    assert_problem(response, 403)
    assert "etag" not in response.headers
    response = await client.delete(f"{COMMENTS}/{comment['id']}", headers={**team.outsider.headers, **stale})
    assert_problem(response, 404)
    assert "etag" not in response.headers
    assert await db_state() == before


async def test_writing_comments_follows_the_role(client, team):
    task = await create(client, team.owner, TASKS, {"title": "t", "project_id": team.project})
    for role, user in team.actors():
        before = await db_state()
        response = await client.post(f"{TASKS}/{task['id']}/comments", json={"body": "hi"}, headers=user.headers)
        if role is None:
            assert_problem(response, 404)
        elif may(role, COMMENTER):
            assert response.status_code == 201, (role, response.text)
            assert response.headers["location"] == f"{COMMENTS}/{response.json()['id']}"
            assert response.json()["author"]["id"] == user.id
            continue
        else:
            assert_forbidden(response, COMMENTER, role)
        assert await db_state() == before


async def test_a_demoted_author_may_still_delete_their_comment(client, team):
    """SPEC: the author deletes their comment (no role is named for that)."""
    comment = await _comment(client, team, team.scribe)
    await set_role(client, team.owner, team.project, team.scribe, VIEWER)
    assert (await client.delete(f"{COMMENTS}/{comment['id']}", headers=team.scribe.headers)).status_code == 204


async def test_a_demoted_author_no_longer_edits_their_comment(client, team):
    """SPEC: a viewer reads comments; writing them is the commenter's. Editing is writing."""
    comment = await _comment(client, team, team.scribe)
    await set_role(client, team.owner, team.project, team.scribe, VIEWER)
    before = await db_state()
    response = await client.patch(f"{COMMENTS}/{comment['id']}", json={"body": "x"}, headers=team.scribe.headers)
    assert_forbidden(response, COMMENTER)
    assert await db_state() == before


async def test_a_task_moved_to_an_inbox_takes_its_comments_out_of_reach(client, team):
    comment = await _comment(client, team, team.scribe)
    editor = team.members[ProjectRole.editor]
    moved = await client.patch(f"{TASKS}/{comment['task_id']}", json={"project_id": None}, headers=editor.headers)
    assert moved.status_code == 200, moved.text
    for user in (team.owner, team.scribe):
        assert_problem(await client.get(f"{COMMENTS}/{comment['id']}", headers=user.headers), 404)
        assert_problem(await client.get(f"{TASKS}/{comment['task_id']}/comments", headers=user.headers), 404)
    # The inbox's owner reads it, and may delete any comment on their own task.
    assert (await client.get(f"{COMMENTS}/{comment['id']}", headers=editor.headers)).status_code == 200
    assert (await client.delete(f"{COMMENTS}/{comment['id']}", headers=editor.headers)).status_code == 204


async def test_a_removed_member_cannot_replay_a_comment(client, team):
    """A retry of a comment made while a member, after removal, is the 404 a new one gets."""
    task = await create(client, team.owner, TASKS, {"title": "t", "project_id": team.project})
    key = {**team.scribe.headers, "Idempotency-Key": "comment-once"}
    first = await client.post(f"{TASKS}/{task['id']}/comments", json={"body": "hi"}, headers=key)
    assert first.status_code == 201
    replay = await client.post(f"{TASKS}/{task['id']}/comments", json={"body": "hi"}, headers=key)
    assert (replay.status_code, replay.headers.get("idempotent-replayed")) == (201, "true")
    await remove_member(client, team.owner, team.project, team.scribe)
    before = await db_state()
    retry = await client.post(f"{TASKS}/{task['id']}/comments", json={"body": "hi"}, headers=key)
    assert_problem(retry, 404)
    assert "idempotent-replayed" not in retry.headers
    assert await db_state() == before
