"""Users and credentials."""

from __future__ import annotations

import asyncpg

from app.db import get_engine
from app.errors import AuthenticationError, ConflictError, NotFoundError
from app.passwords import hash_password, verify_password
from app.services.common import from_row
from app.tables import User

PUBLIC_COLUMNS = (User.id, User.email, User.display_name, User.created_at)


async def register_user(*, email: str, password: str, display_name: str) -> User:
    """Create a user; the email is unique case-insensitively (409 on a duplicate).

    Args:
        email: the login; stored lower-cased.
        password: plain text, hashed here with argon2id and never stored.
        display_name: free text shown to people.
    """
    password_hash = await hash_password(password)
    try:
        rows = await User.insert(
            User(email=email.strip().lower(), password_hash=password_hash, display_name=display_name)
        ).returning(*PUBLIC_COLUMNS)
    except asyncpg.UniqueViolationError:
        raise ConflictError("A user with this email already exists") from None
    return from_row(User, rows[0])


async def authenticate(*, email: str, password: str) -> tuple[int, int]:
    """Check credentials; return (user id, token generation). Same 401 for any mismatch."""
    row = (
        await User.select(User.id, User.password_hash, User.token_generation)
        .where(User.email == email.strip().lower())
        .first()
    )
    if not await verify_password(row["password_hash"] if row else None, password) or row is None:
        raise AuthenticationError("Wrong email or password")
    return row["id"], row["token_generation"]


async def get_user(user_id: int) -> User:
    row = await User.select(*PUBLIC_COLUMNS).where(User.id == user_id).first()
    if row is None:
        raise NotFoundError("User", user_id)
    return from_row(User, row)


async def get_token_generation(user_id: int) -> int | None:
    """The user's current token generation, or None if the user does not exist."""
    # Runs on every authenticated request: a fixed statement, no query building.
    rows = await get_engine().fetch("SELECT token_generation FROM app_user WHERE id = $1", user_id)
    return int(rows[0]["token_generation"]) if rows else None


async def revoke_tokens(user_id: int) -> None:
    """Invalidate every token issued to the user so far."""
    await User.update({User.token_generation: User.token_generation + 1}).where(User.id == user_id)
