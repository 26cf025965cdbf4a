"""Users and tokens: register, token (JSON and OAuth2 form), users/me, revoke, bad credentials."""

from __future__ import annotations

import datetime as dt

import httpx
import jwt
import pytest

from tests.api.problems import assert_problem
from tests.conftest import count_rows

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
REVOKE = "/api/v1/auth/revoke"
ME = "/api/v1/users/me"
PASSWORD = "s3cret-Passw0rd!"


def _secret() -> str:
    from app.settings import get_settings

    return get_settings().secret_key


def _forge(user_id: int, *, exp: dt.datetime, gen: int = 0, secret: str | None = None) -> str:
    now = dt.datetime.now(dt.UTC)
    claims = {"sub": str(user_id), "exp": int(exp.timestamp()), "iat": int(min(now, exp).timestamp()), "gen": gen}
    return jwt.encode(claims, secret or _secret(), algorithm="HS256")


def _assert_no_password_material(response: httpx.Response, *passwords: str) -> None:
    text = response.text
    assert "password_hash" not in text
    assert "$argon2" not in text
    for password in passwords:
        assert password not in text


def _assert_unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def _token(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(TOKEN, json={"email": email, "password": password})


# --------------------------------------------------------------------------------------------
# Register


async def test_register_answers_201_with_location_and_public_fields(client):
    response = await client.post(
        REGISTER, json={"email": "Carol.Smith@Example.COM", "password": PASSWORD, "display_name": "Carol"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/v1/users/me"
    body = response.json()
    assert set(body) == {"id", "email", "display_name", "created_at"}
    assert isinstance(body["id"], int)
    assert body["email"] == "carol.smith@example.com"
    assert body["display_name"] == "Carol"
    assert body["created_at"].endswith("Z")
    created = dt.datetime.fromisoformat(body["created_at"])
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=1)
    _assert_no_password_material(response, PASSWORD)
    assert await count_rows("app_user") == 1


async def test_register_display_name_defaults_to_empty(client):
    response = await client.post(REGISTER, json={"email": "dan@example.com", "password": PASSWORD})
    assert response.status_code == 201, response.text
    assert response.json()["display_name"] == ""


async def test_duplicate_email_in_another_case_is_409(client):
    first = await client.post(REGISTER, json={"email": "erin@example.com", "password": PASSWORD})
    assert first.status_code == 201
    again = await client.post(REGISTER, json={"email": "ERIN@Example.com", "password": "another-password"})
    assert_problem(again, 409)
    _assert_no_password_material(again, "another-password")
    assert await count_rows("app_user") == 1


BAD_REGISTER_BODIES = [
    ({"email": "f@example.com", "password": "x" * 7}, "password"),  # password-7-chars
    ({"email": "f@example.com", "password": "x" * 129}, "password"),  # password-129-chars
    ({"email": "not-an-email", "password": PASSWORD}, "email"),  # bad-email
    ({"email": "a b@example.com", "password": PASSWORD}, "email"),  # email-with-space
    ({"email": "f@example.com", "password": PASSWORD, "admin": True}, "admin"),  # unknown-field
    ({"password": PASSWORD}, "email"),  # missing-email
    ({"email": "f@example.com"}, "password"),  # missing-password
    ({"email": "f@example.com", "password": 12345678}, "password"),  # password-not-a-string
    ({"email": "f@example.com", "password": PASSWORD, "display_name": "d" * 201}, "display_name"),
    ({"email": "f@example.com", "password": PASSWORD, "display_name": None}, "display_name"),
    ({"email": "f" * 310 + "@example.com", "password": PASSWORD}, "email"),
]


async def test_register_rejects_bad_bodies_with_400(client):
    for body, field in BAD_REGISTER_BODIES:
        response = await client.post(REGISTER, json=body)
        assert_problem(response, 400, field, case=body)
        if isinstance(body.get("password"), str):
            _assert_no_password_material(response, body["password"])
        assert await count_rows("app_user") == 0


PASSWORD_LENGTH_BOUNDS = [
    8,
    128,
]


async def test_register_accepts_password_length_bounds(client):
    for length in PASSWORD_LENGTH_BOUNDS:
        response = await client.post(REGISTER, json={"email": f"len{length}@example.com", "password": "p" * length})
        assert response.status_code == 201, response.text
        token = await _token(client, f"len{length}@example.com", "p" * length)
        assert token.status_code == 200


async def test_register_names_every_bad_field(client):
    response = await client.post(REGISTER, json={"email": "nope", "password": "short", "display_name": 5})
    body = assert_problem(response, 400, "email", "password", "display_name")
    assert "short" not in response.text
    assert body["errors"]
    assert await count_rows("app_user") == 0


# --------------------------------------------------------------------------------------------
# Token


async def test_token_via_json(client, alice):
    response = await client.post(TOKEN, json={"email": alice.email, "password": alice.password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    _assert_no_password_material(response, alice.password)
    me = await client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == alice.id
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    lifetime = claims["exp"] - dt.datetime.now(dt.UTC).timestamp()
    assert abs(lifetime - body["expires_in"]) < 60


async def test_token_email_is_case_insensitive(client, alice):
    response = await client.post(TOKEN, json={"email": alice.email.upper(), "password": alice.password})
    assert response.status_code == 200, response.text


async def test_token_via_oauth2_form(client, alice):
    response = await client.post(TOKEN, data={"username": alice.email, "password": alice.password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    me = await client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == alice.email


async def test_token_form_without_password_is_400(client, alice):
    response = await client.post(TOKEN, data={"username": alice.email})
    assert_problem(response, 400, "password")


async def test_wrong_email_and_wrong_password_give_the_same_401(client, alice):
    wrong_password = await client.post(TOKEN, json={"email": alice.email, "password": "not-the-password"})
    wrong_email = await client.post(TOKEN, json={"email": "nobody@example.com", "password": alice.password})
    _assert_unauthorized(wrong_password)
    _assert_unauthorized(wrong_email)
    assert wrong_password.json() == wrong_email.json()
    _assert_no_password_material(wrong_password, "not-the-password", alice.password)
    _assert_no_password_material(wrong_email, alice.password)
    form = await client.post(TOKEN, data={"username": alice.email, "password": "not-the-password"})
    _assert_unauthorized(form)
    assert form.json() == wrong_password.json()


BAD_TOKEN_BODIES = [
    {"email": "a@example.com"},  # missing-password
    {"email": "a@example.com", "password": "x", "scope": "admin"},  # unknown-field
    {"email": 1, "password": "x"},  # email-not-a-string
]


async def test_token_rejects_bad_json_bodies_with_400(client):
    for body in BAD_TOKEN_BODIES:
        response = await client.post(TOKEN, json=body)
        assert_problem(response, 400, case=body)


async def test_token_malformed_json_is_400(client):
    response = await client.post(TOKEN, content=b'{"email": ', headers={"Content-Type": "application/json"})
    assert_problem(response, 400)


# --------------------------------------------------------------------------------------------
# users/me and bad credentials


async def test_users_me(client, alice):
    response = await client.get(ME, headers=alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "email", "display_name", "created_at"}
    assert body["id"] == alice.id
    assert body["email"] == alice.email
    assert body["created_at"].endswith("Z")
    _assert_no_password_material(response, alice.password)


async def test_missing_credentials_are_401(client, alice):
    _assert_unauthorized(await client.get(ME))
    _assert_unauthorized(await client.get("/api/v1/projects"))
    _assert_unauthorized(await client.post("/api/v1/projects", json={"name": "x"}))
    assert await count_rows("project") == 0


MALFORMED_AUTHORIZATION = [
    "Bearer garbage",  # bearer-garbage
    "Bearer ",  # bearer-empty
    "Bearer",  # bearer-only
    "Bearer a.b.c",  # three-garbage-parts
    "Basic YWxpY2U6cGFzcw==",  # basic-scheme
    "garbage",  # no-scheme
]


async def test_malformed_credentials_are_401(client, alice):
    for authorization in MALFORMED_AUTHORIZATION:
        response = await client.get(ME, headers={"Authorization": authorization})
        _assert_unauthorized(response)
        assert "garbage" not in response.text


async def test_token_in_another_scheme_is_401(client, alice):
    # The scheme name is case-insensitive (RFC 9110), the scheme itself is not optional.
    assert (await client.get(ME, headers={"Authorization": f"bearer {alice.token}"})).status_code == 200
    response = await client.get(ME, headers={"Authorization": f"Token {alice.token}"})
    _assert_unauthorized(response)


async def test_token_signed_with_another_secret_is_401(client, alice):
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    forged = _forge(alice.id, exp=future, secret="another-secret-another-secret-another-secret")
    _assert_unauthorized(await client.get(ME, headers={"Authorization": f"Bearer {forged}"}))


async def test_expired_token_is_401(client, alice):
    # Control: the same construction with a future exp is accepted, so only the expiry differs.
    fresh = _forge(alice.id, exp=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert (await client.get(ME, headers={"Authorization": f"Bearer {fresh}"})).status_code == 200
    expired = _forge(alice.id, exp=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    response = await client.get(ME, headers={"Authorization": f"Bearer {expired}"})
    _assert_unauthorized(response)


async def test_unsigned_token_is_401(client, alice):
    exp = int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp())
    unsigned = jwt.encode({"sub": str(alice.id), "exp": exp, "gen": 0}, key="", algorithm="none")
    _assert_unauthorized(await client.get(ME, headers={"Authorization": f"Bearer {unsigned}"}))


async def test_token_of_an_old_generation_is_401(client, alice):
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert (
        await client.get(ME, headers={"Authorization": f"Bearer {_forge(alice.id, exp=future)}"})
    ).status_code == 200
    stale = _forge(alice.id, exp=future, gen=1)
    _assert_unauthorized(await client.get(ME, headers={"Authorization": f"Bearer {stale}"}))


async def test_token_for_a_missing_user_is_401(client, alice):
    forged = _forge(alice.id + 1000, exp=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    _assert_unauthorized(await client.get(ME, headers={"Authorization": f"Bearer {forged}"}))


@pytest.mark.parametrize("sub", ["0", "-1", str(2**31), str(10**30), "alice", ""])
async def test_token_with_a_sub_that_is_no_user_id_is_401(client, alice, sub):
    # Signed with the real secret, so only the subject check can refuse it (never a 500).
    exp = int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp())
    forged = jwt.encode({"sub": sub, "exp": exp, "gen": 0}, _secret(), algorithm="HS256")
    _assert_unauthorized(await client.get(ME, headers={"Authorization": f"Bearer {forged}"}))


async def test_token_without_exp_is_401(client, alice):
    forged = jwt.encode({"sub": str(alice.id), "gen": 0}, _secret(), algorithm="HS256")
    _assert_unauthorized(await client.get(ME, headers={"Authorization": f"Bearer {forged}"}))


async def test_revoked_token_is_401_and_new_tokens_work(client, alice):
    revoke = await client.post(REVOKE, headers=alice.headers)
    assert revoke.status_code == 204, revoke.text
    assert revoke.content == b""
    _assert_unauthorized(await client.get(ME, headers=alice.headers))
    _assert_unauthorized(await client.get("/api/v1/projects", headers=alice.headers))
    _assert_unauthorized(await client.post(REVOKE, headers=alice.headers))
    fresh = await _token(client, alice.email, alice.password)
    assert fresh.status_code == 200
    me = await client.get(ME, headers={"Authorization": f"Bearer {fresh.json()['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == alice.id


async def test_revoke_only_affects_the_caller(client, alice, bob):
    assert (await client.post(REVOKE, headers=alice.headers)).status_code == 204
    response = await client.get(ME, headers=bob.headers)
    assert response.status_code == 200
    assert response.json()["id"] == bob.id


async def test_revoke_needs_a_token(client):
    _assert_unauthorized(await client.post(REVOKE))
