"""Database wiring: the engine's connection settings, the pool's life, and outage detection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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


def engine_config(settings: Settings | None = None) -> dict[str, Any]:
    """asyncpg connection arguments for the one PostgresEngine (see piccolo_conf.py)."""
    settings = settings or get_settings()
    return {
        "dsn": resolve_dsn(settings),
        # Fail fast when the server is unreachable instead of hanging the request.
        "timeout": settings.db_connect_timeout,
        "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
        "server_settings": {
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "idle_in_transaction_session_timeout": "30000",
            "application_name": "taskapi",
            "timezone": "UTC",
        },
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


class TaskapiEngine(PostgresEngine):
    """The PostgresEngine with bounded pool acquires and leak-free transactions."""

    def __init__(self, config: dict[str, Any], *, acquire_timeout: float) -> None:
        super().__init__(config=config)
        # Covers waiting for a free connection and opening a new one; past it, a TimeoutError
        # (one of UNAVAILABLE_ERRORS, so a 503) instead of a request that hangs.
        self.acquire_timeout = acquire_timeout
        self._releasing: set[asyncio.Task[None]] = set()  # strong references to background releases

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

    async def fetch_many(self, *statements: tuple[str, Sequence[Any]]) -> list[list[asyncpg.Record]]:
        """Run fixed statements in order on one connection (the transaction's, or one pool acquire)."""
        transaction = self.current_transaction.get()
        if transaction is not None:
            return [await transaction.connection.fetch(sql, *args) for sql, args in statements]
        connection = await self.acquire()
        try:
            rows = [await connection.fetch(sql, *args) for sql, args in statements]
        except asyncio.CancelledError:
            self._release_later(connection)
            raise
        except BaseException:
            await self.release(connection)
            raise
        await self.release(connection)
        return rows

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
        connection = await self.acquire()
        try:
            rows = await connection.fetch(query, *(args or []))
        except asyncio.CancelledError:
            self._release_later(connection)
            raise
        except BaseException:
            await self.release(connection)
            raise
        await self.release(connection)
        return rows

    def _release_later(self, connection: asyncpg.Connection) -> None:
        """Give back a connection whose statement was cut off (a deadline, /ready's timeout).

        asyncpg is cancelling the statement on the server, so a write nobody waits for does not
        complete later; it returns the connection once the server acknowledges, or terminates it
        after command_timeout. Neither is the request's business: it answers now.
        """
        task = asyncio.get_running_loop().create_task(self.release(connection))
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
