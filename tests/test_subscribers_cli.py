"""Subscribers and lists through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

from newsletter.audience.tokens import CONFIRM, read_token


def test_add_then_update_case_insensitively(workspace, cli):
    first = cli("subscribers", "add", "Ada@Example.ORG", "--name", "Ada", "--list", "readers",
                "--attr", "city=London", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json() == {"email": "Ada@example.org", "created": True, "list": "readers",
                            "list_status": "confirmed"}
    second = cli("subscribers", "add", "ada@example.org", "--timezone", "Europe/Paris", "--attr", "plan=pro", "--json")
    assert second.json()["created"] is False
    listed = cli("subscribers", "list", "--json").json()
    assert len(listed) == 1
    assert listed[0]["email"] == "Ada@example.org" and listed[0]["lists"] == ["readers"]
    shown = cli("subscribers", "show", "ADA@example.org", "--json").json()
    assert shown["attributes"] == {"city": "London", "plan": "pro"}
    assert shown["timezone"] == "Europe/Paris"
    assert shown["status"] == "active"
    assert shown["lists"][0]["name"] == "readers" and shown["lists"][0]["status"] == "confirmed"
    assert shown["consent"][0]["action"] == "subscribe" and shown["consent"][0]["source"] == "cli"
    assert shown["deliveries"] == []


def test_bad_input_is_one_line_and_changes_nothing(workspace, cli):
    cli("subscribers", "add", "ada@example.org", "--list", "readers")
    for args, expected in [
        (("subscribers", "add", "not-an-address"), "not a valid address"),
        (("subscribers", "add", "x@example.org\r\nBcc: y@example.org"), "line break"),
        (("subscribers", "add", "x@example.org", "--timezone", "Mars/Olympus"), "unknown time zone"),
        (("subscribers", "add", "x@example.org", "--attr", "novalue"), "is not key=value"),
        (("subscribers", "show", "ghost@example.org"), "no subscriber"),
        (("subscribers", "unsubscribe", "ada@example.org", "--list", "nope"), "no list named"),
    ]:
        result = cli(*args)
        assert result.exit_code == 1, args
        assert expected in result.stderr, (args, result.stderr)
        assert "Hint:" in result.stderr and "Traceback" not in result.stderr
    assert [s["email"] for s in cli("subscribers", "list", "--json").json()] == ["ada@example.org"]


def test_double_opt_in_list_keeps_new_members_pending_with_signed_link(workspace, cli):
    assert cli("lists", "create", "vip", "--double-opt-in").exit_code == 0
    result = cli("subscribers", "add", "bob@example.org", "--list", "vip", "--json").json()
    assert result["list_status"] == "pending"
    token = result["confirm_url"].rsplit("/", 1)[1]
    from newsletter.config import load_settings

    data = read_token(load_settings().secret_keys, CONFIRM, token)
    assert data.list_id is not None
    confirmed = cli("subscribers", "add", "bob@example.org", "--list", "vip", "--confirmed", "--json").json()
    assert confirmed["list_status"] == "confirmed"
    lists = {row["name"]: row for row in cli("lists", "list", "--json").json()}
    assert lists["vip"]["confirmed"] == 1 and lists["vip"]["pending"] == 0 and lists["vip"]["double_opt_in"]


def test_unsubscribe_from_one_list_and_from_everything(workspace, cli):
    cli("subscribers", "add", "ada@example.org", "--list", "readers")
    cli("subscribers", "add", "ada@example.org", "--list", "news")
    assert cli("subscribers", "unsubscribe", "ada@example.org", "--list", "news").exit_code == 0
    shown = cli("subscribers", "show", "ada@example.org", "--json").json()
    assert {m["name"]: m["status"] for m in shown["lists"]} == {"news": "unsubscribed", "readers": "confirmed"}
    assert shown["status"] == "active"
    # leaving one list then re-adding needs --resubscribe
    again = cli("subscribers", "add", "ada@example.org", "--list", "news")
    assert again.exit_code == 1 and "--resubscribe" in again.stderr
    assert cli("subscribers", "unsubscribe", "ada@example.org").exit_code == 0
    shown = cli("subscribers", "show", "ada@example.org", "--json").json()
    assert shown["status"] == "unsubscribed" and shown["suppressed"] == "unsubscribed"
    assert {m["status"] for m in shown["lists"]} == {"unsubscribed"}
    assert cli("subscribers", "unsubscribe", "ada@example.org").exit_code == 0  # idempotent
    assert cli("subscribers", "add", "ada@example.org", "--list", "readers").exit_code == 1
    back = cli("subscribers", "add", "ada@example.org", "--list", "readers", "--resubscribe", "--json")
    assert back.exit_code == 0 and back.json()["list_status"] == "confirmed"
    shown = cli("subscribers", "show", "ada@example.org", "--json").json()
    assert shown["status"] == "active" and shown["suppressed"] is None
    assert [c["action"] for c in shown["consent"]][-1] == "resubscribe"


def test_remove_erases_data_and_keeps_only_a_hash(workspace, cli):
    cli("subscribers", "add", "ada@example.org", "--name", "Ada Lovelace", "--list", "readers")
    assert cli("subscribers", "remove", "ada@example.org", "--yes").exit_code == 0
    assert cli("subscribers", "show", "ada@example.org").exit_code == 1
    assert cli("subscribers", "list", "--json").json() == []
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from sqlalchemy import text

    store = open_store(load_settings())
    with store.engine.connect() as connection:
        dump = [tuple(r) for table in ("subscribers", "memberships", "consents", "suppressions")
                for r in connection.execute(text(f"SELECT * FROM {table}"))]
    store.close()
    assert len(dump) == 1  # the suppression row alone
    assert "ada" not in repr(dump).lower() and "lovelace" not in repr(dump).lower()
    blocked = cli("subscribers", "add", "ADA@example.org", "--list", "readers")
    assert blocked.exit_code == 1 and "erased" in blocked.stderr
    assert cli("subscribers", "add", "ada@example.org", "--list", "readers", "--resubscribe").exit_code == 0


def test_remove_asks_first(workspace, cli):
    cli("subscribers", "add", "ada@example.org")
    result = cli("subscribers", "remove", "ada@example.org", input="n\n")
    assert result.exit_code == 1
    assert cli("subscribers", "show", "ada@example.org").exit_code == 0


def test_list_filters_by_list_and_status(workspace, cli):
    cli("subscribers", "add", "a@example.org", "--list", "readers")
    cli("subscribers", "add", "b@example.org", "--list", "readers")
    cli("subscribers", "add", "c@example.org", "--list", "other")
    cli("subscribers", "unsubscribe", "b@example.org", "--list", "readers")

    def emails(*args):
        return [r["email"] for r in cli("subscribers", "list", *args, "--json").json()]

    assert emails("--list", "readers") == ["a@example.org", "b@example.org"]
    assert emails("--list", "readers", "--status", "confirmed") == ["a@example.org"]
    assert emails("--list", "readers", "--status", "unsubscribed") == ["b@example.org"]
    assert emails("--status", "active") == ["a@example.org", "b@example.org", "c@example.org"]
    people = cli("subscribers", "list", "--list", "readers")
    assert "a@example.org" in people.stdout and "3 subscribers" not in people.stderr


def test_lists_create_duplicate_and_delete(workspace, cli):
    assert cli("lists", "create", "readers").exit_code == 0
    duplicate = cli("lists", "create", "readers")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    cli("subscribers", "add", "a@example.org", "--list", "readers")
    assert cli("lists", "delete", "readers", "--yes").exit_code == 0
    assert cli("lists", "list", "--json").json() == []
    assert cli("subscribers", "show", "a@example.org", "--json").json()["lists"] == []
    assert cli("lists", "delete", "readers", "--yes").exit_code == 1
