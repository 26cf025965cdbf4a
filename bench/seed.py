"""Seed a benchmark database: taskapi's schema, one user with N tasks, and a small neighbour.

    uv run python bench/seed.py --rows 100000            # reuses the database if already seeded
    uv run python bench/seed.py --rows 1000000 --reseed  # force a fresh one

The database (default ``taskapi_bench_<rows>``) is created on the server of DATABASE_URL (default
``postgresql://postgres@127.0.0.1:5432/postgres``), migrated with the same code as
``taskapi migrate``, and filled with COPY. The spread is meant to look like a real account: tasks
created over two years, most in one of 40 projects (a few big ones), some in the inbox, some
subtasks; statuses 45/20/35 % todo/in_progress/done; priorities skewed low; 60 % with a due date;
0-3 labels each. A second user owns a few tasks so access scoping has something to exclude.

Shared projects (SPEC "Collaboration"): six colleagues own eight projects the bench user is a
member of (editor or admin in six, which take about 15 % of the tasks in ids 1..rows and are
in ``project_ids`` with the bench user's own; viewer and commenter in two, whose tasks come after
``max_task_id`` so the write workloads never pick them), each with other members; some of the
bench user's own projects have colleagues as members too. A task in a project is created and
owned by one of its writers (the bench user or a colleague), carries its creator's labels, and
about a third of the project tasks have one or two assignees among the project's members.

The seeded user's password is hashed with app.passwords (argon2id), so ``POST /api/v1/auth/token``
works against it like against any registered user.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SEED_VERSION = 6  # bump when the generated data changes, so old databases get re-seeded
BENCH_EMAIL = "bench@example.com"
BENCH_PASSWORD = "bench-password-123"
# The benchmark user's request quota: far above any rate a benchmark reaches, so nothing is
# refused while the limiter still does its per-request work (TASKAPI_RATE_LIMIT_USER).
BENCH_RATE_LIMIT = "1000000000/60"
NEIGHBOUR_EMAIL = "neighbour@example.com"
N_PROJECTS = 40
N_COLLEAGUES = 6
# The bench user's role in each shared project (owned by a colleague); editor+ ones take writes.
SHARED_ROLES = ("editor", "admin", "editor", "editor", "admin", "editor", "viewer", "commenter")
WRITERS = ("editor", "admin", "owner")
# Where the writable shared projects sit in the Zipf ranking of the projects tasks go to.
SHARED_RANKS = (2, 5, 9, 14, 20, 30)
LABEL_NAMES = [
    "backend", "bug", "chore", "customer", "design", "docs", "error-budget", "feature", "frontend",
    "infra", "later", "legal", "marketing", "mobile", "ops", "perf", "q1", "q2", "research",
    "security", "support", "tech-debt", "urgent", "ux",
]  # fmt: skip
WORDS = [
    "update", "review", "draft", "fix", "migrate", "invoice", "release", "budget", "deploy",
    "plan", "call", "email", "client", "server", "report", "meeting", "design", "onboarding",
    "refactor", "test", "audit", "backup", "payment", "roadmap", "sprint", "contract", "quarterly",
    "weekly", "login", "cache", "index", "query", "export", "import", "dashboard", "alert",
    "ticket", "vendor", "hiring",
]  # fmt: skip


@dataclass
class BenchData:
    """What a benchmark run needs to know about the seeded database."""

    db_url: str
    rows: int
    user_id: int
    email: str
    password: str
    max_task_id: int  # ids 1..max_task_id are tasks the bench user may read and edit
    last_seed_id: int  # every id above this was added by a benchmark run
    project_ids: list[int]  # projects the bench user may add tasks to: its own, then shared editor+ ones
    label_ids: list[int]
    shared_project_ids: list[int]  # projects owned by others that the bench user is a member of
    visible_tasks: int  # how many tasks the bench user can see (GET /tasks walked to the end)


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _existing(db_url: str, rows: int) -> BenchData | None:
    """The seeded data if ``db_url`` already holds exactly this seed, else None."""
    try:
        conn = await asyncpg.connect(db_url, timeout=5)
    except (asyncpg.InvalidCatalogNameError, OSError):
        return None
    try:
        raw = await conn.fetchval("SELECT value FROM bench_meta WHERE key = 'seed'")
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    if raw is None:
        return None
    meta = json.loads(raw)
    if meta.get("version") != SEED_VERSION or meta.get("rows") != rows:
        return None
    return BenchData(**{**meta["data"], "db_url": db_url})


async def _create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _migrate(db_url: str) -> None:
    """Apply taskapi's migrations with the same code ``taskapi migrate`` runs, in a child process
    (piccolo_conf reads DATABASE_URL once, at import)."""
    env = {**os.environ, "DATABASE_URL": db_url, "PICCOLO_CONF": "piccolo_conf"}
    env.pop("TASKAPI_ENV", None)
    code = "import asyncio, sys; from app.cli import migrate; sys.exit(0 if asyncio.run(migrate()) else 1)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"migrations failed:\n{result.stdout}\n{result.stderr}")


def _hash_password(password: str) -> str:
    from app.passwords import hash_password

    return asyncio.run(hash_password(password))


def _words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def _tasks(
    rng: random.Random,
    inbox_owner: int,
    first_id: int,
    count: int,
    projects: list[int],
    weights: list[float],
    writers: dict[int, list[int]],
    labels: dict[int, list[int]],
    members: dict[int, list[int]],
    now: dt.datetime,
    inbox_share: float = 0.15,
) -> tuple[list[dict[str, Any]], list[tuple[int, int]], list[tuple[int, int]]]:
    """``count`` task rows (ids first_id..), by column name, their task_label links and their
    task_assignee rows. A project's task is created by one of ``writers[project]`` (the first
    most often), an inbox task by ``inbox_owner``; labels are its creator's (``labels[user]``)."""
    span = 730 * 86400
    # Creation times grow with the id, like a real account filled over two years.
    offsets = sorted(rng.random() * span for _ in range(count))
    start = now - dt.timedelta(seconds=span)
    statuses = ["todo", "in_progress", "done"]
    rows: list[dict[str, Any]] = []
    links: list[tuple[int, int]] = []
    assignees: list[tuple[int, int]] = []
    project_choices = rng.choices(projects, weights=weights, k=count)
    for i in range(count):
        task_id = first_id + i
        created = start + dt.timedelta(seconds=offsets[i])
        updated = min(now, created + dt.timedelta(seconds=rng.random() * 30 * 86400))
        status = rng.choices(statuses, weights=(45, 20, 35))[0]
        completed = updated if status == "done" else None
        priority = rng.choices(range(5), weights=(40, 25, 20, 10, 5))[0]
        due = now + dt.timedelta(days=rng.uniform(-180, 365)) if rng.random() < 0.6 else None
        project = project_choices[i] if rng.random() >= inbox_share else None
        parent = first_id + rng.randrange(i) if i > 0 and rng.random() < 0.08 else None
        if parent is not None:
            project = rows[parent - first_id]["project"]  # a subtask lives in its parent's project
        if project is None:
            creator = inbox_owner
        else:
            pool = writers[project]
            creator = pool[0] if len(pool) == 1 or rng.random() < 0.6 else rng.choice(pool[1:])
        description = "" if rng.random() < 0.3 else _words(rng, 5, 40)
        rows.append(
            {
                "id": task_id, "owner": creator, "created_by": creator, "project": project, "parent": parent,
                "title": _words(rng, 3, 8).capitalize(), "description": description, "status": status,
                "priority": priority, "due_at": due, "completed_at": completed, "position": rng.randrange(1000),
                "version": rng.randint(1, 3), "created_at": created, "updated_at": updated,
            }
        )  # fmt: skip
        k = rng.choices((0, 1, 2, 3), weights=(35, 35, 20, 10))[0]
        own_labels = labels[creator]
        links.extend((task_id, label) for label in rng.sample(own_labels, min(k, len(own_labels))))
        if project is not None and rng.random() < 0.35:
            people = members[project]
            assignees.extend((task_id, user) for user in rng.sample(people, min(rng.randint(1, 2), len(people))))
    return rows, links, assignees


async def _copy(conn: asyncpg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """COPY generated rows into ``table``, naming the generated columns; any other column of the
    table takes its default, so a column added by a migration needs nothing here unless it is
    NOT NULL without a default, which fails here by name."""
    if not rows:
        return
    columns = list(rows[0])
    required = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = $1 AND is_nullable = 'NO' AND column_default IS NULL AND NOT column_name = ANY($2)",
        table,
        columns,
    )
    if required:
        names = ", ".join(f"{table}.{r[0]}" for r in required)
        raise SystemExit(f"seed: {names} is NOT NULL without a default; bench/seed.py must generate it")
    await conn.copy_records_to_table(table, records=[tuple(r.values()) for r in rows], columns=columns)


async def _insert_id(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    return int(await conn.fetchval(sql, *args))


async def _fill(db_url: str, rows: int, password_hash: str, log) -> BenchData:
    rng = random.Random(20260101)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    conn = await asyncpg.connect(db_url, timeout=5)
    new_user = "INSERT INTO app_user (email, display_name, password_hash) VALUES ($1, $2, $3) RETURNING id"
    new_project = "INSERT INTO project (owner, name, description, color) VALUES ($1, $2, $3, $4) RETURNING id"
    new_label = "INSERT INTO label (owner, name, color) VALUES ($1, $2, $3) RETURNING id"
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        # Skip FK and event triggers while loading generated, consistent data (needs a superuser).
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")
        user_id = await _insert_id(conn, new_user, BENCH_EMAIL, "Bench User", password_hash)
        neighbour_id = await _insert_id(conn, new_user, NEIGHBOUR_EMAIL, "Neighbour", password_hash)
        colleagues = [
            await _insert_id(conn, new_user, f"colleague{i + 1}@example.com", f"Colleague {i + 1}", password_hash)
            for i in range(N_COLLEAGUES)
        ]

        async def project(owner: int, name: str) -> int:
            color = f"#{rng.randrange(0x1000000):06x}"
            return await _insert_id(conn, new_project, owner, name, _words(rng, 5, 15), color)

        user_projects = [await project(user_id, f"Project {i + 1:02d}") for i in range(N_PROJECTS)]
        neighbour_projects = [await project(neighbour_id, f"Project {i + 1:02d}") for i in range(3)]
        shared_owner = {}
        for i in range(len(SHARED_ROLES)):
            owner = colleagues[i % N_COLLEAGUES]
            shared_owner[await project(owner, f"Shared {i + 1:02d}")] = owner
        shared_projects = list(shared_owner)
        # Each project's owner is its owner member (the database checks it at commit, outside a load).
        await conn.execute("INSERT INTO project_member (project, member, role) SELECT id, owner, 'owner' FROM project")
        roles: dict[int, dict[int, str]] = {p: {user_id: "owner"} for p in user_projects}
        roles.update({p: {neighbour_id: "owner"} for p in neighbour_projects})
        for p, owner in shared_owner.items():
            roles[p] = {owner: "owner"}
        for p, role in zip(shared_projects, SHARED_ROLES, strict=True):
            roles[p][user_id] = role
        # Other members: two to four colleagues in each shared project, one to three in a quarter
        # of the bench user's own projects.
        for p in [*shared_projects, *user_projects[: N_PROJECTS // 4]]:
            others = [c for c in colleagues if c not in roles[p]]
            low, high = (2, 4) if p in shared_owner else (1, 3)
            for colleague in rng.sample(others, rng.randint(low, high)):
                roles[p][colleague] = rng.choice(("viewer", "commenter", "editor", "editor", "admin"))
        await conn.copy_records_to_table(
            "project_member",
            records=[(p, u, r) for p, people in roles.items() for u, r in people.items() if r != "owner"],
            columns=["project", "member", "role"],
        )
        labels: dict[int, list[int]] = {}
        for owner in (user_id, neighbour_id, *colleagues):
            names = LABEL_NAMES if owner == user_id else rng.sample(LABEL_NAMES, 4)
            labels[owner] = [
                await _insert_id(
                    conn, new_label, owner, name, f"#{rng.randrange(0x1000000):06x}" if rng.random() < 0.8 else None
                )
                for name in names
            ]

        def writers(p: int) -> list[int]:
            """The project's members who may add tasks, the bench user first when it is one."""
            found = [u for u, r in roles[p].items() if r in WRITERS]
            return sorted(found, key=lambda u: u != user_id)

        members = {p: sorted(people) for p, people in roles.items()}
        writers_of = {p: writers(p) for p in roles}
        # The bench user's projects keep the Zipf spread; the writable shared ones take ranks in it.
        writable_shared = [p for p, r in zip(shared_projects, SHARED_ROLES, strict=True) if r in WRITERS]
        read_only_shared = [p for p in shared_projects if p not in writable_shared]
        ranked = list(user_projects)
        for rank, p in zip(SHARED_RANKS, writable_shared, strict=True):
            ranked.insert(rank, p)
        weights = [1 / (i + 1) ** 0.8 for i in range(len(ranked))]

        # Secondary indexes are rebuilt once after the load: much faster than maintaining them per row.
        indexes = await conn.fetch(
            "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS ddl FROM pg_index i"
            " WHERE indrelid IN ('task'::regclass, 'task_label'::regclass, 'task_assignee'::regclass)"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        )
        for index in indexes:
            await conn.execute(f"DROP INDEX {index['name']}")

        async def load(task_rows: list[dict[str, Any]], links: list[tuple[int, int]], assigned: list[tuple[int, int]]):
            await _copy(conn, "task", task_rows)
            await conn.copy_records_to_table("task_label", records=links, columns=["task", "label"])
            await conn.copy_records_to_table("task_assignee", records=assigned, columns=["task", "assignee"])

        started = time.monotonic()
        batch = 100_000
        for first in range(0, rows, batch):
            count = min(batch, rows - first)
            await load(*_tasks(rng, user_id, first + 1, count, ranked, weights, writers_of, labels, members, now))
            log(f"  {first + count:>9,} tasks ({time.monotonic() - started:.0f} s)")
        # Tasks the bench user may only read: after max_task_id, so the write workloads skip them.
        read_only_rows = max(20, rows // 50)
        read_only_weights = [1.0] * len(read_only_shared)
        generated = _tasks(
            rng, user_id, rows + 1, read_only_rows, read_only_shared, read_only_weights, writers_of, labels, members,
            now, inbox_share=0.0,
        )  # fmt: skip
        await load(*generated)
        neighbour_rows = max(10, min(rows // 100, 5000))
        first_neighbour = rows + read_only_rows + 1
        task_rows, links, assigned = _tasks(
            rng, neighbour_id, first_neighbour, neighbour_rows, neighbour_projects, [1.0] * 3, writers_of, labels,
            members, now,
        )  # fmt: skip
        task_rows = [{**r, "parent": None} for r in task_rows]  # no cross-links into the bench user's ids
        await load(task_rows, links, assigned)
        await conn.execute("SELECT setval('task_id_seq', (SELECT max(id) FROM task))")

        log(f"  rebuilding {len(indexes)} indexes")
        for index in indexes:
            await conn.execute(index["ddl"])
        await conn.execute("RESET session_replication_role")
        visible = await conn.fetchval(
            "SELECT count(*) FROM task WHERE (project IS NULL AND owner = $1)"
            " OR project IN (SELECT project FROM project_member WHERE member = $1)",
            user_id,
        )
        data = BenchData(
            db_url=db_url,
            rows=rows,
            user_id=user_id,
            email=BENCH_EMAIL,
            password=BENCH_PASSWORD,
            max_task_id=rows,
            last_seed_id=first_neighbour + neighbour_rows - 1,
            project_ids=user_projects + writable_shared,
            label_ids=labels[user_id],
            shared_project_ids=shared_projects,
            visible_tasks=visible,
        )
        await conn.execute("CREATE TABLE bench_meta (key text PRIMARY KEY, value text NOT NULL)")
        meta = {"version": SEED_VERSION, "rows": rows, "data": asdict(data)}
        await conn.execute("INSERT INTO bench_meta VALUES ('seed', $1)", json.dumps(meta))
    finally:
        await conn.close()
    log("  VACUUM ANALYZE")
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        await conn.execute("VACUUM ANALYZE", timeout=3600)
    finally:
        await conn.close()
    return data


def default_db_name(rows: int) -> str:
    """One database per size, so switching between the 100k and the 1M run does not re-seed."""
    return f"taskapi_bench_{rows}"


def ensure_seeded(rows: int, db_name: str | None = None, *, reseed: bool = False, log=print) -> BenchData:
    """The benchmark database for ``rows`` tasks, seeding it first unless it is already there."""
    db_name = db_name or default_db_name(rows)
    admin_url = server_url()
    db_url = with_database(admin_url, db_name)
    if not reseed:
        existing = asyncio.run(_existing(db_url, rows))
        if existing is not None:
            log(f"seed: reusing {db_name} ({rows:,} tasks)")
            try:
                _migrate(db_url)  # a database seeded before a new migration (e.g. rate_limit) gets it
                return existing
            except SystemExit:
                # Seeded under an unreleased migration since rewritten: seed it afresh.
                log(f"seed: {db_name} cannot be migrated; seeding it again")
    started = time.monotonic()
    log(f"seed: creating {db_name} with {rows:,} tasks")
    asyncio.run(_create_database(admin_url, db_name))
    _migrate(db_url)
    password_hash = _hash_password(BENCH_PASSWORD)
    data = asyncio.run(_fill(db_url, rows, password_hash, log))
    log(f"seed: done in {time.monotonic() - started:.0f} s")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description="Seed the taskapi benchmark database")
    parser.add_argument("--rows", type=int, default=100_000, help="tasks for the bench user (default 100 000)")
    parser.add_argument("--db-name", default=None, help="default taskapi_bench_<rows>")
    parser.add_argument("--reseed", action="store_true", help="drop and re-create even if already seeded")
    args = parser.parse_args()
    data = ensure_seeded(args.rows, args.db_name, reseed=args.reseed)
    print(json.dumps({k: v for k, v in asdict(data).items() if k not in {"project_ids", "label_ids"}}))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
