"""Emails are one account per address however it is spelled (issue 9): NFKC before lower-casing,
and invisible characters refused with a 400 naming the field, at register and at login."""

from __future__ import annotations

import unicodedata

import pytest

from tests.api.problems import assert_problem
from tests.conftest import count_rows

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
ME = "/api/v1/users/me"
PASSWORD = "correct-horse-battery"

# "josé@example.com" composed (NFC), decomposed (NFD), and in fullwidth letters.
NFC = unicodedata.normalize("NFC", "José@Example.com")
NFD = unicodedata.normalize("NFD", "José@Example.com")


def fullwidth(text: str) -> str:
    """The fullwidth forms (U+FF21...) of the ASCII letters; other characters as they are."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in text)


FULLWIDTH = fullwidth("JOSÉ@example.com")
STORED = "josé@example.com"


async def _register(client, email: str):
    return await client.post(REGISTER, json={"email": email, "password": PASSWORD})


def test_the_spellings_really_differ():
    assert len({NFC, NFD, FULLWIDTH}) == 3
    assert NFC.lower() != NFD.lower()


@pytest.mark.parametrize("first", [NFC, NFD, FULLWIDTH], ids=["nfc", "nfd", "fullwidth"])
async def test_every_spelling_of_one_address_is_one_account(client, first):
    created = await _register(client, first)
    assert created.status_code == 201, created.text
    assert created.json()["email"] == unicodedata.normalize("NFC", STORED)
    for other in (NFC, NFD, FULLWIDTH, FULLWIDTH.upper()):
        duplicate = await _register(client, other)
        assert_problem(duplicate, 409, case=other)
    assert await count_rows("app_user") == 1
    for other in (NFC, NFD, FULLWIDTH):
        for response in (
            await client.post(TOKEN, json={"email": other, "password": PASSWORD}),
            await client.post(TOKEN, data={"username": other, "password": PASSWORD}),
        ):
            assert response.status_code == 200, (other, response.text)
            me = await client.get(ME, headers={"Authorization": f"Bearer {response.json()['access_token']}"})
            assert me.json()["id"] == created.json()["id"]


INVISIBLE = {
    "zero-width-space": "\u200b",
    "zero-width-joiner": "\u200d",
    "soft-hyphen": "\u00ad",
    "left-to-right-mark": "\u200e",
    "byte-order-mark": "\ufeff",
    "tag-character": "\U000e0041",
    "bell": "\u0007",
    "delete": "\u007f",
    "c1-control": "\u0085",
}


@pytest.mark.parametrize("char", INVISIBLE.values(), ids=INVISIBLE.keys())
async def test_invisible_characters_are_refused_at_register(client, char):
    assert unicodedata.category(char) in {"Cf", "Cc"}
    response = await _register(client, f"ma{char}llory@example.com")
    assert_problem(response, 400, "email")
    assert await count_rows("app_user") == 0


async def test_a_zero_width_space_cannot_shadow_an_account(client):
    assert (await _register(client, "victim@example.com")).status_code == 201
    shadow = await _register(client, "vic\u200btim@example.com")
    assert_problem(shadow, 400, "email")
    assert await count_rows("app_user") == 1


async def test_invisible_characters_are_refused_at_login(client):
    assert (await _register(client, "victim@example.com")).status_code == 201
    json_login = await client.post(TOKEN, json={"email": "vic\u200btim@example.com", "password": PASSWORD})
    assert_problem(json_login, 400, "email")
    form_login = await client.post(TOKEN, data={"username": "vic\u200btim@example.com", "password": PASSWORD})
    assert_problem(form_login, 400, "username")


async def test_an_email_that_normalises_into_a_non_email_is_refused(client):
    # U+FE6B SMALL COMMERCIAL AT becomes "@" under NFKC: two "@" once normalised.
    response = await _register(client, "a\ufe6bb@example.com")
    assert_problem(response, 400, "email")
    assert await count_rows("app_user") == 0


async def test_normalised_email_is_what_users_me_shows(client):
    created = await _register(client, FULLWIDTH)
    token = (await client.post(TOKEN, json={"email": STORED, "password": PASSWORD})).json()["access_token"]
    me = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["email"] == STORED == created.json()["email"]


async def test_the_migration_normalises_stored_emails_and_keeps_taken_ones(client):
    """Accounts from before normalisation: their NFD or fullwidth email is rewritten, so they
    log in with any spelling; one whose normal form another account holds is left as it was."""
    import importlib

    from tests.api.problems import run_sql

    migration = importlib.import_module("piccolo_migrations.taskapi_2026_11_30t10_40_00_000000")
    assert (await _register(client, "taken@example.com")).status_code == 201
    hash_ = (await run_sql("SELECT password_hash FROM app_user"))[0]["password_hash"]
    old = {NFD.lower(): 101, fullwidth("taken@example.com"): 102}
    for email, user_id in old.items():
        await run_sql("INSERT INTO app_user (id, email, password_hash) VALUES ({}, {}, {})", user_id, email, hash_)

    assert await migration.normalise_emails() == 1
    rows = {row["id"]: row["email"] for row in await run_sql("SELECT id, email FROM app_user")}
    assert rows[101] == STORED  # rewritten: now "josé@example.com", NFC
    assert rows[102] == fullwidth("taken@example.com")  # its normal form is taken: left alone
    login = await client.post(TOKEN, json={"email": NFC, "password": PASSWORD})
    assert login.status_code == 200
    assert await migration.normalise_emails() == 0  # idempotent
