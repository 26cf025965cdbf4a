"""Database wiring: the engine's connection settings, the pool's life, and outage detection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from litestar.enums import ScopeType
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction

from app.settings import Settings, get_settings

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("taskapi")


def resolve_dsn(settings: Settings) -> str:
    """DATABASE_URL if set, else the embedded server's DSN (starting it if needed)."""
    if settings.database_url:
        return settings.database_url
    from app.embedded import embedded_server_dsn

    return embedded_server_dsn(settings.data_dir)


IDLE_IN_TRANSACTION_TIMEOUT_MS = 30000


def server_timeouts(settings: Settings) -> dict[str, str]:
    """The server-side bounds every taskapi session runs under."""
    return {
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS),
    }


def engine_config(settings: Settings | None = None, *, direct: bool = False, dsn: str | None = None) -> dict[str, Any]:
    """asyncpg connection arguments for the one PostgresEngine (see piccolo_conf.py).

    ``direct`` is PostgreSQL itself (DATABASE_DIRECT_URL), for migrations and session state;
    ``dsn`` another server with the same options (a replica).
    """
    settings = settings or get_settings()
    pooled = settings.database_pooler != "none" and not direct
    server_settings = {"application_name": "taskapi", "timezone": "UTC"}
    if not pooled:
        # Behind PgBouncer these are refused as startup parameters (it forwards only a few, such as
        # application_name and timezone); `taskapi migrate` makes them the database's defaults.
        server_settings.update(server_timeouts(settings))
    if dsn is None:
        dsn = (settings.database_direct_url or resolve_dsn(settings)) if direct else resolve_dsn(settings)
    return {
        "dsn": dsn,
        # Fail fast when the server is unreachable instead of hanging the request.
        "timeout": settings.db_connect_timeout,
        "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
        # Named statements live on one server connection; PgBouncer < 1.21 in transaction mode
        # hands the next query another one. Off, asyncpg re-sends the unnamed statement's Parse.
        "statement_cache_size": 100 if settings.db_prepared_statements or direct else 0,
        "server_settings": server_settings,
    }


class TaskapiTransaction(PostgresTransaction):
    """Piccolo's transaction, made safe for outages.

    Piccolo 1.38 acquires from the pool without a timeout, and when ``BEGIN``, ``COMMIT`` or
    ``ROLLBACK`` fails (refused, or cut off by the request's deadline) it never releases the
    connection, so the pool shrinks until requests hang (UPSTREAM.md, Piccolo). Here the acquire
    is bounded, the connection is always released (terminated when its state is unknown), and a
    failed rollback does not hide the error that caused it.
    """

    engine: TaskapiEngine

    async def get_connection(self) -> Any:
        if self.engine.pool:
            return await self.engine.acquire()
        return await self.engine.get_new_connection()

    async def __aenter__(self) -> PostgresTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        self.transaction = self.connection.transaction()
        try:
            await self.begin()  # type: ignore[no-untyped-call]
        except BaseException:
            await self._give_back(healthy=False)
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        healthy = True
        try:
            if isinstance(exception, asyncio.CancelledError):
                # Cut off mid-statement (the request's deadline): a ROLLBACK would wait on the same
                # unanswering server. Terminating the connection ends the transaction server-side.
                healthy = False
            elif exception:
                if not self._rolled_back:
                    try:
                        await self.rollback()  # type: ignore[no-untyped-call]
                    except Exception:
                        # The connection is gone; the original exception says why.
                        healthy = False
            elif not self._committed and not self._rolled_back:
                try:
                    await self.commit()  # type: ignore[no-untyped-call]
                except BaseException:
                    healthy = False
                    raise
        finally:
            self.engine.current_transaction.reset(self.context)
            await self._give_back(healthy=healthy)
        return exception is None

    async def _give_back(self, *, healthy: bool) -> None:
        connection = self.connection
        if not healthy:
            # Its transaction state is unknown: never hand it to another request.
            with contextlib.suppress(Exception):
                connection.terminate()
        if self.engine.pool:
            try:
                await self.engine.pool.release(connection)
            except Exception as exc:  # asyncpg terminated it; the request's own work is done
                logger.warning("could not return a connection to the pool: %s", type(exc).__name__)
        elif healthy:
            await connection.close()


T = TypeVar("T")


@dataclass(slots=True)
class ReadRoute:
    """A GET's permission to read from a replica: once one has replayed the caller's last write."""

    user_id: int
    # The WAL position a replica must have replayed (read from the primary on first need).
    needed_lsn: int | None = None


# Set by ReadRouting for the length of one authenticated GET; None everywhere else.
READ_ROUTE: ContextVar[ReadRoute | None] = ContextVar("taskapi_read_route", default=None)

_READ_START = re.compile(r"^[\s(]*(SELECT|WITH)\b", re.IGNORECASE)
# Anything that writes, locks or has side effects keeps a statement on the primary.
_NOT_A_READ = re.compile(
    r"\b(INSERT|UPDATE|DELETE|MERGE|FOR\s+(NO\s+KEY\s+)?UPDATE|FOR\s+(KEY\s+)?SHARE|nextval|setval"
    r"|pg_(try_)?advisory\w*|set_config|pg_notify|pg_current_wal\w*|txid_current|pg_current_xact_id)\b",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def is_read_only(sql: str) -> bool:
    """True for a statement a hot standby can answer (a wrong True ends on the primary anyway)."""
    return bool(_READ_START.match(sql)) and not _NOT_A_READ.search(sql)


# The position a GET needs: the caller's last write and the last change of anyone's access
# (user 0); a user without a row (never wrote, or the table was emptied by a crash) needs the
# primary's present position.
NEEDED_LSN_SQL = """
SELECT greatest(
    coalesce(max(lsn) FILTER (WHERE user_id = $1), pg_current_wal_insert_lsn()),
    coalesce(max(lsn) FILTER (WHERE user_id = 0), '0/0'::pg_lsn)
) AS lsn
FROM taskapi_read_position WHERE user_id IN ($1, 0)
"""
# After a write request: the primary's position now covers that request's commits. The insert
# position, not the write position: a commit with synchronous_commit off may not be written yet.
RECORD_LSN_SQL = """
INSERT INTO taskapi_read_position AS p (user_id, lsn)
SELECT u, pg_current_wal_insert_lsn() FROM unnest($1::integer[]) AS u
ON CONFLICT (user_id) DO UPDATE SET lsn = greatest(p.lsn, excluded.lsn)
"""
REPLAYED_LSN_SQL = "SELECT pg_last_wal_replay_lsn() AS lsn"
# A replica that failed is left alone this long before the next try.
REPLICA_RETRY_SECONDS = 5.0
# Errors that mean the replica is unreachable: reads go to the primary for a while.
REPLICA_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InternalClientError,
)
# Errors of one statement that a standby cannot run: it runs again on the primary, which gives
# the true answer. A statement timeout is not among them: the same statement would take as long
# there (its caller maps it, e.g. a search that is a 400).
REPLICA_STATEMENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InvalidTransactionStateError,  # read-only transaction: not a read after all
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # "recovery is in progress"
    asyncpg.exceptions.SerializationError,  # cancelled by a conflict with recovery
    asyncpg.exceptions.UndefinedTableError,  # a migration the replica has not replayed yet
    asyncpg.exceptions.UndefinedColumnError,
)


class Replica:
    """One streaming replica: its pool, the highest position seen replayed, and when it failed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: asyncpg.Pool | None = None
        self.replayed_lsn = 0  # only grows: a standby's replay position never goes back
        self.down_until = 0.0

    def available(self) -> bool:
        return self.pool is not None and time.monotonic() >= self.down_until

    def failed(self, exc: BaseException) -> None:
        self.down_until = time.monotonic() + REPLICA_RETRY_SECONDS
        logger.warning(
            "replica read failed (%s); reading from the primary for %ss", type(exc).__name__, REPLICA_RETRY_SECONDS
        )


class TaskapiEngine(PostgresEngine):
    """The PostgresEngine with bounded pool acquires, leak-free transactions and replica reads."""

    def __init__(self, config: dict[str, Any], *, acquire_timeout: float) -> None:
        super().__init__(config=config)
        # Covers waiting for a free connection and opening a new one; past it, a TimeoutError
        # (one of UNAVAILABLE_ERRORS, so a 503) instead of a request that hangs.
        self.acquire_timeout = acquire_timeout
        self._releasing: set[asyncio.Task[Any]] = set()  # strong references to background releases
        self.replicas: list[Replica] = []
        self._next_replica = 0

    def transaction(self, allow_nested: bool = True) -> TaskapiTransaction:
        return TaskapiTransaction(engine=self, allow_nested=allow_nested)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one fixed statement (``$n`` placeholders) on the current transaction or the pool.

        For hot paths only: it skips Piccolo's per-call query building and row post-processing,
        and asyncpg caches the prepared statement per connection.
        """
        transaction = self.current_transaction.get()
        if transaction is not None:
            rows: list[asyncpg.Record] = await transaction.connection.fetch(sql, *args)
            return rows
        rows = await self._run_in_pool(sql, args)
        return rows

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]], *, read_only: bool = False) -> T:
        """``work`` on one connection: the current transaction's, or one pool acquire (a replica's
        for a read the request may take from one; on its failure ``work`` runs again on the primary)."""
        transaction = self.current_transaction.get()
        if transaction is not None:
            return await work(transaction.connection)
        if read_only and self.replicas:
            return await self._read(work)
        return await self._on_primary(work)

    async def acquire(self) -> asyncpg.Connection:
        """A pool connection, waited for at most ``acquire_timeout`` (then TimeoutError: a 503).

        With an idle connection there is nothing to wait for, and no timer is armed: a timer per
        statement (asyncpg's ``acquire(timeout=...)`` even makes a Task per acquire on Python
        3.11) shows in a GET's CPU.
        """
        pool = self.pool
        if not pool:
            raise ValueError("A pool isn't currently running.")
        connection: asyncpg.Connection
        if pool.get_idle_size():
            connection = await pool.acquire()
            return connection
        async with asyncio.timeout(self.acquire_timeout):
            connection = await pool.acquire()
            return connection

    async def release(self, connection: asyncpg.Connection) -> None:
        assert self.pool is not None
        await self.pool.release(connection)

    async def _run_in_pool(self, query: str, args: Any = None) -> Any:
        async def run(connection: asyncpg.Connection) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await connection.fetch(query, *(args or []))
            return rows

        if self.replicas and is_read_only(query):
            return await self._read(run)
        return await self._on_primary(run)

    async def _on_primary(self, run: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        connection = await self.acquire()
        try:
            result = await run(connection)
        except asyncio.CancelledError:
            self._release_later(connection, self.release)
            raise
        except BaseException:
            await self.release(connection)
            raise
        await self.release(connection)
        return result

    async def _read(self, run: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """A read outside a transaction: on a replica when the request allows it, else the primary."""
        route = READ_ROUTE.get()
        if route is not None:
            replica = await self._replica_for(route)
            if replica is not None:
                try:
                    return await self._on_replica(replica, run)
                except REPLICA_STATEMENT_ERRORS:
                    pass
                except REPLICA_DOWN_ERRORS as exc:
                    replica.failed(exc)
        return await self._on_primary(run)

    async def _replica_for(self, route: ReadRoute) -> Replica | None:
        """A replica that has replayed the position ``route`` needs, or None (read the primary)."""
        candidates = [replica for replica in self.replicas if replica.available()]
        if not candidates:
            return None
        if route.needed_lsn is None:
            try:
                rows = await self._on_primary(lambda connection: connection.fetch(NEEDED_LSN_SQL, route.user_id))
            except asyncpg.exceptions.UndefinedTableError:
                logger.error("taskapi_read_position is missing (run taskapi migrate): reading from the primary")
                return None
            route.needed_lsn = int(rows[0]["lsn"])
        self._next_replica = (self._next_replica + 1) % len(candidates)
        ordered = candidates[self._next_replica :] + candidates[: self._next_replica]
        for replica in ordered:
            if replica.replayed_lsn >= route.needed_lsn:
                return replica
        for replica in ordered:
            try:
                rows = await self._on_replica(replica, lambda connection: connection.fetch(REPLAYED_LSN_SQL))
            except REPLICA_DOWN_ERRORS as exc:
                replica.failed(exc)
                continue
            # NULL: not a standby (or not replaying); never read from it.
            replica.replayed_lsn = max(replica.replayed_lsn, int(rows[0]["lsn"] or 0))
            if replica.replayed_lsn >= route.needed_lsn:
                return replica
        return None

    async def _on_replica(self, replica: Replica, run: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        pool = replica.pool
        assert pool is not None
        try:
            async with asyncio.timeout(self.acquire_timeout):
                connection = await pool.acquire()
        except asyncio.CancelledError as exc:
            replica.failed(exc)  # the request's deadline passed while connecting: a hung replica
            raise
        try:
            result = await run(connection)
        except asyncio.CancelledError as exc:
            # A slow read ends by the statement timeout, before the request's deadline: cut off
            # here, the replica is hung, and the next requests should not wait for it too.
            replica.failed(exc)
            self._release_later(connection, pool.release)
            raise
        except BaseException:
            await pool.release(connection)
            raise
        await pool.release(connection)
        return result

    async def record_write(self, user_ids: Sequence[int]) -> None:
        """Remember the primary's position as the last write of ``user_ids`` (0: anyone's access)."""
        await self._on_primary(lambda connection: connection.fetch(RECORD_LSN_SQL, list(user_ids)))

    def _release_later(
        self, connection: asyncpg.Connection, release: Callable[[asyncpg.Connection], Awaitable[Any]]
    ) -> None:
        """Give back a connection whose statement was cut off (a deadline, /ready's timeout).

        asyncpg is cancelling the statement on the server, so a write nobody waits for does not
        complete later; it returns the connection once the server acknowledges, or terminates it
        after command_timeout. Neither is the request's business: it answers now.
        """
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(release(connection))  # type: ignore[arg-type]
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)


def make_engine(settings: Settings | None = None) -> TaskapiEngine:
    """The one engine, for piccolo_conf.py."""
    settings = settings or get_settings()
    return TaskapiEngine(config=engine_config(settings), acquire_timeout=settings.db_acquire_timeout)


@functools.cache
def get_engine() -> TaskapiEngine:
    """The engine all tables use (from piccolo_conf.py); fixed for the life of the process."""
    from app.tables import Task

    engine = Task._meta.db
    assert isinstance(engine, TaskapiEngine)
    return engine


async def start_pool(settings: Settings) -> None:
    """Open the pool with explicit sizes; Piccolo would otherwise connect per query.

    If the database does not answer at start, the pool opens empty (``min_size=0``) instead of
    failing: requests get 503s until the database is back, then connections open on demand.
    """
    engine = get_engine()
    options: dict[str, Any] = {
        "max_size": settings.pool_max_size,
        "max_inactive_connection_lifetime": 60.0,
        "reset": keep_session,
    }
    try:
        await engine.start_connection_pool(min_size=settings.pool_min_size, **options)
    except UNAVAILABLE_ERRORS as exc:
        logger.warning("database not answering at start (%s); serving 503s until it is back", type(exc).__name__)
        await engine.start_connection_pool(min_size=0, **options)
    replicas = []
    for url in settings.database_replica_urls:
        replica = Replica(url)
        # Connections open on first use, so a replica that is down at start delays nothing.
        replica.pool = await asyncpg.create_pool(**engine_config(settings, dsn=url), min_size=0, **options)
        replicas.append(replica)
    engine.replicas = replicas


async def keep_session(connection: asyncpg.Connection) -> None:
    """The pool's release hook, replacing asyncpg's default reset query.

    asyncpg still rolls back an open transaction on release. Its default reset adds one round
    trip per query (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) for session
    state taskapi never creates: it takes only transaction-scoped advisory locks and never SETs,
    LISTENs or DECLAREs a cursor on a pooled connection (server settings are connection options).
    """


async def close_pool() -> None:
    """Close the pool if it is open."""
    engine = get_engine()
    replicas, engine.replicas = engine.replicas, []
    for replica in replicas:
        if replica.pool is not None:
            await replica.pool.close()
    if engine.pool is not None:
        await engine.close_connection_pool()


def pool_started() -> bool:
    return get_engine().pool is not None


class RequestDeadline:
    """ASGI middleware: one deadline for all of a request's work, database included.

    Each bound below it (connect, pool acquire, statement timeout) holds for one step; a request
    takes several, and against a hung server (accepting bytes, answering none) they add up. At
    the deadline the request is cancelled, its connection terminated (never returned to the
    pool), and the TimeoutError becomes a 503 with Retry-After (UNAVAILABLE_ERRORS). It is longer
    than DB_STATEMENT_TIMEOUT_MS, so an expensive statement still ends by the statement timeout,
    not here. Once the answer has started it no longer applies (a streamed body is not cut).
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:  # a websocket has no single answer to bound
            await self.app(scope, receive, send)
            return
        async with asyncio.timeout(self.seconds) as deadline:

            async def send_disarming(message: Message) -> None:
                if message["type"] == "http.response.start":
                    deadline.reschedule(None)
                await send(message)

            await self.app(scope, receive, send_disarming)


_SAFE_METHODS = frozenset({"GET", "HEAD"})
# Writes here can change who sees what (membership, projects, accounts): every reader's next
# replica read waits for them, not only the writer's.
_ACCESS_PATHS = re.compile(r"^/api/v1/(projects|invitations|users|auth)\b")
# A stream lives on past its caller's next writes, so the position it was granted would go stale.
_PRIMARY_ONLY_PATHS = re.compile(r"/stream$")


class ReadRouting:
    """ASGI middleware (inside authentication): replica reads with read-your-writes.

    An authenticated GET may read from a replica that has replayed the caller's last write; a
    write request records the primary's position for its caller before its answer starts, so the
    caller's next read, through any instance or worker, finds it (app/db.py TaskapiEngine._read).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        user_id = getattr(user, "id", None)
        if scope["type"] != ScopeType.HTTP or not isinstance(user_id, int):
            await self.app(scope, receive, send)
            return
        if scope["method"] in _SAFE_METHODS:
            if _PRIMARY_ONLY_PATHS.search(scope["path"]):
                await self.app(scope, receive, send)
                return
            token = READ_ROUTE.set(ReadRoute(user_id))
            try:
                await self.app(scope, receive, send)
            finally:
                READ_ROUTE.reset(token)
            return
        users = [user_id, 0] if _ACCESS_PATHS.match(scope["path"]) else [user_id]
        recorded = False

        async def send_after_recording(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                await _record_write(users)
            await send(message)

        try:
            await self.app(scope, receive, send_after_recording)
        finally:
            if not recorded:
                # No answer started (the request failed before one): record anyway, it may have written.
                await _record_write(users)


async def _record_write(users: list[int]) -> None:
    try:
        await get_engine().record_write(users)
    except Exception as exc:
        # The request's own work is done and must be answered; the caller's next read may then
        # miss it on a replica.
        logger.warning("could not record a write position: %s", type(exc).__name__)


def read_routing(settings: Settings) -> list[Any]:
    """The middleware list entry for replica reads: empty without DATABASE_REPLICA_URLS."""
    from litestar.middleware import DefineMiddleware

    return [DefineMiddleware(ReadRouting)] if settings.database_replica_urls else []


# Errors that mean "the database is not answering", as opposed to a bad query or bad data.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.QueryCanceledError,
    # asyncpg's protocol state broke, in practice because the server cut the connection
    # mid-operation (seen on COMMIT during a fast shutdown): the outcome is unknown, so retry.
    asyncpg.exceptions.InternalClientError,
)
