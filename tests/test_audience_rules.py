"""The audience rules (newsletter.audience.rules), and attributes that look like merge fields."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from newsletter.audience import manage, rules
from newsletter.store import audience as q
from newsletter.vocabulary import MembershipStatus, SubscriberStatus, SuppressionReason, address_hash

SLUG_OF_WELCOME = "welcome"
ARCHIVE = "https://news.clinic.example/archive/"


@pytest.fixture
def store(workspace):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store

    opened = open_store(load_settings(workspace))
    yield opened
    opened.close()


def status_of(store, address: str) -> tuple[str, str | None]:
    """The subscriber's status and the address's suppression reason."""
    with store.session() as session:
        subscriber = q.find_subscriber(session, address.lower())
        return subscriber.status, q.suppression_reason(session, address_hash(address))


def memberships(store, address: str) -> dict[str, str]:
    with store.session() as session:
        return {m.mailing_list.name: m.status for m in q.find_subscriber(session, address).memberships}


# -- attributes never override a standard merge value -------------------------------------------


def import_reserved_attributes(cli, tmp_path) -> None:
    data = tmp_path / "people.csv"
    data.write_text("email,name,slug,web_url,token,settings,city\n"
                    "ada@example.org,Ada,evil-slug,https://evil.example/,evil-token,evil-settings,London\n")
    result = cli("subscribers", "import", str(data), "--list", "readers", "--json")
    assert result.json()["added"] == 1, result.stderr


def test_an_imported_slug_attribute_renders_in_the_preview_as_the_edition_url(workspace, cli, store, tmp_path):
    from newsletter.config import load_settings
    from newsletter.web.preview import create_preview_app
    from starlette.testclient import TestClient

    import_reserved_attributes(cli, tmp_path)
    app = create_preview_app(load_settings(workspace), workspace / "articles" / "welcome.md", store=store,
                             watch=False)
    with TestClient(app) as client:
        page = client.get("/email.html", params={"as": "ada@example.org"})
    assert page.status_code == 200, page.text
    assert "Hi Ada," in page.text
    assert f'href="{ARCHIVE}' in page.text and "evil" not in page.text


def test_an_imported_slug_attribute_is_sent_with_the_edition_url(workspace, cli, tmp_path):
    import_reserved_attributes(cli, tmp_path)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    [written] = (workspace / "outbox").glob("*.eml")
    html = message_from_bytes(written.read_bytes(), policy=policy.default).get_body(("html",)).get_content()
    assert f'href="{ARCHIVE}' in html and "evil" not in html


def test_merge_values_keep_the_standard_fields_over_attributes():
    from types import SimpleNamespace

    from newsletter.compose.edition import merge_values

    settings = SimpleNamespace(base_url="https://news.example", name="The Letter")
    values = merge_values(settings, "issue-1", email="a@example.org", name="Ann", token="t",
                          attributes={"slug": "x", "web_url": "x", "email": "x", "name": "x", "city": None,
                                      "preferences_url": "x"})
    assert values == {"name": "Ann", "first_name": "Ann", "email": "a@example.org", "unsubscribe_url": "https://news.example/unsubscribe/t",
                      "web_url": "https://news.example/archive/issue-1", "slug": "x", "city": "",
                      "preferences_url": "https://news.example/preferences/t", "list_name": "The Letter"}


# -- suppression ------------------------------------------------------------------------------------


def test_suppress_never_weakens_a_status(store):
    manage.add_subscriber(store, "ann@example.org", list_name="readers")
    steps = [(SuppressionReason.COMPLAINED, SubscriberStatus.COMPLAINED),
             (SuppressionReason.BOUNCED, SubscriberStatus.COMPLAINED),
             (SuppressionReason.UNSUBSCRIBED, SubscriberStatus.COMPLAINED)]
    for reason, expected in steps:
        with store.session() as session:
            rules.suppress(session, "ann@example.org", reason, "test")
        assert status_of(store, "ann@example.org") == (expected, reason), reason


def test_a_bounce_outranks_an_unsubscribe(store):
    manage.add_subscriber(store, "ann@example.org", list_name="readers")
    with store.session() as session:
        rules.suppress(session, "ann@example.org", SuppressionReason.UNSUBSCRIBED, "test")
        rules.suppress(session, "ann@example.org", SuppressionReason.BOUNCED, "sendgrid", detail="550 no such user")
    assert status_of(store, "ann@example.org") == (SubscriberStatus.BOUNCED, SuppressionReason.BOUNCED)
    assert memberships(store, "ann@example.org") == {"readers": MembershipStatus.CONFIRMED}


def test_suppressing_an_address_we_do_not_hold_keeps_its_hash(store):
    with store.session() as session:
        assert rules.suppress(session, "stranger@example.org", SuppressionReason.COMPLAINED, "sendgrid") is None
    with store.session() as session:
        assert q.suppression_reason(session, address_hash("Stranger@example.org")) == SuppressionReason.COMPLAINED


# -- unsubscribe and join -----------------------------------------------------------------------------


def test_unsubscribe_from_one_list_by_id_leaves_the_others(store):
    first = manage.add_subscriber(store, "ann@example.org", list_name="weekly")
    manage.add_subscriber(store, "ann@example.org", list_name="monthly")
    with store.session() as session:
        left = rules.unsubscribe(session, first.subscriber_id, first.list_id, "webhook", "192.0.2.1")
        assert [m.list_id for m in left] == [first.list_id]
    with store.session() as session:
        assert rules.unsubscribe(session, first.subscriber_id, first.list_id, "webhook") == []  # idempotent
    assert memberships(store, "ann@example.org") == {"weekly": "unsubscribed", "monthly": "confirmed"}
    assert status_of(store, "ann@example.org") == (SubscriberStatus.ACTIVE, None)
    consents = [(c["action"], c["list"], c["ip"]) for c in manage.describe(store, "ann@example.org")["consent"]
                if c["action"] == "unsubscribe"]
    assert consents == [("unsubscribe", "weekly", "192.0.2.1")]


def test_unsubscribe_from_everything_suppresses_the_address(store):
    added = manage.add_subscriber(store, "ann@example.org", list_name="weekly")
    with store.session() as session:
        rules.unsubscribe(session, added.subscriber_id, None, "webhook")
    assert memberships(store, "ann@example.org") == {"weekly": "unsubscribed"}
    assert status_of(store, "ann@example.org") == (SubscriberStatus.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED)


def test_unsubscribing_an_unknown_id_changes_nothing(store):
    with store.session() as session:
        assert rules.unsubscribe(session, 12345, None, "webhook") == []
        assert q.suppression_reason(session, address_hash("ann@example.org")) is None


def test_join_a_double_opt_in_list_is_pending_and_leaving_wins_without_resubscribe(store):
    from newsletter.errors import Conflict

    with store.session() as session:
        q.create_list(session, "letters", double_opt_in=True)
    added = manage.add_subscriber(store, "ann@example.org", list_name="letters")
    assert added.list_status == MembershipStatus.PENDING
    manage.unsubscribe(store, "ann@example.org", "letters")
    with pytest.raises(Conflict, match="unsubscribed from letters"):
        manage.add_subscriber(store, "ann@example.org", list_name="letters")
    again = manage.add_subscriber(store, "ann@example.org", list_name="letters", resubscribe=True, confirmed=True)
    assert again.list_status == MembershipStatus.CONFIRMED
