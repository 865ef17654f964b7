"""Imports keep what the old tool knew: tags and consent times (Mailchimp, Substack, Buttondown), both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from newsletter.audience.formats import split_tags


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def shown(cli, email):
    result = cli("subscribers", "show", email, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()


def tags(cli) -> dict[str, int]:
    return {row["name"]: row["subscribers"] for row in cli("tags", "list", "--json").json()}


def at(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()


def test_tag_cells_split_as_the_exports_write_them():
    assert split_tags('"vip","early adopter"') == ("vip", "early adopter")
    assert split_tags("vip, trial") == ("vip", "trial")
    assert split_tags('["vip", "trial"]') == ("vip", "trial")
    assert split_tags('"a, b",c') == ("a, b", "c")
    assert split_tags("") == ()


def test_mailchimp_tags_and_consent_times_become_tags_and_the_memberships_times(workspace, cli, tmp_path):
    data = write(tmp_path / "mc.csv",
                 "Email Address,First Name,OPTIN_TIME,CONFIRM_TIME,OPTIN_IP,TAGS\n"
                 'ada@example.org,Ada,2019-05-14 19:36:42,2019-05-14 19:40:00,203.0.113.9,"""VIP"",""Early Adopter"""\n'
                 "bob@example.org,Bob,2021-01-02 03:04:05,,,\n")
    report = cli("subscribers", "import", str(data), "--list", "readers", "--json").json()
    assert (report["format"], report["added"], report["invalid"]) == ("mailchimp", 2, 0), report
    ada = shown(cli, "ada@example.org")
    assert ada["attributes"] == {}
    membership = ada["lists"][0]
    assert (membership["subscribed_at"], membership["confirmed_at"]) == (at("2019-05-14T19:36:42+00:00"),
                                                                          at("2019-05-14T19:40:00+00:00"))
    joined = ada["consent"][0]
    assert (joined["action"], joined["source"], joined["ip"]) == ("import", "import:mc.csv", "203.0.113.9")
    assert joined["at"] == at("2019-05-14T19:36:42+00:00")
    assert shown(cli, "bob@example.org")["lists"][0]["confirmed_at"] == at("2021-01-02T03:04:05+00:00")
    assert tags(cli) == {"vip": 1, "early adopter": 1}
    # the imported join dates are what segments see
    count = cli("segments", "count", "--list", "readers", "--where", "joined < 2020-01-01 and tag:vip", "--json")
    assert count.json()["count"] == 1


def test_substack_and_buttondown_times_and_tags(workspace, cli, tmp_path):
    substack = write(tmp_path / "substack.csv", "email,active_subscription,expiry,plan,email_disabled,created_at\n"
                                                "ss@example.org,false,,free,false,2022-03-04T05:06:07.000Z\n")
    buttondown = write(tmp_path / "buttondown.csv", "email,creation_date,tags,subscriber_type\n"
                                                    'bd@example.org,2023-06-07T08:09:10+02:00,"vip,trial",regular\n')
    for path in (substack, buttondown):
        assert cli("subscribers", "import", str(path), "--list", "readers", "--json").json()["added"] == 1
    assert shown(cli, "ss@example.org")["lists"][0]["subscribed_at"] == at("2022-03-04T05:06:07+00:00")
    assert "created_at" not in shown(cli, "ss@example.org")["attributes"]
    assert shown(cli, "bd@example.org")["lists"][0]["subscribed_at"] == at("2023-06-07T06:09:10+00:00")
    assert tags(cli) == {"vip": 1, "trial": 1}


def test_a_bad_time_or_tag_is_a_reported_row_not_a_failed_import(workspace, cli, tmp_path):
    data = write(tmp_path / "mc.csv", "Email Address,OPTIN_TIME,TAGS\n"
                                      "ok@example.org,2020-01-01 00:00:00,vip\n"
                                      "late@example.org,yesterday,vip\n"
                                      "future@example.org,2999-01-01 00:00:00,\n"
                                      f"long@example.org,,{'x' * 65}\n")
    report = cli("subscribers", "import", str(data), "--list", "readers", "--json").json()
    assert report["added"] == 1
    reasons = {error["line"]: error["reason"] for error in report["errors"]}
    assert "not a date and time" in reasons[3]
    assert "in the future" in reasons[4]
    assert "tag name too long" in reasons[5]


def test_importing_again_adds_new_tags_to_people_it_updates(workspace, cli, tmp_path):
    first = write(tmp_path / "a.csv", "Email Address,First Name,TAGS\nada@example.org,Ada,vip\n")
    again = write(tmp_path / "b.csv", "Email Address,First Name,TAGS\nada@example.org,Ada L,trial\n")
    cli("subscribers", "import", str(first), "--list", "readers")
    assert cli("subscribers", "import", str(again), "--list", "readers", "--json").json()["updated"] == 1
    assert tags(cli) == {"vip": 1, "trial": 1}


def test_tags_travel_through_our_own_export(workspace, cli, tmp_path, monkeypatch, database_url):
    from support.stores import another_database

    cli("subscribers", "add", "ada@example.org", "--list", "readers")
    cli("subscribers", "tag", "ada@example.org", "--add", "vip,early adopter")
    out = tmp_path / "out.csv"
    assert cli("subscribers", "export", "--output", str(out)).exit_code == 0
    assert shown(cli, "ada@example.org")["tags"] == ["early adopter", "vip"]
    with another_database(database_url, tmp_path) as other:
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", other)
        report = cli("subscribers", "import", str(out), "--json").json()
        assert (report["format"], report["added"]) == ("newsletter", 1)
        assert shown(cli, "ada@example.org")["tags"] == ["early adopter", "vip"]
