"""A project's members: the list, role changes, removal and leaving, transfer, and races."""

from __future__ import annotations

import asyncio

from app.tables import ProjectRole
from tests.api.problems import assert_problem, run_sql
from tests.api.sharing import MEMBER_ROLES, PROJECTS, join, make_team, roles
from tests.conftest import count_rows

VIEWER, COMMENTER, EDITOR, ADMIN, OWNER = ProjectRole


# --------------------------------------------------------------------------------------------
# The list


async def test_members_are_a_plain_array_by_joined_at_then_user_id(client, register):
    team = await make_team(client, register)
    response = await client.get(f"{team.url}/members", headers=team.members[VIEWER].headers)
    assert response.status_code == 200, response.text
    members = response.json()
    assert isinstance(members, list)
    # The owner first (created the project), then each in the order they joined.
    assert [(m["user"]["id"], m["role"]) for m in members] == [(team.owner.id, "owner")] + [
        (team.members[r].id, r.value) for r in MEMBER_ROLES
    ]
    for member in members:
        assert set(member) == {"user", "role", "joined_at"}
        assert set(member["user"]) == {"id", "email", "display_name"}
        assert member["joined_at"].endswith("Z")
    by_id = {m["user"]["id"]: m["user"] for m in members}
    assert by_id[team.owner.id]["email"] == team.owner.email
    # Same joined_at: ties go by user id.
    await run_sql("UPDATE project_member SET joined_at = '2025-01-01T00:00:00Z'")
    tied = (await client.get(f"{team.url}/members", headers=team.owner.headers)).json()
    assert [m["user"]["id"] for m in tied] == sorted(by_id)


async def test_members_of_a_missing_or_foreign_project_are_404(client, register):
    team = await make_team(client, register)
    assert_problem(await client.get(f"{team.url}/members", headers=team.outsider.headers), 404)
    assert_problem(await client.get(f"{PROJECTS}/999/members", headers=team.owner.headers), 404)


# --------------------------------------------------------------------------------------------
# Roles


async def test_an_admin_changes_roles_below_owner(client, register):
    team = await make_team(client, register)
    admin, editor = team.members[ADMIN], team.members[EDITOR]
    for role in MEMBER_ROLES:
        response = await client.patch(
            f"{team.url}/members/{editor.id}", json={"role": role.value}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["role"] == role.value
        assert response.json()["user"] == {"id": editor.id, "email": editor.email, "display_name": ""}
        assert (await roles(client, team))[editor.id] == role.value
        assert (await client.get(team.url, headers=editor.headers)).json()["role"] == role.value
    # Another admin, and the admin itself.
    assert (
        await client.patch(f"{team.url}/members/{admin.id}", json={"role": "editor"}, headers=admin.headers)
    ).status_code == 200
    assert (await roles(client, team))[admin.id] == "editor"


async def test_nobody_is_made_owner_by_a_role_change(client, register):
    team = await make_team(client, register)
    for by in (team.members[ADMIN], team.owner):
        response = await client.patch(
            f"{team.url}/members/{team.members[EDITOR].id}", json={"role": "owner"}, headers=by.headers
        )
        body = assert_problem(response, 422, "role")
        assert "transfer" in body["errors"][0]["message"]
    # A member below admin asking the same learns only that it needs admin; an outsider, nothing.
    below = await client.patch(
        f"{team.url}/members/{team.members[VIEWER].id}", json={"role": "owner"}, headers=team.members[EDITOR].headers
    )
    assert assert_problem(below, 403)["required_role"] == "admin"
    outside = await client.patch(
        f"{team.url}/members/{team.members[VIEWER].id}", json={"role": "owner"}, headers=team.outsider.headers
    )
    assert_problem(outside, 404)
    assert (await roles(client, team))[team.members[EDITOR].id] == "editor"


async def test_the_owners_role_changes_only_by_transfer(client, register):
    team = await make_team(client, register)
    for by in (team.members[ADMIN], team.owner):
        response = await client.patch(f"{team.url}/members/{team.owner.id}", json={"role": "admin"}, headers=by.headers)
        assert "transfer" in assert_problem(response, 409)["detail"]
    assert (await roles(client, team))[team.owner.id] == "owner"


async def test_bad_role_bodies_are_400_and_unknown_members_404(client, register):
    team = await make_team(client, register)
    url = f"{team.url}/members/{team.members[VIEWER].id}"
    for body, field in [
        ({"role": "boss"}, "role"),
        ({}, "role"),
        ({"role": None}, "role"),
        ({"role": "viewer", "x": 1}, "x"),
    ]:
        assert_problem(await client.patch(url, json=body, headers=team.owner.headers), 400, field, case=body)
    assert_problem(
        await client.patch(
            f"{team.url}/members/{team.outsider.id}", json={"role": "viewer"}, headers=team.owner.headers
        ),
        404,
    )
    assert_problem(
        await client.patch(f"{team.url}/members/424242", json={"role": "viewer"}, headers=team.owner.headers), 404
    )
    assert (await roles(client, team))[team.members[VIEWER].id] == "viewer"


async def test_two_admins_changing_one_members_role_at_once(client, register):
    team = await make_team(client, register)
    second_admin = await register()
    await join(client, team.owner, team.id, second_admin, "admin")
    target = team.members[VIEWER]
    url = f"{team.url}/members/{target.id}"
    for _ in range(10):
        first, second = await asyncio.gather(
            client.patch(url, json={"role": "editor"}, headers=team.members[ADMIN].headers),
            client.patch(url, json={"role": "commenter"}, headers=second_admin.headers),
        )
        # Last write wins: both answer 200, the member has one role, one of the two.
        assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
        # Each answer shows its own write (read in its own transaction, under its row lock).
        assert (first.json()["role"], second.json()["role"]) == ("editor", "commenter")
        final = await client.get(f"{team.url}/members", headers=team.owner.headers)
        assert [m["role"] for m in final.json() if m["user"]["id"] == target.id] in (["editor"], ["commenter"])
    assert await count_rows("project_member") == 6  # the owner, one member per role, the second admin


async def test_an_admin_demoted_while_demoting_others(client, register):
    """Two admins demote each other at once: whichever statement runs second sees the first one's
    committed demotion, so at most one of them succeeds when both run one after the other, and
    there is never an answer that disagrees with what was stored."""
    team = await make_team(client, register)
    a, b = team.members[ADMIN], await register()
    await join(client, team.owner, team.id, b, "admin")
    for _ in range(10):
        for user in (a, b):
            restored = await client.patch(
                f"{team.url}/members/{user.id}", json={"role": "admin"}, headers=team.owner.headers
            )
            assert restored.status_code == 200
        ra, rb = await asyncio.gather(
            client.patch(f"{team.url}/members/{b.id}", json={"role": "viewer"}, headers=a.headers),
            client.patch(f"{team.url}/members/{a.id}", json={"role": "viewer"}, headers=b.headers),
        )
        assert {ra.status_code, rb.status_code} <= {200, 403}
        stored = await roles(client, team)
        assert (stored[b.id] == "viewer") == (ra.status_code == 200)
        assert (stored[a.id] == "viewer") == (rb.status_code == 200)


# --------------------------------------------------------------------------------------------
# Removal and leaving


async def test_a_removed_member_loses_access_at_once(client, register):
    team = await make_team(client, register)
    editor = team.members[EDITOR]
    assert (await client.get(team.url, headers=editor.headers)).status_code == 200
    removed = await client.delete(f"{team.url}/members/{editor.id}", headers=team.members[ADMIN].headers)
    assert removed.status_code == 204
    assert removed.content == b""
    assert_problem(await client.get(team.url, headers=editor.headers), 404)
    assert_problem(await client.get(f"{team.url}/members", headers=editor.headers), 404)
    assert (await client.get(PROJECTS, headers=editor.headers)).json()["total"] == 0
    assert editor.id not in await roles(client, team)
    # Removing them again: they are no member.
    assert_problem(await client.delete(f"{team.url}/members/{editor.id}", headers=team.owner.headers), 404)


async def test_removal_unassigns_the_member_in_that_project_only(client, register):
    team = await make_team(client, register)
    editor = team.members[EDITOR]
    elsewhere = (await client.post(PROJECTS, json={"name": "Elsewhere"}, headers=team.owner.headers)).json()
    await join(client, team.owner, elsewhere["id"], editor, "editor")
    await run_sql(
        "INSERT INTO task (owner, created_by, project, title) VALUES ({}, {}, {}, 'here'), ({}, {}, {}, 'there')",
        team.owner.id,
        team.owner.id,
        team.id,
        team.owner.id,
        team.owner.id,
        elsewhere["id"],
    )
    await run_sql("INSERT INTO task_assignee (task, assignee) SELECT id, {} FROM task", editor.id)
    await run_sql("INSERT INTO task_assignee (task, assignee) SELECT id, {} FROM task", team.owner.id)
    assert await count_rows("task_assignee") == 4
    assert (await client.delete(f"{team.url}/members/{editor.id}", headers=team.owner.headers)).status_code == 204
    left = await run_sql("SELECT t.title, a.assignee FROM task_assignee a JOIN task t ON t.id = a.task ORDER BY 1, 2")
    assert [(r["title"], r["assignee"]) for r in left] == sorted(
        [("here", team.owner.id), ("there", editor.id), ("there", team.owner.id)]
    )


async def test_any_member_but_the_owner_may_leave(client, register):
    team = await make_team(client, register)
    for role in MEMBER_ROLES:
        user = team.members[role]
        response = await client.delete(f"{team.url}/members/{user.id}", headers=user.headers)
        assert response.status_code == 204, (role, response.text)
        assert_problem(await client.get(team.url, headers=user.headers), 404)
    assert list((await roles(client, team)).values()) == ["owner"]


async def test_the_owner_cannot_leave_or_be_removed(client, register):
    team = await make_team(client, register)
    for by in (team.owner, team.members[ADMIN]):
        response = await client.delete(f"{team.url}/members/{team.owner.id}", headers=by.headers)
        assert "transfer" in assert_problem(response, 409)["detail"]
    assert (await roles(client, team))[team.owner.id] == "owner"


async def test_members_below_admin_remove_only_themselves(client, register):
    team = await make_team(client, register)
    for role in (VIEWER, COMMENTER, EDITOR):
        response = await client.delete(
            f"{team.url}/members/{team.members[ADMIN].id}", headers=team.members[role].headers
        )
        assert assert_problem(response, 403)["required_role"] == "admin"
    assert len(await roles(client, team)) == 5


# --------------------------------------------------------------------------------------------
# Transfer


async def test_transfer_makes_a_member_owner_and_the_owner_admin(client, register):
    team = await make_team(client, register)
    editor = team.members[EDITOR]
    response = await client.post(f"{team.url}/transfer", json={"user_id": editor.id}, headers=team.owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["role"] == "admin"
    assert body["id"] == team.id
    assert body["version"] == team.project["version"] + 1
    assert response.headers["etag"] == f'"{body["version"]}"'
    stored = await roles(client, team)
    assert (stored[editor.id], stored[team.owner.id]) == ("owner", "admin")
    assert list(stored.values()).count("owner") == 1
    assert (await client.get(team.url, headers=editor.headers)).json()["role"] == "owner"
    # The old owner may now leave, and may no longer delete; the new one may.
    assert_problem(await client.delete(team.url, headers=team.owner.headers), 403)
    assert (await client.delete(f"{team.url}/members/{team.owner.id}", headers=team.owner.headers)).status_code == 204
    assert (await client.delete(team.url, headers=editor.headers)).status_code == 204


async def test_transfer_needs_a_member_other_than_the_owner(client, register):
    team = await make_team(client, register)
    url = f"{team.url}/transfer"
    for user_id in (team.outsider.id, 424242, team.owner.id):
        response = await client.post(url, json={"user_id": user_id}, headers=team.owner.headers)
        assert_problem(response, 422, "user_id", case=user_id)
    for body, field in [
        ({}, "user_id"),
        ({"user_id": 0}, "user_id"),
        ({"user_id": "2"}, "user_id"),
        ({"user_id": 2, "x": 1}, "x"),
    ]:
        assert_problem(await client.post(url, json=body, headers=team.owner.headers), 400, field, case=body)
    # Only the owner transfers; an outsider learns nothing.
    response = await client.post(url, json={"user_id": team.members[EDITOR].id}, headers=team.members[ADMIN].headers)
    assert assert_problem(response, 403)["required_role"] == "owner"
    assert_problem(await client.post(url, json={"user_id": team.outsider.id}, headers=team.outsider.headers), 404)
    assert (await roles(client, team))[team.owner.id] == "owner"
    assert (await client.get(team.url, headers=team.owner.headers)).json()["version"] == team.project["version"]


async def test_two_transfers_at_once_leave_one_owner(client, register):
    team = await make_team(client, register)
    url = f"{team.url}/transfer"
    for _ in range(6):
        first, second = await asyncio.gather(
            client.post(url, json={"user_id": team.members[EDITOR].id}, headers=team.owner.headers),
            client.post(url, json={"user_id": team.members[VIEWER].id}, headers=team.owner.headers),
        )
        # The second finds the caller an admin by then: 403, as for any admin.
        assert sorted([first.status_code, second.status_code]) == [200, 403], (first.text, second.text)
        was = EDITOR if first.status_code == 200 else VIEWER
        winner = team.members[was]
        stored = await roles(client, team)
        assert [uid for uid, role in stored.items() if role == "owner"] == [winner.id]
        assert stored[team.owner.id] == "admin"
        back = await client.post(url, json={"user_id": team.owner.id}, headers=winner.headers)
        assert back.status_code == 200, back.text
        restored = await client.patch(
            f"{team.url}/members/{winner.id}", json={"role": was.value}, headers=team.owner.headers
        )
        assert restored.status_code == 200


async def test_a_transfer_racing_the_recipients_removal(client, register):
    team = await make_team(client, register)
    for _ in range(8):
        target = await register()
        await join(client, team.owner, team.id, target, "editor")
        transfer, leave = await asyncio.gather(
            client.post(f"{team.url}/transfer", json={"user_id": target.id}, headers=team.owner.headers),
            client.delete(f"{team.url}/members/{target.id}", headers=target.headers),
        )
        stored = await roles(client, team)
        assert list(stored.values()).count("owner") == 1
        if transfer.status_code == 200:  # then the recipient, as owner, could not leave
            assert leave.status_code == 409, leave.text
            assert stored[target.id] == "owner"
            back = await client.post(f"{team.url}/transfer", json={"user_id": team.owner.id}, headers=target.headers)
            assert back.status_code == 200
            await client.delete(f"{team.url}/members/{target.id}", headers=target.headers)
        else:
            assert transfer.status_code in (409, 422), transfer.text
            assert leave.status_code == 204
            assert target.id not in stored
            assert stored[team.owner.id] == "owner"
