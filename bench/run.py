"""The taskapi benchmark: taskapi against a raw-asyncpg baseline, in the same run.

    uv run python bench/run.py                                    # the standard run (100 000 tasks)
    uv run python bench/run.py --rows 1000000 --workloads cursor_first,cursor_deep,offset_first,offset_deep
    uv run python bench/run.py --workers 1,2                      # scale-out
    uv run python bench/run.py --soak 300 --workloads none        # memory over 5 minutes
    uv run python bench/run.py --smoke                            # CI: tiny data, < 60 s
    uv run --with py-spy python bench/run.py --profile --workloads get_one,list_50

Needs ``wrk`` (``apt-get install wrk``) and ``taskset`` (util-linux) and a PostgreSQL server
(DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres; a database
``taskapi_bench_<rows>`` is created there by bench/seed.py).

Each server (taskapi, and bench/raw_app.py serving the same endpoints on raw asyncpg) runs under
uvicorn (uvloop, httptools, no access log) pinned to core 0; wrk runs pinned to core 1. For every
workload the two apps alternate (taskapi, raw, then raw, taskapi, ...) so machine drift hits both
alike. The report gives req/s, p50/p99 latency, server CPU per request, errors and server RSS,
then taskapi / raw ratios (the median over rounds of each round's paired ratio) checked against
the targets, and is written to bench/results/<timestamp>.md. Exit status: 1 if any
request failed (non-2xx, socket error, timeout) or the two apps answered differently; with
``--strict`` also when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "lua"
sys.path.insert(0, str(ROOT))

from bench.seed import BENCH_RATE_LIMIT, BenchData, ensure_seeded  # noqa: E402

APPS = ("taskapi", "raw")
# Issue 11 ("Performance must hold"): the raw app does the same membership-aware work.
TARGETS = {"get_one": 0.85, "list_50": 0.85, "create": 0.85, "patch": 0.80}
P99_LIMIT = 1.5
KEYSET_LIMIT = 1.2
SOAK_GROWTH_LIMIT = 0.10  # "flat": end RSS within 10 % of the RSS after warm-up


@dataclass
class Workload:
    name: str
    script: str
    description: str
    path: str = ""
    writes: bool = False


@dataclass
class Result:
    requests: int
    duration_us: int
    errors: int
    p50_us: int
    p90_us: int
    p99_us: int
    mean_us: float
    max_us: int
    rss_mb: float
    cpu_us: float = 0.0  # server CPU (user + system) per request, all its processes

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes with --workers > 1)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by the server: the process and its workers."""
    ticks = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of the server: the process and its workers, in MiB."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class RssSampler:
    """Samples a server's RSS in the background while wrk runs."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - started, rss_mb(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def last(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0


def start_server(name: str, target: str, workers: int, cpus: str, env: dict[str, str], logdir: Path) -> Server:
    port = free_port()
    log_path = logdir / f"{name}-w{workers}.log"
    cmd = [
        "taskset", "-c", cpus, sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, proc, port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited at start-up; see {log_path}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop_server(server)
    raise SystemExit(f"{name} did not answer /health within 60 s; see {log_path}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


# --------------------------------------------------------------------------------------------
# HTTP helpers (urllib: nothing to install)


def call(base: str, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def get_token(server: Server, data: BenchData) -> str:
    status, _, body = call(
        server.url, "POST", "/api/v1/auth/token", None, {"email": data.email, "password": data.password}
    )
    if status != 200:
        raise SystemExit(f"could not get a token from taskapi: {status} {body}")
    return str(body["access_token"])


PER_CREATE = {"id", "created_at", "updated_at", "completed_at"}  # differ between any two creates


def served_part(taskapi: Any, raw: Any) -> Any:
    """``taskapi``'s answer cut down to the fields the raw app's answer has, at every depth.

    The raw app serves a fixed subset of the contract, so a field taskapi adds (a new column) is
    not compared; a field the raw app serves and taskapi lacks, or answers differently, still is.
    """
    if isinstance(taskapi, dict) and isinstance(raw, dict):
        return {k: served_part(taskapi[k], raw[k]) for k in raw if k in taskapi}
    if isinstance(taskapi, list) and isinstance(raw, list) and len(taskapi) == len(raw):
        return [served_part(t, r) for t, r in zip(taskapi, raw, strict=True)]
    return taskapi


def compare(servers: dict[str, Server], token: str, workloads: dict[str, Workload], data: BenchData) -> list[str]:
    """On the fields the raw app serves, both apps must give the same answers to the benchmark's
    requests; returns the differences."""
    problems: list[str] = []
    samples = asyncio.run(_samples(data))
    filtered = "status=todo&status=in_progress&sort=-priority,due_at&limit=50"
    paths = [
        f"/api/v1/tasks/{data.max_task_id // 2}",
        *(f"/api/v1/tasks/{samples[k]}" for k in ("own", "colleague", "shared", "read_only")),
        f"/api/v1/tasks?project_id={data.project_ids[0]}&{filtered}",
        f"/api/v1/tasks?project_id={samples['shared_project']}&{filtered}",
        f"/api/v1/tasks?project_id={samples['read_only_project']}&{filtered}",
        "/api/v1/tasks?limit=50&offset=50",
        *[w.path for w in workloads.values() if w.path],
    ]
    for path in paths:
        answers = {name: call(server.url, "GET", path, token) for name, server in servers.items()}
        (s1, _, b1), (s2, _, b2) = answers["taskapi"], answers["raw"]
        b1 = served_part(b1, b2)
        if s1 != 200 or s2 != 200 or b1 != b2:
            problems.append(f"GET {path[:120]}: taskapi {s1}, raw {s2}, bodies {'equal' if b1 == b2 else 'differ'}")
    # Refusals: a task the user cannot see (404) and one they may only read (403), on both apps.
    refusals = [
        ("GET", f"/api/v1/tasks/{samples['unseen']}", None, 404),
        ("PATCH", f"/api/v1/tasks/{samples['unseen']}", {"priority": 1}, 404),
        ("PATCH", f"/api/v1/tasks/{samples['read_only']}", {"priority": 1}, 403),
        ("POST", "/api/v1/tasks", {"title": "No", "project_id": samples["read_only_project"]}, 403),
    ]
    for method, path, body, expected in refusals:
        statuses = {name: call(server.url, method, path, token, body)[0] for name, server in servers.items()}
        if set(statuses.values()) != {expected}:
            problems.append(f"{method} {path}: expected {expected}, got {statuses}")
    for project in (data.project_ids[0], samples["shared_project"]):
        bodies: dict[str, Any] = {}
        body = {"title": "Compare", "project_id": project, "label_ids": data.label_ids[:2], "status": "done"}
        for name, server in servers.items():
            status, headers, created = call(server.url, "POST", "/api/v1/tasks", token, body)
            if status != 201 or ("Location" not in headers and "location" not in headers):
                problems.append(f"POST /api/v1/tasks on {name}: {status}")
                continue
            status, _, patched = call(server.url, "PATCH", f"/api/v1/tasks/{created['id']}", token, {"status": "todo"})
            if status != 200 or patched.get("completed_at") is not None or patched.get("version") != 2:
                problems.append(f"PATCH /api/v1/tasks/{created['id']} on {name}: {status} {patched}")
            bodies[name] = {k: v for k, v in created.items() if k not in PER_CREATE}
        if len(bodies) == 2:
            if served_part(bodies["taskapi"], bodies["raw"]) != bodies["raw"]:
                problems.append(f"POST bodies differ: {bodies}")
            if extra := sorted(bodies["taskapi"].keys() - bodies["raw"].keys()):
                print(f"compare: taskapi also serves {', '.join(extra)}, which the raw app does not (not compared)")
    # A shared task patched by both apps in turn: each sees the other's version.
    task = samples["shared"]
    for name, server in servers.items():
        status, _, before = call(server.url, "GET", f"/api/v1/tasks/{task}", token)
        status, _, after = call(server.url, "PATCH", f"/api/v1/tasks/{task}", token, {"priority": before["priority"]})
        if status != 200 or after.get("version") != before["version"] + 1:
            problems.append(f"PATCH /api/v1/tasks/{task} on {name}: {status} {after}")
    return problems


async def _samples(data: BenchData) -> dict[str, int]:
    """Ids the comparison asks both apps about: tasks of each kind the bench user can see (its
    own, a colleague's in its project, one in a shared project, one it may only read), one it
    cannot, and a writable and a read-only shared project."""
    conn = await asyncpg.connect(data.db_url, timeout=5)
    try:
        writable = await conn.fetchval(
            "SELECT min(project) FROM project_member WHERE member = $1 AND project = ANY($2::int[])"
            " AND role IN ('editor', 'admin')",
            data.user_id,
            data.shared_project_ids,
        )
        read_only = await conn.fetchval(
            "SELECT min(project) FROM project_member WHERE member = $1 AND role IN ('viewer', 'commenter')",
            data.user_id,
        )
        one = "SELECT min(t.id) FROM task t WHERE "
        return {
            "own": await conn.fetchval(one + "t.owner = $1 AND t.project = $2", data.user_id, data.project_ids[0]),
            "colleague": await conn.fetchval(
                one + "t.owner <> $1 AND t.project = ANY($2::int[])", data.user_id, data.project_ids[:40]
            ),
            "shared": await conn.fetchval(one + "t.project = $1 AND t.id <= $2", writable, data.max_task_id),
            "read_only": await conn.fetchval(one + "t.project = $1", read_only),
            "unseen": await conn.fetchval(
                one + "NOT ((t.project IS NULL AND t.owner = $1)"
                " OR t.project IN (SELECT project FROM project_member WHERE member = $1))",
                data.user_id,
            ),
            "shared_project": writable,
            "read_only_project": read_only,
        }
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# Database helpers


async def _db(data: BenchData, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(data.db_url, timeout=5)
    try:
        return await conn.fetch(sql, *args, timeout=3600)
    finally:
        await conn.close()


def cleanup_writes(data: BenchData) -> None:
    """Drop the tasks a create run added and vacuum, so every run sees the same table."""
    asyncio.run(_db(data, "DELETE FROM task WHERE id > $1", data.last_seed_id))
    asyncio.run(_db(data, "VACUUM task, task_label"))


def deep_cursor(data: BenchData) -> str:
    """A cursor for the last page of the default sort (-created_at) of every task the bench user
    can see, built like the server does."""
    from app.services.listing import encode_cursor, parse_sort, scope_fingerprint
    from app.services.tasks import DEFAULT_SORT, SORTABLE, TaskFilters
    from app.settings import get_settings

    get_settings.cache_clear()  # seeding may have read the settings before the secret was set
    keys = parse_sort(None, SORTABLE, DEFAULT_SORT)
    rows = asyncio.run(
        _db(
            data,
            "SELECT created_at, id FROM task WHERE (project IS NULL AND owner = $1)"
            " OR project IN (SELECT project FROM project_member WHERE member = $1)"
            " ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
            data.user_id,
            data.visible_tasks - 51,
        )
    )
    return encode_cursor(keys, scope_fingerprint(data.user_id, TaskFilters()), list(rows[0]))


# --------------------------------------------------------------------------------------------
# wrk


def run_wrk(
    server: Server, workload: Workload, seconds: int, args: argparse.Namespace, token: str, data: BenchData
) -> Result:
    env = {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA),
        "BENCH_TOKEN": token,
        "BENCH_MAX_ID": str(data.max_task_id),
        "BENCH_PROJECTS": ",".join(map(str, data.project_ids)),
        "BENCH_LABELS": ",".join(map(str, data.label_ids)),
        "BENCH_PATH": workload.path,
    }
    cmd = [
        "taskset", "-c", args.wrk_cpus, "wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(LUA / workload.script), server.url,
    ]  # fmt: skip
    cpu_before = cpu_seconds(server.proc.pid)
    with RssSampler(server.proc.pid) as sampler:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cpu_used = cpu_seconds(server.proc.pid) - cpu_before
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no summary for {workload.name} on {server.name}:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Result(
        requests=raw["requests"],
        duration_us=raw["duration_us"],
        errors=errors,
        p50_us=raw["p50_us"],
        p90_us=raw["p90_us"],
        p99_us=raw["p99_us"],
        mean_us=raw["mean_us"],
        max_us=raw["max_us"],
        rss_mb=sampler.last,
        cpu_us=cpu_used * 1e6 / raw["requests"] if raw["requests"] else 0.0,
    )


# --------------------------------------------------------------------------------------------
# Profiling (optional, needs py-spy)


def profile(
    server: Server, workload: Workload, args: argparse.Namespace, token: str, data: BenchData, out: Path
) -> list[str]:
    """Record a server with py-spy under one workload; return the top self/inclusive entries."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return ["py-spy not found: run with `uv run --with py-spy python bench/run.py --profile ...`"]
    raw_path = out / f"profile-{workload.name}-{server.name}.txt"
    seconds = max(args.duration, 5)
    command = f"record --pid {server.proc.pid} --duration {seconds} --rate 200 --format raw --nonblocking --output"
    spy = subprocess.Popen(
        [py_spy, *command.split(), str(raw_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    run_wrk(server, workload, seconds, args, token, data)
    spy.wait(timeout=60)
    if workload.writes:
        cleanup_writes(data)
    if not raw_path.exists():
        return [f"py-spy wrote nothing for {workload.name} (ptrace not permitted?)"]
    return summarize_profile(raw_path)


def summarize_profile(raw_path: Path, top: int = 12) -> list[str]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        packages[_package(frames[-1])] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["(no samples)"]
    lines = ["self time by package: " + ", ".join(f"{p} {100 * n / total:.0f}%" for p, n in packages.most_common(8))]
    lines.append("top self:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("top inclusive (app, bench, piccolo, litestar, asyncpg, jwt):")
    packages_shown = ("app/", "bench/", "piccolo/", "litestar/", "asyncpg/", "jwt/")
    interesting = [(f, n) for f, n in inclusive.most_common() if any(k in f for k in packages_shown)]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in interesting[:top]]
    return lines


def _package(frame: str) -> str:
    location = frame.rpartition("(")[2]
    for name in ("app/", "piccolo/", "litestar/", "asyncpg/", "uvicorn/", "msgspec/", "jwt/", "asyncio/", "uvloop/"):
        if name in location:
            return name.rstrip("/")
    return "other"


# --------------------------------------------------------------------------------------------
# The run


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def summarize(results: list[Result]) -> dict[str, float]:
    return {
        "rps": statistics.mean(r.rps for r in results),
        "p50": statistics.median(r.p50_us for r in results),
        "p99": statistics.median(r.p99_us for r in results),
        "errors": sum(r.errors for r in results),
        "rss": max(r.rss_mb for r in results),
        "cpu": statistics.median(r.cpu_us for r in results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="tasks for the bench user (default 100 000)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating taskapi/raw rounds per workload (default 5)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--workers", default="1", help="uvicorn workers, or a list to compare: 1,2")
    parser.add_argument("--workloads", default="all", help="comma-separated subset, 'all' or 'none'")
    parser.add_argument("--soak", type=int, default=0, help="seconds of the memory soak (one taskapi worker)")
    parser.add_argument("--smoke", action="store_true", help="CI mode: tiny data, 1 s runs, < 60 s in total")
    parser.add_argument("--profile", action="store_true", help="also record both apps with py-spy per workload")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--reseed", action="store_true", help="re-create the benchmark database")
    parser.add_argument("--db-name", default=None, help="default taskapi_bench_<rows> (_smoke with --smoke)")
    parser.add_argument(
        "--server-cpus", default=None, help="taskset list for the servers (default 0; 0,1 for 2+ workers)"
    )
    parser.add_argument("--wrk-cpus", default="1", help="taskset list for wrk (default 1)")
    parser.add_argument("--out", default=None, help="results directory (default bench/results; a temp dir for --smoke)")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.duration, args.rounds, args.connections = 2000, 1, 1, 8
    started = time.monotonic()

    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        hint = {"wrk": "apt-get install wrk", "taskset": "apt-get install util-linux"}
        print("bench: missing " + ", ".join(f"{t} ({hint[t]})" for t in missing), file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("bench: needs 2 cores (server on core 0, wrk on core 1)", file=sys.stderr)
        return 2

    db_name = args.db_name or ("taskapi_bench_smoke" if args.smoke else None)
    data = ensure_seeded(args.rows, db_name, reseed=args.reseed)
    cleanup_writes(data)
    secret = secrets.token_urlsafe(48)
    # The cursor for the deep keyset page is signed in this process with the servers' secret.
    os.environ["TASKAPI_SECRET_KEY"] = secret
    os.environ["DATABASE_URL"] = data.db_url
    env = {
        **os.environ,
        "DATABASE_URL": data.db_url,
        "TASKAPI_SECRET_KEY": secret,
        "TASKAPI_ENV": "production",
        # The limiter runs (headers, leases) but never refuses the benchmark's one user.
        "TASKAPI_RATE_LIMIT_USER": os.environ.get("TASKAPI_RATE_LIMIT_USER", BENCH_RATE_LIMIT),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PICCOLO_CONF", None)

    last = max(data.visible_tasks - 50, 0)
    all_workloads = [
        Workload("get_one", "get.lua", "GET /tasks/{id} (random id)"),
        Workload("list_50", "list.lua", "GET /tasks?project_id&status=todo,in_progress&sort=-priority,due_at&limit=50"),
        Workload("create", "create.lua", "POST /tasks (project, 0-2 labels, due date)", writes=True),
        Workload("patch", "patch.lua", "PATCH /tasks/{id} (status+priority or title+due_at)", writes=True),
        Workload("offset_first", "page.lua", "GET /tasks?limit=50 (first page, with total)", "/api/v1/tasks?limit=50"),
        Workload(
            "offset_deep",
            "page.lua",
            f"GET /tasks?limit=50&offset={last} (last page)",
            f"/api/v1/tasks?limit=50&offset={last}",
        ),
        Workload(
            "cursor_first",
            "page.lua",
            "GET /tasks?limit=50&paginate=cursor (first page)",
            "/api/v1/tasks?limit=50&paginate=cursor",
        ),
        Workload("cursor_deep", "page.lua", "GET /tasks?limit=50&cursor=... (last page)"),
    ]
    all_workloads[-1].path = f"/api/v1/tasks?limit=50&cursor={deep_cursor(data)}"
    by_name = {w.name: w for w in all_workloads}
    if args.workloads == "all":
        workloads = by_name
    elif args.workloads == "none":
        workloads = {}
    else:
        unknown = set(args.workloads.split(",")) - set(by_name)
        if unknown:
            parser.error(f"unknown workloads {sorted(unknown)}; choose from {', '.join(by_name)}")
        workloads = {name: by_name[name] for name in args.workloads.split(",")}
    worker_counts = [int(w) for w in args.workers.split(",")]

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = (
        Path(args.out)
        if args.out
        else (Path(tempfile.mkdtemp(prefix="taskapi-bench-")) if args.smoke else BENCH / "results")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="taskapi-bench-logs-"))
    report = Report()
    report.add(f"# taskapi benchmark {stamp}")
    report.add()
    runs = f"{args.duration} s per run, {args.rounds} alternating round(s)" if workloads else f"soak {args.soak} s"
    report.add(
        f"- {data.visible_tasks:,} tasks one user can see ({data.rows:,} it may edit; "
        f"{len(data.shared_project_ids)} projects shared by others); {runs}, "
        f"wrk -t1 -c{args.connections} on cpu {args.wrk_cpus}; "
        "uvicorn (uvloop, httptools, no access log)"
    )
    python = f"Python {platform.python_version()}"
    report.add(f"- machine: {os.cpu_count()} cores, {_cpu_model()}, {python}, {_pg_version(data)}")
    pool = f"{env.get('DB_POOL_MIN_SIZE', '1')}..{env.get('DB_POOL_MAX_SIZE', '10')}"
    report.add(f"- commit {_git_commit()}; database pool {pool} per worker, the same for both apps")
    report.add()

    failures: list[str] = []
    target_misses: list[str] = []
    results: dict[tuple[int, str, str], list[Result]] = defaultdict(list)
    servers: dict[str, Server] = {}
    try:
        for workers in worker_counts if workloads else []:
            cpus = args.server_cpus or (
                "0" if workers == 1 else ",".join(str(i) for i in range(min(workers, os.cpu_count() or 1)))
            )
            servers = {
                "taskapi": start_server("taskapi", "app.asgi:app", workers, cpus, env, logdir),
                "raw": start_server("raw", "bench.raw_app:app", workers, cpus, env, logdir),
            }
            token = get_token(servers["taskapi"], data)
            problems = compare(servers, token, workloads or by_name, data)
            cleanup_writes(data)
            if problems:
                failures += [f"workers={workers}: answers differ: {p}" for p in problems]
                for p in problems:
                    print(f"MISMATCH {p}", file=sys.stderr)
            if not args.smoke:
                for name in APPS:  # warm both (JIT-free Python still has caches, pools, statement caches)
                    run_wrk(servers[name], by_name["get_one"], 3, args, token, data)
                    run_wrk(servers[name], by_name["list_50"], 2, args, token, data)
            for workload in workloads.values():
                if not args.smoke:
                    for name in APPS:
                        run_wrk(servers[name], workload, 1, args, token, data)
                        if workload.writes:
                            cleanup_writes(data)
                for round_number in range(args.rounds):
                    order = APPS if round_number % 2 == 0 else tuple(reversed(APPS))
                    for name in order:
                        result = run_wrk(servers[name], workload, args.duration, args, token, data)
                        results[(workers, workload.name, name)].append(result)
                        print(
                            f"  w{workers} {workload.name:<13} {name:<8} round {round_number + 1}: "
                            f"{result.rps:8.0f} req/s  p50 {fmt_ms(result.p50_us)} ms  p99 {fmt_ms(result.p99_us)} ms"
                            f"  cpu {result.cpu_us:.0f} us/req  errors {result.errors}  rss {result.rss_mb:.0f} MB",
                            flush=True,
                        )
                        if workload.writes:
                            cleanup_writes(data)
            if args.profile:
                for name in APPS:
                    report.add(f"## py-spy profile of {name}, {workers} worker(s)")
                    for workload in workloads.values():
                        report.add(f"### {workload.name}")
                        report.add("```")
                        for line in profile(servers[name], workload, args, token, data, out_dir):
                            report.add(line)
                        report.add("```")
            for server in servers.values():
                stop_server(server)
            servers = {}

        if workloads:
            _report_tables(report, results, worker_counts, workloads, failures, target_misses)

        if args.soak:
            _soak(report, args, env, logdir, data, by_name, failures, target_misses)
    finally:
        for server in servers.values():
            stop_server(server)
        cleanup_writes(data)

    report.add()
    if failures:
        report.add("## FAILED")
        for failure in failures:
            report.add(f"- {failure}")
    else:
        report.add("No request failed" + ("; both apps gave the same answers." if workloads else "."))
    if target_misses:
        report.add(f"Targets missed: {', '.join(target_misses)}")
    report.add(f"Took {time.monotonic() - started:.0f} s.")
    suffix = "smoke" if args.smoke else f"{data.rows // 1000}k"
    out_file = out_dir / f"{stamp}-{suffix}.md"
    out_file.write_text("\n".join(report.lines) + "\n")
    print(f"\nwritten to {out_file}")
    if failures:
        return 1
    return 1 if args.strict and target_misses else 0


def _report_tables(
    report: Report,
    results: dict[tuple[int, str, str], list[Result]],
    worker_counts: list[int],
    workloads: dict[str, Workload],
    failures: list[str],
    target_misses: list[str],
) -> None:
    report.add("## Results")
    report.add()
    report.add("| workers | workload | app | req/s | p50 ms | p99 ms | server CPU us/req | errors | RSS MB |")
    report.add("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for workers in worker_counts:
        for name in workloads:
            for app in APPS:
                s = summarize(results[(workers, name, app)])
                report.add(
                    f"| {workers} | {name} | {app} | {s['rps']:.0f} | {fmt_ms(s['p50'])} | {fmt_ms(s['p99'])} "
                    f"| {s['cpu']:.0f} | {s['errors']:.0f} | {s['rss']:.0f} |"
                )
                if s["errors"]:
                    failures.append(f"workers={workers} {name} {app}: {s['errors']:.0f} failed requests")
    report.add()
    report.add("## taskapi / raw")
    report.add()
    report.add("| workers | workload | req/s ratio (median of rounds) | per round | p99 ratio | target | result |")
    report.add("|---:|---|---:|---|---:|---|---|")
    for workers in worker_counts:
        for name in workloads:
            t, r = results[(workers, name, "taskapi")], results[(workers, name, "raw")]
            st, sr = summarize(t), summarize(r)
            # Each round pairs the two apps back to back, so its ratio sees the same machine state;
            # the median of the rounds' ratios is the figure (robust to one disturbed round).
            paired = [a.rps / b.rps for a, b in zip(t, r, strict=True) if b.rps]
            ratio = statistics.median(paired) if paired else 0.0
            p99_ratio = st["p99"] / sr["p99"] if sr["p99"] else 0.0
            rounds = ", ".join(f"{x:.2f}" for x in paired)
            if name in TARGETS:
                ok = ratio >= TARGETS[name] and p99_ratio <= P99_LIMIT
                target = f">= {TARGETS[name]:.2f}, p99 <= {P99_LIMIT}x"
                verdict = "pass" if ok else "MISS"
                if not ok:
                    target_misses.append(f"{name} (w{workers})")
            else:
                target, verdict = "-", "-"
            report.add(f"| {workers} | {name} | {ratio:.2f} | {rounds} | {p99_ratio:.2f} | {target} | {verdict} |")
    if {"cursor_first", "cursor_deep"} <= set(workloads):
        report.add()
        report.add("## Deep pages (cost = 1 / req/s, last page vs first page, same app)")
        report.add()
        report.add("| workers | app | offset last/first | cursor last/first | keyset target | result |")
        report.add("|---:|---|---:|---:|---|---|")

        def cost(workers: int, name: str, app: str) -> float:
            key = (workers, name, app)
            return 1 / summarize(results[key])["rps"] if results.get(key) else float("nan")

        for workers in worker_counts:
            for app in APPS:
                offset = cost(workers, "offset_deep", app) / cost(workers, "offset_first", app)
                cursor = cost(workers, "cursor_deep", app) / cost(workers, "cursor_first", app)
                ok = cursor <= KEYSET_LIMIT
                if app == "taskapi" and not ok:
                    target_misses.append(f"keyset (w{workers})")
                verdict = "pass" if ok else "MISS"
                report.add(f"| {workers} | {app} | {offset:.2f} | {cursor:.2f} | <= {KEYSET_LIMIT} | {verdict} |")


def _soak(
    report: Report,
    args: argparse.Namespace,
    env: dict[str, str],
    logdir: Path,
    data: BenchData,
    by_name: dict[str, Workload],
    failures: list[str],
    target_misses: list[str],
) -> None:
    """One fresh taskapi worker under the mixed load for --soak seconds; RSS must stay flat."""
    server = start_server("taskapi-soak", "app.asgi:app", 1, args.server_cpus or "0", env, logdir)
    try:
        token = get_token(server, data)
        mixed = Workload("soak", "mixed.lua", "45% get, 30% list 50, 15% patch, 10% create", writes=True)
        boot = rss_mb(server.proc.pid)
        sampler = RssSampler(server.proc.pid, interval=5)
        with sampler:
            result = run_wrk(server, mixed, args.soak, args, token, data)
        cleanup_writes(data)
    finally:
        stop_server(server)
    warm = 30 if args.soak >= 120 else max(args.soak // 4, 1)
    after_warmup = next((rss for t, rss in sampler.samples if t >= warm), sampler.samples[0][1])
    end = sampler.samples[-1][1]
    growth = (end - after_warmup) / after_warmup if after_warmup else 0.0
    ok = growth <= SOAK_GROWTH_LIMIT
    report.add()
    report.add(f"## Memory soak: one taskapi worker, {args.soak} s of {mixed.description}")
    report.add()
    latency = f"p50 {fmt_ms(result.p50_us)} ms, p99 {fmt_ms(result.p99_us)} ms"
    report.add(f"{result.rps:.0f} req/s, {latency}, errors {result.errors}.")
    report.add()
    report.add("| at s | RSS MB |")
    report.add("|---:|---:|")
    report.add(f"| before load | {boot:.1f} |")
    step = max(1, len(sampler.samples) // 12)
    for t, rss in sampler.samples[::step]:
        report.add(f"| {t:.0f} | {rss:.1f} |")
    report.add(f"| {sampler.samples[-1][0]:.0f} (end) | {end:.1f} |")
    report.add()
    report.add(
        f"Start (after {warm} s warm-up) {after_warmup:.1f} MB, end {end:.1f} MB: {100 * growth:+.1f} % "
        f"(target <= +{100 * SOAK_GROWTH_LIMIT:.0f} %): {'pass' if ok else 'MISS'}"
    )
    if result.errors:
        failures.append(f"soak: {result.errors} failed requests")
    if not ok:
        target_misses.append("memory soak")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _pg_version(data: BenchData) -> str:
    rows = asyncio.run(_db(data, "SHOW server_version"))
    return f"PostgreSQL {rows[0][0].split()[0]}"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "app"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return out.stdout.strip() + (" (app/ modified)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
