"""``newsletter lists``: public and private lists, display names, on both backends."""

from __future__ import annotations


def rows(cli) -> dict[str, dict]:
    return {row["name"]: row for row in cli("lists", "list", "--json").json()}


def test_lists_are_private_unless_made_public(workspace, cli):
    assert cli("lists", "create", "patients").exit_code == 0
    created = cli("lists", "create", "weekly", "--public", "--display-name", "  Clinic   News  Weekly ")
    assert created.exit_code == 0 and "public" in created.stdout + created.stderr
    shown = rows(cli)
    assert (shown["patients"]["public"], shown["patients"]["double_opt_in"], shown["patients"]["display_name"]) == (
        False, False, "")
    assert (shown["weekly"]["public"], shown["weekly"]["double_opt_in"], shown["weekly"]["display_name"]) == (
        True, True, "Clinic News Weekly")  # public lists are double opt-in unless told otherwise
    assert cli("lists", "list").exit_code == 0


def test_public_single_opt_in_list(workspace, cli):
    assert cli("lists", "create", "alerts", "--public", "--single-opt-in").exit_code == 0
    assert (rows(cli)["alerts"]["public"], rows(cli)["alerts"]["double_opt_in"]) == (True, False)


def test_update_a_list(workspace, cli):
    assert cli("lists", "create", "readers").exit_code == 0
    result = cli("lists", "update", "readers", "--public", "--display-name", "Zoë's Clinic Letter")
    assert result.exit_code == 0
    assert rows(cli)["readers"]["public"] is True and rows(cli)["readers"]["display_name"] == "Zoë's Clinic Letter"
    assert cli("lists", "update", "readers", "--private").exit_code == 0
    assert rows(cli)["readers"]["public"] is False
    assert rows(cli)["readers"]["display_name"] == "Zoë's Clinic Letter"


def test_list_errors_are_one_line_with_a_hint(workspace, cli):
    assert cli("lists", "create", "readers").exit_code == 0
    for args in (("lists", "update", "readers"),
                 ("lists", "update", "nope", "--public"),
                 ("lists", "create", "x", "--display-name", "a\nb"),
                 ("lists", "create", "y", "--display-name", "n" * 201),
                 ("lists", "create", "two\nlines"),
                 ("lists", "create", "n" * 101)):
        result = cli(*args)
        assert result.exit_code != 0 and "Hint:" in result.stderr and "Traceback" not in result.stderr, args
    assert set(rows(cli)) == {"readers"}
