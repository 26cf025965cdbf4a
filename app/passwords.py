"""Password hashing with argon2id, run in a worker thread so the event loop keeps serving."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.settings import get_settings


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    if get_settings().env == "test":
        # Test runs register hundreds of users; a cheap argon2id profile keeps them fast.
        # Never used outside TASKAPI_ENV=test.
        return PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash("not-a-real-password")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher().hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash (unknown email) it costs the same and answers False."""

    def check() -> bool:
        try:
            return _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
