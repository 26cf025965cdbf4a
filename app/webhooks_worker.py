"""The webhook delivery worker: claims due deliveries from PostgreSQL and POSTs them.

``taskapi serve`` runs one in every process (app/asgi.py lifespan) unless
TASKAPI_WEBHOOK_WORKER=false; ``taskapi worker`` runs one alone. Any number may run against one
database: a delivery is claimed with ``FOR UPDATE SKIP LOCKED`` and leased for
``lease_seconds``, so two workers never send it at the same time, and a worker that dies
mid-send (kill -9) leaves it to be claimed again when the lease ends: at least once.

Each send follows Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
``webhook-signature`` signed with the ``standardwebhooks`` package), goes only to an address
checked before connecting (the host is resolved again, at most every 30 s, and the connection
pinned to the checked address, so a DNS answer that changed since the webhook was saved cannot
redirect it),
never follows redirects, and is bounded by connect and read timeouts. A 2xx delivers; 410
disables the webhook; anything else is retried with exponential backoff and jitter (or after
``Retry-After`` on 429 and 503) until ``retry_window`` has passed since the delivery was queued.

The worker has its own small connection pool (STYLE.md 16): it never holds a connection while
waiting on a receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import functools
import logging
import random
import signal
import ssl
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from standardwebhooks.webhooks import Webhook as Signer

from app.db import engine_config
from app.services import sql
from app.services.query import Statement
from app.services.webhooks import Target, UrlRefused, resolve_target, secret_key_id, signing_secret
from app.settings import Settings, WebhookSettings

logger = logging.getLogger("taskapi.webhooks")

USER_AGENT = "taskapi-webhooks/1"
MAX_BODY_READ = 4096  # of a receiver's answer, for the delivery log
CLIENTS_KEPT = 128
PURGE_EVERY_SECONDS = 3600.0
RETRY_AFTER_STATUSES = (429, 503)
TARGET_TTL = 30.0  # seconds a URL's checked addresses are reused before resolving again


def backoff(failures: int, w: WebhookSettings, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``failures`` failed ones: ``retry_base * 2^(n-1)``,
    capped at ``retry_max_delay``, jittered down to as little as half (so receivers that
    failed together are not retried together)."""
    ceiling = min(w.retry_max_delay, w.retry_base * 2.0 ** min(failures - 1, 40))
    jitter: float = (rng or random).random()
    return ceiling * (0.5 + 0.5 * jitter)


def next_delay(failures: int, age: float, w: WebhookSettings, retry_after: float | None = None) -> float | None:
    """When to try again (seconds from now), or None to give up. ``age``: seconds since queued.

    Retries continue until ``retry_window`` after queueing; the last one is made at the window's
    end rather than skipped, so a receiver that is down for exactly the window still gets one.
    ``Retry-After`` is honoured (never sooner), but a receiver that keeps asking for 0 or 1 s is
    still retried no more often than a quarter of the usual backoff.
    """
    left = w.retry_window - age
    if left <= 0:
        return None
    delay = backoff(failures, w)
    if retry_after is not None:
        delay = max(retry_after, delay / 4)
    return min(delay, left)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class Outcome:
    """What one attempt gave."""

    status: int | None  # the receiver's HTTP status; None: no answer
    error: str | None
    ms: int | None
    retry_after: float | None = None


class WebhookWorker:
    """Claims and sends deliveries until ``stop()``; ``run_once()`` does one claim (tests)."""

    def __init__(self, settings: Settings, *, dsn_config: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.w = settings.webhooks
        self._config = dsn_config or engine_config(settings)
        self._pool: asyncpg.Pool | None = None
        self._clients: OrderedDict[tuple[str, str], httpx.AsyncClient] = OrderedDict()
        self._ssl = ssl.create_default_context()
        self._key_id = secret_key_id(settings.secret_key)
        self._signers: dict[str, Signer] = {}
        self._targets: dict[str, tuple[float, Target]] = {}  # url -> (checked at, target)
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._per_webhook: Counter[int] = Counter()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self.sent = Counter[str]()  # outcomes, for the benchmark and logs

    # ---------------------------------------------------------------- life

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="taskapi-webhook-worker")

    async def stop(self, grace: float = 2.0) -> None:
        """Stop claiming, let sends in flight finish for ``grace`` seconds, hand back the rest."""
        self._stopping.set()
        if self._task is not None:
            # The loop may be waiting on a send or the database: past the grace it is cancelled.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, grace)
        if self._in_flight:
            _, pending = await asyncio.wait(list(self._in_flight.values()), timeout=grace)
            unsent = [delivery_id for delivery_id, task in self._in_flight.items() if task in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if unsent:
                with contextlib.suppress(Exception):
                    await self._execute(sql.RELEASE_CLAIMS, ids=unsent)
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), grace)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                pool.terminate()  # a database that does not answer must not hold up shutdown

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            config = dict(self._config)
            self._pool = await asyncpg.create_pool(
                dsn=config.pop("dsn"), min_size=0, max_size=4, max_inactive_connection_lifetime=60.0, **config
            )
        return self._pool

    async def _execute(self, statement: Statement, **values: Any) -> list[asyncpg.Record]:
        pool = await self._connection_pool()
        async with pool.acquire() as connection:
            rows: list[asyncpg.Record] = await connection.fetch(statement.sql, *statement.bind(values))
            return rows

    # ---------------------------------------------------------------- loop

    async def run(self) -> None:
        """Claim and send until stopped; database errors are logged and retried after a pause."""
        pause = 0.0
        while not self._stopping.is_set():
            try:
                claimed = await self.claim()
                pause = 0.0
            except Exception as exc:
                pause = min(max(pause * 2, 0.5), 10.0)
                logger.warning("webhook worker: cannot claim deliveries (%s); retrying in %.1fs", exc, pause)
                await self._sleep(pause)
                continue
            await self._maybe_purge()
            room = self.w.concurrency - len(self._in_flight)
            if claimed and room > 0:
                continue  # there may be more due right now
            if room <= 0:
                await asyncio.wait(list(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED)
            else:
                await self._sleep(self.w.poll_seconds)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def claim(self) -> int:
        """Claim what this worker has room for and start sending it; returns how many."""
        room = self.w.concurrency - len(self._in_flight)
        if room <= 0:
            return 0
        busy = list(self._per_webhook)
        rows = await self._execute(
            sql.CLAIM_DELIVERIES,
            busy=busy,
            busy_room=[self.w.per_webhook - self._per_webhook[webhook] for webhook in busy],
            scan=room * 4,
            per_webhook=self.w.per_webhook,
            room=room,
            lease=self.w.lease_seconds,
        )
        for row in rows:
            self._per_webhook[row["webhook"]] += 1
            task = asyncio.create_task(self._deliver(dict(row)))
            self._in_flight[row["id"]] = task
            task.add_done_callback(functools.partial(self._done, row["id"], row["webhook"]))
        return len(rows)

    def _done(self, delivery_id: int, webhook_id: int, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(delivery_id, None)
        self._per_webhook[webhook_id] -= 1
        if self._per_webhook[webhook_id] <= 0:
            del self._per_webhook[webhook_id]

    async def run_until_idle(self) -> None:
        """Claim and send until nothing is due or in flight (tests and tools)."""
        while True:
            claimed = await self.claim()
            if self._in_flight:
                await asyncio.wait(list(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED)
            elif not claimed:
                return

    async def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_EVERY_SECONDS:
            return
        self._last_purge = time.monotonic()
        try:
            await self._execute(sql.PURGE_DELIVERIES, days=self.w.keep_days)
        except Exception as exc:
            logger.warning("webhook worker: purge of old deliveries failed (%s)", exc)

    # ---------------------------------------------------------------- one delivery

    async def _deliver(self, row: dict[str, Any]) -> None:
        try:
            outcome = await self.send(row)
            await self._record(row, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The claim's lease ends and the delivery is tried again: at least once.
            logger.exception("webhook worker: delivery %s failed unexpectedly", row["id"])

    async def _target(self, url: str) -> Target:
        """The URL's checked addresses, resolved again at most every TARGET_TTL seconds: sends
        connect only to addresses that were checked, so reusing a recent answer is safe."""
        now = time.monotonic()
        cached = self._targets.get(url)
        if cached is not None and now - cached[0] < TARGET_TTL:
            return cached[1]
        target = await resolve_target(url, allow_private=self.w.allow_private)
        if len(self._targets) > 4096:
            self._targets.clear()
        self._targets[url] = (now, target)
        return target

    def _signer(self, salt: str) -> Signer:
        signer = self._signers.get(salt)
        if signer is None:
            if len(self._signers) > 4096:
                self._signers.clear()
            signer = self._signers[salt] = Signer(signing_secret(self.settings.secret_key, salt))
        return signer

    async def send(self, row: dict[str, Any]) -> Outcome:
        """POST one delivery; never raises for the receiver's or the network's failures.

        The whole attempt (resolving included) is bounded by the connect and read timeouts
        together, which the lease outlasts: a receiver that answers one byte at a time cannot
        keep a delivery past its claim.
        """
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.w.connect_timeout + self.w.read_timeout):
                return await self._send(row)
        except TimeoutError:
            return Outcome(None, "timeout (the attempt took too long)", _ms(started))

    async def _send(self, row: dict[str, Any]) -> Outcome:
        if row["secret_key_id"] != self._key_id:
            return Outcome(
                None,
                "TASKAPI_SECRET_KEY changed since this webhook's secret was made: create the webhook again",
                None,
            )
        try:
            target = await self._target(row["url"])
        except UrlRefused as exc:
            return Outcome(None, f"refused: {exc}", None)
        body: str = row["payload"]
        now = dt.datetime.now(dt.UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": row["message_id"],
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer(row["secret_salt"]).sign(row["message_id"], now, body),
        }
        return await self._post(target, httpx.URL(row["url"]), body.encode(), headers)

    async def _post(self, target: Target, url: httpx.URL, body: bytes, headers: dict[str, str]) -> Outcome:
        """POST to the target's checked addresses in turn (the next only if one refuses to connect)."""
        headers["host"] = url.netloc.decode("ascii")
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        client = self._client(target)
        started = time.perf_counter()
        for n, address in enumerate(target.addresses, start=1):
            request = client.build_request(
                "POST", url.copy_with(host=address), content=body, headers=headers, extensions=extensions
            )
            try:
                response = await client.send(request, stream=True)
                try:
                    answer = b""
                    async for chunk in response.aiter_raw():
                        answer += chunk
                        if len(answer) >= MAX_BODY_READ:
                            break
                finally:
                    await response.aclose()
            except httpx.ConnectError as exc:
                if n < len(target.addresses):
                    continue
                return Outcome(None, f"{type(exc).__name__}: {exc}"[:500], _ms(started))
            except httpx.TimeoutException as exc:
                return Outcome(None, f"timeout ({type(exc).__name__})", _ms(started))
            except httpx.HTTPError as exc:
                return Outcome(None, f"{type(exc).__name__}: {exc}"[:500], _ms(started))
            return _outcome(response, answer, _ms(started))
        raise AssertionError("a target has at least one address")

    def _client(self, target: Target) -> httpx.AsyncClient:
        """One client per (scheme, host): its connections are to that host's checked address,
        with that host's TLS name, so no connection is ever shared between two hosts."""
        key = (target.scheme, target.host)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.w.read_timeout, connect=self.w.connect_timeout),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: it would bypass the address check
            verify=self._ssl,
            limits=httpx.Limits(max_connections=self.w.per_webhook * 2, max_keepalive_connections=self.w.per_webhook),
        )
        self._clients[key] = client
        if len(self._clients) > CLIENTS_KEPT:
            _, old = self._clients.popitem(last=False)
            task = asyncio.create_task(old.aclose())
            task.add_done_callback(lambda t: t.exception())
        return client

    async def _record(self, row: dict[str, Any], outcome: Outcome) -> None:
        claim = {"id": row["id"], "attempts": row["attempts"], "ms": outcome.ms}
        if outcome.status is not None and 200 <= outcome.status < 300:
            self.sent["delivered"] += 1
            await self._execute(sql.RECORD_DELIVERED, code=outcome.status, **claim)
        elif outcome.status == 410:
            self.sent["gone"] += 1
            await self._execute(
                sql.RECORD_GONE,
                error=outcome.error or "HTTP 410",
                reason="the receiver answered 410 Gone",
                **claim,
            )
        else:
            delay = next_delay(row["attempts"], row["age"], self.w, outcome.retry_after)
            self.sent["retry" if delay is not None else "failed"] += 1
            await self._execute(sql.RECORD_FAILED, delay=delay, code=outcome.status, error=outcome.error, **claim)


def _outcome(response: httpx.Response, answer: bytes, ms: int) -> Outcome:
    """What a receiver's answer means: 2xx delivered; otherwise the status and its first bytes
    (and ``Retry-After`` on 429 and 503)."""
    if 200 <= response.status_code < 300:
        return Outcome(response.status_code, None, ms)
    retry_after = None
    if response.status_code in RETRY_AFTER_STATUSES:
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
    text = answer[:200].decode("utf-8", "replace").strip()
    error = f"HTTP {response.status_code}" + (f": {text}" if text else "")
    return Outcome(response.status_code, error, ms, retry_after)


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


async def start_webhook_worker(settings: Settings) -> WebhookWorker | None:
    """The worker ``taskapi serve`` runs in each process, or None when TASKAPI_WEBHOOK_WORKER=false."""
    if not settings.webhooks.worker:
        return None
    worker = WebhookWorker(settings)
    await worker.start()
    return worker


def run_worker(settings: Settings) -> int:
    """``taskapi worker``: deliver until SIGTERM or SIGINT."""

    async def main() -> None:
        worker = WebhookWorker(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await worker.start()
        print("taskapi: webhook worker running", flush=True)
        await stop.wait()
        await worker.stop()

    asyncio.run(main())
    return 0
