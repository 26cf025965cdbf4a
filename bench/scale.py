"""Scale-out benchmark: what PgBouncer, a second instance and replica reads cost or give.

    uv run python bench/scale.py                 # 3 s per workload and setup (about 2 minutes)
    uv run python bench/scale.py --seconds 10 --tasks 5000

Setups, each a real ``taskapi serve`` (uvicorn, no access log) driven by wrk with the
bench/lua scripts (GET one task, a filtered list of 50, POST a task):

- ``direct``: one instance on PostgreSQL (the local server, DATABASE_URL or 127.0.0.1:5432);
- ``pgbouncer``: the same instance through Debian's PgBouncer 1.18 in transaction mode
  (DATABASE_POOLER=pgbouncer, so no named prepared statements);
- ``pgbouncer x2``: two instances through that PgBouncer, wrk's connections split between them;
- ``primary`` and ``replica reads``: one instance on a private primary, without and with a
  streaming replica for GETs (DATABASE_REPLICA_URLS).

For each: requests/s, p50/p99 latency, CPU per request of the taskapi processes and of PgBouncer,
and the ratios against the setup it changes. Needs wrk, pgbouncer and PostgreSQL 15's server
binaries (as the tests do); runs PgBouncer and the private servers as the postgres user.
Everything shares this machine's cores, so read the ratios as costs, not as capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "lua"
sys.path.insert(0, str(ROOT))

from tests.dbserver import with_database  # noqa: E402
from tests.scaleout import pgbouncer, primary_and_replica, wait_until_replayed  # noqa: E402
from tests.serverproc import ServerProcess, run_migrate, server_env, start_server  # noqa: E402

WORKLOADS = {"get_one": "get.lua", "list_50": "list.lua", "create": "create.lua"}


@dataclass
class Seed:
    token: str
    max_id: int
    projects: list[int]
    labels: list[int]


@dataclass
class Row:
    setup: str
    workload: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    app_cpu_us: float
    bouncer_cpu_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that have not exited."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for one in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def bouncer_pid(directory: Path | None) -> int | None:
    if directory is None:
        return None
    return int((directory / "pgbouncer.pid").read_text().strip())


def seed(base_url: str, tasks: int) -> Seed:
    """One user with 3 projects, 3 labels and ``tasks`` tasks (bulk creates)."""
    body = {"email": f"bench-{uuid.uuid4().hex[:8]}@example.com", "password": "correct-horse-battery"}
    with httpx.Client(base_url=base_url, timeout=60) as http:
        assert http.post("/api/v1/auth/register", json=body).status_code == 201
        token = http.post("/api/v1/auth/token", json=body).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        projects = [
            http.post("/api/v1/projects", json={"name": f"p{i}"}, headers=headers).json()["id"] for i in range(3)
        ]
        labels = [http.post("/api/v1/labels", json={"name": f"l{i}"}, headers=headers).json()["id"] for i in range(3)]
        max_id = 0
        for start in range(0, tasks, 100):
            items = [
                {"title": f"task {n}", "project_id": projects[n % 3], "priority": n % 5, "label_ids": [labels[n % 3]]}
                for n in range(start, min(start + 100, tasks))
            ]
            response = http.post("/api/v1/tasks/bulk", json={"tasks": items}, headers=headers)
            assert response.status_code == 201, response.text
            max_id = max(max_id, *(item["id"] for item in response.json()["items"]))
    return Seed(token, max_id, projects, labels)


def run_wrk(urls: list[str], script: str, seconds: int, connections: int, data: Seed) -> list[dict[str, float]]:
    """wrk against each URL at once (connections split between them); one summary per URL."""
    env = {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA),
        "BENCH_TOKEN": data.token,
        "BENCH_MAX_ID": str(data.max_id),
        "BENCH_PROJECTS": ",".join(map(str, data.projects)),
        "BENCH_LABELS": ",".join(map(str, data.labels)),
    }
    each = max(1, connections // len(urls))
    procs = [
        subprocess.Popen(
            ["wrk", "-t1", f"-c{each}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA / script), url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 60)
        line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
        if line is None:
            raise SystemExit(f"wrk gave no summary:\n{out}\n{err}")
        summaries.append(json.loads(line.removeprefix("BENCH_JSON ")))
    return summaries


def measure(
    name: str,
    servers: list[ServerProcess],
    data: Seed,
    args: argparse.Namespace,
    bouncer: int | None,
) -> list[Row]:
    rows = []
    for workload, script in WORKLOADS.items():
        run_wrk([s.base_url for s in servers], script, 1, args.connections, data)  # warm-up
        app_before = sum(cpu_seconds(s.process.pid) for s in servers)
        bouncer_before = cpu_seconds(bouncer) if bouncer else 0.0
        summaries = run_wrk([s.base_url for s in servers], script, args.seconds, args.connections, data)
        app_cpu = sum(cpu_seconds(s.process.pid) for s in servers) - app_before
        bouncer_cpu = (cpu_seconds(bouncer) - bouncer_before) if bouncer else 0.0
        requests = sum(int(s["requests"]) for s in summaries)
        errors = sum(int(s[k]) for s in summaries for k in ("connect", "read", "write", "status", "timeout"))
        rows.append(
            Row(
                setup=name,
                workload=workload,
                requests=requests,
                seconds=max(s["duration_us"] for s in summaries) / 1e6,
                errors=errors,
                p50_ms=max(s["p50_us"] for s in summaries) / 1000,
                p99_ms=max(s["p99_us"] for s in summaries) / 1000,
                app_cpu_us=app_cpu * 1e6 / requests if requests else 0.0,
                bouncer_cpu_us=bouncer_cpu * 1e6 / requests if requests else 0.0,
            )
        )
        print(f"  {name:15} {workload:8} {rows[-1].rps:7.0f} req/s  errors {errors}", flush=True)
    return rows


@contextlib.contextmanager
def serving(env: dict[str, str], count: int) -> Iterator[list[ServerProcess]]:
    run_migrate(env)
    started = [start_server(env) for _ in range(count)]
    try:
        for server in started:
            server.wait_healthy()
        yield started
    finally:
        for server in started:
            server.stop()


async def naive_misses(base_url: str, replica_url: str, data: Seed, rounds: int) -> str:
    """What read-your-writes prevents: reading a just-created task straight from the replica."""
    headers = {"Authorization": f"Bearer {data.token}"}
    connection = await asyncpg.connect(replica_url)
    missed = 0
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
            for i in range(rounds):
                created = await http.post("/api/v1/tasks", json={"title": f"naive {i}"})
                found = await connection.fetchval("SELECT count(*) FROM task WHERE id = $1", created.json()["id"])
                missed += found == 0
    finally:
        await connection.close()
    return f"{missed} of {rounds} missed ({100 * missed / rounds:.1f} %)"


def bench_env(database_url: str, **overrides: str) -> dict[str, str]:
    return server_env(
        database_url,
        TASKAPI_RATE_LIMIT_USER="off",
        TASKAPI_RATE_LIMIT_PUBLIC="off",
        TASKAPI_LOG_LEVEL="WARNING",  # no access log
        DB_POOL_MAX_SIZE="10",
        **overrides,
    )


def _sql(url: str, sql: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=3, help="wrk run per workload and setup (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections in all (default 16)")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks seeded per database (default 2000)")
    args = parser.parse_args()
    admin = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    rows: list[Row] = []

    name = f"taskapi_scale_{uuid.uuid4().hex[:8]}"
    _sql(admin, f'CREATE DATABASE "{name}"')
    try:
        direct = with_database(admin, name)
        with pgbouncer(admin, pool_size=10) as bouncer:
            pooled = {"DATABASE_DIRECT_URL": direct, "DATABASE_POOLER": "pgbouncer"}
            with serving(bench_env(direct), 1) as servers:
                data = seed(servers[0].base_url, args.tasks)
                rows += measure("direct", servers, data, args, None)
            pid = bouncer_pid(bouncer.directory)
            with serving(bench_env(bouncer.url(name), **pooled), 1) as servers:
                rows += measure("pgbouncer", servers, data, args, pid)
            with serving(bench_env(bouncer.url(name), **pooled), 2) as servers:
                rows += measure("pgbouncer x2", servers, data, args, pid)
    finally:
        _sql(admin, f'DROP DATABASE "{name}" WITH (FORCE)')

    with primary_and_replica() as (primary, replica):
        _sql(primary.url(), "CREATE DATABASE taskapi")
        with serving(bench_env(primary.url("taskapi")), 1) as servers:
            data = seed(servers[0].base_url, args.tasks)
            asyncio.run(wait_until_replayed(primary.url(), replica.url()))
            rows += measure("primary", servers, data, args, None)
        replicas = {"DATABASE_REPLICA_URLS": replica.url("taskapi")}
        with serving(bench_env(primary.url("taskapi"), **replicas), 1) as servers:
            rows += measure("replica reads", servers, data, args, None)
            misses = asyncio.run(naive_misses(servers[0].base_url, replica.url("taskapi"), data, 500))

    report(rows, args)
    print(f"\nnaive replica reads (create through the API, then read the row on the replica at once): {misses}")
    return 1 if any(row.errors for row in rows) else 0


def report(rows: list[Row], args: argparse.Namespace) -> None:
    by = {(row.setup, row.workload): row for row in rows}
    print(f"\n{args.seconds} s per run, wrk -t1 -c{args.connections} (split over the instances), {args.tasks} tasks\n")
    print("| setup | workload | req/s | p50 ms | p99 ms | taskapi CPU µs/req | PgBouncer CPU µs/req | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.setup} | {row.workload} | {row.rps:.0f} | {row.p50_ms:.1f} | {row.p99_ms:.1f} "
            f"| {row.app_cpu_us:.0f} | {row.bouncer_cpu_us:.0f} | {row.errors} |"
        )
    print("\n| ratio | get_one | list_50 | create |")
    print("|---|---:|---:|---:|")
    for label, new, base in (
        ("pgbouncer / direct (req/s)", "pgbouncer", "direct"),
        ("pgbouncer x2 / pgbouncer (req/s)", "pgbouncer x2", "pgbouncer"),
        ("replica reads / primary (req/s)", "replica reads", "primary"),
    ):
        cells = [f"{by[(new, w)].rps / by[(base, w)].rps:.2f}" for w in WORKLOADS]
        print(f"| {label} | {' | '.join(cells)} |")
    cost = [
        f"{(by[('pgbouncer', w)].p50_ms - by[('direct', w)].p50_ms) * 1000:+.0f} µs p50, "
        f"{by[('pgbouncer', w)].app_cpu_us - by[('direct', w)].app_cpu_us:+.0f} µs taskapi CPU, "
        f"{by[('pgbouncer', w)].bouncer_cpu_us:.0f} µs PgBouncer CPU"
        for w in WORKLOADS
    ]
    print(f"| pooler cost per request | {' | '.join(cost)} |")


if __name__ == "__main__":
    raise SystemExit(main())
