"""Authentication: the bearer-token (JWT) backend.

Password hashing lives in app/passwords.py (used by the users service). A token's claims carry
the user id and the user's token generation; revoking bumps the generation, so every older
token is refused with 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar.connection import ASGIConnection
from litestar.security.jwt import OAuth2PasswordBearerAuth, Token

from app.services import users as users_service
from app.settings import Settings

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as ``request.user``."""

    id: int


async def retrieve_principal(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """Accept the token only while its user exists and its generation is current."""
    # Litestar takes whatever follows the first space, so "Token <jwt>" would pass: require Bearer.
    scheme = connection.headers.get("authorization", "").partition(" ")[0]
    if scheme.lower() != "bearer":
        return None
    try:
        user_id = int(token.sub)
        generation = int(token.extras.get("gen", -1))
    except (TypeError, ValueError):
        return None
    current = await users_service.get_token_generation(user_id)
    if current is None or current != generation:
        return None
    return Principal(id=user_id)


def make_auth(settings: Settings) -> OAuth2PasswordBearerAuth[Principal, Token]:
    return OAuth2PasswordBearerAuth[Principal, Token](
        token_secret=settings.secret_key,
        token_url=TOKEN_URL,
        retrieve_user_handler=retrieve_principal,
        default_token_expiration=timedelta(seconds=settings.token_ttl_seconds),
        exclude=["^/schema", "^/health$", "^/ready$"],
        exclude_opt_key="exclude_from_auth",
        require_claims=["exp", "sub"],
    )


def issue_token(
    auth: OAuth2PasswordBearerAuth[Principal, Token], settings: Settings, user_id: int, generation: int
) -> str:
    """A signed bearer token for ``user_id``."""
    return auth.create_token(
        identifier=str(user_id),
        token_expiration=timedelta(seconds=settings.token_ttl_seconds),
        token_extras={"gen": generation},
    )
