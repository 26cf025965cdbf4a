"""Clients generated from the live OpenAPI document work, as a client author would use them.

- openapi-python-client generates a Python package from ``/schema/openapi.json`` of a real
  ``taskapi serve`` process; the test imports it and drives a whole workflow with its typed
  functions and models (no raw JSON): register, token, projects, labels, tasks with filters, a
  cursor walk, a stale If-Match (412), an idempotent replay, bulk create and patch, comments,
  deletes.
- openapi-typescript generates TypeScript types from the same document, and ``tsc --strict``
  type-checks tests/clients/ts/check.ts against them (defaulted body fields optional, answer
  fields required, a problem's ``errors[].index``). The npm packages are pinned in
  tests/clients/ts/package-lock.json; ``npm ci`` installs them when node_modules is absent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.serverproc import ServerProcess, serving

pytestmark = pytest.mark.slow

TS_DIR = Path(__file__).resolve().parent / "clients" / "ts"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "taskapi_client"


@pytest.fixture
async def server(admin_url: str) -> AsyncIterator[ServerProcess]:
    """A ``taskapi serve`` process on a fresh, migrated database."""
    async with serving(admin_url, "taskapi_clients") as server:
        yield server


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Any]:
    """``generated(document) -> the imported client package``; unimported afterwards."""

    def generate(document: bytes) -> ModuleType:
        spec = tmp_path / "openapi.json"
        spec.write_bytes(document)
        result = subprocess.run(
            [
                str(GENERATOR),
                "generate",
                "--path",
                str(spec),
                "--output-path",
                str(tmp_path / PACKAGE),
                "--meta",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
        sys.path.insert(0, str(tmp_path))
        importlib.invalidate_caches()
        return importlib.import_module(PACKAGE)

    try:
        yield generate
    finally:
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _api(module: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.{module}")


async def test_python_client_workflow(server: ServerProcess, generated: Any) -> None:
    document = (await asyncio.to_thread(httpx.get, server.base_url + "/schema/openapi.json", timeout=10)).content
    client_package = generated(document)
    anonymous = client_package.Client(base_url=server.base_url, raise_on_unexpected_status=True)
    async with anonymous:
        token = await _register_and_log_in(client_package, anonymous)
    async with client_package.AuthenticatedClient(
        base_url=server.base_url, token=token, raise_on_unexpected_status=True
    ) as api:
        await _workflow(api)


async def _register_and_log_in(client_package: ModuleType, anonymous: Any) -> str:
    """Public operations, with the unauthenticated Client; returns the access token."""
    m = importlib.import_module(f"{PACKAGE}.models")
    auth = _api("auth")
    # Every operation's module imports (the token endpoint's did not, with two body media types).
    for module in ("issue_token", "register", "revoke_tokens"):
        importlib.import_module(f"{PACKAGE}.api.auth.{module}")
    for module in (
        "list_tasks",
        "create_task",
        "get_task",
        "update_task",
        "delete_task",
        "create_tasks",
        "update_tasks",
    ):
        importlib.import_module(f"{PACKAGE}.api.tasks.{module}")
    for module in ("list_projects", "create_project", "get_project", "update_project", "delete_project"):
        importlib.import_module(f"{PACKAGE}.api.projects.{module}")
    for module in ("list_labels", "create_label", "get_label", "update_label", "delete_label"):
        importlib.import_module(f"{PACKAGE}.api.labels.{module}")
    for module in ("list_comments", "create_comment", "get_comment", "update_comment", "delete_comment"):
        importlib.import_module(f"{PACKAGE}.api.comments.{module}")
    importlib.import_module(f"{PACKAGE}.api.users.get_me")

    email, password = "ada.client@example.com", "correct-horse-battery"
    registered = await auth.register.asyncio_detailed(
        client=anonymous, body=m.RegisterBody(email=email, password=password, display_name="Ada")
    )
    assert registered.status_code == 201
    assert isinstance(registered.parsed, m.User)
    assert registered.parsed.display_name == "Ada"
    assert registered.headers["Location"] == "/api/v1/users/me"
    duplicate = await auth.register.asyncio_detailed(
        client=anonymous, body=m.RegisterBody(email=email, password=password)
    )
    assert duplicate.status_code == 409
    assert isinstance(duplicate.parsed, m.Problem)
    token = await auth.issue_token.asyncio(client=anonymous, body=m.IssueTokenBody(email=email, password=password))
    assert isinstance(token, m.TokenResponse)
    assert token.token_type == "bearer"
    assert token.expires_in > 0
    wrong = await auth.issue_token.asyncio_detailed(
        client=anonymous, body=m.IssueTokenBody(email=email, password="wrong-password")
    )
    assert wrong.status_code == 401
    assert isinstance(wrong.parsed, m.Problem)
    return str(token.access_token)


async def _workflow(api: Any) -> None:
    """Everything else, as the logged-in user."""
    m = importlib.import_module(f"{PACKAGE}.models")
    users, projects, labels = _api("users"), _api("projects"), _api("labels")
    tasks, comments = _api("tasks"), _api("comments")
    me = await users.get_me.asyncio(client=api)
    assert isinstance(me, m.User)
    assert me.email == "ada.client@example.com"

    # Projects and labels.
    created_project = await projects.create_project.asyncio_detailed(
        client=api, body=m.ProjectCreate(name="Home", color="#3366ff")
    )
    assert created_project.status_code == 201
    home = created_project.parsed
    assert isinstance(home, m.Project)
    assert (home.name, home.color, home.archived, home.version) == ("Home", "#3366ff", False, 1)
    assert created_project.headers["Location"] == f"/api/v1/projects/{home.id}"
    assert created_project.headers["ETag"] == '"1"'
    work = await projects.create_project.asyncio(client=api, body=m.ProjectCreate(name="Work"))
    assert isinstance(work, m.Project)
    assert work.description == ""  # a server default, not sent
    archived = await projects.update_project.asyncio(client=api, project_id=work.id, body=m.ProjectPatch(archived=True))
    assert isinstance(archived, m.Project)
    assert (archived.archived, archived.version) == (True, 2)
    active = await projects.list_projects.asyncio(client=api, archived=False, sort="name")
    assert isinstance(active, m.ProjectPage)
    assert [p.name for p in active.items] == ["Home"]
    assert active.total == 1
    errand = await labels.create_label.asyncio(client=api, body=m.LabelCreate(name="errand", color="#00aa00"))
    urgent = await labels.create_label.asyncio(client=api, body=m.LabelCreate(name="urgent"))
    assert isinstance(errand, m.Label)
    assert isinstance(urgent, m.Label)
    assert urgent.color is None
    label_page = await labels.list_labels.asyncio(client=api, sort="-name")
    assert isinstance(label_page, m.LabelPage)
    assert [label.name for label in label_page.items] == ["urgent", "errand"]

    # Tasks: a typed body with enums and a datetime; labels come back as LabelBrief models.
    due = dt.datetime(2030, 1, 2, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    milk = await tasks.create_task.asyncio(
        client=api,
        body=m.TaskCreate(
            title="Buy milk",
            project_id=home.id,
            label_ids=[errand.id, urgent.id],
            priority=m.TaskCreatePriority.VALUE_2,
            due_at=due,
        ),
    )
    assert isinstance(milk, m.Task)
    assert milk.status == m.TaskStatus.TODO
    assert milk.priority == m.TaskPriority.VALUE_2
    assert milk.due_at == due
    assert milk.completed_at is None
    assert [label.name for label in milk.labels] == ["errand", "urgent"]
    assert all(isinstance(label, m.LabelBrief) for label in milk.labels)
    subtask = await tasks.create_task.asyncio(client=api, body=m.TaskCreate(title="Whole milk", parent_id=milk.id))
    assert isinstance(subtask, m.Task)
    assert (subtask.parent_id, subtask.project_id) == (milk.id, home.id)  # a subtask lives in its parent's project
    inbox = await tasks.create_task.asyncio(
        client=api, body=m.TaskCreate(title="Call the bank", priority=m.TaskCreatePriority.VALUE_4)
    )
    assert isinstance(inbox, m.Task)

    # Idempotent replay: same key and body, same answer, flagged, nothing new created.
    body = m.TaskCreate(title="Pay rent", description="monthly")
    first = await tasks.create_task.asyncio_detailed(client=api, body=body, idempotency_key="rent-2030-01")
    replay = await tasks.create_task.asyncio_detailed(client=api, body=body, idempotency_key="rent-2030-01")
    assert (first.status_code, replay.status_code) == (201, 201)
    assert isinstance(first.parsed, m.Task)
    assert isinstance(replay.parsed, m.Task)
    assert replay.parsed.id == first.parsed.id
    assert "Idempotent-Replayed" not in first.headers
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Location"] == first.headers["Location"]
    rent = first.parsed

    # Filters, combined.
    filtered = await tasks.list_tasks.asyncio(
        client=api,
        project_id=home.id,
        status=[m.ListTasksStatusItem.TODO, m.ListTasksStatusItem.IN_PROGRESS],
        priority=[2, 3],
        label_id=[urgent.id],
        due_before=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        q="MILK",
    )
    assert isinstance(filtered, m.TaskPage)
    assert [t.id for t in filtered.items] == [milk.id]
    assert (filtered.total, filtered.offset, filtered.limit) == (1, 0, 20)
    in_inbox = await tasks.list_tasks.asyncio(client=api, inbox=True, sort="-priority,title")
    assert isinstance(in_inbox, m.TaskPage)
    assert [t.title for t in in_inbox.items] == ["Call the bank", "Pay rent"]  # the subtask is in its parent's project
    children = await tasks.list_tasks.asyncio(client=api, parent_id=milk.id)
    assert isinstance(children, m.TaskPage)
    assert [t.id for t in children.items] == [subtask.id]

    # Bulk create (typed items), then a bulk patch; an invalid item is a 422 naming its index.
    batch = await tasks.create_tasks.asyncio_detailed(
        client=api,
        body=m.TaskBulkCreate(
            tasks=[m.TaskCreate(title=f"step {n}", project_id=home.id, position=n) for n in range(5)]
        ),
    )
    assert batch.status_code == 201
    assert isinstance(batch.parsed, m.TaskItems)
    steps = batch.parsed.items
    assert [t.title for t in steps] == [f"step {n}" for n in range(5)]
    invalid = await tasks.create_tasks.asyncio_detailed(
        client=api, body=m.TaskBulkCreate(tasks=[m.TaskCreate(title="fine"), m.TaskCreate(title="")])
    )
    assert invalid.status_code == 422
    assert isinstance(invalid.parsed, m.Problem)
    assert [(e.field, e.index) for e in invalid.parsed.errors] == [("tasks[1].title", 1)]
    done = await tasks.update_tasks.asyncio(
        client=api,
        body=m.TaskBulkPatch(ids=[t.id for t in steps[:2]], changes=m.TaskPatch(status=m.TaskPatchStatusType0.DONE)),
    )
    assert isinstance(done, m.TaskItems)
    assert {t.status for t in done.items} == {m.TaskStatus.DONE}
    assert all(isinstance(t.completed_at, dt.datetime) for t in done.items)
    foreign = await tasks.update_tasks.asyncio_detailed(
        client=api, body=m.TaskBulkPatch(ids=[steps[0].id, 2_000_000_000], changes=m.TaskPatch(position=9))
    )
    assert foreign.status_code == 404
    assert isinstance(foreign.parsed, m.Problem)

    # A cursor walk over the project's tasks, two at a time, in sort order.
    walked: list[int] = []
    page = await tasks.list_tasks.asyncio(
        client=api, project_id=home.id, sort="position,id", limit=2, paginate=m.ListTasksPaginate.CURSOR
    )
    pages = 0
    while True:
        assert isinstance(page, m.TaskPage)
        walked += [t.id for t in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        page = await tasks.list_tasks.asyncio(
            client=api, project_id=home.id, sort="position,id", limit=2, cursor=page.next_cursor
        )
    everything = await tasks.list_tasks.asyncio(client=api, project_id=home.id, sort="position,id", limit=100)
    assert isinstance(everything, m.TaskPage)
    assert walked == [t.id for t in everything.items]
    assert len(walked) == 7  # the project's tasks, milk's subtask included
    assert pages >= 3

    # If-Match: the current version goes through, a stale one is 412 with the current ETag.
    fetched = await tasks.get_task.asyncio_detailed(client=api, task_id=milk.id)
    assert isinstance(fetched.parsed, m.Task)
    assert fetched.headers["ETag"] == f'"{fetched.parsed.version}"'
    changed = await tasks.update_task.asyncio_detailed(
        client=api,
        task_id=milk.id,
        body=m.TaskPatch(status=m.TaskPatchStatusType0.IN_PROGRESS, label_ids=[errand.id]),
        if_match=fetched.headers["ETag"],
    )
    assert changed.status_code == 200
    assert isinstance(changed.parsed, m.Task)
    assert changed.parsed.version == fetched.parsed.version + 1
    assert [label.id for label in changed.parsed.labels] == [errand.id]
    stale = await tasks.update_task.asyncio_detailed(
        client=api, task_id=milk.id, body=m.TaskPatch(title="Buy oat milk"), if_match=fetched.headers["ETag"]
    )
    assert stale.status_code == 412
    assert isinstance(stale.parsed, m.Problem)
    assert stale.headers["ETag"] == f'"{changed.parsed.version}"'
    unchanged = await tasks.get_task.asyncio(client=api, task_id=milk.id)
    assert isinstance(unchanged, m.Task)
    assert unchanged.title == "Buy milk"

    # Comments.
    note = await comments.create_comment.asyncio(client=api, task_id=milk.id, body=m.CommentCreate(body="2 litres"))
    assert isinstance(note, m.Comment)
    assert note.task_id == milk.id
    edited = await comments.update_comment.asyncio(
        client=api, comment_id=note.id, body=m.CommentPatch(body="3 litres"), if_match=f'"{note.version}"'
    )
    assert isinstance(edited, m.Comment)
    assert (edited.body, edited.version) == ("3 litres", 2)
    await comments.create_comment.asyncio(client=api, task_id=milk.id, body=m.CommentCreate(body="semi-skimmed"))
    thread = await comments.list_comments.asyncio(client=api, task_id=milk.id)
    assert isinstance(thread, m.CommentPage)
    assert [c.body for c in thread.items] == ["3 litres", "semi-skimmed"]

    # Deletes: 204, then the object is gone (404 problem); a label delete detaches it.
    assert (await comments.delete_comment.asyncio_detailed(client=api, comment_id=note.id)).status_code == 204
    assert (await labels.delete_label.asyncio_detailed(client=api, label_id=errand.id)).status_code == 204
    relabelled = await tasks.get_task.asyncio(client=api, task_id=milk.id)
    assert isinstance(relabelled, m.Task)
    assert relabelled.labels == []
    deleted = await tasks.delete_task.asyncio_detailed(client=api, task_id=rent.id, if_match=f'"{rent.version}"')
    assert deleted.status_code == 204
    gone = await tasks.get_task.asyncio_detailed(client=api, task_id=rent.id)
    assert gone.status_code == 404
    assert isinstance(gone.parsed, m.Problem)
    assert gone.parsed.status == 404
    assert (await projects.delete_project.asyncio_detailed(client=api, project_id=home.id)).status_code == 204
    left = await tasks.list_tasks.asyncio(client=api)
    assert isinstance(left, m.TaskPage)
    assert [t.title for t in left.items] == ["Call the bank"]  # the subtask went with its parent


# --------------------------------------------------------------------------------------------
# TypeScript


def _npm_ci() -> None:
    if (TS_DIR / "node_modules" / ".bin" / "tsc").exists():
        return
    npm = shutil.which("npm")
    assert npm, "npm is missing: install Node.js 20 and npm to type-check the TypeScript client"
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=TS_DIR, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The flags README's "Generated clients" records. Without --default-non-nullable false, openapi-
# typescript 7 makes every field with a default required, even in request bodies.
OPENAPI_TYPESCRIPT_FLAGS = ["--default-non-nullable", "false"]
TSC_FLAGS = ["--strict", "--noEmit", "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler"]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    binary = TS_DIR / "node_modules" / ".bin" / tool
    return subprocess.run([str(binary), *args], cwd=TS_DIR, capture_output=True, text=True, timeout=300, check=False)


async def test_typescript_types_check(client: httpx.AsyncClient, tmp_path: Path) -> None:
    await asyncio.to_thread(_npm_ci)
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert json.loads(response.content)["openapi"].startswith("3.1")
    spec = tmp_path / "openapi.json"
    spec.write_bytes(response.content)
    generated = _run("openapi-typescript", str(spec), "-o", str(tmp_path / "taskapi.d.ts"), *OPENAPI_TYPESCRIPT_FLAGS)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    shutil.copy(TS_DIR / "check.ts", tmp_path / "check.ts")
    checked = _run("tsc", *TSC_FLAGS, str(tmp_path / "check.ts"))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The check is not vacuous: each of these misuses is refused by the same compiler run.
    misuses = {
        "no_title": 'const t: components["schemas"]["TaskCreate"] = { priority: 2 };',
        "unknown_status": 'const t: components["schemas"]["TaskCreate"] = { title: "x", status: "later" };',
        "answer_fields_required": 'const t: components["schemas"]["Task"] = { id: 1, title: "x" };',
        "index_is_a_number": (
            'const f = (p: components["schemas"]["Problem"]): string | undefined => p.errors?.[0]?.index;'
        ),
    }
    for name, line in misuses.items():
        source = tmp_path / f"{name}.ts"
        source.write_text(f'import type {{ components }} from "./taskapi";\nexport {{}};\n{line}\n')
        refused = _run("tsc", *TSC_FLAGS, str(source))
        assert refused.returncode != 0, (name, refused.stdout)
        assert "error TS" in refused.stdout, (name, refused.stdout)
