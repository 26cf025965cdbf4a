"""Authentication: bearer tokens (HS256 JWTs) checked by a Litestar authentication middleware.

Password hashing lives in app/passwords.py (used by the users service). A token's claims carry
the user id (``sub``) and the user's token generation (``gen``); revoking bumps the generation,
so every older token is refused with 401.

Every route needs a token unless it opts out with ``opt={"exclude_from_auth": True}`` (or is
under /schema), so a new endpoint is protected by default. The middleware is Litestar's
AbstractAuthenticationMiddleware with PyJWT doing the verification: Litestar's JWT backend did
the same work through a Token dataclass (claims converted to datetimes and validated a second
time), a cost on every request (bench/README.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import jwt
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware
from litestar.types import ASGIApp

from app.services import users as users_service
from app.settings import Settings

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret
ALGORITHM = "HS256"
EXCLUDE = ["^/schema"]
MAX_USER_ID = 2**31 - 1
# Never say which check failed: the same answer for missing, malformed, expired or revoked.
REFUSED = "Missing, malformed, expired or revoked credentials"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as ``request.user``."""

    id: int


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    """``Authorization: Bearer <token>``: signature, ``exp`` and ``sub``, then the generation."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        super().__init__(app, exclude=EXCLUDE, exclude_from_auth_key="exclude_from_auth", scopes={ScopeType.HTTP})
        self.secret = secret

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        # The scheme name is case-insensitive (RFC 9110); "Token <jwt>" is not a bearer token.
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise NotAuthorizedException(REFUSED)
        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
            user_id = int(claims["sub"])
            generation = int(claims.get("gen", -1))
        except (jwt.PyJWTError, TypeError, ValueError):
            raise NotAuthorizedException(REFUSED) from None
        if not 1 <= user_id <= MAX_USER_ID or await users_service.get_token_generation(user_id) != generation:
            raise NotAuthorizedException(REFUSED)
        return AuthenticationResult(user=Principal(id=user_id), auth=claims)


def auth_middleware(settings: Settings) -> DefineMiddleware:
    return DefineMiddleware(BearerTokenMiddleware, secret=settings.secret_key)


def issue_token(settings: Settings, user_id: int, generation: int) -> str:
    """A signed bearer token for ``user_id``, valid for ``token_ttl_seconds``."""
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": str(user_id),
        "gen": generation,
        "iat": now,
        "exp": now + dt.timedelta(seconds=settings.token_ttl_seconds),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)
