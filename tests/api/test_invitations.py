"""Invitations: nobody joins without consent, and nobody learns which emails have accounts."""

from __future__ import annotations

import asyncio
import datetime as dt

from app.services.invitations import TTL
from app.tables import ProjectRole
from tests.api.problems import assert_problem, run_sql
from tests.api.sharing import PROJECTS, Team, invite, make_team, roles
from tests.conftest import count_rows

MINE = "/api/v1/invitations"
FIELDS = {"id", "project_id", "email", "role", "status", "inviter_id", "created_at", "expires_at"}


async def _team_and_guest(client, register) -> tuple[Team, object]:
    team = await make_team(client, register)
    guest = await register("guest@example.com")
    return team, guest


async def _statuses(client, team: Team) -> dict[int, str]:
    listed = (await client.get(f"{team.url}/invitations?limit=100", headers=team.owner.headers)).json()
    return {i["id"]: i["status"] for i in listed["items"]}


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# --------------------------------------------------------------------------------------------
# Sending


async def test_an_invitation_is_the_same_whether_or_not_the_email_has_an_account(client, register):
    team, _guest = await _team_and_guest(client, register)  # guest@example.com has an account
    answers = {}
    for email in ("Guest@Example.com", "nobody-here@example.com"):
        response = await client.post(
            f"{team.url}/invitations",
            json={"email": email, "role": "editor"},
            headers=team.members[ProjectRole.admin].headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == FIELDS
        assert response.headers["location"] == f"{MINE}/{body['id']}"
        assert "etag" not in response.headers
        assert (body["project_id"], body["role"], body["status"]) == (team.id, "editor", "pending")
        assert body["inviter_id"] == team.members[ProjectRole.admin].id
        assert _at(body["expires_at"]) - _at(body["created_at"]) == TTL == dt.timedelta(days=7)
        assert body["created_at"].endswith("Z")
        answers[email] = {k: v for k, v in body.items() if k not in {"id", "email", "created_at", "expires_at"}}
        answers[email]["headers"] = sorted(k for k in response.headers if k != "ratelimit")
    assert answers["Guest@Example.com"] == answers["nobody-here@example.com"]
    listed = (await client.get(f"{team.url}/invitations", headers=team.owner.headers)).json()
    # Newest first; emails as accounts store theirs.
    assert [i["email"] for i in listed["items"][:2]] == ["nobody-here@example.com", "guest@example.com"]
    assert listed["total"] == 2 + 4  # and the team's own, accepted


async def test_bad_invitation_bodies(client, register):
    team = await make_team(client, register)
    url = f"{team.url}/invitations"
    for body, field in [
        ({"email": "x@example.com"}, "role"),
        ({"role": "viewer"}, "email"),
        ({"email": "not-an-email", "role": "viewer"}, "email"),
        ({"email": "x@example.com", "role": "boss"}, "role"),
        ({"email": "x@example.com", "role": "viewer", "status": "accepted"}, "status"),
        ({"email": "x\u200b@example.com", "role": "viewer"}, "email"),
    ]:
        assert_problem(await client.post(url, json=body, headers=team.owner.headers), 400, field, case=body)
    owner = await client.post(url, json={"email": "x@example.com", "role": "owner"}, headers=team.owner.headers)
    assert_problem(owner, 422, "role")
    assert await count_rows("invitation") == 4  # the team's own, all accepted


async def test_members_and_open_invitations_are_not_invited_twice(client, register):
    team, guest = await _team_and_guest(client, register)
    url = f"{team.url}/invitations"
    member = await client.post(
        url,
        json={"email": team.members[ProjectRole.viewer].email.upper(), "role": "editor"},
        headers=team.owner.headers,
    )
    assert "already a member" in assert_problem(member, 409)["detail"]
    first = await invite(client, team.owner, team.id, guest.email, "viewer")
    again = await client.post(url, json={"email": guest.email, "role": "editor"}, headers=team.owner.headers)
    assert "pending invitation" in assert_problem(again, 409)["detail"]
    # Once withdrawn, or expired, the email may be invited again.
    assert (await client.delete(f"{MINE}/{first['id']}", headers=team.owner.headers)).status_code == 204
    second = await invite(client, team.owner, team.id, guest.email, "editor")
    await run_sql("UPDATE invitation SET expires_at = now() - interval '1 second' WHERE id = {}", second["id"])
    third = await invite(client, team.owner, team.id, guest.email, "commenter")
    statuses = await _statuses(client, team)
    assert (statuses[first["id"]], statuses[second["id"]], statuses[third["id"]]) == ("withdrawn", "pending", "pending")


async def test_two_invitations_of_one_email_at_once_make_one(client, register):
    team = await make_team(client, register)
    for n in range(8):
        body = {"email": f"race{n}@example.com", "role": "viewer"}
        first, second = await asyncio.gather(
            client.post(f"{team.url}/invitations", json=body, headers=team.owner.headers),
            client.post(f"{team.url}/invitations", json=body, headers=team.members[ProjectRole.admin].headers),
        )
        assert sorted([first.status_code, second.status_code]) == [201, 409], (first.text, second.text)
    assert await count_rows("invitation") == 4 + 8


async def test_an_idempotent_retry_replays_the_invitation(client, register):
    team = await make_team(client, register)
    headers = {**team.owner.headers, "Idempotency-Key": "invite-1"}
    body = {"email": "retry@example.com", "role": "viewer"}
    first = await client.post(f"{team.url}/invitations", json=body, headers=headers)
    again = await client.post(f"{team.url}/invitations", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await client.post(f"{team.url}/invitations", json={**body, "role": "editor"}, headers=headers)
    assert_problem(other, 422)
    assert await count_rows("invitation") == 5


# --------------------------------------------------------------------------------------------
# Answering


async def test_the_invited_account_sees_accepts_and_joins(client, register):
    team, guest = await _team_and_guest(client, register)
    assert (await client.get(MINE, headers=guest.headers)).json() == {"items": [], "total": 0, "limit": 20, "offset": 0}
    sent = await invite(client, team.members[ProjectRole.admin], team.id, "GUEST@example.com", "commenter")
    mine = (await client.get(MINE, headers=guest.headers)).json()
    assert mine["items"] == [sent]
    assert mine["total"] == 1
    # Nobody else sees it in theirs.
    for other in (team.owner, team.outsider):
        assert (await client.get(MINE, headers=other.headers)).json()["total"] == 0
    assert_problem(await client.get(team.url, headers=guest.headers), 404)

    accepted = await client.post(f"{MINE}/{sent['id']}/accept", headers=guest.headers)
    assert accepted.status_code == 200, accepted.text
    membership = accepted.json()
    assert set(membership) == {"user", "role", "joined_at"}
    assert membership["user"] == {"id": guest.id, "email": guest.email, "display_name": ""}
    assert membership["role"] == "commenter"
    project = await client.get(team.url, headers=guest.headers)
    assert project.status_code == 200
    assert project.json()["role"] == "commenter"
    assert (await roles(client, team))[guest.id] == "commenter"
    assert (await _statuses(client, team))[sent["id"]] == "accepted"
    assert (await client.get(MINE, headers=guest.headers)).json()["total"] == 0
    # Answered once: a second accept or a decline is a conflict; the membership is unchanged.
    assert_problem(await client.post(f"{MINE}/{sent['id']}/accept", headers=guest.headers), 409)
    assert_problem(await client.post(f"{MINE}/{sent['id']}/decline", headers=guest.headers), 409)
    assert_problem(await client.delete(f"{MINE}/{sent['id']}", headers=team.owner.headers), 409)
    assert (await roles(client, team))[guest.id] == "commenter"


async def test_an_account_made_after_the_invitation_can_accept_it(client, register):
    team = await make_team(client, register)
    sent = await invite(client, team.owner, team.id, "later@example.com", "viewer")
    later = await register("Later@Example.com")
    assert [i["id"] for i in (await client.get(MINE, headers=later.headers)).json()["items"]] == [sent["id"]]
    assert (await client.post(f"{MINE}/{sent['id']}/accept", headers=later.headers)).status_code == 200


async def test_declining(client, register):
    team, guest = await _team_and_guest(client, register)
    sent = await invite(client, team.owner, team.id, guest.email, "editor")
    declined = await client.post(f"{MINE}/{sent['id']}/decline", headers=guest.headers)
    assert declined.status_code == 204
    assert declined.content == b""
    assert (await _statuses(client, team))[sent["id"]] == "declined"
    assert guest.id not in await roles(client, team)
    assert (await client.get(MINE, headers=guest.headers)).json()["total"] == 0
    assert_problem(await client.post(f"{MINE}/{sent['id']}/accept", headers=guest.headers), 409)
    assert_problem(await client.get(team.url, headers=guest.headers), 404)


async def test_an_expired_invitation_is_gone(client, register):
    team, guest = await _team_and_guest(client, register)
    sent = await invite(client, team.owner, team.id, guest.email, "editor")
    await run_sql("UPDATE invitation SET expires_at = now() - interval '1 second' WHERE id = {}", sent["id"])
    assert (await client.get(MINE, headers=guest.headers)).json()["total"] == 0
    for answer in ("accept", "decline"):
        body = assert_problem(await client.post(f"{MINE}/{sent['id']}/{answer}", headers=guest.headers), 410)
        assert "expired" in body["detail"]
    assert guest.id not in await roles(client, team)
    assert (await _statuses(client, team))[sent["id"]] == "pending"  # as it was: expired by its time


async def test_a_withdrawn_invitation_is_gone(client, register):
    team, guest = await _team_and_guest(client, register)
    sent = await invite(client, team.owner, team.id, guest.email, "editor")
    # Below admin: 403; the invitee or an outsider: 404, as for a missing invitation.
    editor = team.members[ProjectRole.editor]
    assert (
        assert_problem(await client.delete(f"{MINE}/{sent['id']}", headers=editor.headers), 403)["required_role"]
        == "admin"
    )
    for other in (guest, team.outsider):
        assert_problem(await client.delete(f"{MINE}/{sent['id']}", headers=other.headers), 404)
    withdrawn = await client.delete(f"{MINE}/{sent['id']}", headers=team.members[ProjectRole.admin].headers)
    assert withdrawn.status_code == 204
    assert (await _statuses(client, team))[sent["id"]] == "withdrawn"
    assert (await client.get(MINE, headers=guest.headers)).json()["total"] == 0
    for answer in ("accept", "decline"):
        body = assert_problem(await client.post(f"{MINE}/{sent['id']}/{answer}", headers=guest.headers), 410)
        assert "withdrawn" in body["detail"]
    assert_problem(await client.delete(f"{MINE}/{sent['id']}", headers=team.owner.headers), 409)
    assert guest.id not in await roles(client, team)


async def test_another_account_gets_exactly_what_a_missing_invitation_gets(client, register):
    team, guest = await _team_and_guest(client, register)
    sent = await invite(client, team.owner, team.id, guest.email, "editor")
    missing = int("9" * len(str(sent["id"])))
    for other in (team.owner, team.members[ProjectRole.admin], team.outsider):
        for answer in ("accept", "decline"):
            seen = await client.post(f"{MINE}/{sent['id']}/{answer}", headers=other.headers)
            absent = await client.post(f"{MINE}/{missing}/{answer}", headers=other.headers)
            assert_problem(seen, 404)
            assert seen.text.replace(str(sent["id"]), str(missing)) == absent.text
            assert {k: v for k, v in seen.headers.items() if k != "ratelimit"} == {
                k: v for k, v in absent.headers.items() if k != "ratelimit"
            }
    assert (await _statuses(client, team))[sent["id"]] == "pending"
    assert (await client.post(f"{MINE}/{sent['id']}/accept", headers=guest.headers)).status_code == 200


async def test_two_accepts_at_once_make_one_member(client, register):
    team = await make_team(client, register)
    for n in range(8):
        guest = await register(f"both{n}@example.com")
        sent = await invite(client, team.owner, team.id, guest.email, "viewer")
        first, second = await asyncio.gather(
            client.post(f"{MINE}/{sent['id']}/accept", headers=guest.headers),
            client.post(f"{MINE}/{sent['id']}/accept", headers=guest.headers),
        )
        assert sorted([first.status_code, second.status_code]) == [200, 409], (first.text, second.text)
    assert await count_rows("project_member") == 5 + 8


async def test_accept_racing_withdraw(client, register):
    team = await make_team(client, register)
    for n in range(8):
        guest = await register(f"race{n}@example.com")
        sent = await invite(client, team.owner, team.id, guest.email, "viewer")
        accept, withdraw = await asyncio.gather(
            client.post(f"{MINE}/{sent['id']}/accept", headers=guest.headers),
            client.delete(f"{MINE}/{sent['id']}", headers=team.owner.headers),
        )
        member = guest.id in await roles(client, team)
        status = (await _statuses(client, team))[sent["id"]]
        if accept.status_code == 200:
            assert (withdraw.status_code, member, status) == (409, True, "accepted")
        else:
            assert (accept.status_code, withdraw.status_code, member, status) == (410, 204, False, "withdrawn")


async def test_invitation_lists_page(client, register):
    team, guest = await _team_and_guest(client, register)
    others = []
    for n in range(3):
        project = (await client.post(PROJECTS, json={"name": f"p{n}"}, headers=team.outsider.headers)).json()
        others.append(await invite(client, team.outsider, project["id"], guest.email, "viewer"))
    page = (await client.get(MINE, params={"limit": 2}, headers=guest.headers)).json()
    assert [i["id"] for i in page["items"]] == [others[2]["id"], others[1]["id"]]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    rest = (await client.get(MINE, params={"limit": 2, "offset": 2}, headers=guest.headers)).json()
    assert [i["id"] for i in rest["items"]] == [others[0]["id"]]
    assert rest["total"] == 3
    for params, field in [({"limit": 0}, "limit"), ({"offset": -1}, "offset")]:
        assert_problem(await client.get(MINE, params=params, headers=guest.headers), 400, field)
    project_page = (
        await client.get(f"{team.url}/invitations", params={"limit": 3, "offset": 1}, headers=team.owner.headers)
    ).json()
    assert (project_page["total"], len(project_page["items"])) == (4, 3)
    # Empty for a project with no invitations, 403 / 404 as for any admin action.
    fresh = (await client.post(PROJECTS, json={"name": "fresh"}, headers=guest.headers)).json()
    empty = await client.get(f"{PROJECTS}/{fresh['id']}/invitations", headers=guest.headers)
    assert empty.json() == {"items": [], "total": 0, "limit": 20, "offset": 0}
    assert_problem(await client.get(f"{PROJECTS}/{fresh['id']}/invitations", headers=team.owner.headers), 404)
