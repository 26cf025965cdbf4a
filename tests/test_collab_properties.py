"""Property test for SPEC "Collaboration": for random memberships (users x projects x roles, some
lowered or removed again), random tasks (inbox and project tasks, subtasks, by various creators)
and random moves of task trees, ``GET /api/v1/tasks`` walked to the end, by cursor and by
offset, gives each user exactly the tasks the model says they can see (their own inbox plus
every task of the projects they still belong to), under a random filter, in the sort's order.

Each example makes its own users and projects, so no reset is needed between examples: a new
user can see nothing made by another example.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.tables import ProjectRole
from tests.api.collab import (
    GIVEN_ROLES,
    PROJECTS,
    TASKS,
    add_member,
    app,
    create,
    may,
    quick_user,
    remove_member,
    set_role,
)
from tests.api.problems import run_sql
from tests.test_task_list_properties import _compare, _effective_keys, _sort_param, sort_data

__all__ = ["app"]  # fixture

N_USERS = 3
N_PROJECTS = 2
EDITOR = ProjectRole.editor
SORTED_COLUMNS = "id, created_at, updated_at, due_at, priority, title, position"

memberships = st.dictionaries(
    st.tuples(st.integers(0, N_USERS - 1), st.integers(0, N_PROJECTS - 1)),
    # The role, then what happens to it after the tasks are made.
    st.tuples(st.sampled_from(GIVEN_ROLES), st.sampled_from(["stays", "lowered", "removed"])),
    min_size=2,
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
# A tree's root, where it goes (None: the mover's inbox; "same": where it is, so only the
# source's role counts) and who tries to move it ("holder": its inbox's owner or its project's
# owner, so that many moves are allowed).
move_data = st.tuples(
    st.integers(0, 11),
    st.one_of(st.none(), st.just("same"), st.integers(0, N_PROJECTS - 1)),
    st.one_of(st.just("holder"), st.integers(0, N_USERS - 1)),
)
filter_data = st.one_of(
    st.none(),
    st.tuples(st.just("project_id"), st.integers(0, N_PROJECTS - 1)),
    st.tuples(st.just("inbox"), st.booleans()),
    st.tuples(st.just("priority"), st.lists(st.integers(0, 4), min_size=1, max_size=2)),
    st.tuples(st.just("parent_id"), st.integers(0, 11)),  # a task picked among those made
)


@dataclass
class Model:
    """Where each task is: its project (index) or the inbox of ``holder``; its parent."""

    project: dict[int, int | None]
    holder: dict[int, int]
    parent: dict[int, int | None]
    roles: dict[tuple[int, int], ProjectRole]

    def can_see(self, user: int, task: int) -> bool:
        p = self.project[task]
        return self.holder[task] == user if p is None else (user, p) in self.roles

    def may_edit(self, user: int, task: int) -> bool:
        p = self.project[task]
        return self.holder[task] == user if p is None else may(self.roles.get((user, p)), EDITOR)

    def subtree(self, root: int) -> list[int]:
        found = [root]
        for task in list(self.parent):
            if task not in found and self._under(task, root):
                found.append(task)
        return found

    def _under(self, task: int, root: int) -> bool:
        parent = self.parent[task]
        while parent is not None:
            if parent == root:
                return True
            parent = self.parent[parent]
        return False


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    owners=st.lists(st.integers(0, N_USERS - 1), min_size=N_PROJECTS, max_size=N_PROJECTS),
    members=memberships,
    tasks=st.lists(task_data, min_size=3, max_size=12),
    moves=st.lists(move_data, min_size=2, max_size=6),
    flt=filter_data,
    sort=sort_data,
    limit=st.integers(1, 4),
)
async def test_each_user_lists_exactly_what_the_model_says_they_can_see(
    client, owners, members, tasks, moves, flt, sort, limit
):
    users = [await quick_user(f"u{n}") for n in range(N_USERS)]
    projects = [
        (await create(client, users[owner], PROJECTS, {"name": f"p{n}"}))["id"] for n, owner in enumerate(owners)
    ]
    model = Model({}, {}, {}, {(owner, p): ProjectRole.owner for p, owner in enumerate(owners)})
    for (user, p), (role, _) in members.items():
        if (user, p) not in model.roles:
            await add_member(client, users[owners[p]], projects[p], users[user], role)
            model.roles[user, p] = role

    # A project task is created by its drawn creator if they may edit there, else by the owner.
    made: list[int] = []
    latest: dict[tuple[int | None, int | None], int] = {}
    for item in tasks:
        p, creator = item["project"], item["creator"]
        if p is not None and not may(model.roles.get((creator, p)), EDITOR):
            creator = owners[p]
        body: dict[str, Any] = {"title": item["title"], "priority": item["priority"]}
        place = (p, creator if p is None else None)
        parent = latest.get(place) if item["subtask"] else None
        if parent is not None:
            body["parent_id"] = parent  # no project_id: the parent's project
        else:
            body["project_id"] = None if p is None else projects[p]
        task = await create(client, users[creator], TASKS, body)
        assert task["project_id"] == (None if p is None else projects[p])
        assert task["created_by"] == users[creator].id
        made.append(task["id"])
        model.project[task["id"]], model.holder[task["id"]], model.parent[task["id"]] = p, creator, parent
        latest[place] = task["id"]

    for (user, p), (_, change) in members.items():
        if model.roles.get((user, p)) in (None, ProjectRole.owner) or change == "stays":
            continue
        if change == "removed":
            await remove_member(client, users[owners[p]], projects[p], users[user])
            del model.roles[user, p]
        else:
            await set_role(client, users[owners[p]], projects[p], users[user], ProjectRole.viewer)
            model.roles[user, p] = ProjectRole.viewer

    roots = [t for t in made if model.parent[t] is None]
    for pick, where, who in moves:
        if not roots:
            break
        root = roots[pick % len(roots)]
        source = model.project[root]
        target = source if where == "same" else where
        mover = (model.holder[root] if source is None else owners[source]) if who == "holder" else who
        allowed = model.may_edit(mover, root) and (target is None or may(model.roles.get((mover, target)), EDITOR))
        response = await client.patch(
            f"{TASKS}/{root}",
            json={"project_id": None if target is None else projects[target]},
            headers=users[mover].headers,
        )
        assert (response.status_code == 200) == allowed, (response.status_code, response.text, allowed)
        if allowed:
            for task in model.subtree(root):
                model.project[task] = target
                if target is None:
                    model.holder[task] = mover

    params = _filter_params(flt, projects, made)
    keys = _effective_keys(sort)
    if (sort_param := _sort_param(sort)) is not None:
        params["sort"] = sort_param
    rows = {r["id"]: dict(r) for r in await run_sql(f"SELECT {SORTED_COLUMNS} FROM task WHERE id = ANY({{}})", made)}
    for n, user in enumerate(users):
        visible = [t for t in made if model.can_see(n, t) and _selected(model, rows[t], made, flt)]
        expected = [
            r["id"]
            for r in sorted((rows[t] for t in visible), key=functools.cmp_to_key(functools.partial(_compare, keys)))
        ]
        assert await _walk_cursor(client, user, params, limit) == expected, (n, params)
        assert await _walk_offset(client, user, params, limit, len(expected)) == expected, (n, params)


def _filter_params(flt: tuple[str, Any] | None, projects: list[int], made: list[int]) -> dict[str, Any]:
    if flt is None:
        return {}
    name, value = flt
    if name == "project_id":
        return {"project_id": projects[value]}
    if name == "parent_id":
        return {"parent_id": made[value % len(made)]}
    return {name: str(value).lower() if isinstance(value, bool) else value}


def _selected(model: Model, row: dict[str, Any], made: list[int], flt: tuple[str, Any] | None) -> bool:
    if flt is None:
        return True
    name, value = flt
    task = row["id"]
    if name == "project_id":
        return model.project[task] == value
    if name == "parent_id":
        return model.parent[task] == made[value % len(made)]
    if name == "priority":
        return row["priority"] in value
    return (model.project[task] is None) == value


async def _walk_cursor(client: httpx.AsyncClient, user: Any, params: dict[str, Any], limit: int) -> list[int]:
    seen: list[int] = []
    page_params: dict[str, Any] = {**params, "limit": limit, "paginate": "cursor"}
    for _ in range(100):
        response = await client.get(TASKS, params=page_params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return seen
        page_params = {**params, "limit": limit, "cursor": page["next_cursor"]}
    raise AssertionError("the cursor walk did not end")


async def _walk_offset(
    client: httpx.AsyncClient, user: Any, params: dict[str, Any], limit: int, total: int
) -> list[int]:
    seen: list[int] = []
    for offset in range(0, max(total, 1), limit):
        response = await client.get(TASKS, params={**params, "limit": limit, "offset": offset}, headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json()["total"] == total
        seen += [item["id"] for item in response.json()["items"]]
    return seen
