"""Property test for SPEC "Collaboration": for random memberships (users x projects x roles, some
removed again) and random tasks (inbox and project tasks, subtasks, by various creators),
``GET /api/v1/tasks`` walked to the end by cursor gives each user exactly the tasks the model
says they can see: their own inbox plus every task of the projects they (still) belong to.

Each example makes its own users and projects, so no reset is needed between examples: a new
user can see nothing made by another example.
"""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.tables import ProjectRole
from tests.api.collab import GIVEN_ROLES, PROJECTS, TASKS, add_member, app, create, may, quick_user, remove_member

__all__ = ["app"]  # fixture

N_USERS = 4
N_PROJECTS = 3
SORTS = ["id", "-created_at", "title,-id", "-priority"]

memberships = st.dictionaries(
    st.tuples(st.integers(0, N_USERS - 1), st.integers(0, N_PROJECTS - 1)),
    st.tuples(st.sampled_from(GIVEN_ROLES), st.booleans()),  # the role, and whether they are removed later
    max_size=N_USERS * N_PROJECTS,
)
task_data = st.fixed_dictionaries(
    {
        "creator": st.integers(0, N_USERS - 1),
        "project": st.one_of(st.none(), st.integers(0, N_PROJECTS - 1)),
        "subtask": st.booleans(),  # of the latest task in the same place, if any
        "title": st.sampled_from("abc"),
        "priority": st.integers(0, 4),
    }
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    owners=st.lists(st.integers(0, N_USERS - 1), min_size=N_PROJECTS, max_size=N_PROJECTS),
    members=memberships,
    tasks=st.lists(task_data, max_size=12),
    sort=st.sampled_from(SORTS),
    limit=st.integers(1, 4),
)
async def test_each_user_lists_exactly_what_the_model_says_they_can_see(client, owners, members, tasks, sort, limit):
    users = [await quick_user(f"u{n}") for n in range(N_USERS)]
    projects = [
        (await create(client, users[owner], PROJECTS, {"name": f"p{n}"}))["id"] for n, owner in enumerate(owners)
    ]
    roles: dict[tuple[int, int], ProjectRole] = {(owner, p): ProjectRole.owner for p, owner in enumerate(owners)}
    for (user, p), (role, _) in members.items():
        if (user, p) not in roles:
            await add_member(client, users[owners[p]], projects[p], users[user], role)
            roles[user, p] = role

    # Tasks: a project task is created by its drawn creator if they may edit there, else by the owner.
    made: list[tuple[int, int | None, int]] = []  # (task id, project index or None, inbox owner)
    latest: dict[tuple[int | None, int | None], int] = {}
    for item in tasks:
        p = item["project"]
        creator = item["creator"]
        if p is not None and not may(roles.get((creator, p)), ProjectRole.editor):
            creator = owners[p]
        body: dict[str, Any] = {"title": item["title"], "priority": item["priority"]}
        place = (p, creator if p is None else None)
        if item["subtask"] and place in latest:
            body["parent_id"] = latest[place]  # no project_id: the parent's project
        else:
            body["project_id"] = None if p is None else projects[p]
        task = await create(client, users[creator], TASKS, body)
        assert task["project_id"] == (None if p is None else projects[p])
        assert task["created_by"] == users[creator].id
        made.append((task["id"], p, creator))
        latest[place] = task["id"]

    for (user, p), (_, removed) in members.items():
        if removed and roles.get((user, p)) not in (None, ProjectRole.owner):
            await remove_member(client, users[owners[p]], projects[p], users[user])
            del roles[user, p]

    for n, user in enumerate(users):
        expected = sorted(
            task_id
            for task_id, p, creator in made
            if (p is None and creator == n) or (p is not None and (n, p) in roles)
        )
        walked = await _walk(client, user, sort, limit)
        assert len(walked) == len(set(walked)), walked
        assert sorted(walked) == expected, (n, sort, limit)
        page = await client.get(TASKS, params={"limit": 100}, headers=user.headers)
        assert page.json()["total"] == len(expected)


async def _walk(client: httpx.AsyncClient, user: Any, sort: str, limit: int) -> list[int]:
    seen: list[int] = []
    params: dict[str, Any] = {"sort": sort, "limit": limit, "paginate": "cursor"}
    for _ in range(100):
        response = await client.get(TASKS, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return seen
        params = {"sort": sort, "limit": limit, "cursor": page["next_cursor"]}
    raise AssertionError("the cursor walk did not end")
