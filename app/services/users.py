"""Users and credentials."""

from __future__ import annotations

import re
import unicodedata
from typing import cast

import asyncpg

from app.errors import AuthenticationError, ConflictError, InvalidBodyError, NotFoundError
from app.passwords import hash_password, verify_password
from app.services.common import from_row
from app.services.query import Param, Statement
from app.tables import User

PUBLIC_COLUMNS = (User.id, User.email, User.display_name, User.created_at)
# Runs on every authenticated request: built once.
TOKEN_GENERATION = Statement(User.select(User.token_generation).where(User.id == Param("id")))

# The credential bounds, read by the register and token bodies and by this module.
EMAIL_MAX_LENGTH = cast(int, User.email.length)
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# Unicode format characters (zero-width space and joiners, bidi marks...) and controls: they
# would make look-alike accounts, so an email holding one is refused rather than stripped.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc"})


def _email_error(message: str) -> InvalidBodyError:
    return InvalidBodyError("Invalid input: email", errors=[{"field": "email", "source": "body", "message": message}])


def normalize_email(email: str) -> str:
    """The one form of an email that is stored and looked up: NFKC, then lower-cased.

    NFC/NFD spellings and fullwidth letters of one address are then one account.

    Raises:
        InvalidBodyError: naming ``email`` when it holds invisible characters.
    """
    if any(unicodedata.category(char) in INVISIBLE_CATEGORIES for char in email):
        raise _email_error("must not contain invisible or control characters")
    # Lower-casing can leave a sequence NFKC would compose (e.g. U+0130): normalise once more.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).strip().lower())


def _new_email(email: str) -> str:
    """normalize_email, for an account's email: its normalised form must still be an email."""
    normalized = normalize_email(email)
    # NFKC can make a second "@" (U+FE6B) or a longer string (U+FDFA is 18 characters).
    if len(normalized) > EMAIL_MAX_LENGTH or not re.match(EMAIL_PATTERN, normalized):
        raise _email_error(f"must be an email address of at most {EMAIL_MAX_LENGTH} characters once normalised")
    return normalized


async def register_user(*, email: str, password: str, display_name: str) -> User:
    """Create a user; the email is unique case-insensitively (409 on a duplicate).

    Args:
        email: the login; stored normalised (normalize_email).
        password: plain text, hashed here with argon2id and never stored.
        display_name: free text shown to people.
    """
    email = _new_email(email)  # before hashing: a refused email costs no hash
    password_hash = await hash_password(password)
    try:
        rows = await User.insert(User(email=email, password_hash=password_hash, display_name=display_name)).returning(
            *PUBLIC_COLUMNS
        )
    except asyncpg.UniqueViolationError:
        raise ConflictError("A user with this email already exists") from None
    return from_row(User, rows[0])


async def authenticate(*, email: str, password: str) -> tuple[int, int]:
    """Check credentials; return (user id, token generation). Same 401 for any mismatch.

    Raises:
        InvalidBodyError: the email holds invisible characters (see normalize_email).
        AuthenticationError: no such account, or the wrong password.
    """
    row = (
        await User.select(User.id, User.password_hash, User.token_generation)
        .where(User.email == normalize_email(email))
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
    row = await TOKEN_GENERATION.fetch_one(id=user_id)
    return int(row["token_generation"]) if row else None


async def revoke_tokens(user_id: int) -> None:
    """Invalidate every token issued to the user so far."""
    await User.update({User.token_generation: User.token_generation + 1}).where(User.id == user_id)
