"""Password hashing with argon2id: bounded, at low CPU priority, off the event loop.

Each hash takes 64 MiB and (p=4) up to four threads. Unbounded, a flood of wrong logins starved
every other request and grew the worker's memory (numbers in bench/README.md). So:

- at most ``password_hash_concurrency`` hashes run at once (default: half the cores), which
  bounds memory at that many times 64 MiB;
- a login waits at most ``password_hash_wait_seconds`` for a slot, then gets a 503 with
  Retry-After (the server is busy; the client did nothing wrong), never an endless queue;
- the hashing threads run at nice 10 (Linux threads have their own nice value, and the
  threads argon2 starts inherit it), so the scheduler gives the event loop, and with it every
  other request, the CPU first, and logins take what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.errors import ServiceUnavailableError
from app.settings import get_settings

T = TypeVar("T")
HASH_THREAD_NICE = 10


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


def _lower_priority() -> None:
    # Where setpriority on a thread id is not supported, hashing runs at normal priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICE)


@lru_cache(maxsize=1)
def _executor() -> ThreadPoolExecutor:
    size = get_settings().password_hash_concurrency
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="argon2", initializer=_lower_priority)


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def _run_bounded(work: Callable[[], T]) -> T:
    """Run ``work`` on a hashing thread once a slot is free (503 after the configured wait)."""
    settings = get_settings()
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(settings.password_hash_concurrency)
    try:
        async with asyncio.timeout(settings.password_hash_wait_seconds):
            await slots.acquire()
    except TimeoutError:
        raise ServiceUnavailableError("Too many logins and sign-ups at once; retry shortly") from None
    try:
        return await loop.run_in_executor(_executor(), work)
    finally:
        slots.release()


async def hash_password(password: str) -> str:
    return await _run_bounded(lambda: _hasher().hash(password))


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash (unknown email) it costs the same and answers False."""

    def check() -> bool:
        try:
            return _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await _run_bounded(check)
