"""``newsletter tokens``: created once (secret shown once, stored hashed), scoped, listed, revoked; both backends."""

from __future__ import annotations

import hashlib

import pytest
from newsletter.store.db import Store
from sqlalchemy import text


def test_create_shows_the_secret_once_and_stores_only_its_hash(workspace, cli, database_url):
    created = cli("tokens", "create", "clinic-website", "--scope", "subscribers:write", "--scope", "lists:read",
                  "--json")
    assert created.exit_code == 0, created.stderr
    data = created.json()
    secret = data["token"]
    assert secret.startswith("nl_") and len(secret) == 46
    assert data["scopes"] == ["subscribers:write", "lists:read"] and data["rate_per_second"] == 50
    store = Store(database_url)
    try:
        with store.engine.connect() as connection:
            row = connection.execute(text("SELECT name, secret_hash FROM api_tokens")).one()
            dump = " ".join(str(v) for v in connection.execute(text("SELECT * FROM api_tokens")).one())
    finally:
        store.close()
    assert row == ("clinic-website", hashlib.sha256(secret.encode()).hexdigest())
    assert secret not in dump
    listed = cli("tokens", "list", "--json")
    assert listed.exit_code == 0
    assert [(r["name"], r["scopes"], r["last_used_at"]) for r in listed.json()] == [
        ("clinic-website", ["subscribers:write", "lists:read"], None)]
    assert secret not in listed.stdout
    people = cli("tokens", "list")
    assert "clinic-website" in people.stdout and "never" in people.stdout and secret not in people.stdout


def test_plain_create_prints_the_secret_alone_on_stdout(workspace, cli):
    created = cli("tokens", "create", "n8n", "--scope", "campaigns:write", "--rate", "5")
    assert created.exit_code == 0
    assert created.stdout.strip().startswith("nl_") and len(created.stdout.strip().splitlines()) == 1
    assert "not shown again" in created.stderr
    assert cli("tokens", "list", "--json").json()[0]["rate_per_second"] == 5


def test_authenticate_knows_the_secret_notes_last_use_and_forgets_a_revoked_token(workspace, cli, database_url):
    from newsletter.usecases.tokens import authenticate

    secret = cli("tokens", "create", "crm", "--scope", "subscribers:read", "--json").json()["token"]
    store = Store(database_url)
    try:
        info = authenticate(store, secret)
        assert info is not None and info.name == "crm" and info.allows("subscribers:read")
        assert not info.allows("subscribers:write") and not info.allows("campaigns:read")
        assert authenticate(store, secret[:-2] + ("AA" if secret[-2:] != "AA" else "BB")) is None
        assert authenticate(store, "Bearer " + secret) is None
        assert cli("tokens", "list", "--json").json()[0]["last_used_at"] is not None
        assert cli("tokens", "revoke", "crm").exit_code == 0
        assert authenticate(store, secret) is None
    finally:
        store.close()
    assert cli("tokens", "list", "--json").json() == []


def test_write_scope_implies_read():
    from newsletter.usecases.tokens import TokenInfo

    info = TokenInfo(1, "x", frozenset({"campaigns:write"}), 10, None)
    assert info.allows("campaigns:read") and info.allows("campaigns:write")
    assert not info.allows("subscribers:read")


@pytest.mark.parametrize("args, message", [
    (("tokens", "create", "web site", "--scope", "subscribers:write"), "a token name is 1 to 100"),
    (("tokens", "create", "web\r\nsite", "--scope", "subscribers:write"), "a token name is 1 to 100"),
    (("tokens", "create", "x" * 101, "--scope", "subscribers:write"), "a token name is 1 to 100"),
    (("tokens", "create", "zoë", "--scope", "subscribers:write"), "a token name is 1 to 100"),
    (("tokens", "create", "site"), "say what the token may do"),
    (("tokens", "create", "site", "--scope", "everything"), "unknown scope 'everything'"),
    (("tokens", "create", "site", "--scope", "lists:read", "--rate", "0"), "the rate is 1 to"),
    (("tokens", "revoke", "nobody"), "no API token named 'nobody'"),
])
def test_bad_input_is_one_line_with_a_hint(workspace, cli, args, message):
    result = cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}") and "\nHint: " in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_name_is_refused(workspace, cli):
    assert cli("tokens", "create", "site", "--scope", "lists:read").exit_code == 0
    again = cli("tokens", "create", "site", "--scope", "lists:read")
    assert again.exit_code == 1 and "an API token named 'site' exists" in again.stderr
    assert len(cli("tokens", "list", "--json").json()) == 1
