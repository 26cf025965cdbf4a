"""Idempotency keys for creating POSTs (SPEC "Safe writes").

``run_once`` wraps a create in one transaction that also stores a snapshot of the created rows
under (user, key). A retry with the same key and the same request fingerprint gets the snapshot
back (and creates nothing); another fingerprint is a 422; a retry while the first transaction is
still open finds the (user, key) advisory lock taken and gets a 409.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from app.db import get_engine
from app.errors import IdempotencyInFlightError, IdempotencyMismatchError
from app.services import sql
from app.services.common import utcnow
from app.settings import get_settings
from app.tables import IdempotencyKey

Rows = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Idempotency:
    """The key a client sent and a fingerprint of the request it came with."""

    key: str
    fingerprint: str

    @classmethod
    def for_request(cls, key: str, method: str, path: str, body: bytes) -> Idempotency:
        digest = hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()
        return cls(key=key, fingerprint=digest)


async def run_once(
    user_id: int, idempotency: Idempotency | None, create: Callable[[], Awaitable[Rows]]
) -> tuple[Rows, bool]:
    """Run ``create`` at most once per (user, key). Returns (rows, replayed)."""
    if idempotency is None:
        return await create(), False
    engine = get_engine()
    async with engine.transaction():
        locked = await sql.TRY_LOCK.fetch(key=f"{user_id}:{idempotency.key}", space=7)
        if not locked[0]["ok"]:
            raise IdempotencyInFlightError("A request with this Idempotency-Key is still being processed; retry later")
        ttl = dt.timedelta(hours=get_settings().idempotency_ttl_hours)
        existing = (
            await IdempotencyKey.select(IdempotencyKey.fingerprint, IdempotencyKey.snapshot, IdempotencyKey.created_at)
            .where((IdempotencyKey.owner == user_id) & (IdempotencyKey.key == idempotency.key))
            .first()
        )
        if existing is not None and existing["created_at"] > utcnow() - ttl:
            if existing["fingerprint"] != idempotency.fingerprint:
                raise IdempotencyMismatchError(
                    "This Idempotency-Key was already used with a different request body or endpoint"
                )
            replay: Rows = msgspec.json.decode(existing["snapshot"])
            return replay, True
        if existing is not None:  # expired: the key may be reused
            await IdempotencyKey.delete().where(
                (IdempotencyKey.owner == user_id) & (IdempotencyKey.key == idempotency.key)
            )
        rows = await create()
        await IdempotencyKey.insert(
            IdempotencyKey(
                owner=user_id,
                key=idempotency.key,
                fingerprint=idempotency.fingerprint,
                snapshot=msgspec.json.encode(rows).decode(),
            )
        )
    return rows, False


async def purge_expired_keys() -> int:
    """Delete keys older than the retention period; returns how many went."""
    cutoff = utcnow() - dt.timedelta(hours=get_settings().idempotency_ttl_hours)
    deleted = (
        await IdempotencyKey.delete()
        .where(IdempotencyKey.created_at < cutoff)
        .returning(IdempotencyKey._meta.primary_key)
    )
    return len(deleted)
