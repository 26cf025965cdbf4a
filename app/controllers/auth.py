"""Register, token, revoke and the current user."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody

from app.auth import issue_token
from app.controllers.params import UserRequest
from app.dto import RegisterBody, RegisterDTO, UserReadDTO
from app.errors import InvalidBodyError
from app.openapi import problem_responses
from app.ratelimit import client_address, limiter_of
from app.services import users
from app.tables import User


class TokenBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=users.EMAIL_MAX_LENGTH)]
    password: Annotated[str, msgspec.Meta(max_length=users.PASSWORD_MAX_LENGTH)]


def _credentials_schema(user_field: str, *, closed: bool) -> OpenAPIMediaType:
    return OpenAPIMediaType(
        schema=Schema(
            type=OpenAPIType.OBJECT,
            additional_properties=False if closed else None,
            required=[user_field, "password"],
            properties={
                user_field: Schema(
                    type=OpenAPIType.STRING, max_length=users.EMAIL_MAX_LENGTH, description="The account's email"
                ),
                "password": Schema(type=OpenAPIType.STRING, max_length=users.PASSWORD_MAX_LENGTH),
            },
        )
    )


@dataclass
class TokenOperation(Operation):
    """The token endpoint reads its body by hand (JSON or the OAuth2 password form), so Litestar
    cannot infer it: the OpenAPI request body is declared here."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description=(
                "JSON `{email, password}`. The OAuth2 password form (`username`, `password`, as the docs'"
                " Authorize button sends it) is accepted too but not listed here: client generators"
                " (openapi-python-client 0.29) produce a module that does not import for a body with two"
                " media types."
            ),
            content={"application/json": _credentials_schema("email", closed=True)},
        )


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post(
        "/register",
        dto=RegisterDTO,
        return_dto=UserReadDTO,
        opt={"exclude_from_auth": True},
        responses=problem_responses(409),
    )
    async def register(self, data: JSONBody[RegisterBody]) -> Response[User]:
        """Create an account. The email is unique case-insensitively."""
        user = await users.register_user(email=data.email, password=data.password, display_name=data.display_name)
        return Response(user, status_code=201, headers={"Location": "/api/v1/users/me"})

    @post(
        "/token",
        status_code=200,
        opt={"exclude_from_auth": True, "accept_form": True},
        operation_class=TokenOperation,
        # RFC 6749 5.1: a token answer must not be stored by any cache.
        cache_control=CacheControlHeader(no_store=True),
        response_headers=[ResponseHeader(name="Pragma", value="no-cache", description="RFC 6749 5.1")],
        # The body is read by hand (JSON or the OAuth2 form), so these are not inferred.
        responses=problem_responses(400, 401, 413, 415),
    )
    async def issue_token(self, request: Request[Any, Any, Any]) -> TokenResponse:
        """Exchange credentials for a bearer token.

        Accepts JSON ``{email, password}`` or the OAuth2 password form (``username``, ``password``).
        """
        email, password = await _credentials(request)
        # Failed attempts count per account and per address; 429 while either is spent.
        async with limiter_of(request.app).login_attempt(email, client_address(request.scope)):
            try:
                user_id, generation = await users.authenticate(email=email, password=password)
            except InvalidBodyError as exc:
                if request.content_type[0] == RequestEncodingType.URL_ENCODED:  # the form names the email username
                    detail = exc.detail.replace("email", "username")
                    raise InvalidBodyError(detail, errors=_renamed(exc.errors)) from None
                raise
        settings = request.app.state.settings
        token = issue_token(settings, user_id, generation)
        return TokenResponse(
            access_token=token,
            token_type="bearer",  # noqa: S106 - the OAuth2 token type, not a secret
            expires_in=settings.token_ttl_seconds,
        )

    @post("/revoke", status_code=204)
    async def revoke_tokens(self, request: UserRequest) -> None:
        """Revoke every token issued to the caller so far (log out everywhere)."""
        await users.revoke_tokens(request.user.id)


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    return_dto = UserReadDTO

    @get("/me")
    async def get_me(self, request: UserRequest) -> User:
        """The authenticated user."""
        return await users.get_user(request.user.id)


_FIELD_PATH = re.compile(r"at `\$\.(\w+)`$")


def _renamed(errors: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    return [{**error, "field": "username"} if error.get("field") == "email" else error for error in errors or []]


async def _credentials(request: Request[Any, Any, Any]) -> tuple[str, str]:
    media_type = request.content_type[0]
    if media_type == RequestEncodingType.URL_ENCODED:
        form = await request.form()
        username, password = form.get("username"), form.get("password")
        problems = [
            {"key": name, "message": "Field required"}
            for name, value in (("username", username), ("password", password))
            if not value
        ]
        # Bounded like the JSON body, so an oversized password is refused before any hashing.
        for name, value, limit in (
            ("username", username, users.EMAIL_MAX_LENGTH),
            ("password", password, users.PASSWORD_MAX_LENGTH),
        ):
            if value and len(str(value)) > limit:
                problems.append({"key": name, "message": f"Expected `str` of length <= {limit}"})
        if problems:
            raise ValidationException("Invalid input", extra=problems)
        return str(username), str(password)
    try:
        body = msgspec.json.decode(await request.body(), type=TokenBody)
    except msgspec.ValidationError as exc:
        # msgspec ends its message with the path ("- at `$.password`"): name that field.
        match = _FIELD_PATH.search(str(exc))
        field = match.group(1) if match else "body"
        raise ValidationException("Invalid input", extra=[{"key": field, "message": str(exc)}]) from None
    except msgspec.DecodeError as exc:
        raise ValidationException("Malformed JSON", extra=[{"key": "body", "message": str(exc)}]) from None
    return body.email, body.password
