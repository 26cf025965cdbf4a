"""Another user's GET throughput and the server's memory under a flood of wrong logins.

    uv run python bench/login_flood.py                 # 20 s per phase
    uv run python bench/login_flood.py --seconds 5     # a quick look

One ``taskapi serve`` worker (real argon2id profile: 64 MiB, t=3, p=4) on core 0, this load
generator on core 1 (as bench/run.py does). Phases, each on a freshly started server:

1. unloaded: ``--get-connections`` connections GET /tasks/{id} as the bench user;
2. flood: the same GETs while ``--flood-connections`` connections post wrong passwords, with
   the failed-login limits raised out of reach (a flood from many addresses and accounts), so
   every attempt is hashed and only the bounded hashing protects the server;
3. flood, default limits: the same flood against the shipped failed-login limits (after ten
   failures the account answers 429 without hashing).

Prints req/s of the GETs, login answers by status, and the server's peak RSS (VmHWM). It
asserts nothing: targets (GET under flood >= 0.5x unloaded, RSS < 200 MB) are for reading.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seed import BENCH_RATE_LIMIT, BenchData, ensure_seeded  # noqa: E402
from tests.serverproc import free_port  # noqa: E402

SECRET = "login-flood-" + "x" * 40
UNREACHABLE = "1000000000/60"


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, data: BenchData, env_extra: dict[str, str]) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": data.db_url,
            "TASKAPI_SECRET_KEY": SECRET,
            "TASKAPI_ENV": "production",
            "TASKAPI_RATE_LIMIT_USER": BENCH_RATE_LIMIT,
            "TASKAPI_RATE_LIMIT_PUBLIC": UNREACHABLE,
            "TASKAPI_LOG_LEVEL": "WARNING",
            **env_extra,
        }
        command = [sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--port", str(self.port)]
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *command], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def _get_loop(http: httpx.AsyncClient, data: BenchData, headers: dict[str, str], until: float) -> int:
    done, rnd = 0, random.Random(os.getpid())
    while time.monotonic() < until:
        response = await http.get(f"/api/v1/tasks/{rnd.randint(1, data.max_task_id)}", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET answered {response.status_code}: {response.text[:200]}")
        done += 1
    return done


async def _flood_loop(http: httpx.AsyncClient, email: str, until: float, statuses: collections.Counter[int]) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        response = await http.post("/api/v1/auth/token", json={"email": email, "password": f"wrong-{n}"})
        statuses[response.status_code] += 1


async def _flood(base: str, email: str, connections: int, seconds: float) -> dict[int, int]:
    statuses: collections.Counter[int] = collections.Counter()
    until = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=connections), timeout=30) as http:
        await asyncio.gather(*(_flood_loop(http, email, until, statuses) for _ in range(connections)))
    return dict(statuses)


def _flood_process(base: str, email: str, connections: int, seconds: float, out: Any) -> None:
    # The attacker stands for another machine: its own process, and behind the GET client for
    # this core's CPU (nice 19), so what slows the GETs is the server, not the load generator.
    os.nice(19)
    out.put(asyncio.run(_flood(base, email, connections, seconds)))


async def _phase(server: Server, data: BenchData, args: argparse.Namespace, *, flood: bool) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.get_connections + 1)
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=30) as http:
        login = await http.post("/api/v1/auth/token", json={"email": data.email, "password": data.password})
        if login.status_code != 200:
            raise RuntimeError(f"the bench user's login answered {login.status_code}: {login.text[:300]}")
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        results: Any = multiprocessing.Queue()
        flooder = multiprocessing.Process(
            target=_flood_process, args=(server.base, data.email, args.flood_connections, args.seconds, results)
        )
        if flood:
            flooder.start()
        started = time.monotonic()
        until = started + args.seconds
        gets = await asyncio.gather(*(_get_loop(http, data, headers, until) for _ in range(args.get_connections)))
        elapsed = time.monotonic() - started
        statuses: dict[int, int] = results.get(timeout=60) if flood else {}
        if flood:
            flooder.join()
    return {
        "get_rps": sum(gets) / elapsed,
        "logins": dict(sorted(statuses.items())),
        "login_rps": sum(statuses.values()) / elapsed,
        "rss_now": _rss_mb(server.process.pid, "VmRSS"),
        "rss_peak": _rss_mb(server.process.pid, "VmHWM"),
    }


async def _forget_counts(data: BenchData) -> None:
    connection = await asyncpg.connect(data.db_url)
    try:
        await connection.execute("TRUNCATE rate_limit")
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--get-connections", type=int, default=4)
    parser.add_argument("--flood-connections", type=int, default=8)
    parser.add_argument("--rows", type=int, default=2000, help="seeded tasks (bench/seed.py)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the load generator on core 1, the server on core 0
    data = ensure_seeded(args.rows)
    phases = [
        ("unloaded", {}, False),
        (
            "flood, login limits out of reach",
            {"TASKAPI_LOGIN_FAILURES_ACCOUNT": UNREACHABLE, "TASKAPI_LOGIN_FAILURES_ADDRESS": UNREACHABLE},
            True,
        ),
        ("flood, default login limits", {}, True),
    ]
    results = {}
    for name, env_extra, flood in phases:
        asyncio.run(_forget_counts(data))  # each phase starts with no failed login counted
        server = Server(data, env_extra)
        try:
            results[name] = asyncio.run(_phase(server, data, args, flood=flood))
        finally:
            server.stop()
        r = results[name]
        print(
            f"{name:34s} GET {r['get_rps']:7.1f} req/s   logins {r['login_rps']:6.1f}/s {r['logins']}   "
            f"RSS {r['rss_now']:.0f} MB (peak {r['rss_peak']:.0f} MB)",
            flush=True,
        )
    base = results["unloaded"]["get_rps"]
    for name in list(results)[1:]:
        print(
            f"{name}: GET {results[name]['get_rps'] / base:.2f}x unloaded (target >= 0.5), peak RSS "
            f"{results[name]['rss_peak']:.0f} MB (target < 200)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
