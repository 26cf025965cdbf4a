"""Piccolo: a transaction whose BEGIN, COMMIT or ROLLBACK fails never returns its pooled connection:
a COMMIT the server refuses (a deferred constraint), and BEGIN, COMMIT or ROLLBACK cut off by a
deadline while the server is slow (a proxy holds the bytes). REPRO_DSN names the server."""

import asyncio
import contextlib
import os
from urllib.parse import parse_qs, urlsplit

import piccolo
from piccolo.engine.postgres import PostgresEngine

DSN = urlsplit(os.environ.get("REPRO_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
SOCKET_DIR = parse_qs(DSN.query).get("host", [""])[0]  # postgresql://user@/db?host=/run/postgresql
CONNECT = asyncio.open_unix_connection if SOCKET_DIR else asyncio.open_connection
ADDRESS = (f"{SOCKET_DIR}/.s.PGSQL.{DSN.port or 5432}",) if SOCKET_DIR else (DSN.hostname, DSN.port or 5432)
DEFERRED = "CREATE TEMP TABLE t (i int UNIQUE DEFERRABLE INITIALLY DEFERRED); INSERT INTO t VALUES (1), (1)"
flowing = asyncio.Event()  # cleared: the proxy holds every byte, as a slow or partitioned server would
flowing.set()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        await flowing.wait()
        writer.write(data)


async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up_reader, up_writer = await CONNECT(*ADDRESS)
    with contextlib.suppress(Exception):
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def main() -> None:
    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxied = DSN._replace(netloc=f"{DSN.username or ''}@127.0.0.1:{server.sockets[0].getsockname()[1]}", query="")
    leaked = []
    for case in ("COMMIT refused", "BEGIN cut off", "COMMIT cut off", "ROLLBACK cut off"):
        engine = PostgresEngine(config={"dsn": DSN.geturl()})  # checks the version on its own connection
        engine.config["dsn"] = proxied.geturl()
        await engine.start_connection_pool(min_size=1, max_size=1)
        with contextlib.suppress(Exception):
            flowing.clear() if case == "BEGIN cut off" else None
            async with asyncio.timeout(0.2), engine.transaction() as tx:  # a request's deadline
                await tx.connection.execute(DEFERRED) if case == "COMMIT refused" else flowing.clear()
                if case == "ROLLBACK cut off":
                    raise RuntimeError("the block fails, so Piccolo rolls back")
        flowing.set()  # the server answers again
        came_back, _ = await asyncio.wait([asyncio.ensure_future(engine.pool.acquire())], timeout=0.5)
        leaked += [] if came_back else [case]
        engine.pool.terminate()
    outcome = f"BUG PRESENT: {len(leaked)} of 4 leaked, after {', '.join(leaked)}" if leaked else "FIXED"
    print(f"piccolo {piccolo.__VERSION__}: {outcome} (expected: the connection comes back after each)", flush=True)
    os._exit(1 if leaked else 0)  # status 1: the bug is present (_exit: the proxy's leftovers need no tidying)


if __name__ == "__main__":
    asyncio.run(main())
